//! Prefect's parameter hydration (`prefect.utilities.schema_tools.hydration`): values that
//! carry `{"__prefect_kind": ...}` are replaced by what they stand for before a schema
//! check. Errors are kept with their path so a form can show them where they belong.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::json_schema::PathPart;

/// What hydrating one document found besides the hydrated value.
#[derive(Debug, Default, PartialEq)]
pub struct Hydrated {
    pub value: Value,
    /// Placeholders that failed, with Prefect's messages.
    pub errors: Vec<(Vec<PathPart>, String)>,
    /// Placeholders that stand for a value only known later (Jinja templates): the schema
    /// does not judge them.
    pub deferred: Vec<Vec<PathPart>>,
}

/// The workspace variables a document names, so they can be read in one query first.
pub fn variable_names(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            if m.get("__prefect_kind").and_then(Value::as_str) == Some("workspace_variable") {
                if let Some(name) = m.get("variable_name").and_then(Value::as_str) {
                    out.push(name.to_string());
                }
            }
            m.values().for_each(|v| variable_names(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| variable_names(v, out)),
        _ => {}
    }
}

/// Hydrates `value` with workspace variables rendered and Jinja left for later, as the
/// UI's validate route does.
pub fn hydrate(value: &Value, variables: &HashMap<String, String>) -> Hydrated {
    let mut out = Hydrated::default();
    let mut path = Vec::new();
    out.value = walk(value, variables, &mut path, &mut out).unwrap_or(Value::Null);
    out
}

/// None means "remove this value" (the `none` kind).
fn walk(
    value: &Value,
    vars: &HashMap<String, String>,
    path: &mut Vec<PathPart>,
    out: &mut Hydrated,
) -> Option<Value> {
    match value {
        Value::Object(m) => {
            if let Some(kind) = m.get("__prefect_kind").and_then(Value::as_str) {
                return placeholder(kind, m, vars, path, out);
            }
            let mut hydrated = Map::new();
            for (k, v) in m {
                path.push(PathPart::Key(k.clone()));
                if let Some(v) = walk(v, vars, path, out) {
                    hydrated.insert(k.clone(), v);
                }
                path.pop();
            }
            Some(Value::Object(hydrated))
        }
        Value::Array(a) => {
            let mut hydrated = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                path.push(PathPart::Index(i));
                if let Some(v) = walk(v, vars, path, out) {
                    hydrated.push(v);
                }
                path.pop();
            }
            Some(Value::Array(hydrated))
        }
        other => Some(other.clone()),
    }
}

fn placeholder(
    kind: &str,
    m: &Map<String, Value>,
    vars: &HashMap<String, String>,
    path: &[PathPart],
    out: &mut Hydrated,
) -> Option<Value> {
    let mut fail = |message: String| {
        out.errors.push((path.to_vec(), message));
        Some(Value::Null)
    };
    match kind {
        "none" => None,
        "json" => match m.get("value") {
            None => fail("Missing 'value' key in __prefect object".into()),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(v) => Some(v),
                Err(e) => fail(format!("Invalid JSON: {e}")),
            },
            Some(other) => Some(other.clone()),
        },
        "workspace_variable" => match m.get("variable_name").and_then(Value::as_str) {
            None => fail("Missing 'variable_name' key in __prefect object".into()),
            Some(name) => match vars.get(name) {
                Some(v) => Some(Value::String(v.clone())),
                None => fail(format!("Variable '{name}' not found.")),
            },
        },
        "jinja" => match m.get("template") {
            None => fail("Missing 'template' key in __prefect object".into()),
            Some(t) => {
                out.deferred.push(path.to_vec());
                Some(t.clone())
            }
        },
        _ => Some(Value::Object(m.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_become_values_or_errors() {
        let vars = HashMap::from([("region".to_string(), "eu".to_string())]);
        let doc = json!({
            "a": {"__prefect_kind": "json", "value": "[1, 2]"},
            "b": {"__prefect_kind": "none"},
            "c": [{"__prefect_kind": "workspace_variable", "variable_name": "region"}],
            "d": {"__prefect_kind": "json", "value": "{oops"},
            "e": {"__prefect_kind": "workspace_variable", "variable_name": "missing"},
            "f": {"__prefect_kind": "jinja", "template": "{{ x }}"}
        });
        let h = hydrate(&doc, &vars);
        assert_eq!(h.value["a"], json!([1, 2]));
        assert!(h.value.get("b").is_none());
        assert_eq!(h.value["c"], json!(["eu"]));
        assert_eq!(h.errors.len(), 2);
        assert!(h.errors[0].1.starts_with("Invalid JSON"));
        assert_eq!(h.errors[1].1, "Variable 'missing' not found.");
        assert_eq!(h.deferred, vec![vec![PathPart::Key("f".into())]]);
        let mut names = Vec::new();
        variable_names(&doc, &mut names);
        assert_eq!(names, vec!["region", "missing"]);
    }
}
