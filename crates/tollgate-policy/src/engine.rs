//! The Rhai engine, its sandbox, and calling entry points.

use crate::decision::{RequestVerdict, ResponseVerdict, RouteDecision};
use crate::error::{ErrorKind, PolicyError};
use crate::view::{ContextView, RequestView, ResponseView};
use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sandbox limits for every script call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations per call.
    pub max_operations: u64,
    /// Wall-clock time per call.
    pub timeout: Duration,
    /// Function call depth.
    pub max_call_depth: usize,
    /// Largest string a script may hold, in bytes. Also applies to strings passed in (prompts),
    /// so it is set well above `limits.max_request_bytes`-sized texts by default.
    pub max_string_size: usize,
    /// Largest array.
    pub max_array_size: usize,
    /// Largest map.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 200_000,
            timeout: Duration::from_millis(10),
            max_call_depth: 32,
            max_string_size: 16 * 1024 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
        }
    }
}

thread_local! {
    /// Lines of the statements and expressions run on this thread, recorded only by an engine built with
    /// [`PolicyEngine::new_tracing`] (for `tollgate route --explain`).
    static TRACE: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The deadline of the call running on this thread. Script calls are synchronous, so one
    /// slot per thread is enough even when many requests share the thread.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Under [`run_throttled`]: when the current slice of work began.
    static THROTTLE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Under [`run_throttled`]: how long this thread has slept so far.
    static SLEPT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// How long a throttled script runs before it sleeps as long again: half a core at most.
const THROTTLE_SLICE: Duration = Duration::from_micros(200);

/// Runs `f` with every script call in it throttled to about half a core: each slice of work
/// (at least 200 µs) is followed by a sleep as long. The sleeps count toward each call's
/// deadline. Returns what `f` returned and how long it slept, so callers can judge a script
/// by its work, not by the throttle.
///
/// For scripts that are new or have been slow lately: on a small machine, one spinning into
/// its deadline would otherwise take a whole core from every other request for that long.
pub fn run_throttled<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    /// Restores the thread's previous mode even if `f` unwinds, so a panic cannot leave a
    /// worker throttling every later script.
    struct Restore(Option<Instant>, Duration);
    impl Drop for Restore {
        fn drop(&mut self) {
            THROTTLE.with(|t| t.set(self.0));
            SLEPT.with(|s| s.set(self.1));
        }
    }
    let _restore = Restore(
        THROTTLE.with(|t| t.replace(Some(Instant::now()))),
        SLEPT.with(|s| s.replace(Duration::ZERO)),
    );
    let out = f();
    (out, SLEPT.with(Cell::get))
}

/// Called every 256 operations: `true` once the call's deadline has passed. Throttled calls
/// sleep here at the end of each slice.
fn past_deadline() -> bool {
    let Some(deadline) = DEADLINE.with(Cell::get) else {
        return false;
    };
    let now = Instant::now();
    if let Some(slice_start) = THROTTLE.with(Cell::get)
        && now.duration_since(slice_start) >= THROTTLE_SLICE
    {
        // As long as the slice ran (a native helper can make one long), up to the deadline.
        let pause = now
            .duration_since(slice_start)
            .min(deadline.saturating_duration_since(now));
        std::thread::sleep(pause);
        let resumed = Instant::now();
        SLEPT.with(|s| s.set(s.get() + resumed.duration_since(now)));
        THROTTLE.with(|t| t.set(Some(resumed)));
        return resumed >= deadline;
    }
    now >= deadline
}

/// The engine all scripts of one live state run on.
pub struct PolicyEngine {
    engine: Engine,
    limits: Limits,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A compiled script and the entry points it defines.
#[derive(Debug, Clone)]
pub struct Script {
    /// The file it came from.
    pub path: Arc<str>,
    ast: AST,
    /// Whether the script has top-level statements (constants) that calls must run first.
    has_top_level: bool,
    /// Defines `route(req, ctx)`.
    pub has_route: bool,
    /// Defines `on_request(req, ctx)`.
    pub has_on_request: bool,
    /// Defines `on_response(req, resp, ctx)`.
    pub has_on_response: bool,
}

impl PolicyEngine {
    /// An engine with `limits` and the script API registered.
    pub fn new(limits: Limits) -> Self {
        let mut engine = Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_depth);
        engine.set_max_string_size(limits.max_string_size);
        engine.set_max_array_size(limits.max_array_size);
        engine.set_max_map_size(limits.max_map_size);
        engine.set_max_expr_depths(64, 64);
        engine.set_max_modules(0);
        engine.set_max_strings_interned(0);
        engine.disable_symbol("eval");
        engine.on_progress(|ops| {
            // Checking the clock every 256 operations keeps the overhead negligible.
            if ops % 256 != 0 {
                return None;
            }
            past_deadline().then(|| Dynamic::from("deadline exceeded"))
        });
        // Scripts have no stdout: `print` and `debug` go to the log at debug level.
        engine.on_print(|s| tracing::debug!(target: "tollgate::script", "{s}"));
        engine.on_debug(|s, src, pos| {
            tracing::debug!(target: "tollgate::script", "{}:{pos}: {s}", src.unwrap_or("script"));
        });
        crate::view::register(&mut engine);
        crate::helpers::register(&mut engine);
        PolicyEngine { engine, limits }
    }

