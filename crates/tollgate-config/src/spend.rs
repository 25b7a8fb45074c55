//! `[spend]`, `[[budgets]]` and `[[rate_limits]]`: where spend is kept, and the caps on it
//! and on request rates.

use crate::locate::ConfigPath;
use crate::raw::RawConfig;
use crate::validate::Checker;
use std::collections::HashSet;
use std::path::PathBuf;
use tollgate_types::Usd;

/// How often a budget starts again from zero, on UTC calendar boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// Never.
    Total,
    /// At the top of every hour.
    Hourly,
    /// At 00:00 UTC.
    Daily,
    /// At 00:00 UTC on Mondays.
    Weekly,
    /// At 00:00 UTC on the first of the month.
    Monthly,
}

impl Period {
    /// Every period with its config name.
    pub const ALL: [(&'static str, Period); 5] = [
        ("total", Period::Total),
        ("hourly", Period::Hourly),
        ("daily", Period::Daily),
        ("weekly", Period::Weekly),
        ("monthly", Period::Monthly),
    ];

    /// How long a period lasts at most, in seconds (`None` for `total`).
    pub fn max_len_secs(self) -> Option<u64> {
        match self {
            Period::Total => None,
            Period::Hourly => Some(3_600),
            Period::Daily => Some(86_400),
            Period::Weekly => Some(7 * 86_400),
            Period::Monthly => Some(31 * 86_400),
        }
    }

    /// The period named `name` (`total`, `hourly`, ...).
    pub fn parse(name: &str) -> Option<Period> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("total", |(n, _)| n)
    }

    /// The start, in Unix seconds, of the period that contains `unix` (UTC calendar).
    pub fn start(self, unix: i64) -> i64 {
        const DAY: i64 = 86_400;
        let days = unix.div_euclid(DAY);
        match self {
            Period::Total => 0,
            Period::Hourly => unix - unix.rem_euclid(3_600),
            Period::Daily => days * DAY,
            // 1970-01-01 was a Thursday, three days after a Monday.
            Period::Weekly => (days - (days + 3).rem_euclid(7)) * DAY,
            Period::Monthly => {
                let (year, month, _) = civil_from_days(days);
                days_from_civil(year, month, 1) * DAY
            }
        }
    }
}

/// An RFC 3339 date-time with an offset (`2026-12-31T23:59:59Z`) in Unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    unix_seconds(&text.trim().parse().ok()?)
}

/// A TOML offset date-time in Unix seconds; `None` without a time or an offset.
pub(crate) fn unix_seconds(d: &toml::value::Datetime) -> Option<i64> {
    let (date, time, offset) = (d.date?, d.time?, d.offset?);
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let secs = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second);
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    Some(secs - offset_minutes * 60)
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count since 1970-01-01 of a date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Who made a request, as selectors see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The virtual key's name.
    pub key: Option<&'a str>,
    /// Its team.
    pub team: Option<&'a str>,
    /// Its tenant.
    pub tenant: Option<&'a str>,
}

/// Which requests a budget or rate limit applies to: those matching every selector given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Only requests made with this virtual key (by name).
    pub key: Option<String>,
    /// Only requests made with keys of this team.
    pub team: Option<String>,
    /// Only requests of this tenant.
    pub tenant: Option<String>,
    /// Only requests for this model alias.
    pub model: Option<String>,
}

impl Selector {
    /// Whether a request by `caller` for `model` is selected.
    pub fn applies(&self, caller: Caller<'_>, model: &str) -> bool {
        let matches = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        matches(&self.key, caller.key)
            && matches(&self.team, caller.team)
            && matches(&self.tenant, caller.tenant)
            && matches(&self.model, Some(model))
    }

