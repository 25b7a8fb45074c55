//! What entry points return, parsed from Rhai values.

use rhai::{Dynamic, Map};

/// Whether the response cache may be used (the cache issue reads this).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Use the configured cache behaviour.
    #[default]
    Default,
    /// Skip the cache for this request.
    Bypass,
}

/// Request fields a decision may override.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// New `max_tokens`.
    pub max_tokens: Option<u32>,
    /// New `temperature`.
    pub temperature: Option<f64>,
}

/// The result of `route(req, ctx)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteDecision {
    /// Targets to try first, in order: `provider/model` ids or model aliases.
    pub targets: Vec<String>,
    /// Targets to try after them.
    pub fallbacks: Vec<String>,
    /// Request overrides.
    pub overrides: Overrides,
    /// Cache behaviour.
    pub cache: CachePolicy,
    /// Tags added to the request.
    pub tags: Vec<String>,
    /// A cascade to serve the request through (tiers as in the config's
    /// `models.ALIAS.cascade`), as JSON for the gateway to check like the config's.
    pub cascade: Option<serde_json::Value>,
}

/// The result of `on_request(req, ctx)`.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestVerdict {
    /// Go on unchanged.
    Allow,
    /// Refuse with this status and message.
    Deny {
        /// HTTP status, 400..=599.
        status: u16,
        /// Message for the client.
        message: String,
    },
    /// Go on with these changes.
    Modify(Modification),
}

/// Changes `on_request` may make.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modification {
    /// New `max_tokens`.
    pub max_tokens: Option<u32>,
    /// New `temperature`.
    pub temperature: Option<f64>,
    /// Another model alias.
    pub model: Option<String>,
    /// Keep the system messages and only the last N other messages.
    pub keep_last_turns: Option<usize>,
    /// Tags to add.
    pub tags: Vec<String>,
}

/// The result of `on_response(req, resp, ctx)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResponseVerdict {
    /// Keep the answer.
    Accept,
    /// Escalate to the next tier.
    Escalate,
    /// A confidence score in 0..=1 for the cascade to compare with its threshold.
    Score(f64),
}

fn string_list(v: Dynamic, field: &str) -> Result<Vec<String>, String> {
    if v.is_string() {
        return Ok(vec![v.to_string()]);
    }
    let Some(items) = v.try_cast::<rhai::Array>() else {
        return Err(format!("`{field}` must be a string or an array of strings"));
    };
    items
        .into_iter()
        .map(|i| {
            if i.is_string() {
                Ok(i.to_string())
            } else {
                Err(format!(
                    "`{field}` must contain only strings, found {}",
                    i.type_name()
                ))
            }
        })
        .collect()
}

fn uint(v: &Dynamic, field: &str) -> Result<u32, String> {
    v.as_int()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("`{field}` must be a non-negative integer"))
}

fn float(v: &Dynamic, field: &str) -> Result<f64, String> {
    v.as_float()
        .or_else(|_| v.as_int().map(|n| n as f64))
        .map_err(|_| format!("`{field}` must be a number"))
}

