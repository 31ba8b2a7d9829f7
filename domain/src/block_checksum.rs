//! Block schema checksums, computed exactly as the Prefect client computes them
//! (`Block._calculate_schema_checksum`), so the client finds schemas by its own checksum:
//! `sha256` of Python's `json.dumps([[fields], {}], sort_keys=True)` after dropping every
//! `secret_fields` key and the definitions that are blocks or unreferenced.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub fn schema_checksum(fields: &Value) -> String {
    let mut fields = remove_key(fields, "secret_fields");
    if let Some(obj) = fields.as_object_mut() {
        if let Some(definitions) = obj.get("definitions").and_then(Value::as_object).cloned() {
            if !definitions.is_empty() {
                let kept = non_block_definitions(&Value::Object(obj.clone()), &definitions, 32);
                if kept.is_empty() {
                    obj.remove("definitions");
                } else {
                    obj.insert("definitions".into(), Value::Object(kept));
                }
            }
        }
    }
    let mut text = String::new();
    python_dumps(
        &Value::Array(vec![Value::Array(vec![fields]), Value::Object(Map::new())]),
        &mut text,
    );
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn remove_key(value: &Value, key: &str) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != key)
                .map(|(k, v)| (k.clone(), remove_key(v, key)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                out.push(r.to_string());
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// Prefect's `_get_non_block_reference_definitions`: the definitions `object` references
/// (anywhere inside it, its own `definitions` included) that are not blocks, with the
/// non-block definitions those reference in turn.
pub fn non_block_reference_definitions(
    object: &Value,
    definitions: &Map<String, Value>,
) -> Map<String, Value> {
    non_block_definitions(object, definitions, 32)
}

/// The `$ref` strings anywhere inside `value`, in document order.
pub fn reference_strings(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    references(value, &mut out);
    out
}

/// The non-block definitions `object` references, directly or through other definitions.
/// `depth` bounds the walk, since definitions may reference themselves.
fn non_block_definitions(
    object: &Value,
    definitions: &Map<String, Value>,
    depth: usize,
) -> Map<String, Value> {
    if depth == 0 {
        return Map::new();
    }
    let mut refs = Vec::new();
    references(object, &mut refs);
    let mut kept = Map::new();
    for r in refs {
        let key = r.replace("#/definitions/", "");
        if let Some(definition) = definitions.get(&key) {
            if definition.get("block_type_slug").is_none_or(Value::is_null) {
                kept.insert(key, definition.clone());
                for (k, v) in non_block_definitions(definition, definitions, depth - 1) {
                    kept.insert(k, v);
                }
            }
        }
    }
    kept
}

/// Python's `json.dumps(value, sort_keys=True)`: `", "` and `": "` separators, ASCII only.
pub fn python_dumps(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                out.push_str(&python_float(f));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => python_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_dumps(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_string(key, out);
                out.push_str(": ");
                python_dumps(&map[key], out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional for exponents
/// from -4 to 15 (with a trailing `.0` when integral), scientific (`1e-07`, `1.5e+16`)
/// otherwise.
fn python_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if f == 0.0 || (-4..16).contains(&exp) {
        let text = format!("{f}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_checksums_the_prefect_client_computes() {
        let data: Value = serde_json::from_str(include_str!("../../store/data/system_blocks.json")).unwrap();
        let core = data["blocks"].as_array().unwrap();
        let collections = data["collections"].as_array().unwrap();
        assert!(core.len() > 20 && collections.len() > 40);
        for block in core.iter().chain(collections) {
            let expected = block["schema"]["checksum"].as_str().unwrap();
            assert_eq!(
                schema_checksum(&block["schema"]["fields"]),
                expected,
                "{}",
                block["block_type"]["slug"]
            );
        }
    }

    #[test]
    fn dumps_like_python() {
        let mut out = String::new();
        python_dumps(&serde_json::json!({"b": [1, 2.0, "é\n"], "a": null}), &mut out);
        assert_eq!(out, r#"{"a": null, "b": [1, 2.0, "\u00e9\n"]}"#);
        for (f, python) in [
            (0.1, "0.1"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (123456789.125, "123456789.125"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(python_float(f), python, "{f}");
        }
    }
}