    /// `key:NAME/model:ALIAS/per:user`, or `all`: the start of a default name.
    fn label(&self, per: Option<&String>) -> Vec<String> {
        let mut parts: Vec<String> = [
            ("key", &self.key),
            ("team", &self.team),
            ("tenant", &self.tenant),
            ("model", &self.model),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}:{v}")))
        .collect();
        if parts.is_empty() {
            parts.push("all".to_owned());
        }
        parts.extend(per.map(|p| format!("per:{p}")));
        parts
    }

    /// Checks that a named key and model exist.
    fn check(
        raw: &RawConfig,
        [key, team, tenant, model]: [&Option<String>; 4],
        path: &ConfigPath,
        ck: &mut Checker<'_>,
    ) -> Selector {
        // With an admin key, keys are also made at run time: a name the config lacks may be
        // one of those.
        if let Some(k) = key
            && raw.server.admin_key.is_none()
            && !raw.keys.iter().any(|rk| &rk.name == k)
        {
            ck.error(&path.key("key"), format!("unknown key {k:?}"));
        }
        if let Some(m) = model
            && !raw.models.contains_key(m)
        {
            ck.error(&path.key("model"), format!("unknown model {m:?}"));
        }
        Selector {
            key: key.clone(),
            team: team.clone(),
            tenant: tenant.clone(),
            model: model.clone(),
        }
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetUnit {
    /// Dollars (its counter holds picodollars).
    Usd,
    /// Tokens, prompt and output.
    Tokens,
}

impl BudgetUnit {
    /// `amount` of a counter in this unit, for people: `1.5` (dollars) or `1500` (tokens).
    pub fn show(self, amount: Usd) -> String {
        match self {
            BudgetUnit::Usd => amount.to_string(),
            BudgetUnit::Tokens => amount.picos().to_string(),
        }
    }

    /// `usd` or `tokens`: the suffix of report fields (`limit_usd`, `spent_tokens`).
    pub fn name(self) -> &'static str {
        match self {
            BudgetUnit::Usd => "usd",
            BudgetUnit::Tokens => "tokens",
        }
    }
}

/// One cap of a `[[budgets]]` entry (an entry with both `limit_usd` and `limit_tokens` has
/// two): on the spend or the tokens of the requests it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Unique name; spend is stored under it, so renaming a budget starts it afresh.
    pub name: String,
    /// The requests it applies to.
    pub selector: Selector,
    /// A cap for each key, user, ... separately; `None`: one cap for all it selects.
    pub per: Option<Per>,
    /// What it counts.
    pub unit: BudgetUnit,
    /// The cap, in the counter's unit: picodollars, or tokens (see [`BudgetUnit::show`]).
    pub limit: Usd,
    /// When it resets.
    pub period: Period,
}

impl BudgetConfig {
    /// Whether a request by `caller` for `model` counts against this budget.
    pub fn applies(&self, caller: Caller<'_>, model: &str) -> bool {
        self.selector.applies(caller, model)
    }
}

/// `[spend]`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendSettings {
    /// Where the embedded store keeps its SQLite file.
    pub data_dir: PathBuf,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub reserve_output_tokens: u32,
    /// The status of a request refused for budget: 402 (default) or 429.
    pub exceeded_status: u16,
    /// Whether budgets fall back to this gateway's own counters when Redis is unreachable
    /// (`local`), rather than refusing requests (`deny`).
    pub local_when_shared_fails: bool,
    /// A target left without a price is a config error.
    pub unpriced_is_error: bool,
}

