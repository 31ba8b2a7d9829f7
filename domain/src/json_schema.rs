//! JSON Schema validation for run input, deployment parameters, job variables and the UI's
//! `/ui/schemas/validate`, by the `jsonschema` crate, with the wording of Python's
//! `jsonschema` 4.x, which Prefect 2.20 shows its users (`utilities/schema_tools/validation.py`):
//! values quoted as Python prints them, `'x' is a required property`, and so on.

use std::collections::HashSet;

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
    // A reference loop that never descends into the value would recurse forever.
    if loops_in_place(schema) {
        return vec![SchemaError::at_root("$ref", CIRCULAR)];
    }
    let validator = match jsonschema::options().should_validate_formats(false).build(schema) {
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

/// Whether some subschema reaches itself through keywords that apply to the same value
/// (`$ref`, `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`): validating would never end.
fn loops_in_place(root: &Value) -> bool {
    fn in_place<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
        let Some(obj) = node.as_object() else {
            return Vec::new();
        };
        let mut next = Vec::new();
        if let Some(target) = obj
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| root.pointer(pointer))
        {
            next.push(target);
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
        next
    }
    fn visit<'a>(
        root: &'a Value,
        node: &'a Value,
        on_path: &mut Vec<*const Value>,
        done: &mut HashSet<*const Value>,
    ) -> bool {
        let id: *const Value = node;
        if on_path.contains(&id) {
            return true;
        }
        if !done.insert(id) {
            return false;
        }
        on_path.push(id);
        let looped = in_place(root, node)
            .into_iter()
            .any(|next| visit(root, next, on_path, done));
        on_path.pop();
        looped
    }
    // Every subschema is a possible start: walk the whole document.
    fn all<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
        match node {
            Value::Object(m) => {
                out.push(node);
                m.values().for_each(|v| all(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| all(v, out)),
            _ => {}
        }
    }
    let mut nodes = Vec::new();
    all(root, &mut nodes);
    let mut done = HashSet::new();
    nodes
        .into_iter()
        .any(|node| visit(root, node, &mut Vec::new(), &mut done))
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
}
