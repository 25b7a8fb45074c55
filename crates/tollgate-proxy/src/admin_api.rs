//! The admin API's key and spend endpoints, behind the admin key:
//!
//! - `GET /admin/keys`, `POST /admin/keys`: list keys (from the config and the store), make
//!   one (its secret is in this answer only);
//! - `GET|PATCH /admin/keys/{name}`: read, or change its expiry, budget and rate limit;
//! - `POST /admin/keys/{name}/revoke`, `POST /admin/keys/{name}/rotate`;
//! - `GET /admin/spend?by=key|team|tenant|user|session|model|provider&bucket=hour|day&from=&to=`;
//! - `GET /admin/requests/{request_id}`: one request's ledger row, every attempt included.

use crate::keys::{new_secret, own_limit_name};
use crate::spend::{Spend, unix_now};
use http::StatusCode;
use serde_json::{Value, json};
use tollgate_config::{Config, Period, VirtualKey, parse_timestamp};
use tollgate_state::store::keys::{KeyLimits, StoredKey};
use tollgate_state::store::reports::{Bucket, GroupBy, ReportQuery};
use tollgate_state::store::{Store, StoreError};
use tollgate_types::Usd;

/// An answer: status and JSON body.
pub(crate) type Answer = (StatusCode, Value);

/// An OpenAI-shaped error answer.
pub(crate) fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Answer {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        s if s.is_server_error() => "api_error",
        _ => "invalid_request_error",
    };
    (
        status,
        json!({"error": {"message": message.to_string(), "type": kind, "param": null, "code": code}}),
    )
}

fn store_failed(e: &StoreError) -> Answer {
    tracing::error!(error = %e, "Admin API: the store failed.");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the key store is unavailable; try again shortly",
    )
}

fn ms_now() -> i64 {
    unix_now().saturating_mul(1000)
}

/// A name people and budgets refer to a key by.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn stored_json(k: &StoredKey) -> Value {
    json!({
        "name": k.name,
        "source": "admin",
        "display": k.display,
        "tenant": k.tenant,
        "team": k.team,
        "created_ms": k.created_ms,
        "expires_at": k.limits.expires_at,
        "revoked": k.revoked_ms.is_some(),
        "revoked_ms": k.revoked_ms,
        "budget_usd": k.limits.budget.as_ref().map(|(usd, _)| usd.to_string()),
        "period": k.limits.budget.as_ref().map(|(_, p)| p.clone()),
        "budget_name": k.limits.budget.as_ref().map(|_| own_limit_name(&k.name)),
        "rpm": k.limits.rpm,
        "tpm": k.limits.tpm,
    })
}

fn configured_json(k: &VirtualKey) -> Value {
    json!({
        "name": k.name,
        "source": "config",
        "tenant": k.tenant,
        "team": k.team,
        "expires_at": k.expires_at,
        "revoked": k.revoked,
    })
}

/// Applies the settings in `body` to `limits`: a field left out keeps its value, `null`
/// clears it.
fn apply_limits(body: &Value, limits: &mut KeyLimits) -> Result<(), String> {
    let field = |name: &str| body.get(name);
    if let Some(v) = field("expires_at") {
        limits.expires_at = match v {
            Value::Null => None,
            Value::Number(n) => Some(n.as_i64().ok_or("`expires_at`: expected Unix seconds")?),
            Value::String(s) => Some(parse_timestamp(s).ok_or(
                "`expires_at`: expected Unix seconds or a date-time like 2026-12-31T23:59:59Z",
            )?),
            _ => return Err("`expires_at`: expected Unix seconds or a date-time".to_owned()),
        };
    }
    if field("budget_usd").is_some() || field("period").is_some() {
        let period = match field("period") {
            None | Some(Value::Null) => limits
                .budget
                .as_ref()
                .map_or_else(|| "total".to_owned(), |(_, p)| p.clone()),
            Some(Value::String(p)) if Period::parse(p).is_some() => p.clone(),
            Some(_) => {
                return Err(
                    "`period`: expected `total`, `hourly`, `daily`, `weekly` or `monthly`".into(),
                );
            }
        };
        limits.budget = match field("budget_usd") {
            Some(Value::Null) => None,
            Some(v) => {
                let usd = v
                    .as_f64()
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or("`budget_usd`: expected a non-negative number")?;
                Some((Usd::from_dollars(usd), period))
            }
            None => limits.budget.take().map(|(usd, _)| (usd, period)),
        };
    }
    for (name, slot) in [("rpm", &mut limits.rpm), ("tpm", &mut limits.tpm)] {
        if let Some(v) = field(name) {
            *slot = match v {
                Value::Null => None,
                v => Some(
                    v.as_u64()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("`{name}`: expected a whole number above 0"))?,
                ),
            };
        }
    }
    Ok(())
}

