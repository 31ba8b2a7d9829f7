//! A value the domain's rules refuse, located in the request the way pydantic locates
//! it (`["body", "message_template"]`). The HTTP layer renders it as Prefect's 422.

use serde_json::Value;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {msg}", loc.join("."))]
pub struct Invalid {
    pub loc: Vec<String>,
    pub msg: String,
    /// pydantic's error type, e.g. `value_error`.
    pub kind: String,
    /// The request body to echo, or null.
    pub body: Value,
}

impl Invalid {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str, body: Value) -> Self {
        Invalid {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            msg: msg.into(),
            kind: kind.to_string(),
            body,
        }
    }
}
