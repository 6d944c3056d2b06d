//! Who may call the admin endpoint's mutating routes (`POST /reload`, `POST /histograms/dump`). Pure: headers in,
//! a decision out.
//!
//! A browser lets any web page post a form to `http://127.0.0.1:22222/reload`; it cannot read the answer, but the
//! reload happens. Browsers say where a request comes from (`Origin`, `Sec-Fetch-Site`); tools such as curl send
//! neither. So a request that carries a cross-site `Origin` or `Sec-Fetch-Site` is refused (403), and one that
//! carries none is a local tool's. `proxy.admin_token`, when set, is required on top (401 without it), which also
//! covers local processes and DNS rebinding, which the origin check cannot tell from a same-origin page.

/// The request headers that matter here (`None`: absent).
#[derive(Default, Clone, Copy)]
pub struct Headers<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403: a browser request from another site.
    Forbidden(String),
    /// 401: the admin token is missing or wrong.
    Unauthorized(String),
}

/// Whether a mutating request may proceed; `token` is `proxy.admin_token`.
pub fn check_mutating(h: &Headers<'_>, token: Option<&str>) -> Result<(), Refusal> {
    if let Some(site) = h.sec_fetch_site {
        let site = site.trim();
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Err(Refusal::Forbidden(format!(
                "cross-site request refused: Sec-Fetch-Site is {site:?}; only same-origin requests and tools may change the proxy"
            )));
        }
    }
    if let Some(origin) = h.origin {
        let origin = origin.trim();
        let authority = origin_authority(origin);
        let same = match (authority, h.host) {
            (Some(a), Some(host)) => a.eq_ignore_ascii_case(host.trim()),
            _ => false,
        };
        if !same {
            return Err(Refusal::Forbidden(format!(
                "cross-origin request refused: Origin {origin:?} is not this endpoint (Host {:?})",
                h.host.unwrap_or("")
            )));
        }
    }
    if let Some(token) = token {
        let Some(given) = h.authorization.and_then(bearer) else {
            return Err(Refusal::Unauthorized(
                "this endpoint requires the admin token: send Authorization: Bearer <proxy.admin_token>".into(),
            ));
        };
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Err(Refusal::Unauthorized("wrong admin token".into()));
        }
    }
    Ok(())
}

/// `host[:port]` of an origin (`scheme://host[:port]`); `None` for `null` or anything else that is not one.
fn origin_authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    (!authority.is_empty() && !authority.contains('/')).then_some(authority)
}

/// The credentials of `Bearer <credentials>` (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Compares without stopping at the first difference, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(origin: Option<&'a str>, site: Option<&'a str>, auth: Option<&'a str>) -> Headers<'a> {
        Headers { host: Some("127.0.0.1:22222"), origin, sec_fetch_site: site, authorization: auth }
    }

    fn forbidden(r: Result<(), Refusal>) -> String {
        match r {
            Err(Refusal::Forbidden(why)) => why,
            other => panic!("expected 403, got {other:?}"),
        }
    }

    #[test]
    fn tools_without_browser_headers_pass_without_a_token() {
        assert_eq!(check_mutating(&h(None, None, None), None), Ok(()));
        assert_eq!(check_mutating(&Headers::default(), None), Ok(()));
    }

    #[test]
    fn same_origin_browser_requests_pass() {
        let ok = h(Some("http://127.0.0.1:22222"), Some("same-origin"), None);
        assert_eq!(check_mutating(&ok, None), Ok(()));
        assert_eq!(check_mutating(&h(None, Some("none"), None), None), Ok(()));
        assert_eq!(check_mutating(&h(Some("HTTP://127.0.0.1:22222/"), None, None), None), Ok(()));
    }

    #[test]
    fn cross_site_requests_are_refused_saying_why() {
        let why = forbidden(check_mutating(&h(Some("https://evil.example"), None, None), None));
        assert!(why.contains("evil.example") && why.contains("127.0.0.1:22222"), "{why}");
        forbidden(check_mutating(&h(Some("null"), None, None), None));
        forbidden(check_mutating(&h(Some("http://127.0.0.1:9999"), None, None), None));
        let why = forbidden(check_mutating(&h(None, Some("cross-site"), None), None));
        assert!(why.contains("cross-site"), "{why}");
        forbidden(check_mutating(&h(None, Some("same-site"), None), None));
        let no_host = Headers { origin: Some("http://127.0.0.1:22222"), ..Default::default() };
        forbidden(check_mutating(&no_host, None));
        // A valid token does not make a cross-site request acceptable.
        forbidden(check_mutating(&h(Some("https://evil.example"), None, Some("Bearer s3cret")), Some("s3cret")));
    }

    #[test]
    fn the_token_is_required_when_set() {
        let t = Some("s3cret");
        assert!(matches!(check_mutating(&h(None, None, None), t), Err(Refusal::Unauthorized(_))));
        assert_eq!(
            check_mutating(&h(None, None, Some("Bearer wrong!")), t),
            Err(Refusal::Unauthorized("wrong admin token".into()))
        );
        assert!(matches!(check_mutating(&h(None, None, Some("Basic czNjcmV0")), t), Err(Refusal::Unauthorized(_))));
        assert!(matches!(check_mutating(&h(None, None, Some("Bearer s3cre")), t), Err(Refusal::Unauthorized(_))));
        assert_eq!(check_mutating(&h(None, None, Some("Bearer s3cret")), t), Ok(()));
        assert_eq!(check_mutating(&h(None, None, Some("bearer  s3cret ")), t), Ok(()));
    }
}
