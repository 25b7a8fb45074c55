//! `${VAR}` and `${VAR:-default}` interpolation of config strings.

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${VAR}` with `VAR` unset and no default.
    Unset(String),
    /// `${` with no closing `}`, or an empty name.
    Malformed,
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `s`. `$$` is a literal `$`.
pub fn interpolate(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(InterpolateError::Malformed)?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() {
                return Err(InterpolateError::Malformed);
            }
            // An empty variable counts as unset, as in POSIX `${VAR:-default}`.
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(InterpolateError::Unset(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(
            interpolate("https://${HOST}/v1", &env),
            Ok("https://example.com/v1".into())
        );
        assert_eq!(
            interpolate("${NOPE:-http://127.0.0.1:1/v1}", &env),
            Ok("http://127.0.0.1:1/v1".into())
        );
        assert_eq!(interpolate("${EMPTY:-d}", &env), Ok("d".into()));
        assert_eq!(
            interpolate("cost $$5 and $x", &env),
            Ok("cost $5 and $x".into())
        );
    }

    #[test]
    fn unset_without_default_names_the_variable() {
        assert_eq!(
            interpolate("${NOPE}", &env),
            Err(InterpolateError::Unset("NOPE".into()))
        );
        assert_eq!(
            interpolate("${HOST", &env),
            Err(InterpolateError::Malformed)
        );
    }
}
