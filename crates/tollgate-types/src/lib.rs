//! Canonical types shared by every Tollgate crate.
//!
//! - [`ChatRequest`] / [`Message`]: the OpenAI-shaped chat request every inbound API is parsed
//!   into. Fields Tollgate does not interpret are kept verbatim in `extra`, so OpenAI-family
//!   providers receive them unchanged.
//! - [`EmbeddingsRequest`]: the same idea for `/v1/embeddings`.
//! - [`Usage`]: token usage, with one documented convention for cached tokens.
//! - [`Price`] / [`Usd`]: what each kind of token costs, and money as integer picodollars.
//! - [`ApiError`] / [`ErrorKind`]: the errors clients see, rendered in the shape of the
//!   [`ClientApi`] they called (OpenAI's, or Anthropic's on `/v1/messages`).

mod chat;
mod error;
mod price;
mod usage;

pub use chat::{ChatRequest, EmbeddingsRequest, Message, StreamOptions};
pub use error::{ApiError, ClientApi, ErrorKind};
pub use price::{LongContextPrice, Price, Usd};
pub use usage::Usage;