/// The key endpoints and spend reports, on a store opened for the admin listener.
pub(crate) struct KeysApi<'a> {
    pub store: &'a Store,
    pub spend: &'a Spend,
    pub config: &'a Config,
}

impl KeysApi<'_> {
    async fn find(&self, name: &str) -> Result<Option<StoredKey>, Answer> {
        let keys = self.store.keys().await.map_err(|e| store_failed(&e))?;
        Ok(keys.into_iter().find(|k| k.name == name))
    }

    /// Swaps the gateway's stored keys for the store's, so a change takes effect at once.
    async fn refresh(&self) {
        if let Err(e) = self.spend.keys.reload(self.store).await {
            tracing::error!(error = %e, "Admin API: stored keys were not reloaded.");
        }
    }

    pub async fn list(&self) -> Answer {
        let stored = match self.store.keys().await {
            Ok(k) => k,
            Err(e) => return store_failed(&e),
        };
        let keys: Vec<Value> = self
            .config
            .keys
            .iter()
            .map(configured_json)
            .chain(stored.iter().map(stored_json))
            .collect();
        (StatusCode::OK, json!({ "keys": keys }))
    }

    pub async fn get(&self, name: &str) -> Answer {
        if let Some(k) = self.config.keys.iter().find(|k| k.name == name) {
            return (StatusCode::OK, configured_json(k));
        }
        match self.find(name).await {
            Ok(Some(k)) => (StatusCode::OK, stored_json(&k)),
            Ok(None) => not_found(name),
            Err(a) => a,
        }
    }

    pub async fn create(&self, body: &Value) -> Answer {
        let text = |f: &str| body.get(f).and_then(Value::as_str).map(str::to_owned);
        let Some(name) = text("name").filter(|n| valid_name(n)) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_name",
                "`name`: 1 to 64 letters, digits, `-`, `_` or `.`",
            );
        };
        let Some(tenant) = text("tenant").filter(|t| !t.is_empty()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_tenant",
                "`tenant` is required",
            );
        };
        if self.config.keys.iter().any(|k| k.name == name) {
            return exists(&name);
        }
        let mut limits = KeyLimits::default();
        if let Err(why) = apply_limits(body, &mut limits) {
            return error(StatusCode::BAD_REQUEST, "invalid_key_settings", why);
        }
        let (secret, display, hash) = new_secret();
        let key = StoredKey {
            name,
            hash: hash.to_string(),
            display,
            tenant,
            team: text("team").filter(|t| !t.is_empty()),
            created_ms: ms_now(),
            limits,
            revoked_ms: None,
        };
        match self.store.insert_key(&key).await {
            Ok(()) => {}
            Err(StoreError::KeyExists(name)) => return exists(&name),
            Err(e) => return store_failed(&e),
        }
        self.refresh().await;
        tracing::info!(key = %key.name, tenant = %key.tenant, "Admin API: key created.");
        let mut answer = stored_json(&key);
        answer["key"] = secret.into();
        (StatusCode::CREATED, answer)
    }

    pub async fn update(&self, name: &str, body: &Value) -> Answer {
        if self.config.keys.iter().any(|k| k.name == name) {
            return configured(name);
        }
        let mut key = match self.find(name).await {
            Ok(Some(k)) => k,
            Ok(None) => return not_found(name),
            Err(a) => return a,
        };
        if let Err(why) = apply_limits(body, &mut key.limits) {
            return error(StatusCode::BAD_REQUEST, "invalid_key_settings", why);
        }
        match self.store.set_key_limits(name, &key.limits).await {
            Ok(true) => {}
            Ok(false) => return not_found(name),
            Err(e) => return store_failed(&e),
        }
        self.refresh().await;
        (StatusCode::OK, stored_json(&key))
    }

    pub async fn revoke(&self, name: &str) -> Answer {
        if self.config.keys.iter().any(|k| k.name == name) {
            return configured(name);
        }
        match self.store.revoke_key(name, ms_now()).await {
            Ok(true) => {}
            Ok(false) => return not_found(name),
            Err(e) => return store_failed(&e),
        }
        self.refresh().await;
        tracing::info!(key = %name, "Admin API: key revoked.");
        self.get(name).await
    }

    pub async fn rotate(&self, name: &str) -> Answer {
        if self.config.keys.iter().any(|k| k.name == name) {
            return configured(name);
        }
        let (secret, display, hash) = new_secret();
        match self
            .store
            .rotate_key(name, &hash.to_string(), &display)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "key_not_found",
                    format!("no live key named {name:?} (revoked keys cannot be rotated)"),
                );
            }
            Err(e) => return store_failed(&e),
        }
        self.refresh().await;
        tracing::info!(key = %name, "Admin API: key rotated.");
        let (status, mut answer) = self.get(name).await;
        if status == StatusCode::OK {
            answer["key"] = secret.into();
        }
        (status, answer)
    }

    pub async fn request(&self, id: &str) -> Answer {
        match self.store.ledger_row(id).await {
            Ok(Some(row)) => (
                StatusCode::OK,
                serde_json::to_value(row).unwrap_or(Value::Null),
            ),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                "request_not_found",
                format!("no ledger entry for request {id:?} (it may not be written yet)"),
            ),
            Err(e) => store_failed(&e),
        }
    }

    pub async fn spend_report(&self, query: &str) -> Answer {
        let q = match report_query(query) {
            Ok(q) => q,
            Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_report", why),
        };
        let rows = match self.store.spend_report(q).await {
            Ok(rows) => rows,
            Err(e) => return store_failed(&e),
        };
        let total = rows
            .iter()
            .fold(Usd::ZERO, |sum, r| sum.saturating_add(r.cost));
        let all = tollgate_state::store::reports::SpendRow {
            group: None,
            bucket_ms: None,
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost: total,
            baseline: rows
                .iter()
                .fold(Usd::ZERO, |sum, r| sum.saturating_add(r.baseline)),
            cascaded: 0,
        };
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "group": r.group,
                    "bucket_start_ms": r.bucket_ms,
                    "requests": r.requests,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "cost_usd": r.cost.to_string(),
                    "cascaded_requests": r.cascaded,
                    "baseline_usd": r.baseline.to_string(),
                    "saved_usd": r.saved(),
                })
            })
            .collect();
        (
            StatusCode::OK,
            json!({
                "from_ms": q.from_ms,
                "to_ms": q.to_ms,
                "by": q.by.and_then(|b| GroupBy::ALL.iter().find(|(_, g)| *g == b).map(|(n, _)| *n)),
                "total_usd": total.to_string(),
                "saved_usd": all.saved(),
                "rows": rows,
            }),
        )
    }
}

