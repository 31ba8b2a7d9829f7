//! The API's OpenAPI 3.1 document, made from the operations the route families register
//! (`api_routes`): every path and method served under `/api`, its path parameters, the
//! request and answer bodies' types, and Prefect's error bodies. `stratus::openapi`
//! assembles it from every family, and the root family serves the result at
//! `/api/openapi.json` with Swagger UI and Redoc.

use schemars::generate::{Contract, SchemaSettings};
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

fn operation(op: &Operation, requests: &mut SchemaGenerator, answers: &mut SchemaGenerator) -> Value {
    // Prefect's conventions: reads answer 200, updates and deletes 204 (the few that
    // answer a body, 200), creates 201 (200 when an upsert found the object), actions 200
    // or 204.
    let successes: &[&str] = match (op.method, op.returns) {
        ("GET", _) => &["200"],
        ("PATCH" | "DELETE", None) => &["204"],
        ("PATCH" | "DELETE", Some(_)) => &["200"],
        _ => &["200", "201", "204"],
    };
    let answer = op.returns.map(|schema| schema(answers));
    let mut responses = Map::new();
    for code in successes {
        let response = match (*code, &answer) {
            ("204", _) => response_ref("NoContent"),
            (_, Some(schema)) => json!({
                "description": "Successful response",
                "content": {"application/json": {"schema": schema}}
            }),
            (_, None) => response_ref("Success"),
        };
        responses.insert((*code).into(), response);
    }
    let path_params = path_parameters(&op.path);
    responses.insert("404".into(), response_ref("NotFound"));
    responses.insert("422".into(), response_ref("ValidationError"));
    // Deletes refuse and conflict too (a pool's default queue cannot go; what others
    // refer to may not).
    if op.method != "GET" {
        responses.insert("400".into(), response_ref("BadRequest"));
        responses.insert("409".into(), response_ref("Conflict"));
    }
    responses.insert("503".into(), response_ref("Unavailable"));
    if let Some((code, description)) = op.also {
        responses.insert(
            code.into(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NotFound"}}}}),
        );
    }
    let mut value = json!({
        "tags": [op.tag],
        "summary": summary(op),
        "operationId": operation_id(op),
        "responses": responses,
    });
    if !path_params.is_empty() {
        value["parameters"] = Value::from(path_params);
    }
    if let Some(schema) = (op.body)(requests) {
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
    // Request and response types (schemars, from their serde definitions: how requests are
    // read, how answers are written) land beside Prefect's error bodies in
    // `components/schemas`.
    let mut requests = generator(Contract::Deserialize);
    let mut answers = generator(Contract::Serialize);
    for op in sorted {
        let entry = paths.entry(op.path.clone()).or_insert_with(|| json!({}));
        entry[op.method.to_ascii_lowercase()] = operation(op, &mut requests, &mut answers);
    }
    let mut schemas = requests.take_definitions(true);
    let renamed = merge_response_schemas(&mut schemas, answers.take_definitions(true));
    for methods in paths.values_mut() {
        for op in methods.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            if let Some(answers) = op.get_mut("responses") {
                rename_refs(answers, &renamed);
            }
        }
    }
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
                 client at it with PREFECT_API_URL. Errors have Prefect's bodies: `{{\"detail\": ...}}`. \
                 Every path is served for the default workspace under `/api`, and for any workspace \
                 under `/api/accounts/{{account_id}}/workspaces/{{workspace_id}}`. A server that \
                 requires keys wants `Authorization: Bearer <key>` (PREFECT_API_KEY) on every path \
                 but `/health` and `/version`: 401 without one, 403 for a role that may not, 404 \
                 for another workspace's URL or ids."
            ),
        },
        "servers": [
            {"url": "/api", "description": "The default workspace"},
            {
                "url": "/api/accounts/{account_id}/workspaces/{workspace_id}",
                "description": "A workspace (`stratus workspace list` shows their paths)",
                "variables": {
                    "account_id": {"default": "00000000-0000-4000-8000-000000000001"},
                    "workspace_id": {"default": "00000000-0000-4000-8000-000000000002"}
                }
            }
        ],
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

fn generator(contract: Contract) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = contract;
    settings.into_generator()
}

/// Adds the response types' schemas to the request types'. A type read and written
/// differently (a field with a default is optional in a request, always present in an
/// answer) keeps its name for the request and is `{name}Response` as an answer, and so is
/// any answer that refers to such a type; returns those new names, which the answers'
/// `$ref`s must take.
fn merge_response_schemas(
    schemas: &mut Map<String, Value>,
    answers: Map<String, Value>,
) -> Vec<(String, String)> {
    let mut renamed: Vec<(String, String)> = Vec::new();
    // A rename can make a schema that referred to the renamed one differ in turn.
    loop {
        let mut more = Vec::new();
        for (name, schema) in &answers {
            let Some(request) = schemas.get(name) else {
                continue;
            };
            if renamed.iter().any(|(old, _)| old == name) {
                continue;
            }
            let mut answer = schema.clone();
            rename_refs(&mut answer, &renamed);
            if answer != *request {
                let mut new = format!("{name}Response");
                while schemas.contains_key(&new) || answers.contains_key(&new) {
                    new.push('_');
                }
                more.push((name.clone(), new));
            }
        }
        if more.is_empty() {
            break;
        }
        renamed.extend(more);
    }
    for (name, mut schema) in answers {
        rename_refs(&mut schema, &renamed);
        match renamed.iter().find(|(old, _)| *old == name) {
            Some((_, new)) => {
                schemas.insert(new.clone(), schema);
            }
            None => {
                schemas.entry(name).or_insert(schema);
            }
        }
    }
    renamed
}

/// Points `$ref`s to a renamed schema at its new name.
fn rename_refs(value: &mut Value, renamed: &[(String, String)]) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(target) = v.as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
                        if let Some((_, new)) = renamed.iter().find(|(old, _)| old == target) {
                            *v = Value::from(format!("#/components/schemas/{new}"));
                        }
                    }
                } else {
                    rename_refs(v, renamed);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, renamed)),
        _ => {}
    }
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
            returns: None,
            also: None,
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

    #[test]
    fn an_answer_that_differs_from_its_request_type_gets_its_own_name_and_refs() {
        let refer = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
        let mut schemas = Map::new();
        schemas.insert("Details".into(), json!({"required": []}));
        schemas.insert(
            "State".into(),
            json!({"properties": {"details": refer("Details")}}),
        );
        schemas.insert("Same".into(), json!({"type": "string"}));
        let mut answers = Map::new();
        answers.insert("Details".into(), json!({"required": ["flag"]}));
        answers.insert(
            "State".into(),
            json!({"properties": {"details": refer("Details")}}),
        );
        answers.insert("Same".into(), json!({"type": "string"}));
        answers.insert("Flow".into(), json!({"properties": {"state": refer("State")}}));
        let renamed = merge_response_schemas(&mut schemas, answers);
        assert_eq!(renamed.len(), 2, "{renamed:?}");
        assert_eq!(
            schemas["StateResponse"]["properties"]["details"],
            refer("DetailsResponse")
        );
        assert_eq!(schemas["State"]["properties"]["details"], refer("Details"));
        assert_eq!(schemas["Flow"]["properties"]["state"], refer("StateResponse"));
        assert!(schemas.get("SameResponse").is_none());
    }
}
