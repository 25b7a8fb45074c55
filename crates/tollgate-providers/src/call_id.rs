//! Tool-call ids the gateway mints, and Gemini thought signatures carried inside them.
//!
//! Gemini gives function calls no id, and Gemini 3 rejects a conversation whose earlier calls
//! lost their `thoughtSignature`. OpenAI's format has no field for it, so it rides in the call
//! id, which clients echo back with the tool result. The id stays within
//! `[A-Za-z0-9_-]` (Anthropic's pattern for tool ids), and adapters for other providers strip
//! the signature, so a conversation can move between providers.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

/// Between an id and its signature.
const MARK: &str = "__sig_";

/// A fresh id, unique within the process and unlikely to collide across processes.
pub(crate) fn new_call_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of time and sequence: ids look random and never repeat in one process.
    let mut z = nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("call_{:016x}{:08x}", z ^ (z >> 31), n as u32)
}

/// `id` with a Gemini thought signature (standard base64) folded in, URL-safe.
pub(crate) fn with_signature(id: &str, signature: &str) -> String {
    let safe: String = signature
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    format!("{id}{MARK}{safe}")
}

/// The id without a folded signature, and the signature (standard base64), if any.
pub(crate) fn split_signature(id: &str) -> (&str, Option<String>) {
    let Some((base, safe)) = id.split_once(MARK) else {
        return (id, None);
    };
    let mut sig: String = safe
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !sig.len().is_multiple_of(4) {
        sig.push('=');
    }
    (base, Some(sig))
}

/// The id as providers other than Gemini should see it.
pub(crate) fn plain(id: &str) -> &str {
    split_signature(id).0
}

/// Whether any message carries a folded signature (cheap: most requests have no tool calls).
pub(crate) fn any_signed(messages: &[tollgate_types::Message]) -> bool {
    messages.iter().any(|m| {
        let calls = m
            .extra
            .get("tool_calls")
            .and_then(serde_json::Value::as_array);
        calls
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("id").and_then(serde_json::Value::as_str))
            .chain(
                m.extra
                    .get("tool_call_id")
                    .and_then(serde_json::Value::as_str),
            )
            .any(|id| id.contains(MARK))
    })
}

/// `messages` with every folded signature removed from tool-call ids.
pub(crate) fn strip_signatures(
    messages: &[tollgate_types::Message],
) -> Cow<'_, [tollgate_types::Message]> {
    if !any_signed(messages) {
        return Cow::Borrowed(messages);
    }
    let mut out = messages.to_vec();
    for m in &mut out {
        if let Some(serde_json::Value::Array(calls)) = m.extra.get_mut("tool_calls") {
            for c in calls {
                if let Some(serde_json::Value::String(id)) = c.get_mut("id") {
                    *id = plain(id).to_owned();
                }
            }
        }
        if let Some(serde_json::Value::String(id)) = m.extra.get_mut("tool_call_id") {
            *id = plain(id).to_owned();
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_through_a_safe_id() {
        for sig in ["c2lnbmF0dXJlKz8/", "YWJjZA==", "YWJjZGU=", "+/+/"] {
            let id = with_signature("call_1", sig);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{id}"
            );
            assert_eq!(split_signature(&id), ("call_1", Some(sig.to_owned())));
            assert_eq!(plain(&id), "call_1");
        }
        assert_eq!(split_signature("call_2"), ("call_2", None));
    }

    #[test]
    fn minted_ids_are_unique_and_short() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_call_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter().all(|id| id.len() <= 40),
            "OpenAI caps ids at 40 characters"
        );
    }
}
