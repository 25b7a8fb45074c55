//! Starting a gateway process and talking to it.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `tollgate serve`, killed on drop.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `http://127.0.0.1:ADMIN_PORT`
    pub admin_url: String,
    config_path: std::path::PathBuf,
    dir: tempfile::TempDir,
}

/// The key every test config accepts.
pub const KEY: &str = "sk-test";

/// `[server]` (with `server_extra` lines), `[[keys]]` and the given providers/models, as one
/// config.
pub fn config_with(
    server_extra: &str,
    body: &str,
    port: u16,
    admin: u16,
    dir: &std::path::Path,
) -> String {
    let hash = tollgate_hash(KEY);
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nthreads = 2\n\
         grace_period_secs = 1\ngraceful_shutdown_timeout_secs = 3\n{server_extra}\
         pid_file = \"{d}/tollgate.pid\"\nupgrade_sock = \"{d}/upgrade.sock\"\n\n{body}\n\n\
         [[keys]]\nname = \"test\"\nhash = \"{hash}\"\ntenant = \"t1\"\n",
        d = dir.display()
    )
}

fn spawn_serve(config: &std::path::Path, env: &[(&str, &str)], upgrade: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(["serve", "--config"]).arg(config);
    if upgrade {
        cmd.arg("--upgrade");
    }
    cmd.envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tollgate")
}

fn tollgate_hash(key: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["hash-key", key])
        .output()
        .expect("hash-key");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

impl Gateway {
    /// Starts a gateway with `body` (providers and models) and waits until it is ready.
    pub async fn start(body: &str) -> Gateway {
        Self::start_with(body, &[]).await
    }

    /// Same, with extra environment variables.
    pub async fn start_with(body: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_full("", body, env).await
    }

    /// Same, with extra `[server]` lines (each ending in a newline).
    pub async fn start_full(server_extra: &str, body: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin) = (free_port(), free_port());
        let path = dir.path().join("tollgate.toml");
        let config = config_with(server_extra, body, port, admin, dir.path());
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write config");
        let child = spawn_serve(&path, env, false);
        let gw = Gateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin_url: format!("http://127.0.0.1:{admin}"),
            config_path: path,
            dir,
        };
        gw.wait_ready().await;
        gw
    }

    /// Writes `contents` to `name` in the gateway's config directory atomically (write a temporary
    /// file, then rename it over the old one, as editors do).
    pub fn write_file(&self, name: &str, contents: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write tmp");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename");
    }

    /// The config file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Rewrites the config file with new providers and models (same `[server]` and keys).
    pub fn write_config(&self, body: &str) {
        let text = std::fs::read_to_string(&self.config_path).expect("config");
        let server_end = text.find("\n\n").expect("server section");
        let keys_start = text.rfind("[[keys]]").expect("keys");
        let new = format!(
            "{}\n\n{body}\n\n{}",
            &text[..server_end],
            &text[keys_start..]
        );
        let name = self
            .config_path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        self.write_file(&name, &new);
    }

    /// Starts a second process with `--upgrade` on the same config; it takes over the listening
    /// sockets once this one gets SIGQUIT.
    pub fn spawn_upgrade(&self) -> Child {
        spawn_serve(&self.config_path, &[], true)
    }

    /// Sends a signal (`QUIT`, `TERM`) to the gateway process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            let ready = client
                .get(format!("{}/health/readiness", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become ready at {}", self.url);
    }

    /// Sends `chat(model, content)` to `/v1/chat/completions`.
    pub async fn chat(&self, model: &str, content: &str) -> reqwest::Response {
        self.post("/v1/chat/completions")
            .json(&chat(model, content))
            .send()
            .await
            .expect("send")
    }

    /// Sends `body` to `/v1/chat/completions`.
    pub async fn ask(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post("/v1/chat/completions")
            .json(body)
            .send()
            .await
            .expect("send")
    }

    /// The Prometheus text on the admin listener.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Request `id`'s ledger row from `GET /admin/requests/{id}` (with `admin_key`), polled
    /// until the ledger has written it.
    pub async fn ledger_row(&self, admin_key: &str, id: &str) -> serde_json::Value {
        let admin = reqwest::Client::new();
        for _ in 0..100 {
            let r = admin
                .get(format!("{}/admin/requests/{id}", self.admin_url))
                .bearer_auth(admin_key)
                .send()
                .await
                .expect("admin");
            if r.status() == 200 {
                return r.json().await.expect("json");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no ledger row for {id}");
    }

    /// A POST to `path` with the test key and a JSON body.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A provider entry pointing at a mock, with optional `x-mock-*` headers.
pub fn mock_provider(name: &str, base_url: &str, headers: &str) -> String {
    format!(
        "[providers.{name}]\nkind = \"openai_compatible\"\nbase_url = \"{base_url}\"\n\
         connect_timeout_ms = 1000\nfirst_byte_timeout_ms = 2000\nidle_timeout_ms = 2000\n\
         headers = {{ {headers} }}\n"
    )
}

/// A minimal chat body.
pub fn chat(model: &str, content: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

/// `body` sent straight to the mock's `/chat/completions`, past the gateway: its JSON answer
/// (what the gateway would get for it).
pub async fn ask_mock(
    m: &tollgate_mock::MockHandle,
    body: &serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", m.base_url()))
        .json(body)
        .send()
        .await
        .expect("mock")
        .json()
        .await
        .expect("json")
}

/// The JSON bodies the mock received, oldest first.
pub async fn mock_received(m: &tollgate_mock::MockHandle) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::get(format!("http://{}/mock/requests", m.addr))
        .await
        .expect("mock log")
        .json()
        .await
        .expect("json");
    v["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r["body"].clone())
        .collect()
}

/// A mock provider with default behaviour, on a free port.
pub async fn mock() -> tollgate_mock::MockHandle {
    tollgate_mock::spawn("127.0.0.1:0", tollgate_mock::MockConfig::default())
        .await
        .expect("mock")
}

/// Model `m` with targets `a/m1` (with `x-mock-*` headers `a_headers`) then `b/m2`, and no
/// same-target retries, so each failure moves straight on.
pub fn two_targets(
    a: &tollgate_mock::MockHandle,
    a_headers: &str,
    b: &tollgate_mock::MockHandle,
) -> String {
    format!(
        "{}\n{}\n[models.m]\nretries = 0\ntargets = [{{ provider = \"a\", model = \"m1\" }}, {{ provider = \"b\", model = \"m2\" }}]\n",
        mock_provider("a", &a.base_url(), a_headers),
        mock_provider("b", &b.base_url(), "")
    )
}