pub(crate) fn check_spend(
    raw: &RawConfig,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> SpendSettings {
    let s = &raw.spend;
    let exceeded_status = s.exceeded_status.unwrap_or(402);
    if !matches!(exceeded_status, 402 | 429) {
        ck.error(&path.key("exceeded_status"), "must be 402 or 429");
    }
    SpendSettings {
        // Relative to the working directory, like any data directory a service is given.
        data_dir: PathBuf::from(s.data_dir.as_deref().unwrap_or("./.tollgate")),
        reserve_output_tokens: s.reserve_output_tokens.unwrap_or(4096),
        exceeded_status,
        unpriced_is_error: match s.unpriced.as_deref() {
            None | Some("free") => false,
            Some("error") => true,
            Some(_) => {
                ck.error(&path.key("unpriced"), "expected `free` or `error`");
                false
            }
        },
        local_when_shared_fails: match s.on_shared_error.as_deref() {
            None | Some("deny") => false,
            Some("local") => true,
            Some(_) => {
                ck.error(&path.key("on_shared_error"), "expected `deny` or `local`");
                false
            }
        },
    }
}

pub(crate) fn check_budgets(
    raw: &RawConfig,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> Vec<BudgetConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, b) in raw.budgets.iter().enumerate() {
        let bp = path.index(i);
        let selector = Selector::check(raw, [&b.key, &b.team, &b.tenant, &b.model], &bp, ck);
        let per = check_per(b.per.as_deref(), &bp, ck);
        let default = || {
            let mut parts = selector.label(b.per.as_ref());
            parts.push(b.period.clone().unwrap_or_else(|| "total".to_owned()));
            parts.join("/")
        };
        let name = unique_name(b.name.as_ref(), default, "budgets", &mut names, &bp, ck);
        if b.limit_usd.is_some_and(|l| !(l.is_finite() && l >= 0.0)) {
            ck.error(&bp.key("limit_usd"), "must be a non-negative number");
        }
        let caps: Vec<(String, BudgetUnit, Usd)> = match (b.limit_usd, b.limit_tokens) {
            (None, None) => {
                ck.error(&bp, "set `limit_usd`, `limit_tokens` or both");
                continue;
            }
            (Some(usd), None) => vec![(name, BudgetUnit::Usd, Usd::from_dollars(usd))],
            // Always its own counter name, so a budget switched between units never reads the
            // other unit's spend.
            (None, Some(tokens)) => vec![(
                format!("{name}:tokens"),
                BudgetUnit::Tokens,
                Usd::from_picos(tokens),
            )],
            (Some(usd), Some(tokens)) => vec![
                (name.clone(), BudgetUnit::Usd, Usd::from_dollars(usd)),
                (
                    format!("{name}:tokens"),
                    BudgetUnit::Tokens,
                    Usd::from_picos(tokens),
                ),
            ],
        };
        let Some(period) = Period::parse(b.period.as_deref().unwrap_or("total")) else {
            ck.error(
                &bp.key("period"),
                "expected `total`, `hourly`, `daily`, `weekly` or `monthly`",
            );
            continue;
        };
        for (name, unit, limit) in caps.into_iter() {
            if unit == BudgetUnit::Tokens && !names.insert(name.clone()) {
                ck.error(
                    &bp,
                    format!("two budgets are named {name:?}: give each a `name`"),
                );
            }
            out.push(BudgetConfig {
                name,
                selector: selector.clone(),
                per,
                unit,
                limit,
                period,
            });
        }
    }
    out
}

/// What a budget or rate limit counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    /// Each virtual key.
    Key,
    /// Each team.
    Team,
    /// Each tenant.
    Tenant,
    /// Each end user (`x-tollgate-user`, or the body's `user`).
    User,
    /// Each session (`x-tollgate-session`).
    Session,
    /// Each model alias.
    Model,
}

/// One `[[rate_limits]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Unique name; part of every bucket's name.
    pub name: String,
    /// What is counted separately; `None`: one count for all it selects.
    pub per: Option<Per>,
    /// The requests it applies to.
    pub selector: Selector,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

impl RateLimitConfig {
    /// Whether a request by `caller` for `model` is limited by this rule.
    pub fn applies(&self, caller: Caller<'_>, model: &str) -> bool {
        self.selector.applies(caller, model)
    }
}

