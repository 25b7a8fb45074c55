//! Rhai routing policies: the scripts engineers write to steer requests.
//!
//! - [`PolicyEngine`]: one Rhai engine with sandbox limits (operations, call depth, string,
//!   array and map sizes, and a wall-clock deadline through the progress callback) and the
//!   script API registered: the [`RequestView`] and [`ContextView`] types and the helpers.
//! - [`Script`]: a script compiled once to an AST, with the entry points it defines (`route`,
//!   `on_request`, `on_response`). Compile errors carry `file:line:col`.
//! - [`RouteDecision`], [`RequestVerdict`], [`ResponseVerdict`]: what entry points return,
//!   parsed from Rhai values with errors that say what was expected.
//!
//! The API scripts see is documented in `docs/policies.md`.

mod decision;
mod engine;
mod error;
pub mod fixture;
mod helpers;
mod view;

pub use decision::{
    CachePolicy, Modification, Overrides, RequestVerdict, ResponseVerdict, RouteDecision,
};
pub use engine::{Limits, PolicyEngine, Script, run_throttled};
pub use error::{ErrorKind, PolicyError};
pub use view::{
    ContextData, ContextView, Identity, Price, RequestView, ResponseView, TargetHealth,
};
