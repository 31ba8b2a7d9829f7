//! The block route families: `/block_types`, `/block_schemas`, `/block_documents`,
//! `/block_capabilities` (Prefect 2.20's `src/prefect/server/api/block_capabilities.py`).

mod block_documents;
mod block_schemas;
mod block_types;

use axum::Router;
use serde_json::{json, Value};
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::auth::Caller;
use stratus_http::{ApiError, ApiResult, AppState};
use stratus_store::db::blocks::{BlockDocument, BlockSchema, BlockType};

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Blocks")
        .route(
            "/block_types",
            post(block_types::create)
                .returns::<BlockType>()
                .also_answers("403", "Refused: the object is protected or its name reserved"),
        )
        .route(
            "/block_types/filter",
            post(block_types::filter).returns::<Vec<BlockType>>(),
        )
        .route(
            "/block_types/install_system_block_types",
            post(block_types::install_system).returns::<()>(),
        )
        .route(
            "/block_types/slug/{slug}",
            get(block_types::read_by_slug).returns::<BlockType>(),
        )
        .route(
            "/block_types/slug/{slug}/block_documents",
            get(block_documents::list_by_type_slug).returns::<Vec<BlockDocument>>(),
        )
        .route(
            "/block_types/slug/{slug}/block_documents/name/{name}",
            get(block_documents::read_by_type_slug_and_name).returns::<BlockDocument>(),
        )
        .route(
            "/block_types/{id}",
            get(block_types::read)
                .returns::<BlockType>()
                .patch(block_types::update)
                .delete(block_types::delete)
                .also_answers("403", "Refused: the object is protected or its name reserved"),
        )
        .route(
            "/block_schemas",
            post(block_schemas::create).returns::<BlockSchema>(),
        )
        .route(
            "/block_schemas/filter",
            post(block_schemas::filter).returns::<Vec<BlockSchema>>(),
        )
        .route(
            "/block_schemas/checksum/{checksum}",
            get(block_schemas::read_by_checksum).returns::<BlockSchema>(),
        )
        .route(
            "/block_schemas/{id}",
            get(block_schemas::read)
                .returns::<BlockSchema>()
                .delete(block_schemas::delete)
                .also_answers("403", "Refused: the object is protected or its name reserved"),
        )
        .route(
            "/block_capabilities",
            get(block_schemas::capabilities).returns::<Vec<String>>(),
        )
        .route(
            "/block_documents",
            post(block_documents::create).returns::<BlockDocument>(),
        )
        .route(
            "/block_documents/filter",
            post(block_documents::filter).returns::<Vec<BlockDocument>>(),
        )
        .route(
            "/block_documents/count",
            post(block_documents::count).returns::<i64>(),
        )
        .route(
            "/block_documents/{id}",
            get(block_documents::read)
                .returns::<BlockDocument>()
                .patch(block_documents::update)
                .delete(block_documents::delete),
        )
}

/// Prefect's `^[a-z0-9-]*$` for slugs and document names (the empty string passes).
pub(crate) fn lowercase_dashes(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A 422 for one body field, echoing the body.
pub(crate) fn invalid_field(field: &str, msg: impl Into<String>, kind: &str, body: &Value) -> ApiError {
    ApiError::invalid(&["body", field], msg, kind, body.clone())
}

/// The last value of a query parameter, as Starlette reads it.
pub(crate) fn query_param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The `include_secrets` query parameter, parsed as pydantic parses a boolean; a role
/// that may not see secrets is refused when it asks for them.
pub(crate) fn include_secrets(params: &[(String, String)], caller: &Caller) -> ApiResult<bool> {
    let Some(raw) = query_param(params, "include_secrets") else {
        return Ok(false);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
        "1" | "on" | "t" | "true" | "y" | "yes" => secrets_allowed(caller).map(|()| true),
        _ => Err(ApiError::Validation {
            detail: vec![json!({
                "loc": ["query", "include_secrets"],
                "msg": "value could not be parsed to a boolean",
                "type": "type_error.bool",
            })],
            body: Value::Null,
        }),
    }
}

/// Viewers read blocks with their secrets hidden, never revealed.
pub(crate) fn secrets_allowed(caller: &Caller) -> ApiResult<()> {
    if caller.role.sees_secrets() {
        Ok(())
    } else {
        Err(ApiError::Detail(
            axum::http::StatusCode::FORBIDDEN,
            format!(
                "This API key's role ({}) may not read secret values (include_secrets).",
                caller.role
            ),
        ))
    }
}

/// Pydantic's `HttpUrl`: an http or https URL with a host that has a top-level domain
/// (or is an IP address), at most 2083 characters.
pub(crate) fn check_http_url(field: &str, url: &Option<String>, body: &Value) -> ApiResult<()> {
    let Some(url) = url else { return Ok(()) };
    let fail = |msg: &str, kind: &str| Err(invalid_field(field, msg, kind, body));
    if url.len() > 2083 {
        return fail(
            "ensure this value has at most 2083 characters",
            "value_error.any_str.max_length",
        );
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return fail("invalid or missing URL scheme", "value_error.url.scheme");
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return fail("URL scheme not permitted", "value_error.url.scheme");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default().to_string()
    };
    if host.is_empty() {
        return fail("URL host invalid", "value_error.url.host");
    }
    let is_ip = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
    let has_tld = host.rsplit_once('.').is_some_and(|(name, tld)| {
        !name.is_empty() && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())
    });
    if !is_ip && !has_tld {
        return fail(
            "URL host invalid, top level domain required",
            "value_error.url.host",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_like_pydantic_http_urls() {
        let ok = |u: &str| check_http_url("logo_url", &Some(u.to_string()), &Value::Null).is_ok();
        assert!(ok("https://images.ctfassets.net/logo.png"));
        assert!(ok("http://127.0.0.1:4200/x"));
        assert!(ok("https://user:pw@docs.prefect.io:8080/a?b#c"));
        assert!(!ok("ftp://example.com/x"));
        assert!(!ok("example.com/x"));
        assert!(!ok("http://localhost/x"));
        assert!(!ok("http:///x"));
        assert!(check_http_url("logo_url", &None, &Value::Null).is_ok());
    }

    #[test]
    fn include_secrets_parses_like_a_pydantic_bool() {
        let open = Caller::open();
        let q = |v: &str| include_secrets(&[("include_secrets".to_string(), v.to_string())], &open);
        assert!(q("true").unwrap() && q("Yes").unwrap() && q("1").unwrap());
        assert!(!q("false").unwrap() && !q("off").unwrap());
        assert!(q("maybe").is_err());
        assert!(!include_secrets(&[], &open).unwrap());
    }

    #[test]
    fn slugs_allow_lowercase_digits_and_dashes() {
        assert!(lowercase_dashes("local-file-system-2"));
        assert!(lowercase_dashes(""));
        assert!(!lowercase_dashes("Bad Slug"));
        assert!(!lowercase_dashes("under_score"));
    }
}
