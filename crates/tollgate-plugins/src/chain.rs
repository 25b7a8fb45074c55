//! A config's plugins in order: each hook runs through every plugin that implements it and
//! applies to the request's model, and a failing plugin is skipped (`fail_open`) or refuses
//! the request (`fail_closed`).

use crate::plugin::{HookError, Plugin};
use crate::types::{
    ChunkVerdict, HookSet, Request, Response, ResponseVerdict, StreamState, Target, Verdict,
};
use crate::view::RequestInfo;
use crate::{PluginError, view};
use std::sync::Arc;
use tollgate_config::plugins::PluginConfig;
use tollgate_types::ChatRequest;

/// A request or answer refused by a plugin, or by a `fail_closed` plugin that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The plugin.
    pub plugin: String,
    /// HTTP status for the client.
    pub status: u16,
    /// Message for the client.
    pub message: String,
    /// The plugin failed (rather than deciding to refuse).
    pub failed: bool,
}

/// What plugins changed in a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestChanges {
    /// Plugins that changed it.
    pub modified_by: Vec<String>,
    /// Tags they added.
    pub tags: Vec<String>,
    /// Messages or the output cap changed (not just tags): the request must be rebuilt.
    pub body_changed: bool,
    /// A plugin chose another model alias.
    pub model_changed: bool,
}

/// What to do with a stream chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkOutcome {
    /// Send it as it is.
    Pass,
    /// Send this text instead.
    Replace(String),
    /// Stop the stream.
    Stop(Refusal),
}

/// The plugins of one config version.
#[derive(Debug, Clone, Default)]
pub struct Plugins {
    list: Vec<Arc<Plugin>>,
}

