//! A guest's stderr, forwarded line by line to the gateway's log: Python tracebacks and
//! JavaScript `console.error` output show up tagged with the plugin's name.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line logged; longer ones are logged in pieces.
const MAX_LINE: usize = 2048;

/// Lines one instance may log; the rest are dropped (a plugin printing in a loop must not
/// flood the gateway's log).
const MAX_LINES: u32 = 1000;

/// The stderr given to every instance.
pub(crate) struct StderrToLog {
    pub(crate) plugin: Arc<str>,
}

impl IsTerminal for StderrToLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrToLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            plugin: self.plugin.clone(),
            line: Vec::new(),
            logged: 0,
        })
    }
}

struct LineLogger {
    plugin: Arc<str>,
    line: Vec<u8>,
    logged: u32,
}

impl LineLogger {
    fn emit(&mut self, upto: usize) {
        let line: Vec<u8> = self.line.drain(..upto).collect();
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() || self.logged > MAX_LINES {
            return;
        }
        self.logged += 1;
        if self.logged > MAX_LINES {
            tracing::warn!(plugin = %self.plugin, "plugin stderr: further lines dropped");
        } else {
            tracing::warn!(plugin = %self.plugin, "plugin stderr: {text}");
        }
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.line.extend_from_slice(data);
        while let Some(newline) = this.line.iter().position(|b| *b == b'\n') {
            this.emit(newline + 1);
        }
        while this.line.len() > MAX_LINE {
            this.emit(MAX_LINE);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let all = this.line.len();
        this.emit(all);
        Poll::Ready(Ok(()))
    }
}
