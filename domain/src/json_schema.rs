//! JSON Schema validation for run input, deployment parameters, job variables and the UI's
//! `/ui/schemas/validate`, by the `jsonschema` crate, with the wording of Python's
//! `jsonschema` 4.x, which Prefect 2.20 shows its users (`utilities/schema_tools/validation.py`):
//! values quoted as Python prints them, `'x' is a required property`, and so on.

use std::collections::HashMap;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::ValidationError;
use serde_json::Value;

/// Prefect's message for a schema whose references loop without descending into the value
/// (`CircularSchemaRefError`).
const CIRCULAR: &str = "Invalid schema: Unable to validate schema with circular references.";

/// Returns the first violation found, or Ok.
pub fn validate(value: &Value, schema: &Value) -> Result<(), SchemaError> {
    match errors(value, schema).into_iter().next() {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// A step of the path to a value inside the checked document.
#[derive(Debug, Clone, PartialEq)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

/// One violation, as Python's `jsonschema` reports it: where, which keyword, and the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at {}", self.path_text())]
pub struct SchemaError {
    pub path: Vec<PathPart>,
    pub validator: String,
    pub message: String,
}

impl SchemaError {
    /// The path as `$.key[0]`.
    pub fn path_text(&self) -> String {
        let mut out = String::from("$");
        for p in &self.path {
            match p {
                PathPart::Key(k) => out.push_str(&format!(".{k}")),
                PathPart::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn at_root(validator: &str, message: impl Into<String>) -> Self {
        SchemaError {
            path: Vec::new(),
            validator: validator.into(),
            message: message.into(),
        }
    }
}

/// Every violation found.
pub fn errors(value: &Value, schema: &Value) -> Vec<SchemaError> {
    if let Some(refused) = unbounded(schema) {
        return vec![refused];
    }
    let validator = match jsonschema::options()
        .should_validate_formats(false)
        .with_pattern_options(
            jsonschema::PatternOptions::fancy_regex().backtrack_limit(PATTERN_BACKTRACK_LIMIT),
        )
        .build(schema)
    {
        Ok(v) => v,
        Err(e) => return vec![SchemaError::at_root("$schema", format!("Invalid schema: {e}"))],
    };
    validator
        .iter_errors(value)
        .map(|e| SchemaError {
            path: path_of(&e),
            validator: e.kind().keyword().to_string(),
            message: message(&e),
        })
        .collect()
}

fn path_of(e: &ValidationError<'_>) -> Vec<PathPart> {
    e.instance_path()
        .iter()
        .map(|segment| match segment {
            LocationSegment::Property(key) => PathPart::Key(key.into_owned()),
            LocationSegment::Index(i) => PathPart::Index(i),
        })
        .collect()
}

fn quoted(items: impl IntoIterator<Item = String>) -> String {
    items
        .into_iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Python `jsonschema`'s message for the error (`_keywords.py`).
fn message(e: &ValidationError<'_>) -> String {
    let v = python_repr(e.instance());
    let short = |limit: u64, what: &str| {
        if limit == 1 {
            format!("{v} should be non-empty")
        } else {
            format!("{v} is too {what}")
        }
    };
    match e.kind() {
        ValidationErrorKind::Type { kind } => {
            let kinds = match kind {
                TypeKind::Single(t) => quoted([t.to_string()]),
                TypeKind::Multiple(set) => quoted(set.iter().map(|t| t.to_string())),
            };
            format!("{v} is not of type {kinds}")
        }
        ValidationErrorKind::Required { property } => {
            format!("{} is a required property", python_repr(property))
        }
        ValidationErrorKind::Enum { options } => format!("{v} is not one of {}", python_repr(options)),
        ValidationErrorKind::Constant { expected_value } => {
            format!("{} was expected", python_repr(expected_value))
        }
        ValidationErrorKind::Minimum { limit } => format!("{v} is less than the minimum of {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("{v} is greater than the maximum of {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("{v} is less than or equal to the minimum of {limit}")
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("{v} is greater than or equal to the maximum of {limit}")
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            format!("{v} is not valid under any of the given schemas")
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            format!("{v} is valid under more than one of the given schemas")
        }
        ValidationErrorKind::MinLength { limit } | ValidationErrorKind::MinItems { limit } => {
            short(*limit, "short")
        }
        ValidationErrorKind::MaxLength { .. } | ValidationErrorKind::MaxItems { .. } => {
            format!("{v} is too long")
        }
        ValidationErrorKind::MinProperties { limit } => {
            if *limit == 1 {
                format!("{v} should be non-empty")
            } else {
                format!("{v} does not have enough properties")
            }
        }
        ValidationErrorKind::MaxProperties { .. } => format!("{v} has too many properties"),
        ValidationErrorKind::Pattern { pattern } => format!(
            "{v} does not match {}",
            python_repr(&Value::from(pattern.as_str()))
        ),
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let verb = if unexpected.len() == 1 { "was" } else { "were" };
            format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                quoted(unexpected.iter().cloned())
            )
        }
        ValidationErrorKind::UniqueItems => format!("{v} has non-unique elements"),
        ValidationErrorKind::FalseSchema => format!("False schema does not allow {v}"),
        ValidationErrorKind::Contains => format!("{v} does not contain items matching the given schema"),
        ValidationErrorKind::Not { schema } => {
            format!("{v} should not be valid under {}", python_repr(schema))
        }
        _ => e.to_string(),
    }
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

/// Most subschemas one value may be checked against, following `$ref`s and the keywords
/// that apply to the same value. Validation time grows with it, and a schema a few
/// kilobytes long can make it astronomical (thirty `$ref`s, each to an `anyOf` of the
/// previous one twice, check one value 2^30 times).
const MAX_IN_PLACE: usize = 2_000;
/// Longest chain of such references.
const MAX_IN_PLACE_DEPTH: usize = 64;
/// Most objects in a schema: building the validator takes time in proportion (a second
/// for about 100,000 in a debug build). Prefect's parameter schemas have hundreds.
const MAX_SCHEMA_OBJECTS: usize = 20_000;
const TOO_COMPLEX: &str = "Invalid schema: it is too complex to validate (one value would be \
    checked against more than 2000 subschemas, or through more than 64 nested references).";
/// Regular expressions with look-around or back-references backtrack; each match gets at
/// most this many steps (the others run in linear time).
const PATTERN_BACKTRACK_LIMIT: usize = 10_000;

/// Why a schema cannot be validated against in bounded time, if it cannot: a subschema
/// that reaches itself through keywords that apply to the same value (`$ref`, `allOf`,
/// `anyOf`, `oneOf`, `not`, `if`/`then`/`else`: validating would never end), or more
/// such work per value than [`MAX_IN_PLACE`] allows. References are followed as the
/// checker reads them, so those it cannot read (anchors, dynamic and remote references,
/// nested `$id`s that re-root them) are refused.
fn unbounded(root: &Value) -> Option<SchemaError> {
    fn in_place<'a>(root: &'a Value, node: &'a Value) -> Result<Vec<&'a Value>, SchemaError> {
        let Some(obj) = node.as_object() else {
            return Ok(Vec::new());
        };
        let mut next = Vec::new();
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            let target = reference
                .strip_prefix('#')
                .filter(|pointer| pointer.is_empty() || pointer.starts_with('/'))
                .and_then(|pointer| root.pointer(&percent_decoded(pointer)?));
            match target {
                Some(target) => next.push(target),
                None => {
                    return Err(SchemaError::at_root(
                        "$ref",
                        format!("Invalid schema: only references within the schema (#/...) can be followed, not {reference:?}."),
                    ))
                }
            }
        }
        for key in ["$dynamicRef", "$recursiveRef"] {
            if obj.contains_key(key) {
                return Err(SchemaError::at_root(
                    key,
                    format!("Invalid schema: {key} is not supported."),
                ));
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(options) = obj.get(key).and_then(Value::as_array) {
                next.extend(options.iter());
            }
        }
        for key in ["not", "if", "then", "else"] {
            if let Some(sub) = obj.get(key) {
                next.push(sub);
            }
        }
        Ok(next)
    }
    /// How many subschemas checking one value against `node` visits.
    fn size<'a>(
        root: &'a Value,
        node: &'a Value,
        on_path: &mut Vec<*const Value>,
        sizes: &mut HashMap<*const Value, usize>,
    ) -> Result<usize, SchemaError> {
        let id: *const Value = node;
        if on_path.contains(&id) {
            return Err(SchemaError::at_root("$ref", CIRCULAR));
        }
        if let Some(known) = sizes.get(&id) {
            return Ok(*known);
        }
        if on_path.len() >= MAX_IN_PLACE_DEPTH {
            return Err(SchemaError::at_root("$ref", TOO_COMPLEX));
        }
        on_path.push(id);
        let mut total = 1usize;
        for next in in_place(root, node)? {
            total = total.saturating_add(size(root, next, on_path, sizes)?);
            if total > MAX_IN_PLACE {
                return Err(SchemaError::at_root("$ref", TOO_COMPLEX));
            }
        }
        on_path.pop();
        sizes.insert(id, total);
        Ok(total)
    }
    // Every subschema is a possible start: walk the whole document. A nested `$id` would
    // re-root the references under it.
    fn all<'a>(node: &'a Value, id: &str, depth: usize, out: &mut Vec<&'a Value>) -> Result<(), SchemaError> {
        match node {
            Value::Object(m) => {
                if depth > 0 && m.get(id).is_some_and(Value::is_string) {
                    return Err(SchemaError::at_root(
                        id,
                        format!("Invalid schema: {id} is only supported at the root."),
                    ));
                }
                out.push(node);
                m.values().try_for_each(|v| all(v, id, depth + 1, out))
            }
            Value::Array(a) => a.iter().try_for_each(|v| all(v, id, depth + 1, out)),
            _ => Ok(()),
        }
    }
    // Draft 4 names it `id`.
    let draft4 = root
        .get("$schema")
        .and_then(Value::as_str)
        .is_some_and(|s| s.contains("draft-04"));
    let mut nodes = Vec::new();
    if let Err(e) = all(root, if draft4 { "id" } else { "$id" }, 0, &mut nodes) {
        return Some(e);
    }
    if nodes.len() > MAX_SCHEMA_OBJECTS {
        return Some(SchemaError::at_root(
            "$schema",
            format!("Invalid schema: it is too large to validate (more than {MAX_SCHEMA_OBJECTS} objects)."),
        ));
    }
    let mut sizes = HashMap::new();
    nodes
        .into_iter()
        .find_map(|node| size(root, node, &mut Vec::new(), &mut sizes).err())
}

/// A URI fragment's `%XX` escapes decoded (None if they do not make UTF-8).
fn percent_decoded(fragment: &str) -> Option<String> {
    if !fragment.contains('%') {
        return Some(fragment.to_string());
    }
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| fragment.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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
            .message
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
    fn messages_read_as_pythons_jsonschema_writes_them() {
        let cases = [
            (
                json!({"type": ["string", "null"]}),
                json!(1),
                "1 is not of type 'null', 'string'",
            ),
            (
                json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
                json!(true),
                "True is not valid under any of the given schemas",
            ),
            (json!({"minimum": 3}), json!(2), "2 is less than the minimum of 3"),
            (json!({"maxLength": 2}), json!("abc"), "'abc' is too long"),
            (json!({"minItems": 1}), json!([]), "[] should be non-empty"),
            (
                json!({"properties": {}, "additionalProperties": false}),
                json!({"a": 1}),
                "Additional properties are not allowed ('a' was unexpected)",
            ),
            (json!({"const": "x"}), json!("y"), "'x' was expected"),
            (
                json!({"enum": [1, "a", null]}),
                json!(2),
                "2 is not one of [1, 'a', None]",
            ),
        ];
        for (schema, value, message) in cases {
            let found = errors(&value, &schema);
            assert_eq!(found.len(), 1, "{schema}");
            assert_eq!(found[0].message, message);
        }
    }

    #[test]
    fn a_recursive_schema_that_descends_into_the_value_is_not_circular() {
        let schema = json!({
            "$ref": "#/definitions/Node",
            "definitions": {"Node": {"type": "object", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}}
            }}}
        });
        assert!(validate(&json!({"children": [{"children": []}]}), &schema).is_ok());
        let found = errors(&json!({"children": [{"children": 1}]}), &schema);
        assert_eq!(found[0].message, "1 is not of type 'array'");
        assert_eq!(
            found[0].path,
            vec![
                PathPart::Key("children".into()),
                PathPart::Index(0),
                PathPart::Key("children".into())
            ]
        );
    }

    #[test]
    fn circular_references_are_reported_not_looped() {
        let schema = json!({"$ref": "#/definitions/A", "definitions": {"A": {"$ref": "#/definitions/A"}}});
        assert!(validate(&json!(1), &schema)
            .unwrap_err()
            .message
            .contains("circular"));
        let through_all_of = json!({"definitions": {"A": {"allOf": [{"$ref": "#/definitions/B"}]}, "B": {"$ref": "#/definitions/A"}},
                                    "properties": {"x": {"$ref": "#/definitions/A"}}});
        assert!(validate(&json!({"x": 1}), &through_all_of)
            .unwrap_err()
            .message
            .contains("circular"));
    }

    /// Thirty references, each to an `anyOf` of the one before twice: a few kilobytes that
    /// would check one value 2^30 times.
    fn exponential(levels: usize) -> Value {
        let mut defs = serde_json::Map::new();
        defs.insert("a0".into(), json!({"type": "string"}));
        for i in 1..=levels {
            let previous = json!({"$ref": format!("#/definitions/a{}", i - 1)});
            defs.insert(
                format!("a{i}"),
                json!({"anyOf": [previous, {"allOf": [previous]}]}),
            );
        }
        json!({"definitions": defs, "properties": {"x": {"$ref": format!("#/definitions/a{levels}")}}})
    }

    #[test]
    fn a_schema_too_costly_to_validate_is_refused_at_once() {
        let started = std::time::Instant::now();
        let found = validate(&json!({"x": 1}), &exponential(30)).unwrap_err();
        assert!(found.message.contains("too complex"), "{found}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Eight levels (about 1,300 subschemas for one value) are still checked.
        assert_eq!(
            validate(&json!({"x": 1}), &exponential(8)).unwrap_err().message,
            "1 is not valid under any of the given schemas"
        );
        // A chain of references longer than 64.
        let mut defs = serde_json::Map::new();
        defs.insert("c0".into(), json!({"type": "string"}));
        for i in 1..=100 {
            defs.insert(
                format!("c{i}"),
                json!({"$ref": format!("#/definitions/c{}", i - 1)}),
            );
        }
        let chain = json!({"definitions": defs, "$ref": "#/definitions/c100"});
        assert!(validate(&json!(1), &chain)
            .unwrap_err()
            .message
            .contains("too complex"));
        // Too many objects to build a validator from in good time.
        let wide: serde_json::Map<String, Value> = (0..20_001)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        let found = validate(&json!({}), &json!({"properties": wide})).unwrap_err();
        assert!(found.message.contains("too large"), "{found}");
    }

    #[test]
    fn references_the_checker_cannot_follow_are_refused() {
        for schema in [
            json!({"$ref": "#node", "$defs": {"n": {"$anchor": "node"}}}),
            json!({"$ref": "https://example.com/schema.json"}),
            json!({"$dynamicRef": "#meta"}),
            json!({"properties": {"x": {"$id": "https://example.com/x", "$ref": "#/a"}}}),
        ] {
            let found = validate(&json!(1), &schema).unwrap_err();
            assert!(found.message.starts_with("Invalid schema"), "{schema}: {found}");
        }
        // Percent-escaped pointers are followed.
        let spaced =
            json!({"$ref": "#/definitions/My%20Model", "definitions": {"My Model": {"type": "string"}}});
        assert_eq!(
            validate(&json!(1), &spaced).unwrap_err().message,
            "1 is not of type 'string'"
        );
        assert!(validate(&json!("x"), &spaced).is_ok());
    }

    #[test]
    fn look_around_patterns_give_up_instead_of_backtracking_for_long() {
        let schema = json!({"type": "string", "pattern": "^(\\w+\\s?)*(?<=x)$"});
        let started = std::time::Instant::now();
        let found = validate(&json!(format!("{}!", "a".repeat(5000))), &schema);
        assert!(found.is_err());
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert!(validate(&json!("abc x"), &schema).is_ok());
    }
}
