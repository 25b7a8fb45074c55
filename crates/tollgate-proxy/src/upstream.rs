//! One upstream attempt: resolve, connect through Pingora's pooled connector, send the request
//! an adapter built, and read the response header under a deadline.

use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tollgate_config::{ProviderConfig, UpstreamUrl};
use tollgate_providers::UpstreamRequest;

/// Why an attempt failed. Messages name the provider's host at most, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// DNS resolution failed.
    Resolve(String),
    /// TCP or TLS connect failed, or the connection broke before a response header.
    Connect(String),
    /// A deadline passed (`connect`, `first byte`, `idle`).
    Timeout(&'static str),
    /// The provider answered with a status that calls for failover.
    Status(u16),
    /// The provider answered 429, maybe saying when to come back (`retry-after`).
    RateLimited(Option<Duration>),
    /// The provider answered 2xx with a body that is not what its API documents.
    Malformed(String),
    /// The response body broke off before it was complete.
    Broken(String),
    /// The prompt does not fit this model's context window (the provider's message).
    ContextLength(String),
    /// The gateway could not build a request for this provider (nothing was sent).
    Unbuildable(String),
}

impl AttemptError {
    /// A bounded label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            AttemptError::Resolve(_) => "resolve_error",
            AttemptError::Connect(_) => "connect_error",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Status(429) | AttemptError::RateLimited(_) => "rate_limited",
            AttemptError::Status(401 | 403) => "auth_error",
            AttemptError::Status(404) => "not_found",
            AttemptError::Status(s) if *s >= 500 => "server_error",
            AttemptError::Status(_) => "http_error",
            AttemptError::Malformed(_) => "malformed",
            AttemptError::Broken(_) => "broken",
            AttemptError::ContextLength(_) => "context_length",
            AttemptError::Unbuildable(_) => "unbuildable",
        }
    }

    /// A one-line summary for clients and logs.
    pub fn summary(&self) -> String {
        match self {
            AttemptError::Resolve(m) => format!("DNS error ({m})"),
            AttemptError::Connect(m) => format!("connect error ({m})"),
            AttemptError::Timeout(what) => format!("{what} timeout"),
            AttemptError::Status(s) => format!("HTTP {s}"),
            AttemptError::RateLimited(None) => "HTTP 429".to_owned(),
            AttemptError::RateLimited(Some(d)) => {
                format!("HTTP 429, retry after {:.1}s", d.as_secs_f64())
            }
            AttemptError::Malformed(m) => format!("malformed response ({m})"),
            AttemptError::Broken(m) => format!("response broke off ({m})"),
            AttemptError::ContextLength(m) => format!("context too long ({m})"),
            AttemptError::Unbuildable(m) => format!("cannot be sent to this provider ({m})"),
        }
    }
}

/// An upstream response whose header has arrived.
pub struct Opened {
    /// The session, to read the body from and release to the pool.
    pub session: HttpSession,
    /// The response header.
    pub header: ResponseHeader,
    /// The peer, needed to release the session.
    pub peer: HttpPeer,
}

