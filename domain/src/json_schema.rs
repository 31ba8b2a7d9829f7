//! A small JSON Schema checker for run input, deployment parameters, job variables and the
//! UI's `/ui/schemas/validate`. It covers what Prefect's pydantic models produce: `type`,
//! `required`, `properties`, `enum`, `items`, `anyOf`/`oneOf`/`allOf`, `minimum`/`maximum`,
//! and local `$ref`s into `definitions` / `$defs`. Unknown keywords are ignored.

use serde_json::Value;

/// Returns the first violation found, or Ok.
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    match errors(value, schema).into_iter().next() {
        None => Ok(()),
        Some(e) => Err(format!("{} at {}", e.message, e.path_text())),
    }
}

/// A step of the path to a value inside the checked document.
#[derive(Debug, Clone, PartialEq)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

/// One violation, as Python's `jsonschema` reports it: where, which keyword, and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    pub path: Vec<PathPart>,
    pub validator: &'static str,
    pub message: String,
}

impl SchemaError {
    fn path_text(&self) -> String {
        let mut out = String::from("$");
        for p in &self.path {
            match p {
                PathPart::Key(k) => out.push_str(&format!(".{k}")),
                PathPart::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// Every violation found, in document order.
pub fn errors(value: &Value, schema: &Value) -> Vec<SchemaError> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    check(value, schema, schema, &mut path, 0, &mut out);
    out
}

/// A value as Python prints it, the way `jsonschema` messages quote values.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn check(
    value: &Value,
    schema: &Value,
    root: &Value,
    path: &mut Vec<PathPart>,
    depth: usize,
    out: &mut Vec<SchemaError>,
) {
    let mut fail = |path: &Vec<PathPart>, validator: &'static str, message: String| {
        out.push(SchemaError {
            path: path.clone(),
            validator,
            message,
        })
    };
    if depth > 32 {
        fail(
            path,
            "$ref",
            "Invalid schema: Unable to validate schema with circular references.".into(),
        );
        return;
    }
    let Some(obj) = schema.as_object() else {
        return;
    };
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        match resolve(root, reference) {
            Some(target) => check(value, target, root, path, depth + 1, out),
            None => fail(path, "$ref", format!("Unresolvable JSON pointer: {reference:?}")),
        }
        return;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = obj.get(key).and_then(Value::as_array) {
            let matches = options
                .iter()
                .filter(|s| errors_at(value, s, root, depth).is_empty())
                .count();
            if matches == 0 {
                fail(
                    path,
                    if key == "anyOf" { "anyOf" } else { "oneOf" },
                    format!(
                        "{} is not valid under any of the given schemas",
                        python_repr(value)
                    ),
                );
            }
        }
    }
    if let Some(options) = obj.get("allOf").and_then(Value::as_array) {
        for s in options {
            check(value, s, root, path, depth + 1, out);
        }
    }
    check_rest(value, obj, root, path, depth, out)
}

fn errors_at(value: &Value, schema: &Value, root: &Value, depth: usize) -> Vec<SchemaError> {
    let mut out = Vec::new();
    check(value, schema, root, &mut Vec::new(), depth + 1, &mut out);
    out
}

fn check_rest(
    value: &Value,
    obj: &serde_json::Map<String, Value>,
    root: &Value,
    path: &mut Vec<PathPart>,
    depth: usize,
    out: &mut Vec<SchemaError>,
) {
    let mut fail = |validator: &'static str, message: String| {
        out.push(SchemaError {
            path: path.clone(),
            validator,
            message,
        })
    };
    if let Some(kind) = obj.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !kinds.is_empty() && !kinds.iter().any(|k| has_type(value, k)) {
            let expected = if kinds.len() == 1 {
                format!("'{}'", kinds[0])
            } else {
                format!(
                    "[{}]",
                    kinds
                        .iter()
                        .map(|k| format!("'{k}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            fail(
                "type",
                format!("{} is not of type {expected}", python_repr(value)),
            );
            return;
        }
    }
    if let Some(options) = obj.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            fail(
                "enum",
                format!(
                    "{} is not one of {}",
                    python_repr(value),
                    python_repr(&Value::from(options.clone()))
                ),
            );
        }
    }
    if let (Some(n), Some(min)) = (value.as_f64(), obj.get("minimum").and_then(Value::as_f64)) {
        if n < min {
            fail(
                "minimum",
                format!(
                    "{} is less than the minimum of {}",
                    python_repr(value),
                    obj["minimum"]
                ),
            );
        }
    }
    if let (Some(n), Some(max)) = (value.as_f64(), obj.get("maximum").and_then(Value::as_f64)) {
        if n > max {
            fail(
                "maximum",
                format!(
                    "{} is greater than the maximum of {}",
                    python_repr(value),
                    obj["maximum"]
                ),
            );
        }
    }
    if let (Some(map), Some(required)) = (value.as_object(), obj.get("required").and_then(Value::as_array)) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                fail("required", format!("'{key}' is a required property"));
            }
        }
    }
    if let (Some(map), Some(props)) = (
        value.as_object(),
        obj.get("properties").and_then(Value::as_object),
    ) {
        for (key, sub) in props {
            if let Some(v) = map.get(key) {
                path.push(PathPart::Key(key.clone()));
                check(v, sub, root, path, depth + 1, out);
                path.pop();
            }
        }
    }
    if let (Some(items), Some(sub)) = (value.as_array(), obj.get("items")) {
        for (i, v) in items.iter().enumerate() {
            path.push(PathPart::Index(i));
            check(v, sub, root, path, depth + 1, out);
            path.pop();
        }
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_types_required_enums_and_refs() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "count": {"type": "integer"},
                "colour": {"$ref": "#/definitions/Colour"}
            },
            "required": ["name"],
            "definitions": {"Colour": {"enum": ["red", "blue"]}}
        });
        assert!(validate(&json!({"name": "a", "count": 3, "colour": "red"}), &schema).is_ok());
        assert!(validate(&json!({"count": 3}), &schema)
            .unwrap_err()
            .contains("'name' is a required"));
        assert!(validate(&json!({"name": 1}), &schema).is_err());
        assert!(validate(&json!({"name": "a", "count": 1.5}), &schema).is_err());
        assert!(validate(&json!({"name": "a", "colour": "green"}), &schema).is_err());
    }

    #[test]
    fn collects_every_error_with_its_path() {
        let schema = json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "xs": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["n", "m"]
        });
        let found = errors(&json!({"n": "x", "xs": ["a", 2]}), &schema);
        let messages: Vec<&str> = found.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "'m' is a required property",
                "'x' is not of type 'integer'",
                "2 is not of type 'string'"
            ]
        );
        assert_eq!(
            found[2].path,
            vec![PathPart::Key("xs".into()), PathPart::Index(1)]
        );
    }

    #[test]
    fn circular_references_are_reported_not_looped() {
        let schema = json!({"$ref": "#/definitions/A", "definitions": {"A": {"$ref": "#/definitions/A"}}});
        assert!(validate(&json!(1), &schema).unwrap_err().contains("circular"));
    }
}
