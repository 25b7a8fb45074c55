//! Streamed bodies for every format: timing (`ttft`, `chunk_delay`), chunk count and the
//! injected mid-stream reset.

use crate::{MockConfig, faults::Faults};
use bytes::Bytes;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// A channel of body frames; an `Err` aborts the connection mid-body.
pub(crate) type Frames = mpsc::Receiver<Result<Bytes, std::io::Error>>;

/// Stream timing for one request: server defaults overridden by `x-mock-*` headers.
pub(crate) struct Pacing {
    ttft: Duration,
    delay: Duration,
    /// Content chunks per streamed answer, at least 1.
    pub(crate) chunks: usize,
    reset_after: Option<u32>,
}

impl Pacing {
    pub(crate) fn new(config: &MockConfig, faults: &Faults) -> Pacing {
        Pacing {
            ttft: faults.ttft.unwrap_or(config.ttft),
            delay: faults.chunk_delay.unwrap_or(config.chunk_delay),
            chunks: faults.chunks.unwrap_or(config.chunks).max(1) as usize,
            reset_after: faults.reset_after,
        }
    }
}

/// One streamed frame (an SSE event, or a JSON array element).
pub(crate) struct Event {
    pub(crate) data: Bytes,
    /// Wait `chunk_delay` before sending it.
    pub(crate) delayed: bool,
}

impl Event {
    pub(crate) fn new(data: impl Into<Bytes>, delayed: bool) -> Event {
        Event {
            data: data.into(),
            delayed,
        }
    }
}

/// Sends `events` after `ttft`, then `trailer`; with `reset_after = n` the connection drops
/// instead of sending event `n` (counted from 0), and the trailer never comes.
pub(crate) fn spawn(events: Vec<Event>, trailer: Option<Bytes>, pacing: &Pacing) -> Frames {
    let (ttft, delay, reset_after) = (pacing.ttft, pacing.delay, pacing.reset_after);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        sleep(ttft).await;
        for (i, ev) in events.into_iter().enumerate() {
            if reset_after.is_some_and(|n| i as u32 >= n) {
                let _ = tx
                    .send(Err(std::io::Error::other("mock: injected reset")))
                    .await;
                return;
            }
            if ev.delayed {
                sleep(delay).await;
            }
            if tx.send(Ok(ev.data)).await.is_err() {
                return;
            }
        }
        if let Some(t) = trailer {
            let _ = tx.send(Ok(t)).await;
        }
    });
    rx
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// `s` in at most `n` pieces of equal character count.
pub(crate) fn split_str(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let per = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(per).map(|c| c.iter().collect()).collect()
}

/// Unix seconds.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
