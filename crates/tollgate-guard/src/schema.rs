//! Structured outputs: when a request asks for `response_format: {type: "json_schema"}`, the
//! answer must parse as JSON and validate against that schema.

use serde_json::Value;
use tollgate_types::ChatRequest;

/// The longest validation error kept (it goes to the client and into a repair prompt).
const MAX_REASON: usize = 300;

/// A request's output schema, compiled.
#[derive(Debug)]
pub struct OutputSchema {
    validator: jsonschema::Validator,
}

impl OutputSchema {
    /// The schema `req` asks its answer to follow: `None` when it asks for none, `Err` when
    /// the schema it sends is not a valid JSON Schema.
    pub fn of_request(req: &ChatRequest) -> Option<Result<OutputSchema, String>> {
        let format = req.extra.get("response_format")?;
        if format.get("type").and_then(Value::as_str) != Some("json_schema") {
            return None;
        }
        let schema = format.get("json_schema").and_then(|j| j.get("schema"))?;
        Some(
            jsonschema::validator_for(schema)
                .map(|validator| OutputSchema { validator })
                .map_err(|e| cut(&e.to_string())),
        )
    }

    /// Whether `text` is JSON that matches the schema; `Err` says why not.
    pub fn check(&self, text: &str) -> Result<(), String> {
        let value: Value = serde_json::from_str(text.trim())
            .map_err(|e| cut(&format!("the answer is not JSON: {e}")))?;
        match self.validator.iter_errors(&value).next() {
            None => Ok(()),
            Some(e) => {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                Err(cut(&format!("at {at}: {e}")))
            }
        }
    }
}

fn cut(s: &str) -> String {
    s[..s.floor_char_boundary(MAX_REASON)].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(format: Value) -> ChatRequest {
        serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [], "response_format": format
        }))
        .expect("request")
    }

    #[test]
    fn answers_are_checked_against_the_requested_schema() {
        let req = request(serde_json::json!({"type": "json_schema", "json_schema": {
            "name": "city", "strict": true,
            "schema": {"type": "object", "properties": {"city": {"type": "string"},
                "population": {"type": "integer", "minimum": 0}},
                "required": ["city", "population"], "additionalProperties": false}
        }}));
        let schema = OutputSchema::of_request(&req)
            .expect("asked")
            .expect("valid");
        assert_eq!(
            schema.check(r#" {"city": "Paris", "population": 2100000} "#),
            Ok(())
        );
        let missing = schema
            .check(r#"{"city": "Paris"}"#)
            .expect_err("missing field");
        assert!(missing.contains("population"), "{missing}");
        let wrong = schema
            .check(r#"{"city": "Paris", "population": -3}"#)
            .expect_err("negative");
        assert!(wrong.starts_with("at /population:"), "{wrong}");
        let prose = schema
            .check("Paris has about 2 million people.")
            .expect_err("prose");
        assert!(prose.starts_with("the answer is not JSON"), "{prose}");
    }

    #[test]
    fn only_json_schema_formats_are_checked_and_bad_schemas_are_reported() {
        assert!(
            OutputSchema::of_request(&request(serde_json::json!({"type": "json_object"})))
                .is_none()
        );
        let bad = request(serde_json::json!({"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "no-such-type"}}}));
        assert!(OutputSchema::of_request(&bad).expect("asked").is_err());
    }
}
