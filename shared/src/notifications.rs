//! Flow run notifications: the message a policy's template makes of a state change, and
//! the publishing of queued notifications to the notifications queue (after the commit
//! that queued them, and from the scheduler's sweep). The notifier function receives
//! them from that queue and sends them through the policy's block.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::db::notifications::{self, Notification};
use crate::error::{ApiError, ApiResult};
use crate::outbox::Published;
use crate::queue::{MessageQueue, NOTIFICATIONS_QUEUE};

/// The subject Prefect's notifications carry.
pub const SUBJECT: &str = "Prefect flow run notification";

/// Prefect's message when a policy has no template of its own.
pub const DEFAULT_TEMPLATE: &str = "\nFlow run {flow_name}/{flow_run_name} entered state `{flow_run_state_name}` at {flow_run_state_timestamp}.\n\nFlow ID: {flow_id}\nFlow run ID: {flow_run_id}\nFlow run URL: {flow_run_url}\nState message: {flow_run_state_message}\n";

/// The placeholders a template may use.
pub const TEMPLATE_KEYS: [&str; 11] = [
    "flow_run_notification_policy_id",
    "flow_id",
    "flow_name",
    "flow_run_url",
    "flow_run_id",
    "flow_run_name",
    "flow_run_parameters",
    "flow_run_state_type",
    "flow_run_state_name",
    "flow_run_state_timestamp",
    "flow_run_state_message",
];

/// A piece of a template, as Python's `str.format` reads it.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Brace(char),
    Field(&'a str),
}

/// Splits a template as `str.format` does (`{name}`, `{name!r:>10}`, `{{`, `}}`); the
/// error is Python's.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let bytes = template.as_bytes();
    let (mut i, mut text_from) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'}' if bytes.get(i + 1) == Some(&bytes[i]) => {
                out.push(Piece::Text(&template[text_from..i]));
                out.push(Piece::Brace(bytes[i] as char));
                i += 2;
                text_from = i;
            }
            b'}' => return Err("Single '}' encountered in format string".into()),
            b'{' => {
                out.push(Piece::Text(&template[text_from..i]));
                let close = template[i..]
                    .find('}')
                    .ok_or_else(|| "expected '}' before end of string".to_string())?;
                let field = &template[i + 1..i + close];
                let name_end = field.find(['!', ':', '.', '[']).unwrap_or(field.len());
                out.push(Piece::Field(&field[..name_end]));
                i += close + 1;
                text_from = i;
            }
            _ => i += 1,
        }
    }
    out.push(Piece::Text(&template[text_from..]));
    out.retain(|p| *p != Piece::Text(""));
    Ok(out)
}