    /// An engine that also records the line of every statement it runs, for explaining a
    /// decision. Slower: not for serving traffic.
    pub fn new_tracing(limits: Limits) -> Self {
        let mut this = Self::new(limits);
        #[expect(
            deprecated,
            reason = "Rhai marks its debugger API volatile, not deprecated"
        )]
        this.engine.register_debugger(
            |_, debugger| debugger,
            |_, _, _, _, pos| {
                if let Some(line) = pos.line() {
                    TRACE.with(|t| t.borrow_mut().push(line));
                }
                Ok(rhai::debugger::DebuggerCommand::StepInto)
            },
        );
        this
    }

    /// Takes the lines recorded on this thread since the last call (tracing engines only).
    pub fn take_trace() -> Vec<usize> {
        TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles `source`, read from `path`.
    pub fn compile(&self, path: &str, source: &str) -> Result<Script, PolicyError> {
        let mut ast = self.engine.compile(source).map_err(|e| {
            PolicyError::new(
                ErrorKind::Compile,
                path,
                e.position(),
                e.err_type().to_string(),
            )
        })?;
        ast.set_source(path);
        let has = |name: &str, arity: usize| {
            ast.iter_functions()
                .any(|f| f.name == name && f.params.len() == arity)
        };
        let (has_route, has_on_request, has_on_response) =
            (has("route", 2), has("on_request", 2), has("on_response", 3));
        if !(has_route || has_on_request || has_on_response) {
            return Err(PolicyError::new(
                ErrorKind::Compile,
                path,
                Position::NONE,
                "defines none of `route(req, ctx)`, `on_request(req, ctx)`, `on_response(req, resp, ctx)`",
            ));
        }
        // Run the top level once now, so a script whose top level fails or never ends is
        // rejected at load time rather than on every request.
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.limits.timeout)));
        let top = self.engine.run_ast(&ast);
        DEADLINE.with(|d| d.set(None));
        top.map_err(|e| runtime_error(path, "top level", &e))?;
        Ok(Script {
            path: Arc::from(path),
            has_top_level: !ast.statements().is_empty(),
            ast,
            has_route,
            has_on_request,
            has_on_response,
        })
    }

    /// Calls `route(req, ctx)`; `Ok(None)` when the script has no `route` or returns `()`.
    pub fn route(
        &self,
        script: &Script,
        req: &RequestView,
        ctx: &ContextView,
    ) -> Result<Option<RouteDecision>, PolicyError> {
        if !script.has_route {
            return Ok(None);
        }
        let out = self.call(script, "route", (req.clone(), ctx.clone()))?;
        RouteDecision::from_dynamic(out).map_err(|m| invalid(script, "route", m))
    }

    /// Calls `on_request(req, ctx)`; `Allow` when the script has none.
    pub fn on_request(
        &self,
        script: &Script,
        req: &RequestView,
        ctx: &ContextView,
    ) -> Result<RequestVerdict, PolicyError> {
        if !script.has_on_request {
            return Ok(RequestVerdict::Allow);
        }
        let out = self.call(script, "on_request", (req.clone(), ctx.clone()))?;
        RequestVerdict::from_dynamic(out).map_err(|m| invalid(script, "on_request", m))
    }

    /// Calls `on_response(req, resp, ctx)`; `Accept` when the script has none.
    pub fn on_response(
        &self,
        script: &Script,
        req: &RequestView,
        resp: &ResponseView,
        ctx: &ContextView,
    ) -> Result<ResponseVerdict, PolicyError> {
        if !script.has_on_response {
            return Ok(ResponseVerdict::Accept);
        }
        let out = self.call(
            script,
            "on_response",
            (req.clone(), resp.clone(), ctx.clone()),
        )?;
        ResponseVerdict::from_dynamic(out).map_err(|m| invalid(script, "on_response", m))
    }

    fn call(
        &self,
        script: &Script,
        name: &str,
        args: impl rhai::FuncArgs,
    ) -> Result<Dynamic, PolicyError> {
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.limits.timeout)));
        // A top level runs before each call so functions can read its constants as
        // `global::NAME` (Rhai functions are pure and see nothing else); scripts without one
        // skip that cost.
        let options = CallFnOptions::new()
            .eval_ast(script.has_top_level)
            .rewind_scope(true);
        let result = self.engine.call_fn_with_options::<Dynamic>(
            options,
            &mut Scope::new(),
            &script.ast,
            name,
            args,
        );
        DEADLINE.with(|d| d.set(None));
        result.map_err(|e| runtime_error(&script.path, name, &e))
    }
}

fn invalid(script: &Script, entry: &str, message: String) -> PolicyError {
    PolicyError::new(
        ErrorKind::InvalidDecision,
        &script.path,
        Position::NONE,
        format!("`{entry}` returned an invalid value: {message}"),
    )
}

fn runtime_error(path: &str, entry: &str, e: &EvalAltResult) -> PolicyError {
    // Errors raised inside a called function are wrapped; the innermost one has the position.
    let mut inner = e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, source, _) = inner {
        inner = source;
    }
    let kind = match inner {
        EvalAltResult::ErrorTerminated(..) => ErrorKind::Timeout,
        EvalAltResult::ErrorTooManyOperations(..)
        | EvalAltResult::ErrorStackOverflow(..)
        | EvalAltResult::ErrorDataTooLarge(..) => ErrorKind::Limit,
        _ => ErrorKind::Runtime,
    };
    let message = match inner {
        EvalAltResult::ErrorTerminated(..) => "deadline exceeded".to_owned(),
        other => other.to_string(),
    };
    PolicyError::new(
        kind,
        path,
        inner.position(),
        format!("in `{entry}`: {message}"),
    )
}
