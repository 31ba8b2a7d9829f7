//! Secret fields of block documents, handled as Prefect handles them.
//!
//! Prefect flattens a document's data into paths (recursing into non-empty objects; empty
//! objects, lists and scalars are leaves) and, for each entry of the schema's
//! `secret_fields` (dotted paths, possibly with `*`):
//! - a path that names a non-null leaf is obfuscated;
//! - otherwise, when the path has a `*`, every leaf whose path starts with the part before
//!   the first `*` is obfuscated (nulls too).
//!
//! On update, a secret given back as the obfuscated marker keeps its stored value, so
//! posting back a document read without secrets does not overwrite them.

use serde_json::{Map, Value};

/// What a secret looks like when it is not asked for (Prefect's `obfuscate` marker, `src/prefect/utilities/names.py`).
pub const OBFUSCATED_SECRET: &str = "**********";

/// The `secret_fields` of a schema's fields.
pub fn secret_fields(schema_fields: &Value) -> Vec<String> {
    schema_fields
        .get("secret_fields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn is_leaf(value: &Value) -> bool {
    !matches!(value, Value::Object(map) if !map.is_empty())
}

/// The value at `path` if it is a leaf of the flattened data.
fn leaf_mut<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    let mut current = value;
    for segment in path {
        match current {
            Value::Object(map) if !map.is_empty() => current = map.get_mut(*segment)?,
            _ => return None,
        }
    }
    is_leaf(current).then_some(current)
}

fn leaf<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for segment in path {
        match current {
            Value::Object(map) if !map.is_empty() => current = map.get(*segment)?,
            _ => return None,
        }
    }
    is_leaf(current).then_some(current)
}

/// The node under which every leaf matches a wildcard path: the part before the first `*`.
/// A leaf met before the prefix ends has a shorter path and does not match.
fn prefix_node_mut<'a>(value: &'a mut Value, prefix: &[&str]) -> Option<&'a mut Value> {
    let mut current = value;
    for segment in prefix {
        match current {
            Value::Object(map) if !map.is_empty() => current = map.get_mut(*segment)?,
            _ => return None,
        }
    }
    Some(current)
}

/// Calls `f` with the path (relative to `value`) and value of every leaf under `value`.
fn for_each_leaf(value: &mut Value, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &mut Value)) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map.iter_mut() {
                path.push(key.clone());
                for_each_leaf(child, path, f);
                path.pop();
            }
        }
        leaf => f(path, leaf),
    }
}

/// Replaces the secrets in `data` with [`OBFUSCATED_SECRET`].
pub fn obfuscate(data: &mut Value, secret_fields: &[String]) {
    for field in secret_fields {
        let path: Vec<&str> = field.split('.').collect();
        if let Some(v) = leaf_mut(data, &path).filter(|v| !v.is_null()) {
            *v = Value::String(OBFUSCATED_SECRET.into());
        } else if let Some(star) = path.iter().position(|s| *s == "*") {
            if let Some(node) = prefix_node_mut(data, &path[..star]) {
                for_each_leaf(node, &mut Vec::new(), &mut |_, v| {
                    *v = Value::String(OBFUSCATED_SECRET.into());
                });
            }
        }
    }
}

fn is_marker(value: &Value) -> bool {
    value.as_str() == Some(OBFUSCATED_SECRET)
}

/// In update data, puts back the stored value of every secret given as the marker.
pub fn restore(update: &mut Map<String, Value>, current: &Map<String, Value>, secret_fields: &[String]) {
    let current = Value::Object(current.clone());
    let mut data = Value::Object(std::mem::take(update));
    for field in secret_fields {
        let path: Vec<&str> = field.split('.').collect();
        if let Some(stored) = leaf(&current, &path).filter(|v| !v.is_null()) {
            if let Some(given) = leaf_mut(&mut data, &path).filter(|v| is_marker(v)) {
                *given = stored.clone();
            }
        } else if let Some(star) = path.iter().position(|s| *s == "*") {
            let prefix = &path[..star];
            let Some(stored_node) = leaf_or_node(&current, prefix) else {
                continue;
            };
            if let Some(node) = prefix_node_mut(&mut data, prefix) {
                for_each_leaf(node, &mut Vec::new(), &mut |rest, v| {
                    if is_marker(v) {
                        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                        if let Some(stored) = leaf(stored_node, &rest) {
                            *v = stored.clone();
                        }
                    }
                });
            }
        }
    }
    if let Value::Object(map) = data {
        *update = map;
    }
}

fn leaf_or_node<'a>(value: &'a Value, prefix: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for segment in prefix {
        match current {
            Value::Object(map) if !map.is_empty() => current = map.get(*segment)?,
            _ => return None,
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secrets_are_obfuscated_by_path_and_wildcard() {
        let mut data = json!({
            "value": "s3cret", "none": null, "creds": {"token": "t", "user": "u"},
            "many": {"a": {"key": "1", "other": 2}, "b": {"key": null}}, "dict": {"x": {"y": "z"}},
            "n": 5
        });
        obfuscate(
            &mut data,
            &fields(&[
                "value",
                "none",
                "creds.token",
                "many.*.key",
                "absent",
                "dict",
                "n",
            ]),
        );
        assert_eq!(data["value"], OBFUSCATED_SECRET);
        assert_eq!(data["none"], Value::Null, "a null secret stays null");
        assert_eq!(data["creds"]["token"], OBFUSCATED_SECRET);
        assert_eq!(data["creds"]["user"], "u");
        // The wildcard hides every leaf under `many`, as Prefect's prefix match does.
        assert_eq!(data["many"]["a"]["key"], OBFUSCATED_SECRET);
        assert_eq!(data["many"]["a"]["other"], OBFUSCATED_SECRET);
        assert_eq!(data["many"]["b"]["key"], OBFUSCATED_SECRET);
        // A path naming a non-empty object is not a leaf, and has no wildcard.
        assert_eq!(data["dict"], json!({"x": {"y": "z"}}));
        assert_eq!(data["n"], OBFUSCATED_SECRET);
        assert!(data.get("absent").is_none());

        let mut all = json!({"a": {"b": 1}, "c": []});
        obfuscate(&mut all, &fields(&["*"]));
        assert_eq!(
            all,
            json!({"a": {"b": OBFUSCATED_SECRET}, "c": OBFUSCATED_SECRET})
        );
    }

    #[test]
    fn obfuscated_secrets_given_back_keep_their_stored_values() {
        let current = json!({"password": "p", "nested": {"token": "t"}, "wild": {"a": "1", "b": "2"}});
        let mut update = json!({
            "password": OBFUSCATED_SECRET, "nested": {"token": "new"},
            "wild": {"a": OBFUSCATED_SECRET, "b": "3", "c": OBFUSCATED_SECRET}
        });
        let update_map = update.as_object_mut().unwrap();
        restore(
            update_map,
            current.as_object().unwrap(),
            &fields(&["password", "nested.token", "wild.*"]),
        );
        assert_eq!(
            Value::Object(update_map.clone()),
            json!({"password": "p", "nested": {"token": "new"}, "wild": {"a": "1", "b": "3", "c": OBFUSCATED_SECRET}})
        );
    }
}
