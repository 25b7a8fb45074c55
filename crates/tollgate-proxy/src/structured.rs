//! Structured outputs: a `json_schema` guardrail checks complete answers to requests that ask
//! for `response_format: {type: "json_schema"}`. A failing answer is refused (502
//! `output_schema_invalid`), or, with `repair = true`, sent back to the model once with the
//! validation error; both attempts are priced and charged.

use crate::context::RequestCtx;
use serde_json::{Value, json};
use std::sync::Arc;
use tollgate_guard::schema::OutputSchema;
use tollgate_types::{ApiError, ChatRequest, ErrorKind, Message};

/// A request's schema check.
#[derive(Debug)]
pub struct OutputCheck {
    schema: Arc<OutputSchema>,
    guardrail: String,
    repair_left: bool,
}

/// An answer that failed its schema, to be repaired.
#[derive(Debug)]
pub struct Repair {
    answer: String,
    reason: String,
}

/// Sets up the check for a non-stream chat request that asks for a JSON schema, if a
/// `json_schema` guardrail applies to its model. A schema that is not valid JSON Schema is
/// the client's error.
pub fn prepare(ctx: &mut RequestCtx, req: &ChatRequest) -> Result<(), ApiError> {
    let state = ctx.state.clone();
    let Some(model) = ctx.model.as_deref() else {
        return Ok(());
    };
    let Some((guardrail, repair)) = state.guardrails.output_schema(model) else {
        return Ok(());
    };
    // A stream's answer is the client's before it is complete: only whole answers are
    // checked (see README, Guardrails).
    if req.is_stream() {
        return Ok(());
    }
    match OutputSchema::of_request(req) {
        None => Ok(()),
        Some(Ok(schema)) => {
            ctx.output_check = Some(OutputCheck {
                schema: Arc::new(schema),
                guardrail: guardrail.to_owned(),
                repair_left: repair,
            });
            Ok(())
        }
        Some(Err(why)) => Err(ApiError::new(
            ErrorKind::InvalidRequest,
            format!("response_format.json_schema.schema is not a valid JSON Schema: {why}"),
        )
        .with_param("response_format")),
    }
}

/// Whether the request's `json_schema` guardrail would refuse `answer` (an OpenAI
/// `chat.completion`): a cascade escalates such an answer rather than keep it.
pub fn would_refuse(ctx: &RequestCtx, answer: &Value) -> bool {
    let Some(check) = ctx.output_check.as_ref() else {
        return false;
    };
    answer["choices"][0]["message"]["content"]
        .as_str()
        .is_some_and(|text| check.schema.check(text).is_err())
}

/// What to do with a complete answer (the client's OpenAI JSON body).
pub enum Checked {
    /// Send it.
    Pass,
    /// Ask again (nothing is sent; the usage so far is carried over).
    Repair,
    /// Refuse it.
    Refuse(ApiError),
}

/// Checks a complete answer against the request's schema.
pub async fn check_answer(ctx: &mut RequestCtx, body: &[u8]) -> Checked {
    let Some(check) = ctx.output_check.as_mut() else {
        return Checked::Pass;
    };
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return Checked::Pass;
    };
    // A tool call or a refusal is not an answer to check.
    let Some(text) = json["choices"][0]["message"]["content"].as_str() else {
        return Checked::Pass;
    };
    let Err(reason) = check.schema.check(text) else {
        return Checked::Pass;
    };
    let guardrail = check.guardrail.clone();
    if std::mem::take(&mut check.repair_left) && room_for_repair(ctx).await {
        crate::metrics::record_guardrail(&guardrail, "repair_response");
        tracing::info!(request_id = %ctx.request_id, %guardrail, %reason,
            "An answer failed its JSON schema; asking the model to repair it.");
        ctx.repair = Some(Repair {
            answer: text.to_owned(),
            reason,
        });
        // What this answer used (`set_usage` adds it to the next one's).
        ctx.prior = Some(crate::context::Prior {
            usage: ctx.usage.unwrap_or_default(),
            cost: ctx.cost,
        });
        return Checked::Repair;
    }
    crate::metrics::record_guardrail(&guardrail, "deny_response");
    tracing::info!(request_id = %ctx.request_id, %guardrail, %reason,
        "An answer failed its JSON schema.");
    Checked::Refuse(
        ApiError::new(
            ErrorKind::UpstreamFailed,
            format!("the model's answer does not match the requested JSON schema ({guardrail}): {reason}"),
        )
        .with_code("output_schema_invalid"),
    )
}

/// Whether the request's budgets have room for a repair: the request reserved for one answer,
/// so a second one must fit in what is left beside the reservation (about what the first one
/// cost, as the repair asks for the same answer again). Without USD budgets there is no cap.
async fn room_for_repair(ctx: &RequestCtx) -> bool {
    let Some(spend) = ctx.spend.clone() else {
        return true;
    };
    match spend.remaining(ctx).await {
        None => true,
        Some(room) => room >= ctx.cost.unwrap_or(tollgate_types::Usd::ZERO),
    }
}

/// The request to send for a pending repair: the failing answer and what was wrong with it
/// appended to the conversation. `None` when no repair is pending.
pub fn take_repair(ctx: &mut RequestCtx, req: &mut ChatRequest) -> Option<()> {
    let repair = ctx.repair.take()?;
    ctx.messages_body = None;
    req.messages.push(Message {
        role: "assistant".to_owned(),
        content: json!(repair.answer),
        extra: serde_json::Map::new(),
    });
    req.messages.push(Message {
        role: "user".to_owned(),
        content: json!(format!(
            "Your previous answer does not match the required JSON schema: {}. \
             Reply again with only the corrected JSON.",
            repair.reason
        )),
        extra: serde_json::Map::new(),
    });
    Some(())
}
