//! Prefect's `{{ name }}` placeholders (`prefect.utilities.templating.apply_values`), as
//! the custom webhook block fills its URL, headers and body with the subject, the body
//! and its secrets.

use serde_json::{Map, Value};

/// A `{{ name }}` in a string: where it is, and the name.
struct Placeholder<'a> {
    start: usize,
    end: usize,
    name: &'a str,
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']' | '$')
}

fn placeholders(template: &str) -> Vec<Placeholder<'_>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = template[from..].find("{{").map(|i| i + from) {
        let inner = &template[open + 2..];
        let trimmed = inner.trim_start();
        let name_len = trimmed.find(|c: char| !is_name_char(c)).unwrap_or(trimmed.len());
        let after = trimmed[name_len..].trim_start();
        if name_len > 0 && after.starts_with("}}") {
            let end = template.len() - after.len() + 2;
            out.push(Placeholder {
                start: open,
                end,
                name: &trimmed[..name_len],
            });
            from = end;
        } else {
            from = open + 2;
        }
    }
    out
}

/// Prefect's other placeholder kinds (blocks, variables, environment variables) are not
/// values a notification has; they are left as written.
fn is_standard(name: &str) -> bool {
    !(name.starts_with("prefect.blocks.") || name.starts_with("prefect.variables.") || name.starts_with('$'))
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first standard placeholder in `template` that `values` has no value for.
pub fn unknown_placeholder(template: &Value, values: &Map<String, Value>) -> Option<String> {
    match template {
        Value::String(s) => placeholders(s)
            .into_iter()
            .find(|p| is_standard(p.name) && !values.contains_key(p.name))
            .map(|p| p.name.to_string()),
        Value::Object(map) => map.values().find_map(|v| unknown_placeholder(v, values)),
        Value::Array(items) => items.iter().find_map(|v| unknown_placeholder(v, values)),
        _ => None,
    }
}

/// Fills the placeholders of `template` from `values`. A string that is one placeholder
/// becomes its value; one whose value is missing yields `None`, and is dropped from the
/// object or list that holds it. In longer strings a missing value becomes "".
pub fn apply(template: &Value, values: &Map<String, Value>) -> Option<Value> {
    match template {
        Value::String(s) => {
            let found = placeholders(s);
            if found.is_empty() {
                return Some(template.clone());
            }
            if let [only] = found.as_slice() {
                if only.start == 0 && only.end == s.len() && is_standard(only.name) {
                    return values.get(only.name).cloned();
                }
            }
            let mut out = String::with_capacity(s.len());
            let mut at = 0;
            for p in &found {
                out.push_str(&s[at..p.start]);
                if is_standard(p.name) {
                    out.push_str(&values.get(p.name).map(as_text).unwrap_or_default());
                } else {
                    out.push_str(&s[p.start..p.end]);
                }
                at = p.end;
            }
            out.push_str(&s[at..]);
            Some(Value::String(out))
        }
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| apply(v, values).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(|v| apply(v, values)).collect(),
        )),
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values() -> Map<String, Value> {
        json!({"subject": "Hi", "body": "Run failed", "token": "s3cret"})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn placeholders_fill_strings_objects_and_lists() {
        let template = json!({
            "text": "{{subject}}: {{ body }}",
            "auth": "Bearer {{token}}",
            "whole": "{{body}}",
            "missing": "{{nope}}",
            "list": ["{{subject}}", "{{nope}}", 3],
            "env": "x {{ $HOME }}",
            "n": 1
        });
        assert_eq!(
            apply(&template, &values()),
            Some(json!({
                "text": "Hi: Run failed",
                "auth": "Bearer s3cret",
                "whole": "Run failed",
                "list": ["Hi", 3],
                "env": "x {{ $HOME }}",
                "n": 1
            }))
        );
        assert_eq!(
            apply(&json!("{{ a b }} {{}}"), &values()),
            Some(json!("{{ a b }} {{}}"))
        );
        assert_eq!(
            apply(&json!("{{nope}} and {{body}}"), &values()),
            Some(json!(" and Run failed"))
        );
    }
}
