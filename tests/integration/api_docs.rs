//! The API's contract: `/api/openapi.json` is the document the code makes from every
//! family's routes, every operation it lists is served, and the documentation pages work
//! with nothing fetched from elsewhere.

use crate::common;

use common::TestApp;
use http::Method;
use serde_json::{json, Value};

const COMMITTED: &str = "functions/root/openapi.json";

#[test]
fn the_served_document_is_the_one_the_code_makes() {
    let made = stratus::openapi();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    if std::env::var_os("STRATUS_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&made).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    // Prefect's error bodies keep their names: no request type's schema took one.
    let schemas = &made["components"]["schemas"];
    assert!(schemas["ValidationError"]["properties"]["loc"].is_object());
    assert!(schemas["NotFound"]["anyOf"].is_array());
    assert!(schemas["HTTPValidationError"]["properties"]["detail"].is_object());
    // Request bodies are described by their types.
    assert_eq!(
        made["paths"]["/flows"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/FlowCreate"
    );
    assert_eq!(schemas["FlowCreate"]["required"], json!(["name"]));
    let served: Value = serde_json::from_str(stratus_root::docs::OPENAPI_JSON).unwrap();
    assert!(
        served == made,
        "{COMMITTED} is not the document the routes make; regenerate it with \
         `STRATUS_BLESS=1 cargo nextest run -E 'test(the_served_document)'` and rebuild"
    );
}

/// A request path for a documented one: ids where ids go, a word elsewhere.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if name == "id" || name.ends_with("_id") => uuid::Uuid::nil().to_string(),
            Some(_) => "x".to_string(),
            None => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::spawn().await;
    let ops = stratus::api().operations().to_vec();
    assert!(ops.len() > 150, "only {} operations", ops.len());
    let doc = stratus::openapi();
    let mut missing = Vec::new();
    // The admin routes that empty or drop the database go last.
    let (admin, others): (Vec<_>, Vec<_>) = ops.iter().partition(|o| o.path.starts_with("/admin/database"));
    for op in others.into_iter().chain(admin) {
        assert!(
            doc["paths"][&op.path][op.method.to_ascii_lowercase()].is_object(),
            "{} {} is served but not in the document",
            op.method,
            op.path
        );
        let method = Method::from_bytes(op.method.as_bytes()).unwrap();
        let body = (op.method != "GET" && op.method != "DELETE").then(|| json!({}));
        let res = app
            .request(method, &format!("/api{}", concrete(&op.path)), body)
            .await;
        let unrouted = res.status == 405 || (res.status == 404 && res.body == json!({"detail": "Not Found"}));
        if unrouted {
            missing.push(format!("{} {}: {}", op.method, op.path, res.status));
        }
    }
    assert!(
        missing.is_empty(),
        "documented but not served:\n{}",
        missing.join("\n")
    );
    // And the check can fail: a path no family serves is unrouted.
    let res = app.request(Method::GET, "/api/no_such_family", None).await;
    assert_eq!(res.body, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn the_documentation_pages_are_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    assert!(doc.body["paths"]["/flow_runs/{id}/set_state"]["post"].is_object());
    for (page, assets) in [
        (
            "/api/docs",
            vec!["/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css"],
        ),
        ("/api/redoc", vec!["/api/redoc/redoc.standalone.js"]),
    ] {
        let res = app.get(page).await;
        assert_eq!(res.status, 200, "{page}");
        assert!(res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(res.text.contains("/api/openapi.json"), "{page}");
        assert!(
            !res.text.contains("https://"),
            "{page} must not fetch from elsewhere"
        );
        for asset in assets {
            assert!(res.text.contains(asset), "{page} links {asset}");
            let res = app.get(asset).await;
            assert_eq!(res.status, 200, "{asset}");
            assert!(res.text.len() > 100_000, "{asset}");
            assert!(res.headers.get("content-encoding").is_none(), "{asset}");
            // Browsers get it gzipped, as the binary holds it.
            let gz = app
                .raw(Method::GET, asset, None, &[("accept-encoding", "gzip, br")])
                .await;
            assert_eq!(gz.headers["content-encoding"], "gzip", "{asset}");
            assert!(gz.bytes.len() < res.bytes.len() / 2, "{asset}");
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.bytes[..]), &mut inflated)
                .unwrap();
            assert_eq!(inflated, res.bytes, "{asset}");
        }
    }
}

#[tokio::test]
async fn templates_are_validated_as_prefect_validates_automation_templates() {
    let app = TestApp::spawn().await;
    let ok = app
        .post(
            "/api/templates/validate",
            json!("Flow {{ flow.name }} is {{ flow_run.state.name }}"),
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    let source = "line one\n{% if x %}\nno end";
    let bad = app.post("/api/templates/validate", json!(source)).await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.body["error"]["source"], source);
    assert!(bad.body["error"]["line"].as_u64().unwrap() >= 2, "{}", bad.text);
    let nested = "{% for a in x %}{% for b in a %}{% for c in b %}{% endfor %}{% endfor %}{% endfor %}";
    let deep = app.post("/api/templates/validate", json!(nested)).await;
    assert_eq!(deep.status, 422);
    assert!(deep.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nested for loops"));
    // Found by probing: a template nests as deep as it is long, and a 400 KB attribute
    // chain overflowed the stack and took the process down. Up to the bound it is checked on
    // a thread with room for it; past it, refused.
    let chain = format!("{{{{ x{} }}}}", ".a".repeat(49_990));
    let res = app.post("/api/templates/validate", json!(chain)).await;
    assert_eq!(res.status, 204, "{}", &res.text[..200.min(res.text.len())]);
    let longer = format!("{{{{ x{} }}}}", ".a".repeat(200_000));
    let res = app.post("/api/templates/validate", json!(longer)).await;
    assert_eq!(res.status, 422);
    assert!(res.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too long"));
}

#[tokio::test]
async fn events_and_automations_answer_as_a_default_prefect_server() {
    let app = TestApp::spawn().await;
    let events = app.post("/api/events/filter", json!({})).await;
    assert_eq!(events.status, 404);
    assert_eq!(
        events.body["detail"],
        "Events are not enabled. Please enable the PREFECT_EXPERIMENTAL_EVENTS setting."
    );
    let automations = app.get(&format!("/api/automations/{}", uuid::Uuid::nil())).await;
    assert_eq!(automations.status, 404);
    assert_eq!(
        automations.body["detail"],
        "Automations are not enabled. Please enable the PREFECT_EXPERIMENTAL_EVENTS and \
         PREFECT_API_SERVICES_TRIGGERS_ENABLED settings."
    );
}
