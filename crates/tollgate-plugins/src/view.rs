//! The plugin's view of a chat request, built from the parsed request and who sent it, and
//! changes to it applied back.

use crate::types::{Message, Modification, Request};
use serde_json::Value;
use tollgate_types::ChatRequest;

/// Who sent a request, and what the gateway knows about it beyond its body.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The gateway's request id.
    pub id: String,
    /// The virtual key's name.
    pub key: Option<String>,
    /// Its team.
    pub team: Option<String>,
    /// Its tenant.
    pub tenant: Option<String>,
    /// The end user.
    pub user: Option<String>,
    /// Tags so far.
    pub tags: Vec<String>,
    /// Allow-listed headers.
    pub headers: Vec<(String, String)>,
}

/// The WIT request for `req`.
pub(crate) fn request(info: &RequestInfo, req: &ChatRequest) -> Request {
    let messages: Vec<Message> = req
        .messages
        .iter()
        .map(|m| Message {
            role: m.role.clone(),
            text: m.text(),
        })
        .collect();
    let bytes: usize = messages.iter().map(|m| m.text.len()).sum();
    Request {
        id: info.id.clone(),
        model: req.model.clone(),
        messages,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        streaming: req.is_stream(),
        token_estimate: u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX),
        key: info.key.clone(),
        team: info.team.clone(),
        tenant: info.tenant.clone(),
        user: info.user.clone(),
        tags: info.tags.clone(),
        headers: info.headers.clone(),
    }
}

/// Applies a plugin's changes to the request and to its view (so the next plugin sees them).
/// Tags added are returned for the caller to keep.
pub(crate) fn apply(
    change: Modification,
    req: &mut ChatRequest,
    view: &mut Request,
) -> Vec<String> {
    if let Some(messages) = change.messages {
        let old = std::mem::take(&mut req.messages);
        req.messages = align(&old, &messages);
        let bytes: usize = messages.iter().map(|m| m.text.len()).sum();
        view.token_estimate = u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX);
        view.messages = messages;
    }
    if let Some(n) = change.max_tokens {
        if req.max_completion_tokens.is_some() {
            req.max_completion_tokens = Some(n);
        } else {
            req.max_tokens = Some(n);
        }
        view.max_tokens = Some(n);
    }
    if let Some(model) = change.model {
        req.model.clone_from(&model);
        view.model = model;
    }
    let tags = change.tags.unwrap_or_default();
    view.tags.extend(tags.iter().cloned());
    tags
}

/// The new conversation, keeping each old message the plugin kept. A forward scan pairs new
/// messages with old ones: an unchanged one (same role and text) is kept whole, with its parts
/// (images, tool calls); a changed one at the same place keeps its other fields (name, tool
/// call id) with the new text; anything else is a new text message. Messages a plugin inserts
/// or drops do not shift the pairing of the rest.
fn align(old: &[tollgate_types::Message], new: &[Message]) -> Vec<tollgate_types::Message> {
    let texts: Vec<String> = old.iter().map(tollgate_types::Message::text).collect();
    let mut next = 0;
    new.iter()
        .map(|m| {
            let same = (next..old.len()).find(|&i| old[i].role == m.role && texts[i] == m.text);
            if let Some(i) = same {
                next = i + 1;
                return old[i].clone();
            }
            match old.get(next) {
                Some(o) if o.role == m.role => {
                    next += 1;
                    let mut changed = o.clone();
                    changed.content = Value::String(m.text.clone());
                    changed
                }
                _ => tollgate_types::Message {
                    role: m.role.clone(),
                    content: Value::String(m.text.clone()),
                    extra: serde_json::Map::new(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: serde_json::Value) -> ChatRequest {
        serde_json::from_value(body).expect("chat request")
    }

    #[test]
    fn unchanged_messages_keep_their_parts_and_changed_ones_become_text() {
        let mut req = chat(serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "be brief"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "user", "content": "my email is a@b.co", "name": "ann"}
        ], "max_completion_tokens": 50}));
        let info = RequestInfo {
            id: "r1".to_owned(),
            ..RequestInfo::default()
        };
        let mut view = request(&info, &req);
        assert_eq!(view.messages[0].text, "be brief");
        assert_eq!(view.max_tokens, Some(50));
        let tags = apply(
            Modification {
                messages: Some(vec![
                    view.messages[0].clone(),
                    Message {
                        role: "user".to_owned(),
                        text: "my email is [EMAIL]".to_owned(),
                    },
                    Message {
                        role: "user".to_owned(),
                        text: "added".to_owned(),
                    },
                ]),
                max_tokens: Some(10),
                model: Some("other".to_owned()),
                tags: Some(vec!["redacted".to_owned()]),
            },
            &mut req,
            &mut view,
        );
        assert_eq!(tags, ["redacted"]);
        assert!(
            req.messages[0].content.is_array(),
            "untouched message keeps its image part"
        );
        assert_eq!(req.messages[1].content, "my email is [EMAIL]");
        assert_eq!(
            req.messages[1].extra["name"], "ann",
            "a changed message keeps its name"
        );
        assert_eq!(req.messages[2].text(), "added");
        assert_eq!(req.max_completion_tokens, Some(10));
        assert_eq!(req.max_tokens, None);
        assert_eq!(req.model, "other");
        assert_eq!(view.model, "other");
        assert_eq!(view.tags, ["redacted"]);
    }

    #[test]
    fn an_inserted_message_does_not_shift_the_rest() {
        let mut req = chat(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ]}));
        let mut view = request(&RequestInfo::default(), &req);
        let mut messages = view.messages.clone();
        messages.insert(
            0,
            Message {
                role: "system".to_owned(),
                text: "Be brief.".to_owned(),
            },
        );
        apply(
            Modification {
                messages: Some(messages),
                max_tokens: None,
                model: None,
                tags: None,
            },
            &mut req,
            &mut view,
        );
        assert_eq!(req.messages.len(), 4);
        assert_eq!(req.messages[0].text(), "Be brief.");
        assert!(
            req.messages[2].extra.contains_key("tool_calls"),
            "tool calls kept"
        );
        assert_eq!(req.messages[3].extra["tool_call_id"], "c1");
    }
}
