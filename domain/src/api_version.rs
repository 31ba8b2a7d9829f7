//! The API version a client speaks (`X-PREFECT-API-VERSION`). It lives below the HTTP
//! layer because the orchestration rules depend on it (Prefect 2.20's
//! `src/prefect/server/orchestration/core_policy.py` bypasses some rules for older clients);
//! `app.rs` only reads it from the request.

/// The API version a client asked for, `(major, minor, patch)`; the newest when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32, pub u32);

pub const SERVER_API_VERSION: ApiVersion = ApiVersion(0, 8, 4);
pub const SERVER_API_VERSION_STR: &str = "0.8.4";
/// The Prefect release whose behaviour Stratus follows.
pub const PREFECT_VERSION: &str = "2.20.27";

impl ApiVersion {
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.trim().split('.');
        let v = ApiVersion(
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        );
        parts.next().is_none().then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_parse_and_order() {
        assert_eq!(ApiVersion::parse("0.8.4"), Some(ApiVersion(0, 8, 4)));
        assert!(ApiVersion::parse("abc").is_none());
        assert!(ApiVersion::parse("0.8").is_none());
        assert!(ApiVersion(0, 7, 0) < ApiVersion(0, 8, 0));
    }
}