impl Plugins {
    /// Loads every configured plugin, in order; the first that fails stops the load.
    pub fn load(configs: &[PluginConfig]) -> Result<Plugins, PluginError> {
        let list = configs
            .iter()
            .map(Plugin::load)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plugins { list })
    }

    /// The loaded plugins, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.list.iter()
    }

    /// Whether any plugin implements one of `hooks` for `model`.
    pub fn any(&self, model: &str, hooks: HookSet) -> bool {
        self.with(model, hooks).next().is_some()
    }

    /// The plugins implementing one of `hooks` for `model`, in order.
    fn with<'a>(&'a self, model: &'a str, hooks: HookSet) -> impl Iterator<Item = &'a Plugin> {
        self.list
            .iter()
            .filter(move |p| p.hooks.intersects(hooks) && p.config.applies_to(model))
            .map(|p| &**p)
    }

    /// The plugins' view of a request.
    pub fn request_view(info: &RequestInfo, req: &ChatRequest) -> Request {
        view::request(info, req)
    }

    /// Runs `on-request` through the plugins: each sees the request as the ones before it
    /// left it, and applies to the model alias as they left it (a plugin scoped to the alias
    /// an earlier one chose runs too). Changes are applied to `req` and `view`.
    pub async fn on_request(
        &self,
        view: &mut Request,
        req: &mut ChatRequest,
    ) -> Result<RequestChanges, Refusal> {
        let mut changes = RequestChanges::default();
        for p in self.list.iter().map(|p| &**p) {
            if !p.hooks.intersects(HookSet::ON_REQUEST) || !p.config.applies_to(&view.model) {
                continue;
            }
            match p.on_request(&view.id, view).await {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Deny(d)) => return Err(denial(p, d.status, d.message)),
                Ok(Verdict::Modify(m)) => {
                    changes.model_changed |= m.model.as_ref().is_some_and(|n| *n != view.model);
                    changes.body_changed |= m.messages.is_some() || m.max_tokens.is_some();
                    changes.tags.extend(view::apply(m, req, view));
                    changes.modified_by.push(p.name().to_owned());
                }
                Err(e) => failed(p, &e)?,
            }
        }
        Ok(changes)
    }

    /// Runs `on-response` through the plugins; `resp.text` is replaced in place. Returns the
    /// plugins that replaced it.
    pub async fn on_response(
        &self,
        view: &Request,
        resp: &mut Response,
    ) -> Result<Vec<String>, Refusal> {
        let mut replaced_by = Vec::new();
        for p in self.with(&view.model, HookSet::ON_RESPONSE) {
            match p.on_response(&view.id, view, resp).await {
                Ok(ResponseVerdict::Allow) => {}
                Ok(ResponseVerdict::Deny(d)) => return Err(denial(p, d.status, d.message)),
                Ok(ResponseVerdict::Replace(text)) => {
                    resp.text = text;
                    replaced_by.push(p.name().to_owned());
                }
                Err(e) => failed(p, &e)?,
            }
        }
        Ok(replaced_by)
    }

    /// Runs `on-chunk` through the plugins for one chunk's text.
    pub async fn on_chunk(&self, view: &Request, chunk: &str, state: &StreamState) -> ChunkOutcome {
        let mut text: Option<String> = None;
        for p in self.with(&view.model, HookSet::ON_CHUNK) {
            let current = text.as_deref().unwrap_or(chunk);
            match p.on_chunk(&view.id, view, current, state).await {
                Ok(ChunkVerdict::Pass) => {}
                Ok(ChunkVerdict::Replace(t)) => text = Some(t),
                Ok(ChunkVerdict::Stop(reason)) => {
                    return ChunkOutcome::Stop(denial(p, 403, reason));
                }
                Err(e) => {
                    if let Err(r) = failed(p, &e) {
                        return ChunkOutcome::Stop(r);
                    }
                }
            }
        }
        text.map_or(ChunkOutcome::Pass, ChunkOutcome::Replace)
    }

    /// Runs `route` through the plugins: each may reorder or drop the candidates left by the
    /// ones before it. Targets a plugin invents (not among the candidates) are ignored.
    pub async fn route(
        &self,
        view: &Request,
        mut candidates: Vec<Target>,
    ) -> Result<Vec<Target>, Refusal> {
        for p in self.with(&view.model, HookSet::ROUTE) {
            match p.route(&view.id, view, &candidates).await {
                Ok(None) => {}
                Ok(Some(chosen)) => {
                    let mut kept: Vec<Target> = Vec::with_capacity(chosen.len());
                    for t in chosen {
                        if candidates.contains(&t) && !kept.contains(&t) {
                            kept.push(t);
                        }
                    }
                    if kept.is_empty() {
                        return Err(denial(
                            p,
                            503,
                            "the routing plugin left no usable target".to_owned(),
                        ));
                    }
                    candidates = kept;
                }
                Err(e) => failed(p, &e)?,
            }
        }
        Ok(candidates)
    }

    /// The lowest `score` of the plugins that score answers for this model, or of the one
    /// called `only` (`None` when none does, or every one failed open).
    pub async fn score(
        &self,
        view: &Request,
        resp: &Response,
        only: Option<&str>,
    ) -> Result<Option<f32>, Refusal> {
        let mut lowest: Option<f32> = None;
        let scorers = self
            .with(&view.model, HookSet::SCORE)
            .filter(|p| only.is_none_or(|name| p.name() == name));
        for p in scorers {
            match p.score(&view.id, view, resp).await {
                Ok(s) => lowest = Some(lowest.map_or(s, |l| l.min(s))),
                Err(e) => failed(p, &e)?,
            }
        }
        Ok(lowest)
    }
}

/// A plugin's own refusal; statuses outside 400-599 become 403.
fn denial(p: &Plugin, status: u16, message: String) -> Refusal {
    Refusal {
        plugin: p.name().to_owned(),
        status: if (400..=599).contains(&status) {
            status
        } else {
            403
        },
        message: crate::host::truncate(&message, 1024).to_owned(),
        failed: false,
    }
}

/// A failed call: skipped when the plugin fails open, a 503 when it fails closed.
fn failed(p: &Plugin, e: &HookError) -> Result<(), Refusal> {
    if p.config.fail_open {
        return Ok(());
    }
    Err(Refusal {
        plugin: p.name().to_owned(),
        status: 503,
        message: format!(
            "plugin {} failed ({}) and is configured fail_closed",
            p.name(),
            e.kind()
        ),
        failed: true,
    })
}
