//! The routes the gateway answers, with and without the `/v1` prefix.

/// A recognised route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/messages` (Anthropic's Messages API)
    Messages,
    /// `GET /v1/models`
    Models,
    /// `GET /v1/models/{id}`
    Model(String),
    /// `GET /health/liveliness`
    Liveliness,
    /// `GET /health/readiness`
    Readiness,
}

/// Why no route matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// The path exists but not with this method.
    WrongMethod,
    /// Nothing is served at this path.
    NotFound,
}

/// Matches a method and path (query already stripped).
pub fn match_route(method: &str, path: &str) -> Result<Route, NoRoute> {
    let path = path.trim_end_matches('/');
    let api = path.strip_prefix("/v1").unwrap_or(path);
    let (route, want) = match api {
        "/chat/completions" => (Route::ChatCompletions, "POST"),
        "/embeddings" => (Route::Embeddings, "POST"),
        "/messages" => (Route::Messages, "POST"),
        "/models" => (Route::Models, "GET"),
        "/health/liveliness" | "/health/liveness" => (Route::Liveliness, "GET"),
        "/health/readiness" => (Route::Readiness, "GET"),
        _ => match api.strip_prefix("/models/") {
            Some(id) if !id.is_empty() => (Route::Model(percent_decode(id)), "GET"),
            _ => return Err(NoRoute::NotFound),
        },
    };
    if method == want || (want == "GET" && method == "HEAD") {
        Ok(route)
    } else {
        Err(NoRoute::WrongMethod)
    }
}

/// Decodes `%XX` escapes (model ids may contain `/` or `:` escaped by SDKs).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_and_without_prefix() {
        assert_eq!(
            match_route("POST", "/v1/chat/completions"),
            Ok(Route::ChatCompletions)
        );
        assert_eq!(
            match_route("POST", "/chat/completions"),
            Ok(Route::ChatCompletions)
        );
        assert_eq!(match_route("POST", "/embeddings/"), Ok(Route::Embeddings));
        assert_eq!(match_route("POST", "/v1/messages"), Ok(Route::Messages));
        assert_eq!(
            match_route("GET", "/v1/models/demo-fast"),
            Ok(Route::Model("demo-fast".into()))
        );
        assert_eq!(
            match_route("GET", "/models/a%2Fb"),
            Ok(Route::Model("a/b".into()))
        );
    }

    #[test]
    fn wrong_method_and_unknown_path() {
        assert_eq!(
            match_route("GET", "/v1/chat/completions"),
            Err(NoRoute::WrongMethod)
        );
        assert_eq!(match_route("POST", "/v1/nope"), Err(NoRoute::NotFound));
        assert_eq!(match_route("GET", "/v1/models/"), Ok(Route::Models));
    }
}
