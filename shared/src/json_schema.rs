//! A small JSON Schema checker for run input (`/flow_runs/{id}/resume`). It covers what
//! Prefect's `RunInput` models produce: `type`, `required`, `properties`, `enum`, `items`,
//! `anyOf`, and local `$ref`s into `definitions` / `$defs`. Unknown keywords are ignored.

use serde_json::Value;

/// Returns the first violation found, or Ok.
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    check(value, schema, schema, "$", 0)
}

fn check(value: &Value, schema: &Value, root: &Value, path: &str, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return Err("Invalid schema: Unable to validate schema with circular references.".into());
    }
    let Some(obj) = schema.as_object() else {
        return Ok(());
    };
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        let target = resolve(root, reference).ok_or_else(|| format!("unresolvable reference {reference}"))?;
        return check(value, target, root, path, depth + 1);
    }
    if let Some(options) = obj.get("anyOf").and_then(Value::as_array) {
        if !options
            .iter()
            .any(|s| check(value, s, root, path, depth + 1).is_ok())
        {
            return Err(format!(
                "{value} is not valid under any of the given schemas at {path}"
            ));
        }
    }
    if let Some(kind) = obj.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !kinds.is_empty() && !kinds.iter().any(|k| has_type(value, k)) {
            return Err(format!(
                "{value} is not of type '{}' at {path}",
                kinds.join("', '")
            ));
        }
    }
    if let Some(options) = obj.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            return Err(format!(
                "{value} is not one of {} at {path}",
                Value::from(options.clone())
            ));
        }
    }
    if let (Some(map), Some(required)) = (value.as_object(), obj.get("required").and_then(Value::as_array)) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                return Err(format!("'{key}' is a required property at {path}"));
            }
        }
    }
    if let (Some(map), Some(props)) = (
        value.as_object(),
        obj.get("properties").and_then(Value::as_object),
    ) {
        for (key, sub) in props {
            if let Some(v) = map.get(key) {
                check(v, sub, root, &format!("{path}.{key}"), depth + 1)?;
            }
        }
    }
    if let (Some(items), Some(sub)) = (value.as_array(), obj.get("items")) {
        for (i, v) in items.iter().enumerate() {
            check(v, sub, root, &format!("{path}[{i}]"), depth + 1)?;
        }
    }
    Ok(())
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
    fn circular_references_are_reported_not_looped() {
        let schema = json!({"$ref": "#/definitions/A", "definitions": {"A": {"$ref": "#/definitions/A"}}});
        assert!(validate(&json!(1), &schema).unwrap_err().contains("circular"));
    }
}
