//! The control endpoint: fault scripts a test sets at run time, and a log of what arrived.
//!
//! - `POST /mock/faults` `{"steps": [{"times": 20, "status": 503}, {"ttft-ms": 3000}]}`:
//!   the next 20 requests get 503, every one after that a 3 s time to first token. Step keys
//!   are the `x-mock-*` header names without the prefix; a step without `times` lasts forever.
//!   Scripted faults override the request's own headers. `DELETE /mock/faults` clears them.
//! - `GET /mock/requests`: `{"requests": [{"at_ms", "path", "status", "body"}]}`, the last
//!   10 000 requests, with arrival time in milliseconds since the Unix epoch and the JSON body
//!   (null when over 64 KiB or not JSON). `DELETE` clears it.

use crate::faults::Faults;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const LOG_LIMIT: usize = 10_000;
/// Larger bodies are logged as null.
const LOGGED_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
struct Step {
    faults: Faults,
    times: Option<u32>,
}

/// The script and the request log of one mock.
#[derive(Debug, Default)]
pub(crate) struct Control {
    script: Mutex<VecDeque<Step>>,
    log: Mutex<VecDeque<(f64, String, u16, serde_json::Value)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Control {
    /// Replaces the script from a `POST /mock/faults` body.
    pub(crate) fn set_script(&self, body: &[u8]) -> Result<usize, String> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let steps = v
            .get("steps")
            .and_then(serde_json::Value::as_array)
            .ok_or("expected {\"steps\": [...]}")?;
        let steps: VecDeque<Step> = steps
            .iter()
            // A step for zero requests applies to none.
            .filter(|s| s.get("times").and_then(serde_json::Value::as_u64) != Some(0))
            .map(|s| Step {
                faults: Faults::from_json(s),
                times: s
                    .get("times")
                    .and_then(serde_json::Value::as_u64)
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            })
            .collect();
        let n = steps.len();
        *lock(&self.script) = steps;
        Ok(n)
    }

    /// Clears the script.
    pub(crate) fn clear_script(&self) {
        lock(&self.script).clear();
    }

    /// The scripted faults for the next request, if a step applies.
    pub(crate) fn next_faults(&self) -> Option<Faults> {
        let mut script = lock(&self.script);
        let step = script.front_mut()?;
        let faults = step.faults.clone();
        if let Some(times) = &mut step.times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                script.pop_front();
            }
        }
        Some(faults)
    }

    /// Notes an arrival and the status it got.
    pub(crate) fn log(&self, path: &str, status: u16, body: &[u8]) {
        let body = if body.len() <= LOGGED_BODY_LIMIT {
            serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let mut log = lock(&self.log);
        if log.len() == LOG_LIMIT {
            log.pop_front();
        }
        log.push_back((at, path.to_owned(), status, body));
    }

    /// The log as JSON.
    pub(crate) fn requests_json(&self) -> serde_json::Value {
        let log = lock(&self.log);
        let items: Vec<serde_json::Value> = log
            .iter()
            .map(|(at, path, status, body)| {
                serde_json::json!({"at_ms": at, "path": path, "status": status, "body": body})
            })
            .collect();
        serde_json::json!({ "requests": items })
    }

    /// Clears the log.
    pub(crate) fn clear_log(&self) {
        lock(&self.log).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_order_and_the_last_may_last_forever() {
        let c = Control::default();
        let n = c
            .set_script(
                br#"{"steps": [{"times": 2, "status": 503}, {"ttft-ms": 3000, "hang": false}]}"#,
            )
            .expect("script");
        assert_eq!(n, 2);
        let statuses: Vec<Option<u16>> = (0..4)
            .map(|_| c.next_faults().and_then(|f| f.status))
            .collect();
        assert_eq!(statuses, [Some(503), Some(503), None, None]);
        let f = c.next_faults().expect("forever");
        assert_eq!(f.ttft, Some(std::time::Duration::from_secs(3)));
        assert!(!f.hang);
        c.clear_script();
        assert!(c.next_faults().is_none());
        assert!(c.set_script(b"[]").is_err());
    }
}
