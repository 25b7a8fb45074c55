//! `tollgate route` (dry-run routing) and `tollgate policy test` (script fixtures).

use anyhow::Context as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tollgate_proxy::context::RequestCtx;
use tollgate_proxy::health::HealthRegistry;
use tollgate_proxy::live::LiveState;

/// Runs the routing pipeline on one request without sending it anywhere.
pub fn dry_run(
    config: &Path,
    request: &Path,
    headers: &[String],
    explain: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = match tollgate_config::load(config) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let state = Arc::new(LiveState::build_with(cfg, 0, explain)?);
    let body = std::fs::read(request).with_context(|| format!("reading {}", request.display()))?;
    let mut req: tollgate_types::ChatRequest = serde_json::from_slice(&body)
        .with_context(|| format!("{} is not a chat request", request.display()))?;
    let mut header = pingora::http::RequestHeader::build("POST", b"/v1/chat/completions", None)?;
    for h in headers {
        let (name, value) = h.split_once(':').context("headers are `name: value`")?;
        header.insert_header(name.trim().to_ascii_lowercase(), value.trim())?;
    }
    let Some(model) = state.model(&req.model).cloned() else {
        anyhow::bail!("unknown model `{}`", req.model);
    };
    let mut ctx = RequestCtx::new(state.clone());
    ctx.tags = tollgate_proxy::routing::header_tags(&header);
    let script = model.policy(&state.config).cloned();
    let outcome = tollgate_proxy::routing::route_chat(
        &mut ctx,
        &header,
        &mut req,
        &model,
        &HealthRegistry::default(),
        None,
    );
    let lines = tollgate_policy::PolicyEngine::take_trace();
    let mut out = std::io::stdout();
    match outcome {
        Ok(routed) => {
            let ids = |targets: &[tollgate_config::Target]| -> String {
                let ids: Vec<String> = targets.iter().map(tollgate_config::Target::id).collect();
                ids.join(" -> ")
            };
            writeln!(
                out,
                "model:   {}",
                ctx.model.as_deref().unwrap_or(&req.model)
            )?;
            match &routed.cascade {
                None => writeln!(out, "targets: {}", ids(&routed.targets))?,
                Some(cascade) => {
                    for (i, tier) in cascade.tiers.iter().enumerate() {
                        let scorers: Vec<&str> =
                            tier.scorers.iter().map(|s| s.kind.name()).collect();
                        if scorers.is_empty() {
                            writeln!(out, "tier {}: {} (final)", i + 1, ids(&tier.targets))?;
                        } else {
                            writeln!(
                                out,
                                "tier {}: {} (escalates below {} by {})",
                                i + 1,
                                ids(&tier.targets),
                                tier.threshold,
                                scorers.join(", ")
                            )?;
                        }
                    }
                }
            }
            if !ctx.tags.is_empty() {
                writeln!(out, "tags:    {}", ctx.tags.join(", "))?;
            }
            if explain {
                match &script {
                    Some(p) => {
                        let compiled = state.policies.script(p);
                        let entries: Vec<&str> = compiled
                            .map(|s| {
                                [("on_request", s.has_on_request), ("route", s.has_route)]
                                    .into_iter()
                                    .filter(|(_, has)| *has)
                                    .map(|(n, _)| n)
                                    .collect()
                            })
                            .unwrap_or_default();
                        writeln!(out, "policy:  {} ({})", p.display(), entries.join(", "))?;
                        explain_lines(&mut out, p, &lines)?;
                    }
                    None => writeln!(out, "policy:  none: the model's static targets, in order")?,
                }
                writeln!(
                    out,
                    "request after the policy: {}",
                    serde_json::to_string(&req)?
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            writeln!(out, "refused: HTTP {} {}", e.status(), e.message)?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints the script lines that ran, in order (repeats folded), and the last one: the statement
/// that produced the decision.
fn explain_lines(
    out: &mut impl std::io::Write,
    script: &Path,
    lines: &[usize],
) -> std::io::Result<()> {
    let mut ran: Vec<usize> = Vec::new();
    for l in lines {
        if ran.last() != Some(l) {
            ran.push(*l);
        }
    }
    let text = std::fs::read_to_string(script).unwrap_or_default();
    let source = |n: usize| {
        text.lines()
            .nth(n.saturating_sub(1))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    // The deciding statement is the last one run that is more than a closing brace.
    let Some(last) = ran
        .iter()
        .rev()
        .find(|l| !matches!(source(**l).as_str(), "}" | "" | "};"))
    else {
        return writeln!(out, "lines:   none ran");
    };
    let shown: Vec<String> = ran.iter().map(usize::to_string).collect();
    writeln!(out, "lines:   {}", shown.join(" "))?;
    writeln!(out, "decided: line {last}: {}", source(*last))
}

/// Runs every fixture file under `dir`; non-zero exit on any mismatch.
pub fn policy_test(dir: &Path) -> anyhow::Result<ExitCode> {
    let files = tollgate_policy::fixture::find(dir)
        .with_context(|| format!("reading {}", dir.display()))?;
    if files.is_empty() {
        anyhow::bail!("no *.test.json files under {}", dir.display());
    }
    let engine = tollgate_policy::PolicyEngine::new(tollgate_policy::Limits::default());
    let (mut passed, mut failed) = (0, 0);
    let mut out = std::io::stdout();
    for file in &files {
        for result in tollgate_policy::fixture::run_file(&engine, file) {
            match result.failure {
                None => {
                    passed += 1;
                    writeln!(out, "ok   {}", result.name)?;
                }
                Some(diff) => {
                    failed += 1;
                    writeln!(out, "FAIL {}\n{diff}", result.name)?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