/// A budget's or rate limit's name: its own, or `default()`; two of one kind may not share it.
fn unique_name(
    explicit: Option<&String>,
    default: impl FnOnce() -> String,
    what: &str,
    names: &mut HashSet<String>,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> String {
    let name = explicit.cloned().unwrap_or_else(default);
    // `|` joins a budget's name to the entity it is counted for, and `@key:` names a key's
    // own budget: a name with either could share a counter with another budget.
    if name.contains('|') || name.starts_with('@') {
        let hint = if explicit.is_some() {
            ""
        } else {
            " (it is made from the selectors: give it a `name`)"
        };
        ck.error(
            path,
            format!("the name {name:?} must not contain `|` or start with `@`{hint}"),
        );
    }
    if !names.insert(name.clone()) {
        ck.error(
            path,
            format!("two {what} are named {name:?}: give each a `name`"),
        );
    }
    name
}

/// `per = "..."` of a budget or rate limit.
fn check_per(per: Option<&str>, path: &ConfigPath, ck: &mut Checker<'_>) -> Option<Per> {
    match per {
        None => None,
        Some("key") => Some(Per::Key),
        Some("team") => Some(Per::Team),
        Some("tenant") => Some(Per::Tenant),
        Some("user") => Some(Per::User),
        Some("session") => Some(Per::Session),
        Some("model") => Some(Per::Model),
        Some(_) => {
            ck.error(
                &path.key("per"),
                "expected `key`, `team`, `tenant`, `user`, `session` or `model`",
            );
            None
        }
    }
}

pub(crate) fn check_rate_limits(
    raw: &RawConfig,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> Vec<RateLimitConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.rate_limits.iter().enumerate() {
        let rp = path.index(i);
        let per = check_per(r.per.as_deref(), &rp, ck);
        let selector = Selector::check(raw, [&r.key, &r.team, &r.tenant, &r.model], &rp, ck);
        let default = || selector.label(r.per.as_ref()).join("/");
        let name = unique_name(r.name.as_ref(), default, "rate limits", &mut names, &rp, ck);
        if r.rpm.is_none() && r.tpm.is_none() {
            ck.error(&rp, "set `rpm`, `tpm` or both");
        }
        for (field, v) in [("rpm", r.rpm), ("tpm", r.tpm)] {
            if v == Some(0) {
                ck.error(&rp.key(field), "must be at least 1");
            }
        }
        out.push(RateLimitConfig {
            name,
            per,
            selector,
            rpm: r.rpm,
            tpm: r.tpm,
        });
    }
    out
}

/// Where alerts are POSTed. Its `Debug` output names the host only: webhook paths and
/// queries often carry the token (Slack's do).
#[derive(Clone)]
pub struct Webhook {
    /// Scheme, host and port (its `path` is empty).
    pub url: crate::types::UpstreamUrl,
    /// Path and query, starting with `/`.
    pub path_and_query: secrecy::SecretString,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.url.host)
            .finish_non_exhaustive()
    }
}

/// `http(s)://host[:port]/path[?query]` as a [`Webhook`].
fn parse_webhook(url: &str) -> Result<Webhook, &'static str> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    if base.contains('#') || query.is_some_and(|q| q.contains('#')) {
        return Err("must not have a fragment");
    }
    let mut parsed = crate::validate::parse_url(base)?;
    let mut path = std::mem::take(&mut parsed.path);
    if path.is_empty() {
        path.push('/');
    }
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    Ok(Webhook {
        url: parsed,
        path_and_query: path.into(),
    })
}

/// `[alerts]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Where alerts go; `None`: no alerts.
    pub webhook: Option<Webhook>,
    /// Shares of a budget's cap that raise an alert, ascending.
    pub thresholds: Vec<f64>,
    /// An hour's spend this many times the trailing mean is an anomaly; 0: never.
    pub anomaly_factor: f64,
    /// The least hourly spend that can be an anomaly.
    pub anomaly_min: Usd,
    /// Between two looks at budgets and spend.
    pub check_interval: std::time::Duration,
}

