//! `tollgate keys ...` and `tollgate spend`: clients of a running gateway's admin API.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::ExitCode;

/// Where the admin API is, and its key.
#[derive(Args)]
pub struct AdminTarget {
    /// The admin listener's URL.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:4001"
    )]
    admin_url: String,
    /// The admin key (`server.admin_key`).
    #[arg(long, env = "TOLLGATE_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
}

/// A key's settings, as flags.
#[derive(Args, Default)]
pub struct KeySettings {
    /// When the key stops working: Unix seconds or a date-time like 2026-12-31T23:59:59Z.
    #[arg(long)]
    expires: Option<String>,
    /// Its own budget, in USD.
    #[arg(long)]
    budget_usd: Option<f64>,
    /// The budget's period: total, hourly, daily, weekly or monthly.
    #[arg(long)]
    period: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
}

impl KeySettings {
    fn into_json(self, body: &mut Value) {
        if let Some(e) = self.expires {
            body["expires_at"] = e.parse::<i64>().map_or(json!(e), |secs| json!(secs));
        }
        if let Some(b) = self.budget_usd {
            body["budget_usd"] = json!(b);
        }
        if let Some(p) = self.period {
            body["period"] = json!(p);
        }
        if let Some(r) = self.rpm {
            body["rpm"] = json!(r);
        }
        if let Some(t) = self.tpm {
            body["tpm"] = json!(t);
        }
    }
}

/// `tollgate keys ...`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a key; its secret is printed once.
    Create {
        /// Its name, used by budgets, limits and reports.
        #[arg(long)]
        name: String,
        /// Its tenant.
        #[arg(long)]
        tenant: String,
        /// Its team.
        #[arg(long)]
        team: Option<String>,
        #[command(flatten)]
        settings: KeySettings,
    },
    /// List every key (from the config and made through the API).
    List {
        /// Print JSON, not a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one key.
    Show {
        /// Its name.
        name: String,
    },
    /// Change a key's expiry, budget or rate limit.
    Update {
        /// Its name.
        name: String,
        #[command(flatten)]
        settings: KeySettings,
        /// Remove its own budget.
        #[arg(long, conflicts_with = "budget_usd")]
        no_budget: bool,
    },
    /// Revoke a key: it is refused at once.
    Revoke {
        /// Its name.
        name: String,
    },
    /// Give a key a new secret (printed once): the old one is refused at once.
    Rotate {
        /// Its name.
        name: String,
    },
}

/// `tollgate spend`
#[derive(Args)]
pub struct SpendQuery {
    /// Group by key, team, tenant, user, session, model or provider.
    #[arg(long)]
    by: Option<String>,
    /// And by hour or day.
    #[arg(long)]
    bucket: Option<String>,
    /// From (Unix seconds or a date-time). Default: 30 days ago.
    #[arg(long)]
    from: Option<String>,
    /// To (Unix seconds or a date-time). Default: now.
    #[arg(long)]
    to: Option<String>,
    /// Print JSON, not a table.
    #[arg(long)]
    json: bool,
}

struct Client {
    http: reqwest::Client,
    target: AdminTarget,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.target.admin_url.trim_end_matches('/'));
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.target.admin_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling the admin API at {url}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no details");
            anyhow::bail!("the admin API answered {status}: {message}");
        }
        Ok(body)
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = std::io::stdout();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    )?;
    for r in rows {
        writeln!(out, "{}", line(r.clone()))?;
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn client(target: AdminTarget) -> anyhow::Result<Client> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    Ok(Client { http, target })
}

/// Runs a `tollgate keys` command.
pub fn keys(target: AdminTarget, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let c = client(target)?;
    runtime()?.block_on(async move {
        use reqwest::Method;
        let answer = match command {
            KeysCommand::Create {
                name,
                tenant,
                team,
                settings,
            } => {
                let mut body = json!({"name": name, "tenant": tenant, "team": team});
                settings.into_json(&mut body);
                let made = c.call(Method::POST, "/admin/keys", Some(body)).await?;
                let _ = writeln!(
                    std::io::stderr(),
                    "Key {name:?} made. Its secret, `key`, is shown only now: store it safely."
                );
                made
            }
            KeysCommand::List { json } => {
                let list = c.call(Method::GET, "/admin/keys", None).await?;
                if json {
                    return print_json(&list).map(|()| ExitCode::SUCCESS);
                }
                let fields = [
                    "name",
                    "source",
                    "display",
                    "tenant",
                    "team",
                    "revoked",
                    "expires_at",
                    "budget_usd",
                    "period",
                    "rpm",
                    "tpm",
                ];
                let rows: Vec<Vec<String>> = list["keys"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|k| fields.iter().map(|f| text(&k[*f])).collect())
                    .collect();
                print_table(&fields, &rows)?;
                return Ok(ExitCode::SUCCESS);
            }
            KeysCommand::Show { name } => {
                c.call(Method::GET, &format!("/admin/keys/{name}"), None)
                    .await?
            }
            KeysCommand::Update {
                name,
                settings,
                no_budget,
            } => {
                let mut body = json!({});
                settings.into_json(&mut body);
                if no_budget {
                    body["budget_usd"] = Value::Null;
                }
                c.call(Method::PATCH, &format!("/admin/keys/{name}"), Some(body))
                    .await?
            }
            KeysCommand::Revoke { name } => {
                c.call(Method::POST, &format!("/admin/keys/{name}/revoke"), None)
                    .await?
            }
            KeysCommand::Rotate { name } => {
                c.call(Method::POST, &format!("/admin/keys/{name}/rotate"), None)
                    .await?
            }
        };
        print_json(&answer)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `tollgate spend`.
pub fn spend(target: AdminTarget, q: SpendQuery) -> anyhow::Result<ExitCode> {
    let c = client(target)?;
    let params: Vec<String> = [
        ("by", &q.by),
        ("bucket", &q.bucket),
        ("from", &q.from),
        ("to", &q.to),
    ]
    .iter()
    .filter_map(|(k, v)| {
        v.as_ref()
            .map(|v| format!("{k}={}", v.replace(':', "%3A").replace('+', "%2B")))
    })
    .collect();
    let path = format!("/admin/spend?{}", params.join("&"));
    runtime()?.block_on(async move {
        let report = c.call(reqwest::Method::GET, &path, None).await?;
        if q.json {
            print_json(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        let fields = [
            "group",
            "bucket_start_ms",
            "requests",
            "input_tokens",
            "output_tokens",
            "cost_usd",
        ];
        let rows: Vec<Vec<String>> = report["rows"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| fields.iter().map(|f| text(&r[*f])).collect())
            .collect();
        print_table(&fields, &rows)?;
        writeln!(
            std::io::stdout(),
            "total: {} USD",
            text(&report["total_usd"])
        )?;
        Ok(ExitCode::SUCCESS)
    })
}
