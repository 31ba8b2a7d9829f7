//! The API's OpenAPI 3.1 document, made from the operations the route families register
//! (`api_routes`): every path and method served under `/api`, its path parameters, and
//! Prefect's error bodies. `stratus::openapi` assembles it from every family, and the
//! root family serves the result at `/api/openapi.json` with Swagger UI and Redoc.

use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::api_routes::Operation;
use stratus_domain::api_version::{PREFECT_VERSION, SERVER_API_VERSION_STR};

/// `read_by_name` → `Read By Name`; a closure's operation is named after its path.
fn summary(op: &Operation) -> String {
    let name = if op.handler.is_empty() {
        op.path
            .rsplit('/')
            .find(|s| !s.is_empty() && !s.starts_with('{'))
            .unwrap_or("root")
    } else {
        op.handler.as_str()
    };
    name.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// FastAPI's operation ids: `read_flow_flows__id__get`.
fn operation_id(op: &Operation) -> String {
    let path: String = op
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = if op.handler.is_empty() {
        "call"
    } else {
        op.handler.as_str()
    };
    format!("{name}{path}_{}", op.method.to_ascii_lowercase())
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = if name == "id" || name.ends_with("_id") {
                json!({"type": "string", "format": "uuid"})
            } else {
                json!({"type": "string"})
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

fn response_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn error(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn operation(op: &Operation, generator: &mut SchemaGenerator) -> Value {
    let mut responses = Map::new();
    // Prefect's conventions: reads answer 200, updates and deletes 204, creates 201 (200
    // when an upsert found the object), actions 200 or 204.
    let successes: &[&str] = match op.method {
        "GET" => &["200"],
        "PATCH" | "DELETE" => &["204"],
        _ => &["200", "201", "204"],
    };
    for code in successes {
        let name = if *code == "204" { "NoContent" } else { "Success" };
        responses.insert((*code).into(), response_ref(name));
    }
    let path_params = path_parameters(&op.path);
    responses.insert("404".into(), response_ref("NotFound"));
    responses.insert("422".into(), response_ref("ValidationError"));
    if matches!(op.method, "POST" | "PUT" | "PATCH") {
        responses.insert("400".into(), response_ref("BadRequest"));
        responses.insert("409".into(), response_ref("Conflict"));
    }
    responses.insert("503".into(), response_ref("Unavailable"));
    let mut value = json!({
        "tags": [op.tag],
        "summary": summary(op),
        "operationId": operation_id(op),
        "responses": responses,
    });
    if !path_params.is_empty() {
        value["parameters"] = Value::from(path_params);
    }
    if let Some(schema) = (op.body)(generator) {
        value["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema}}
        });
    }
    value
}

/// The document for these operations, with paths as served under `/api`.
pub fn document(operations: &[Operation]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    let mut sorted: Vec<&Operation> = operations.iter().collect();
    sorted.sort_by(|a, b| (&a.path, a.method).cmp(&(&b.path, b.method)));
    // Request bodies' types (schemars, from their serde definitions) land beside Prefect's
    // error bodies in `components/schemas`.
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    for op in sorted {
        let entry = paths.entry(op.path.clone()).or_insert_with(|| json!({}));
        entry[op.method.to_ascii_lowercase()] = operation(op, &mut generator);
    }
    let mut schemas = generator.take_definitions(true);
    if let Value::Object(errors) = error_schemas() {
        for (name, schema) in errors {
            // A request type of the same name would lose its schema to Prefect's error body.
            debug_assert!(!schemas.contains_key(&name), "schema name {name} taken twice");
            schemas.insert(name, schema);
        }
    }
    let mut tags: Vec<&str> = operations.iter().map(|o| o.tag).collect();
    tags.sort_unstable();
    tags.dedup();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Stratus",
            "version": SERVER_API_VERSION_STR,
            "description": format!(
                "A Prefect {PREFECT_VERSION} compatible orchestration server. Point the stock \
                 client at it with PREFECT_API_URL. Errors have Prefect's bodies: `{{\"detail\": ...}}`."
            ),
        },
        "servers": [{"url": "/api"}],
        "tags": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {"responses": {
            "Success": {"description": "Successful response", "content": {"application/json": {"schema": {}}}},
            "NoContent": {"description": "Done; no body"},
            "NotFound": error("Not found", "NotFound"),
            "BadRequest": error("Refused (an empty name, say)", "NotFound"),
            "Conflict": error("Conflict with what exists (a duplicate name, a missing reference)", "NotFound"),
            "ValidationError": error("Invalid request", "HTTPValidationError"),
            "Unavailable": {
                "description": "The database is unavailable for now: try again after `Retry-After` seconds",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Unavailable"}}}
            },
        }, "schemas": schemas},
    })
}

/// Prefect's error bodies.
fn error_schemas() -> Value {
    json!({
        "NotFound": {
            "type": "object",
            "properties": {"detail": {"type": "string"}, "exception_message": {"type": "string"}},
            "anyOf": [{"required": ["detail"]}, {"required": ["exception_message"]}],
        },
        "ValidationError": {
            "type": "object",
            "properties": {
                "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                "msg": {"type": "string"},
                "type": {"type": "string"},
            },
            "required": ["loc", "msg", "type"],
        },
        "HTTPValidationError": {
            "type": "object",
            "properties": {
                "detail": {"anyOf": [
                    {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
                    {"type": "string"},
                ]},
                "exception_message": {"type": "string"},
                "exception_detail": {},
                "request_body": {},
            },
        },
        "Unavailable": {
            "type": "object",
            "properties": {"exception_message": {"type": "string"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &'static str, path: &str, handler: &str) -> Operation {
        Operation {
            method,
            path: path.into(),
            tag: "Flows",
            handler: handler.into(),
            body: |_| None,
        }
    }

    #[test]
    fn operations_become_paths_with_their_parameters() {
        let doc = document(&[
            op("GET", "/flows/name/{name}", "read_by_name"),
            op("DELETE", "/flows/{id}", "delete"),
            op("GET", "/health", ""),
        ]);
        let read = &doc["paths"]["/flows/name/{name}"]["get"];
        assert_eq!(read["summary"], "Read By Name");
        assert_eq!(read["operationId"], "read_by_name_flows_name__name__get");
        assert_eq!(read["parameters"][0]["name"], "name");
        assert_eq!(
            doc["paths"]["/flows/{id}"]["delete"]["parameters"][0]["schema"]["format"],
            "uuid"
        );
        assert_eq!(doc["paths"]["/health"]["get"]["summary"], "Health");
        let deleted = &doc["paths"]["/flows/{id}"]["delete"]["responses"];
        assert!(deleted.get("204").is_some() && deleted.get("200").is_none());
    }
}
