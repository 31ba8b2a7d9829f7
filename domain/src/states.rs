//! Run states: the shape Prefect sends and returns for flow runs and task runs alike.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::time::{null_default, ts, ts_opt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Crashed,
    Paused,
    Cancelling,
}

impl StateType {
    pub const ALL: [StateType; 9] = [
        StateType::Scheduled,
        StateType::Pending,
        StateType::Running,
        StateType::Completed,
        StateType::Failed,
        StateType::Cancelled,
        StateType::Crashed,
        StateType::Paused,
        StateType::Cancelling,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Scheduled => "SCHEDULED",
            StateType::Pending => "PENDING",
            StateType::Running => "RUNNING",
            StateType::Completed => "COMPLETED",
            StateType::Failed => "FAILED",
            StateType::Cancelled => "CANCELLED",
            StateType::Crashed => "CRASHED",
            StateType::Paused => "PAUSED",
            StateType::Cancelling => "CANCELLING",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        StateType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The default state name: the capitalised type ("Running", "Cancelling").
    pub fn default_name(self) -> String {
        let upper = self.as_str();
        let mut name = upper[..1].to_string();
        name.push_str(&upper[1..].to_lowercase());
        name
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StateType::Completed | StateType::Failed | StateType::Cancelled | StateType::Crashed
        )
    }
}

/// `state_details`, with every key Prefect 2.20 knows. Unknown keys are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StateDetails {
    #[serde(default)]
    pub flow_run_id: Option<Uuid>,
    #[serde(default)]
    pub task_run_id: Option<Uuid>,
    #[serde(default)]
    pub child_flow_run_id: Option<Uuid>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    pub scheduled_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cache_key: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    pub cache_expiration: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_default")]
    pub untrackable_result: bool,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    pub pause_timeout: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_default")]
    pub pause_reschedule: bool,
    #[serde(default)]
    pub pause_key: Option<String>,
    #[serde(default)]
    pub run_input_keyset: Option<Value>,
    #[serde(default)]
    pub refresh_cache: Option<bool>,
    #[serde(default)]
    pub retriable: Option<bool>,
    #[serde(default)]
    pub transition_id: Option<Uuid>,
    #[serde(default)]
    pub task_parameters_id: Option<Uuid>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// A state as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct State {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: StateType,
    pub name: String,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    pub message: Option<String>,
    pub data: Option<Value>,
    pub state_details: StateDetails,
}

impl State {
    /// A new state of this type with the default name, stamped `now`.
    pub fn new(kind: StateType, now: DateTime<Utc>) -> Self {
        State {
            id: Uuid::now_v7(),
            kind,
            name: kind.default_name(),
            timestamp: now,
            message: None,
            data: None,
            state_details: StateDetails::default(),
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// True when `data` is a persisted result, i.e. present and not `{"type": "unpersisted"}`.
    pub fn has_persisted_data(&self) -> bool {
        match &self.data {
            None | Some(Value::Null) => false,
            Some(data) => data.get("type").and_then(Value::as_str) != Some("unpersisted"),
        }
    }
}

/// `StateCreate` as the client sends it. `id` and `timestamp` are accepted and ignored.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateCreate {
    #[serde(rename = "type")]
    pub kind: StateType,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub state_details: StateDetails,
    #[serde(default)]
    pub timestamp: Option<Value>,
    #[serde(default)]
    pub id: Option<Value>,
}

impl StateCreate {
    /// Turns the request into a state stamped by the server: a fresh id, `now`, the default
    /// name when empty, and `scheduled_time = now` for a SCHEDULED state without one.
    pub fn into_state(self, now: DateTime<Utc>) -> State {
        let mut details = self.state_details;
        if self.kind == StateType::Scheduled && details.scheduled_time.is_none() {
            details.scheduled_time = Some(now);
        }
        State {
            id: Uuid::now_v7(),
            kind: self.kind,
            name: self
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self.kind.default_name()),
            timestamp: now,
            message: self.message,
            data: self.data,
            state_details: details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_capitalised_types() {
        assert_eq!(StateType::Cancelling.default_name(), "Cancelling");
        assert_eq!(StateType::parse("PAUSED"), Some(StateType::Paused));
        assert_eq!(StateType::parse("paused"), None);
    }

    #[test]
    fn state_create_is_stamped_by_the_server() {
        let now = Utc::now();
        let create: StateCreate = serde_json::from_value(serde_json::json!({
            "type": "SCHEDULED", "name": "", "timestamp": "2000-01-01T00:00:00Z",
            "state_details": {"cache_key": null, "untrackable_result": null}
        }))
        .unwrap();
        let state = create.into_state(now);
        assert_eq!(state.name, "Scheduled");
        assert_eq!(state.timestamp, now);
        assert_eq!(state.state_details.scheduled_time, Some(now));
    }

    #[test]
    fn persisted_data_is_anything_but_unpersisted() {
        let mut s = State::new(StateType::Completed, Utc::now());
        assert!(!s.has_persisted_data());
        s.data = Some(serde_json::json!({"type": "unpersisted"}));
        assert!(!s.has_persisted_data());
        s.data = Some(serde_json::json!({"type": "reference", "storage_key": "k"}));
        assert!(s.has_persisted_data());
    }
}