/// Checks a policy's template as Prefect's validator does: it must format with the
/// allowed keys. The error is the 422 Prefect answers.
pub fn check_template(template: &str) -> ApiResult<()> {
    let invalid =
        |msg: String| ApiError::invalid(&["body", "message_template"], msg, "value_error", Value::Null);
    for piece in pieces(template).map_err(invalid)? {
        match piece {
            Piece::Field("") => {
                return Err(invalid(
                    "Positional fields are not allowed: name a template variable, such as {flow_run_name}"
                        .into(),
                ))
            }
            Piece::Field(name) if !TEMPLATE_KEYS.contains(&name) => {
                return Err(invalid(format!("Invalid template variable provided: '{name}'")))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The UI page of a flow run, for `{flow_run_url}`.
pub fn flow_run_url(ui_url: &str, flow_run_id: Uuid) -> String {
    format!("{}/flow-runs/{flow_run_id}", ui_url.trim_end_matches('/'))
}

/// The message of a notification: its policy's template (or Prefect's default) filled in.
pub fn message(n: &Notification, ui_url: &str) -> String {
    let values: HashMap<&str, String> = HashMap::from([
        ("flow_run_notification_policy_id", n.policy_id.to_string()),
        ("flow_id", n.flow_id.to_string()),
        ("flow_name", n.flow_name.clone()),
        ("flow_run_url", flow_run_url(ui_url, n.flow_run_id)),
        ("flow_run_id", n.flow_run_id.to_string()),
        ("flow_run_name", n.flow_run_name.clone()),
        ("flow_run_parameters", n.flow_run_parameters.to_string()),
        ("flow_run_state_type", n.state_type.clone()),
        ("flow_run_state_name", n.state_name.clone()),
        (
            "flow_run_state_timestamp",
            n.state_timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        ),
        (
            "flow_run_state_message",
            n.state_message.clone().unwrap_or_else(|| "None".into()),
        ),
    ]);
    let template = n.message_template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
    // A stored template was checked when saved; one that no longer parses is sent as written.
    let Ok(pieces) = pieces(template) else {
        return template.to_string();
    };
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => (*t).to_string(),
            Piece::Brace(c) => c.to_string(),
            Piece::Field(name) => values.get(name).cloned().unwrap_or_default(),
        })
        .collect()
}

/// Rows one publishing transaction takes.
const BATCH: i64 = 100;

/// Publishes queued notifications (of `runs` when given, else any) to the notifications
/// queue, in batches, until none is left or a send fails. Two publishers never take the
/// same row; a crash between sending and marking sends one twice, which the notifier
/// tolerates (it deletes the row it sent).
pub async fn publish(db: &Pool, queue: &dyn MessageQueue, runs: Option<&[Uuid]>) -> ApiResult<Published> {
    let mut total = Published::default();
    loop {
        let mut client = db.get().await?;
        let tx = client.transaction().await?;
        let rows = notifications::lock_unpublished(&tx, runs, BATCH).await?;
        let mut sent = Vec::with_capacity(rows.len());
        for row in &rows {
            match queue
                .send(NOTIFICATIONS_QUEUE, &json!({ "notification_id": row.id }), 0)
                .await
            {
                Ok(()) => sent.push(row.id),
                Err(e) => {
                    tracing::warn!(notification_id = row.id, "publishing a notification failed: {e}");
                    notifications::mark_failed(&tx, row.id, &e.0).await?;
                    total.failed += 1;
                    break;
                }
            }
        }
        notifications::mark_published(&tx, &sent).await?;
        tx.commit().await?;
        total.sent += sent.len();
        if total.failed > 0 || (rows.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Publishes what a committed state change queued for `run`. Never fails the caller:
/// what cannot be sent now stays for the scheduler's sweep.
pub async fn publish_run(db: &Pool, queue: &dyn MessageQueue, run: Uuid) {
    if let Err(e) = publish(db, queue, Some(&[run])).await {
        tracing::warn!(flow_run_id = %run, error = ?e, "notifications not published now, the scheduler will retry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn notification(template: Option<&str>) -> Notification {
        Notification {
            id: 1,
            policy_id: Uuid::nil(),
            block_document_id: Uuid::nil(),
            message_template: template.map(str::to_string),
            flow_id: Uuid::from_u128(1),
            flow_name: "etl".into(),
            flow_run_id: Uuid::from_u128(2),
            flow_run_name: "happy-otter".into(),
            flow_run_parameters: json!({"x": 1}),
            state_type: "FAILED".into(),
            state_name: "Failed".into(),
            state_timestamp: chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, 30, 0).unwrap(),
            state_message: None,
        }
    }

    #[test]
    fn templates_use_only_the_allowed_keys() {
        assert!(check_template("Run {flow_run_name} is {flow_run_state_name}. {{literal}}").is_ok());
        assert!(check_template("{flow_run_state_timestamp:%Y}").is_ok());
        for (bad, says) in [
            ("Run {nope}", "Invalid template variable provided: 'nope'"),
            ("Run {}", "Positional fields"),
            ("Run }", "Single '}'"),
            ("Run {flow_name", "expected '}'"),
        ] {
            let err = format!("{:?}", check_template(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn messages_fill_the_template_or_prefects_default() {
        let custom = message(
            &notification(Some("{flow_name}/{flow_run_name}: {flow_run_state_type} {{x}}")),
            "http://h/",
        );
        assert_eq!(custom, "etl/happy-otter: FAILED {x}");
        let default = message(&notification(None), "http://h");
        assert!(default.contains(
            "Flow run etl/happy-otter entered state `Failed` at 2026-12-01T10:30:00.000000+00:00."
        ));
        assert!(default.contains("Flow run URL: http://h/flow-runs/00000000-0000-0000-0000-000000000002"));
        assert!(default.contains("State message: None"));
    }
}