/// Sends `req` to `provider` and waits for the response header.
///
/// A pooled connection the provider already closed fails on first use; that is retried once on
/// another connection, since nothing has been processed upstream.
pub async fn open(
    connector: &Connector,
    provider: &ProviderConfig,
    req: &UpstreamRequest,
    header_wait: Duration,
) -> Result<Opened, AttemptError> {
    let peer = peer_for(provider).await?;
    let mut last = AttemptError::Connect("no attempt".to_owned());
    // One deadline for both tries: a retry on a fresh connection gets no extra time.
    let deadline = tokio::time::Instant::now() + header_wait;
    for _ in 0..2 {
        let (mut session, reused) = match connector.get_http_session(&peer).await {
            Ok(s) => s,
            Err(e) => {
                let timeout = matches!(e.etype(), pingora::ErrorType::ConnectTimedout);
                return Err(if timeout {
                    AttemptError::Timeout("connect")
                } else {
                    AttemptError::Connect(e.etype().as_str().to_lowercase())
                });
            }
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match pingora::time::timeout(left, exchange(&mut session, req)).await {
            Ok(Ok(header)) => {
                return Ok(Opened {
                    session,
                    header,
                    peer,
                });
            }
            // Only a pooled connection that failed before the provider could have acted on the
            // request (Pingora marks those retryable) is worth a second try: anything later
            // risks a duplicate, billed generation.
            Ok(Err((e, retryable))) if reused && retryable => last = e,
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(AttemptError::Timeout("first byte")),
        }
    }
    Err(last)
}

/// Writes the request and reads the response header. An error carries whether Pingora judged it
/// safe to retry (a reused connection that closed before answering).
async fn exchange(
    session: &mut HttpSession,
    req: &UpstreamRequest,
) -> Result<ResponseHeader, (AttemptError, bool)> {
    let broken = |e: Box<pingora::Error>| {
        let retry = e.retry();
        (
            AttemptError::Connect(e.etype().as_str().to_lowercase()),
            retry,
        )
    };
    let mut header = RequestHeader::build(req.method, req.path.as_bytes(), Some(req.headers.len()))
        .map_err(broken)?;
    for (name, value) in &req.headers {
        let inserted = match name {
            Cow::Borrowed(n) => header.insert_header(*n, value.as_str()),
            Cow::Owned(n) => header.insert_header(n.clone(), value.as_str()),
        };
        inserted.map_err(broken)?;
    }
    session
        .write_request_header(Box::new(header))
        .await
        .map_err(broken)?;
    session
        .write_request_body(req.body.clone(), true)
        .await
        .map_err(broken)?;
    session.finish_request_body().await.map_err(broken)?;
    session.read_response_header().await.map_err(broken)?;
    session.response_header().cloned().ok_or_else(|| {
        (
            AttemptError::Connect("no response header".to_owned()),
            false,
        )
    })
}

async fn peer_for(provider: &ProviderConfig) -> Result<HttpPeer, AttemptError> {
    peer_at(&provider.base_url, provider.timeouts.connect).await
}

/// POSTs a JSON body to `url` + `path_and_query` and returns the status (control-plane calls
/// such as alert webhooks, on the same connector and TLS as provider calls).
pub async fn post_json(
    connector: &Connector,
    url: &UpstreamUrl,
    path_and_query: &str,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<u16, AttemptError> {
    let peer = peer_at(url, timeout).await?;
    let req = UpstreamRequest {
        method: "POST",
        path: path_and_query.to_owned(),
        headers: vec![
            ("host".into(), url.authority()),
            ("content-type".into(), "application/json".to_owned()),
            ("content-length".into(), body.len().to_string()),
            ("user-agent".into(), "tollgate-alerts".to_owned()),
        ],
        body,
    };
    let (mut session, _) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| AttemptError::Connect(e.etype().as_str().to_lowercase()))?;
    let header = pingora::time::timeout(timeout, exchange(&mut session, &req))
        .await
        .map_err(|_| AttemptError::Timeout("first byte"))?
        .map_err(|(e, _)| e)?;
    // Not pooled: alerts are rare.
    Ok(header.status.as_u16())
}

async fn peer_at(url: &UpstreamUrl, connect: Duration) -> Result<HttpPeer, AttemptError> {
    let addr = match url.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, url.port),
        Err(_) => tokio::time::timeout(
            connect,
            tokio::net::lookup_host((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| AttemptError::Timeout("connect"))?
        .map_err(|e| AttemptError::Resolve(format!("{}: {e}", url.host)))?
        .next()
        .ok_or_else(|| AttemptError::Resolve(format!("{}: no address", url.host)))?,
    };
    let mut peer = HttpPeer::new(addr, url.tls, url.host.clone());
    peer.options.connection_timeout = Some(connect);
    peer.options.total_connection_timeout = Some(connect);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    Ok(peer)
}

/// Reads the next body chunk under the idle deadline.
pub async fn next_chunk(
    session: &mut HttpSession,
    idle: Duration,
) -> Result<Option<bytes::Bytes>, AttemptError> {
    // Pingora's timer wheel: cheaper than a tokio timer on every chunk of every stream.
    match pingora::time::timeout(idle, session.read_response_body()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(AttemptError::Broken(e.etype().as_str().to_lowercase())),
        Err(_) => Err(AttemptError::Timeout("idle")),
    }
}

/// The wait a 429 asks for: `retry-after-ms`, else `retry-after` in seconds (HTTP dates are
/// ignored: providers send seconds).
pub fn retry_after(header: &ResponseHeader) -> Option<Duration> {
    let get = |name: &str| {
        header
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    // `try_from`: a huge or negative value is no hint at all, not a panic.
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let secs = get("retry-after")?.parse::<f64>().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}
