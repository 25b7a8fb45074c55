//! `tollgate`: the command-line entry point.
//!
//! - `tollgate serve --config FILE [--listen ADDR] [--admin-listen ADDR] [--upgrade]`
//! - `tollgate check --config FILE`: validate; print `file:line:col: reason` and exit 1 on error.
//! - `tollgate mock [--listen ADDR]`: run the built-in mock provider on its own.
//! - `tollgate hash-key KEY`: print the `sha256:` hash to put in `[[keys]]`.
//! - `tollgate keys create|list|show|update|revoke|rotate`, `tollgate spend`: the admin API.

mod admin;
mod plugin_test;
mod route;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// glibc's malloc serialises threads on its arena locks under proxy load; mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: a fast, programmable LLM API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Overrides `server.listen`.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides `server.admin_listen`.
        #[arg(long)]
        admin_listen: Option<String>,
        /// Take over the listening sockets of a running instance (send it SIGQUIT afterwards).
        #[arg(long, short)]
        upgrade: bool,
    },
    /// Validate a config file and exit.
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the built-in mock provider on its own.
    Mock {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:18000")]
        listen: String,
        /// Delay before the first streamed chunk, in milliseconds.
        #[arg(long, default_value_t = 0)]
        ttft_ms: u64,
        /// Delay between streamed chunks, in milliseconds.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
        /// Content chunks per streamed answer.
        #[arg(long, default_value_t = 8)]
        chunks: u32,
    },
    /// Print the hash of a virtual key, for `[[keys]] hash = "..."`.
    HashKey {
        /// The key.
        key: String,
    },
    /// Dry-run routing: print which targets a request would be sent to, and why.
    Route {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// A chat completion request body (JSON file).
        #[arg(long, short)]
        request: PathBuf,
        /// Extra request headers, `name: value` (e.g. `x-tollgate-tags: eu`).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Also print the script and entry points that decided.
        #[arg(long)]
        explain: bool,
    },
    /// Routing-policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Wasm plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Manage virtual keys through a running gateway's admin API.
    Keys {
        #[command(flatten)]
        target: admin::AdminTarget,
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Spend from the ledger, through a running gateway's admin API.
    Spend {
        #[command(flatten)]
        target: admin::AdminTarget,
        #[command(flatten)]
        query: admin::SpendQuery,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run every `*.test.json` fixture under DIR against its script.
    Test {
        /// Directory to search.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a plugin and print what each of its hooks returns for a request.
    Test {
        /// The `.wasm` component.
        plugin: PathBuf,
        /// A chat completion request (OpenAI JSON).
        #[arg(long)]
        request: PathBuf,
        /// A chat completion answer (OpenAI JSON), for on-response, score and on-chunk (fed
        /// word by word, as a stream).
        #[arg(long)]
        response: Option<PathBuf>,
        /// The plugin's config, as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Deadline of each call, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            config,
            listen,
            admin_listen,
            upgrade,
        } => {
            let mut cfg = match tollgate_config::load(&config) {
                Ok(c) => c,
                Err(e) => return Ok(report(&e)),
            };
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            if let Some(a) = admin_listen {
                cfg.server.admin_listen = Some(a);
            }
            let config_text = std::fs::read_to_string(&config).unwrap_or_default();
            let opts = tollgate_proxy::ServeOptions {
                upgrade,
                config_path: config,
                config_text,
            };
            tollgate_proxy::run(cfg, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => match tollgate_config::load(&config) {
            Ok(cfg) => {
                // Building the live state compiles every routing script and loads (compiles,
                // links and initialises) every plugin.
                if let Err(e) = tollgate_proxy::live::LiveState::build(cfg.clone(), 0) {
                    let _ = writeln!(std::io::stderr(), "{e}");
                    return Ok(ExitCode::FAILURE);
                }
                let mut out = std::io::stdout();
                writeln!(
                    out,
                    "{}: ok ({} providers, {} models, {} keys, {} plugins)",
                    config.display(),
                    cfg.providers.len(),
                    cfg.models.len(),
                    cfg.keys.len(),
                    cfg.plugins.len()
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(report(&e)),
        },
        Command::Mock {
            listen,
            ttft_ms,
            chunk_delay_ms,
            chunks,
        } => {
            let config = tollgate_mock::MockConfig {
                ttft: Duration::from_millis(ttft_ms),
                chunk_delay: Duration::from_millis(chunk_delay_ms),
                chunks,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(async {
                let handle = tollgate_mock::spawn(&listen, config)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                tracing::info!(base_url = %handle.base_url(), "Mock provider listening.");
                tokio::signal::ctrl_c()
                    .await
                    .context("waiting for ctrl-c")?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::HashKey { key } => {
            writeln!(std::io::stdout(), "{}", tollgate_config::hash_key(&key))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Route {
            config,
            request,
            headers,
            explain,
        } => route::dry_run(&config, &request, &headers, explain),
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => route::policy_test(&dir),
        Command::Plugin {
            command:
                PluginCommand::Test {
                    plugin,
                    request,
                    response,
                    config,
                    timeout_ms,
                },
        } => plugin_test::run(&plugin_test::TestArgs {
            plugin: &plugin,
            request: &request,
            response: response.as_deref(),
            config: &config,
            timeout_ms,
        }),
        Command::Keys { target, command } => admin::keys(target, command),
        Command::Spend { target, query } => admin::spend(target, query),
    }
}

fn report(e: &tollgate_config::ConfigError) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{e}");
    ExitCode::FAILURE
}