pub(crate) fn check_alerts(
    raw: &RawConfig,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> AlertSettings {
    let a = &raw.alerts;
    let webhook = a
        .webhook_url
        .as_deref()
        .and_then(|url| match parse_webhook(url) {
            Ok(w) => Some(w),
            Err(why) => {
                ck.error(&path.key("webhook_url"), why);
                None
            }
        });
    let mut thresholds = a.thresholds.clone().unwrap_or_else(|| vec![0.5, 0.8, 1.0]);
    if thresholds.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
        ck.error(
            &path.key("thresholds"),
            "each must be a positive share of the cap, like 0.8",
        );
    }
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let anomaly_factor = a.anomaly_factor.unwrap_or(3.0);
    if !(anomaly_factor.is_finite() && anomaly_factor >= 0.0) {
        ck.error(&path.key("anomaly_factor"), "must be a non-negative number");
    }
    let anomaly_min = a.anomaly_min_usd.unwrap_or(1.0);
    if !(anomaly_min.is_finite() && anomaly_min >= 0.0) {
        ck.error(
            &path.key("anomaly_min_usd"),
            "must be a non-negative number",
        );
    }
    let secs = a.check_interval_secs.unwrap_or(30);
    if secs == 0 {
        ck.error(&path.key("check_interval_secs"), "must be at least 1");
    }
    AlertSettings {
        webhook,
        thresholds,
        anomaly_factor,
        anomaly_min: Usd::from_dollars(anomaly_min),
        check_interval: std::time::Duration::from_secs(secs.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::Period;

    #[test]
    fn webhook_urls_keep_their_path_and_query() {
        use secrecy::ExposeSecret as _;
        let w =
            super::parse_webhook("https://hooks.slack.com/services/T0/B0/XyZ?x=1").expect("valid");
        assert_eq!(
            (w.url.host.as_str(), w.url.port, w.url.tls),
            ("hooks.slack.com", 443, true)
        );
        assert_eq!(w.path_and_query.expose_secret(), "/services/T0/B0/XyZ?x=1");
        assert!(
            !format!("{w:?}").contains("XyZ"),
            "the token is not in Debug output"
        );
        let bare = super::parse_webhook("http://127.0.0.1:9000").expect("valid");
        assert_eq!(bare.path_and_query.expose_secret(), "/");
        assert!(super::parse_webhook("ftp://x/y").is_err());
        assert!(super::parse_webhook("https://x/y#frag").is_err());
    }

    #[test]
    fn periods_start_on_utc_calendar_boundaries() {
        let t = 1_796_042_096; // 2026-11-30 12:34:56 UTC, a Monday
        assert_eq!(Period::Total.start(t), 0);
        assert_eq!(Period::Hourly.start(t), 1_796_040_000); // 12:00
        assert_eq!(Period::Daily.start(t), 1_795_996_800); // 2026-11-30
        assert_eq!(Period::Weekly.start(t), 1_795_996_800); // that Monday
        assert_eq!(Period::Monthly.start(t), 1_793_491_200); // 2026-11-01
        let leap = 1_709_251_199; // 2024-02-29 23:59:59, a Thursday
        assert_eq!(Period::Monthly.start(leap), 1_706_745_600); // 2024-02-01
        assert_eq!(Period::Weekly.start(leap), 1_708_905_600); // Monday 2024-02-26
        assert_eq!(Period::Monthly.start(leap + 1), 1_709_251_200); // 2024-03-01
    }

    #[test]
    fn expiry_dates_are_read_in_utc() {
        let at = |s: &str| super::unix_seconds(&s.parse().expect("datetime"));
        assert_eq!(at("2026-11-30T12:34:56Z"), Some(1_796_042_096));
        assert_eq!(at("2026-11-30T13:34:56+01:00"), Some(1_796_042_096));
        assert_eq!(at("2026-11-30T12:34:56"), None, "no offset");
        assert_eq!(at("2026-11-30"), None, "no time");
    }
}
