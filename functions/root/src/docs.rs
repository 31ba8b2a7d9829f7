//! The API's contract and its documentation pages, as Prefect serves them under `/api`:
//! the OpenAPI document at `/openapi.json`, Swagger UI at `/docs` and Redoc at `/redoc`.
//! Their scripts and styles are compiled into the binary, so the pages work offline.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use stratus_http::api_routes::{get, ApiRoutes};

/// `stratus::openapi()`, written out (a test keeps the two equal): the root function
/// serves the whole API's document without linking every family.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

const SWAGGER_UI_JS: &str = include_str!("../assets/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str = include_str!("../assets/swagger-ui.css");
const REDOC_JS: &str = include_str!("../assets/redoc.standalone.js");

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

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
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
            get(|| async { asset("text/javascript", SWAGGER_UI_JS) }),
        )
        .undocumented(
            "/docs/swagger-ui.css",
            get(|| async { asset("text/css", SWAGGER_UI_CSS) }),
        )
        .undocumented("/redoc", get(|| async { Html(REDOC_PAGE) }))
        .undocumented(
            "/redoc/redoc.standalone.js",
            get(|| async { asset("text/javascript", REDOC_JS) }),
        )
}