fn not_found(name: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "key_not_found",
        format!("no key named {name:?}"),
    )
}

fn exists(name: &str) -> Answer {
    error(
        StatusCode::CONFLICT,
        "key_exists",
        format!("a key named {name:?} exists already"),
    )
}

fn configured(name: &str) -> Answer {
    error(
        StatusCode::CONFLICT,
        "key_in_config",
        format!("the key {name:?} is defined in the config file: change it there"),
    )
}

/// `value` with `%XX` escapes decoded (and `+` kept: in a date-time it is an offset's sign).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A time in a query: Unix seconds, or an RFC 3339 date-time.
fn query_time(v: &str) -> Option<i64> {
    v.parse::<i64>().ok().or_else(|| parse_timestamp(v))
}

/// `by`, `bucket`, `from` and `to` of a spend report; the last 30 days by default.
fn report_query(query: &str) -> Result<ReportQuery, String> {
    let now = unix_now();
    let mut q = ReportQuery {
        by: None,
        bucket: None,
        from_ms: (now - 30 * 86_400) * 1000,
        to_ms: (now + 1) * 1000,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "by" => {
                q.by = Some(
                    GroupBy::ALL
                        .iter()
                        .find(|(n, _)| *n == value)
                        .map(|(_, g)| *g)
                        .ok_or(
                            "`by`: expected key, team, tenant, user, session, model or provider",
                        )?,
                );
            }
            "bucket" => {
                q.bucket = Some(match value {
                    "hour" => Bucket::Hour,
                    "day" => Bucket::Day,
                    _ => return Err("`bucket`: expected hour or day".to_owned()),
                });
            }
            "from" | "to" => {
                let at = query_time(&percent_decoded(value))
                    .ok_or_else(|| format!("`{name}`: expected Unix seconds or a date-time"))?;
                if name == "from" {
                    q.from_ms = at.saturating_mul(1000);
                } else {
                    q.to_ms = at.saturating_mul(1000);
                }
            }
            _ => return Err(format!("unknown parameter `{name}`")),
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_merge_keeps_left_out_fields_and_clears_nulls() {
        let mut l = KeyLimits::default();
        apply_limits(
            &json!({"budget_usd": 5, "period": "daily", "rpm": 10}),
            &mut l,
        )
        .expect("valid");
        assert_eq!(l.budget, Some((Usd::from_dollars(5.0), "daily".to_owned())));
        assert_eq!(l.rpm, Some(10));
        apply_limits(&json!({"budget_usd": 2.5}), &mut l).expect("valid");
        assert_eq!(l.budget, Some((Usd::from_dollars(2.5), "daily".to_owned())));
        assert_eq!(l.rpm, Some(10), "left out, kept");
        apply_limits(
            &json!({"rpm": null, "expires_at": "2026-12-31T23:59:59Z"}),
            &mut l,
        )
        .expect("valid");
        assert_eq!(l.rpm, None);
        assert_eq!(l.expires_at, Some(1_798_761_599));
        assert!(apply_limits(&json!({"period": "yearly"}), &mut l).is_err());
        assert!(apply_limits(&json!({"budget_usd": -1}), &mut l).is_err());
        assert!(apply_limits(&json!({"tpm": 0}), &mut l).is_err());
    }

    #[test]
    fn report_queries_parse_and_refuse_unknowns() {
        let q = report_query("by=team&bucket=hour&from=1000&to=2026-11-30T01%3a00%3A00%2B01:00")
            .expect("valid");
        assert_eq!(q.by, Some(GroupBy::Team));
        assert_eq!(q.bucket, Some(Bucket::Hour));
        assert_eq!(q.from_ms, 1_000_000);
        assert_eq!(q.to_ms, 1_795_996_800_000);
        assert!(report_query("by=colour").is_err());
        assert!(report_query("group=key").is_err());
        assert!(report_query("from=yesterday").is_err());
    }

    #[test]
    fn key_names_are_plain() {
        assert!(valid_name("team-a.prod_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("@key"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