fn check_keys(map: &Map, allowed: &[&str]) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown field `{k}` (expected one of: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

impl RouteDecision {
    pub(crate) fn from_dynamic(v: Dynamic) -> Result<Option<Self>, String> {
        if v.is_unit() {
            return Ok(None);
        }
        if v.is_string() || v.is_array() {
            return Ok(Some(RouteDecision {
                targets: string_list(v, "targets")?,
                ..RouteDecision::default()
            }));
        }
        let Some(mut map) = v.try_cast::<Map>() else {
            return Err(
                "expected a target string, an array of targets, or a decision map".to_owned(),
            );
        };
        check_keys(
            &map,
            &[
                "targets",
                "fallbacks",
                "overrides",
                "cache",
                "tags",
                "cascade",
            ],
        )?;
        let mut d = RouteDecision::default();
        if let Some(t) = map.remove("targets") {
            d.targets = string_list(t, "targets")?;
        }
        if let Some(f) = map.remove("fallbacks") {
            d.fallbacks = string_list(f, "fallbacks")?;
        }
        if let Some(t) = map.remove("tags") {
            d.tags = string_list(t, "tags")?;
        }
        if let Some(c) = map.remove("cascade") {
            let json: serde_json::Value = rhai::serde::from_dynamic(&c)
                .map_err(|e| format!("`cascade` cannot be read: {e}"))?;
            if !(json.is_array() || json.is_object()) {
                return Err("`cascade` must be an array of tiers or a map with `tiers`".to_owned());
            }
            d.cascade = Some(json);
        }
        if d.targets.is_empty() && d.cascade.is_none() {
            return Err("`targets` must name at least one target".to_owned());
        }
        if let Some(c) = map.remove("cache") {
            d.cache = match c.to_string().as_str() {
                "default" => CachePolicy::Default,
                "bypass" => CachePolicy::Bypass,
                other => {
                    return Err(format!(
                        "`cache` must be \"default\" or \"bypass\", not \"{other}\""
                    ));
                }
            };
        }
        if let Some(o) = map.remove("overrides") {
            let o = o.try_cast::<Map>().ok_or("`overrides` must be a map")?;
            check_keys(&o, &["max_tokens", "temperature"])?;
            if let Some(v) = o.get("max_tokens") {
                d.overrides.max_tokens = Some(uint(v, "overrides.max_tokens")?);
            }
            if let Some(v) = o.get("temperature") {
                d.overrides.temperature = Some(float(v, "overrides.temperature")?);
            }
        }
        Ok(Some(d))
    }

    /// Every target in order: `targets`, then `fallbacks`.
    pub fn all_targets(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .chain(&self.fallbacks)
            .map(String::as_str)
    }
}

impl RequestVerdict {
    pub(crate) fn from_dynamic(v: Dynamic) -> Result<Self, String> {
        if v.is_unit() {
            return Ok(RequestVerdict::Allow);
        }
        if v.is_string() {
            return match v.to_string().as_str() {
                "allow" => Ok(RequestVerdict::Allow),
                other => Err(format!(
                    "expected \"allow\", `deny(status, message)` or a map of changes, not \"{other}\""
                )),
            };
        }
        let Some(map) = v.try_cast::<Map>() else {
            return Err(
                "expected \"allow\", `deny(status, message)` or a map of changes".to_owned(),
            );
        };
        if map.get("action").is_some_and(|a| a.to_string() == "deny") {
            let status = map
                .get("status")
                .map(|s| uint(s, "status"))
                .transpose()?
                .unwrap_or(403);
            if !(400..=599).contains(&status) {
                return Err(format!("deny status must be 400..=599, not {status}"));
            }
            let message = map
                .get("message")
                .map_or_else(|| "denied by policy".to_owned(), ToString::to_string);
            return Ok(RequestVerdict::Deny {
                status: status as u16,
                message,
            });
        }
        check_keys(
            &map,
            &[
                "max_tokens",
                "temperature",
                "model",
                "keep_last_turns",
                "tags",
            ],
        )?;
        let mut m = Modification::default();
        if let Some(v) = map.get("max_tokens") {
            m.max_tokens = Some(uint(v, "max_tokens")?);
        }
        if let Some(v) = map.get("temperature") {
            m.temperature = Some(float(v, "temperature")?);
        }
        if let Some(v) = map.get("model") {
            m.model = Some(
                v.clone()
                    .into_string()
                    .map_err(|_| "`model` must be a string".to_owned())?,
            );
        }
        if let Some(v) = map.get("keep_last_turns") {
            m.keep_last_turns = Some(uint(v, "keep_last_turns")? as usize);
        }
        if let Some(v) = map.get("tags") {
            m.tags = string_list(v.clone(), "tags")?;
        }
        Ok(RequestVerdict::Modify(m))
    }
}

impl ResponseVerdict {
    pub(crate) fn from_dynamic(v: Dynamic) -> Result<Self, String> {
        if v.is_unit() {
            return Ok(ResponseVerdict::Accept);
        }
        if let Ok(score) = float(&v, "score") {
            if !(0.0..=1.0).contains(&score) {
                return Err(format!("a score must be within 0..=1, not {score}"));
            }
            return Ok(ResponseVerdict::Score(score));
        }
        match v.to_string().as_str() {
            "accept" => Ok(ResponseVerdict::Accept),
            "escalate" => Ok(ResponseVerdict::Escalate),
            other => Err(format!(
                "expected \"accept\", \"escalate\" or a score, not \"{other}\""
            )),
        }
    }
}
