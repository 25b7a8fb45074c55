use std::io::Write as _;
use std::process::Command;

fn check(config: &str) -> (bool, String, String) {
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    f.write_all(config.as_bytes()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(f.path())
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run check");
    let path = f.path().display().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path, "FILE");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn unknown_provider_is_reported_with_file_line_and_path() {
    let (ok, _, err) = check(
        "[providers.openai]\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\n\
         [models.gpt-4o]\ntargets = [\n  { provider = \"openai\", model = \"a\" },\n  { provider = \"opnai\", model = \"b\" },\n]\n",
    );
    assert!(!ok);
    assert!(
        err.contains("FILE:8:16: models.gpt-4o.targets[1].provider: unknown provider \"opnai\""),
        "{err}"
    );
}

#[test]
fn syntax_and_unknown_fields_are_reported_with_position() {
    let (ok, _, err) = check("[server]\nlisten = \"127.0.0.1:4000\"\nlisten_typo = 1\n");
    assert!(!ok);
    assert!(
        err.starts_with("FILE:3:1: unknown field `listen_typo`"),
        "{err}"
    );
    let (ok, _, err) = check("[server\n");
    assert!(!ok);
    assert!(err.starts_with("FILE:1:"), "{err}");
}

#[test]
fn missing_environment_variables_are_named() {
    let (ok, _, err) = check(
        "[providers.up]\nkind = \"openai_compatible\"\nbase_url = \"${TOLLGATE_TEST_UNSET_VAR}\"\n",
    );
    assert!(!ok);
    assert!(err.contains("FILE:3:12: providers.up.base_url: environment variable `TOLLGATE_TEST_UNSET_VAR` is not set"), "{err}");
    let (ok, _, err) = check("[providers.openai]\nkind = \"openai\"\n");
    assert!(!ok);
    assert!(err.contains("`OPENAI_API_KEY`"), "{err}");
}

#[test]
fn the_shipped_examples_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
    for name in [
        "quickstart.toml",
        "bench.toml",
        "failover.toml",
        "keys.toml",
        "guardrails.toml",
        "cascade.toml",
        "policies.toml",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["check", "--config", &format!("{root}{name}")])
            .env("TOLLGATE_ADMIN_KEY", "an-admin-key-for-the-check")
            .output()
            .expect("run check");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn framing_headers_cannot_be_configured() {
    let (ok, _, err) = check(
        "[providers.up]\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
         headers = { \"Transfer-Encoding\" = \"chunked\", \"x-team\" = \"blue\" }\n",
    );
    assert!(!ok);
    assert!(
        err.contains("providers.up.headers.Transfer-Encoding: is set by the gateway"),
        "{err}"
    );
    assert!(!err.contains("x-team"), "{err}");
}

#[test]
fn url_errors_do_not_echo_interpolated_secrets() {
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    f.write_all(b"[providers.up]\nkind = \"openai_compatible\"\nbase_url = \"ftp://user:${SECRET_PART}@host/v1\"\n")
        .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(f.path())
        .env("SECRET_PART", "hunter2-secret")
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("providers.up.base_url: must start with http:// or https://"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}

#[test]
fn route_explain_names_the_deciding_script_line() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["route", "--config", &format!("{root}policies.toml")])
        .args([
            "--request",
            &format!("{root}requests/hard.json"),
            "--explain",
        ])
        .output()
        .expect("run route");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("targets: frontier/large -> cheap/mini"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decided: line 28: #{ targets: [ranked[-1]]"),
        "{stdout}"
    );
}

#[test]
fn policy_test_runs_the_example_fixtures_and_fails_on_a_mismatch() {
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["policy", "test", policies])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");

    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("p.rhai"), "fn route(req, ctx) { \"a/x\" }").expect("script");
    std::fs::write(
        dir.path().join("p.test.json"),
        r#"{"script": "p.rhai", "cases": [{"name": "wrong", "request": {"model": "m", "messages": []},
            "expect": {"route": {"targets": ["b/y"]}}}]}"#,
    )
    .expect("fixture");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("expected: {\"targets\":[\"b/y\"]}"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn keys_are_never_sent_in_clear_text_to_remote_hosts() {
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    f.write_all(
        b"[providers.up]\nkind = \"openai_compatible\"\nbase_url = \"http://llm.example.com/v1\"\napi_key_env = \"UP_KEY\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(f.path())
        .env("UP_KEY", "sk-x")
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("providers.up.base_url: sends the API key in clear text"),
        "{stderr}"
    );
}

#[test]
fn budget_limit_and_key_mistakes_are_reported_with_their_place() {
    let (ok, _, err) = check(
        "[models.m]\ntargets = []\n\n\
         [[keys]]\nname = \"a\"\nhash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\ntenant = \"t\"\nexpires = \"next tuesday\"\n\n\
         [[budgets]]\nkey = \"nobody\"\nlimit_usd = 1.0\nperiod = \"fortnightly\"\n\n\
         [[rate_limits]]\nper = \"planet\"\n\n\
         [[budgets]]\nname = \"a|b\"\nlimit_usd = 1.0\n\n\
         [[budgets]]\nname = \"nothing\"\n",
    );
    assert!(!ok);
    for want in [
        "FILE:8:11: keys[0].expires: expected a date-time with an offset",
        "FILE:11:7: budgets[0].key: unknown key \"nobody\"",
        "FILE:13:10: budgets[0].period: expected `total`, `hourly`, `daily`, `weekly` or `monthly`",
        "rate_limits[0].per: expected `key`, `team`, `tenant`, `user`, `session` or `model`",
        "rate_limits[0]: set `rpm`, `tpm` or both",
        "budgets[1]: the name \"a|b\" must not contain `|` or start with `@`",
        "budgets[2]: set `limit_usd`, `limit_tokens` or both",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn admin_key_and_alert_mistakes_are_reported_without_echoing_secrets() {
    let (ok, _, err) = check(
        "[server]\nadmin_key = \"hunter2\"\n\n\
         [models.m]\ntargets = [{ provider = \"p\", model = \"x\" }]\n\
         [providers.p]\nkind = \"mock\"\n\n\
         [alerts]\nwebhook_url = \"ftp://hooks.example/T0/secret-token\"\nthresholds = [0.5, -1]\n",
    );
    assert!(!ok);
    for want in [
        "FILE:2:13: server.admin_key: must be at least 16 characters long",
        "FILE:10:15: alerts.webhook_url: must start with http:// or https://",
        "alerts.thresholds: each must be a positive share of the cap",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("hunter2"),
        "the admin key is not echoed: {err}"
    );
    assert!(
        !err.contains("secret-token"),
        "nor the webhook's path: {err}"
    );
    let (ok, _, err) = check(
        "[server]\nadmin_key = \"a-long-enough-admin-key\"\n\n\
         [models.m]\ntargets = [{ provider = \"p\", model = \"x\" }]\n\
         [providers.p]\nkind = \"mock\"\n",
    );
    assert!(!ok);
    assert!(
        err.contains("server.admin_key: has no effect without `server.admin_listen`"),
        "{err}"
    );
}

#[test]
fn hosted_models_are_priced_from_the_catalog_and_unpriced_ones_can_be_refused() {
    let config = |model: &str| {
        format!(
            "[spend]\nunpriced = \"error\"\n\n\
             [providers.openai]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\n\
             [models.m]\ntargets = [{{ provider = \"openai\", model = \"{model}\" }}]\n"
        )
    };
    let (ok, _, err) = check(&config("gpt-4o"));
    assert!(ok, "gpt-4o is in the catalog: {err}");
    let (ok, _, err) = check(&config("gpt-imaginary"));
    assert!(!ok);
    assert!(
        err.contains("FILE:9:12: models.m.targets[0]: no price for `openai/gpt-imaginary`"),
        "{err}"
    );
}

#[test]
fn plugin_and_json_schema_mistakes_are_reported_with_their_place() {
    let dir = tempfile::tempdir().expect("dir");
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x0d\0\x01\0 not really").expect("write");
    let (ok, _, err) = check(&format!(
        "[models.m]\ntargets = []\n\n\
         [[plugins]]\nname = \"p\"\npath = \"{}\"\non_error = \"sometimes\"\ntimeout_ms = 0\nmemory_mb = 4096\nmodels = [\"nope\"]\n\n\
         [[guardrails]]\nname = \"g\"\nkind = \"json_schema\"\napply_to = [\"request\"]\n\n\
         [[guardrails]]\nname = \"k\"\nkind = \"keywords\"\nwords = [\"x\"]\nrepair = true\n",
        corrupt.display()
    ));
    assert!(!ok);
    for want in [
        "FILE:7:12: plugins[0].on_error: expected `fail_open` or `fail_closed`, not \"sometimes\"",
        "FILE:8:14: plugins[0].timeout_ms: must be 1 to 60000",
        "FILE:9:13: plugins[0].memory_mb: must be 1 to 1024",
        "plugins[0].models: unknown model \"nope\"",
        "guardrails[0]: a json_schema guardrail checks complete answers",
        "guardrails[1].repair: only json_schema guardrails repair",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // A valid config naming a file that is not a component: the file and the reason.
    let valid = "[providers.a]\nkind = \"mock\"\n\n[models.m]\ntargets = [{ provider = \"a\", model = \"x\" }]\n\n";
    let (ok, _, err) = check(&format!(
        "{valid}[[plugins]]\nname = \"p\"\npath = \"{}\"\n",
        corrupt.display()
    ));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{}: not a loadable Wasm component",
            corrupt.display()
        )),
        "{err}"
    );
    let (ok, _, err) = check(&format!(
        "{valid}[[plugins]]\nname = \"p\"\npath = \"/no/such.wasm\"\n"
    ));
    assert!(!ok);
    assert!(err.contains("/no/such.wasm: No such file"), "{err}");
}

#[test]
fn cascade_mistakes_are_reported_with_their_place() {
    let (ok, _, err) = check(
        "[providers.a]\nkind = \"mock\"\n\n\
         [models.cheap]\ntargets = [{ provider = \"a\", model = \"x\" }]\n\n\
         [[models.c.cascade.tiers]]\ntargets = [\"cheap\", \"nope\"]\n\
         scorers = [{ kind = \"logprobs\", penalty = 0.2 }, { kind = \"judge\", model = \"who\" }]\n\n\
         [[models.c.cascade.tiers]]\ntargets = [\"a/y\"]\nthreshold = 1.5\nscorers = [{ kind = \"vibes\" }]\n\
         overrides = { logprobs = true }\n\n\
         [[models.d.cascade.tiers]]\ntargets = [\"cheap\"]\nthreshold = 0.0\nscorers = [{ kind = \"refusal\" }]\n\
         [[models.d.cascade.tiers]]\ntargets = [\"a/y\"]\n",
    );
    assert!(!ok);
    for want in [
        "FILE:8:21: models.c.cascade.tiers[0].targets[1]: unknown target \"nope\"",
        "FILE:7:1: models.c.cascade.tiers[0].threshold: set the score (0..=1) below which answers escalate",
        "models.c.cascade.tiers[0].scorers[0].penalty: `penalty` is a setting of the refusal scorer",
        "models.c.cascade.tiers[0].scorers[1].model: unknown model alias \"who\"",
        "models.c.cascade.tiers[1].threshold: must be within 0..=1, not 1.5",
        "models.c.cascade.tiers[1].scorers: the last tier's answer is final",
        "models.c.cascade.tiers[1].scorers[0].kind: unknown scorer \"vibes\"",
        "models.c.cascade.tiers[1].overrides.logprobs: the last tier's answer goes to the client",
        "models.d.cascade.tiers[0].threshold: must be above 0",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
