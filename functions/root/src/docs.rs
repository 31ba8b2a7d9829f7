//! The API's contract and its documentation pages, as Prefect serves them under `/api`:
//! the OpenAPI document at `/openapi.json`, Swagger UI at `/docs` and Redoc at `/redoc`.
//! Their scripts and styles are compiled into the binary, gzipped (build.rs), so the pages
//! work offline and the package stays small.

use std::io::Read;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use stratus_http::api_routes::{get, ApiRoutes};

/// `stratus::openapi()`, written out (a test keeps the two equal): the root function
/// serves the whole API's document without linking every family.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

const SWAGGER_UI_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js.gz"));
const SWAGGER_UI_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css.gz"));
const REDOC_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/redoc.standalone.js.gz"));

const SWAGGER_PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Stratus API - Swagger UI</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis],
});
</script>
</body>
</html>
"##;

const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Stratus API - ReDoc</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/api/openapi.json"></redoc>
<script src="/api/redoc/redoc.standalone.js"></script>
</body>
</html>
"#;

/// A gzipped asset: as it is to a client that accepts gzip (every browser), else inflated.
fn asset(headers: &HeaderMap, content_type: &'static str, gzipped: &'static [u8]) -> Response {
    let cache = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        ),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
    ];
    if accepts_gzip(headers) {
        let encoding = [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))];
        return (cache, encoding, gzipped).into_response();
    }
    let mut body = Vec::new();
    match flate2::read::GzDecoder::new(gzipped).read_to_end(&mut body) {
        Ok(_) => (cache, body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a documentation asset does not inflate");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Whether `Accept-Encoding` allows gzip (by name or `*`, with a q-value above zero).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

pub fn routes() -> ApiRoutes {
    ApiRoutes::new("Root")
        .undocumented(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .undocumented("/docs", get(|| async { Html(SWAGGER_PAGE) }))
        .undocumented(
            "/docs/swagger-ui-bundle.js",
            get(|headers: HeaderMap| async move { asset(&headers, "text/javascript", SWAGGER_UI_JS) }),
        )
        .undocumented(
            "/docs/swagger-ui.css",
            get(|headers: HeaderMap| async move { asset(&headers, "text/css", SWAGGER_UI_CSS) }),
        )
        .undocumented("/redoc", get(|| async { Html(REDOC_PAGE) }))
        .undocumented(
            "/redoc/redoc.standalone.js",
            get(|headers: HeaderMap| async move { asset(&headers, "text/javascript", REDOC_JS) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_is_sent_only_where_it_is_accepted() {
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzip;q=0, br"));
        assert!(!accepts("deflate, br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
