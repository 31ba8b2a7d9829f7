//! Flow run notifications: the message a policy's template makes of a state change, and
//! the publishing of queued notifications to the notifications queue (after the commit
//! that queued them, and from the scheduler's sweep). The notifier function receives
//! them from that queue and sends them through the policy's block.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::db::notifications::{self, Notification};
use crate::error::StoreResult;
use crate::outbox::Published;
use crate::queue::{MessageQueue, NOTIFICATIONS_QUEUE};
use stratus_domain::invalid::Invalid;

/// The block types the notifier can send through (their slugs).
pub const SENDING_BLOCK_TYPES: [&str; 5] = [
    "slack-webhook",
    "ms-teams-webhook",
    "discord-webhook",
    "mattermost-webhook",
    "custom-webhook",
];

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
    /// `{name!conversion:spec}`.
    Field {
        name: &'a str,
        conversion: Option<char>,
        spec: &'a str,
    },
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
                let (field, spec) = field.split_once(':').unwrap_or((field, ""));
                let (name, conversion) = match field.split_once('!') {
                    Some((name, c)) => {
                        let mut chars = c.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) => (name, Some(c)),
                            _ => return Err("expected ':' after conversion specifier".into()),
                        }
                    }
                    None => (field, None),
                };
                out.push(Piece::Field {
                    name,
                    conversion,
                    spec,
                });
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

/// A format spec for a string, as Python reads one: `[[fill]align][width][.precision][s]`.
/// The widest field a template may ask for.
const MAX_FIELD_WIDTH: usize = 10_000;

struct Spec {
    fill: char,
    align: char,
    width: usize,
    precision: Option<usize>,
}

fn parse_spec(spec: &str) -> Result<Spec, String> {
    let invalid = || format!("Invalid format specifier '{spec}' for object of type 'str'");
    let chars: Vec<char> = spec.chars().collect();
    let mut at = 0;
    let (mut fill, mut align) = (' ', '<');
    if chars.len() >= 2 && matches!(chars[1], '<' | '>' | '^') {
        (fill, align) = (chars[0], chars[1]);
        at = 2;
    } else if chars.first().is_some_and(|c| matches!(c, '<' | '>' | '^')) {
        align = chars[0];
        at = 1;
    }
    let digits = |from: usize| chars[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    // A message is a few lines: a width or precision past this would only pad to an
    // allocation that aborts the process (once accepted, it did so on every redelivery).
    let bounded = |text: String| match text.parse::<usize>() {
        Ok(n) if n <= MAX_FIELD_WIDTH => Ok(n),
        _ => Err(format!(
            "Too many decimal digits in format string (at most {MAX_FIELD_WIDTH})"
        )),
    };
    let n = digits(at);
    let width = if n == 0 {
        0
    } else {
        bounded(chars[at..at + n].iter().collect())?
    };
    at += n;
    let mut precision = None;
    if chars.get(at) == Some(&'.') {
        let n = digits(at + 1);
        if n == 0 {
            return Err("Format specifier missing precision".into());
        }
        precision = Some(bounded(chars[at + 1..at + 1 + n].iter().collect())?);
        at += 1 + n;
    }
    if chars.get(at) == Some(&'s') {
        at += 1;
    }
    if at != chars.len() {
        return Err(invalid());
    }
    Ok(Spec {
        fill,
        align,
        width,
        precision,
    })
}

/// A value put in its field as `str.format` does for a string.
fn formatted(value: &str, conversion: Option<char>, spec: &str) -> String {
    let value = match conversion {
        Some('r' | 'a') => stratus_domain::python::str_repr(value),
        _ => value.to_string(),
    };
    let Ok(spec) = parse_spec(spec) else {
        return value;
    };
    let mut value: String = match spec.precision {
        Some(p) => value.chars().take(p).collect(),
        None => value,
    };
    let len = value.chars().count();
    if spec.width > len {
        let pad = spec.width - len;
        let (before, after) = match spec.align {
            '>' => (pad, 0),
            '^' => (pad / 2, pad - pad / 2),
            _ => (0, pad),
        };
        let fill = |n: usize| std::iter::repeat_n(spec.fill, n).collect::<String>();
        value = format!("{}{value}{}", fill(before), fill(after));
    }
    value
}

/// Checks a policy's template as Prefect's validator does: it must format with the
/// allowed keys. The error is the 422 Prefect answers.
pub fn check_template(template: &str) -> Result<(), Invalid> {
    let invalid = |msg: String| Invalid::new(&["body", "message_template"], msg, "value_error", Value::Null);
    for piece in pieces(template).map_err(invalid)? {
        if let Piece::Field {
            name,
            conversion,
            spec,
        } = piece
        {
            if name.is_empty() {
                return Err(invalid(
                    "Positional fields are not allowed: name a template variable, such as {flow_run_name}"
                        .into(),
                ));
            }
            let key = name.split(['.', '[']).next().unwrap_or(name);
            if !TEMPLATE_KEYS.contains(&key) {
                return Err(invalid(format!("Invalid template variable provided: '{key}'")));
            }
            if key != name {
                return Err(invalid(format!(
                    "'str' object has no attribute or item in '{name}'"
                )));
            }
            if let Some(c) = conversion.filter(|c| !matches!(c, 's' | 'r' | 'a')) {
                return Err(invalid(format!("Unknown conversion specifier {c}")));
            }
            parse_spec(spec).map_err(invalid)?;
        }
    }
    Ok(())
}

/// The UI page of a flow run, for `{flow_run_url}`: Prefect's path, which the Stratus UI
/// also serves.
pub fn flow_run_url(ui_url: &str, flow_run_id: Uuid) -> String {
    format!(
        "{}/flow-runs/flow-run/{flow_run_id}",
        ui_url.trim_end_matches('/')
    )
}

/// A timestamp as Python prints a datetime: microseconds only when there are some.
fn py_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// The message of a notification: its policy's template (or Prefect's default) filled in
/// with the values as Prefect prints them.
pub fn message(n: &Notification, ui_url: &str) -> String {
    let values: HashMap<&str, String> = HashMap::from([
        ("flow_run_notification_policy_id", n.policy_id.to_string()),
        ("flow_id", n.flow_id.to_string()),
        ("flow_name", n.flow_name.clone()),
        ("flow_run_url", flow_run_url(ui_url, n.flow_run_id)),
        ("flow_run_id", n.flow_run_id.to_string()),
        ("flow_run_name", n.flow_run_name.clone()),
        (
            "flow_run_parameters",
            stratus_domain::python::repr(&n.flow_run_parameters),
        ),
        ("flow_run_state_type", format!("StateType.{}", n.state_type)),
        ("flow_run_state_name", n.state_name.clone()),
        ("flow_run_state_timestamp", py_timestamp(n.state_timestamp)),
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
            Piece::Field {
                name,
                conversion,
                spec,
            } => formatted(
                values.get(name).map(String::as_str).unwrap_or_default(),
                *conversion,
                spec,
            ),
        })
        .collect()
}

/// Rows one publishing transaction takes.
const BATCH: i64 = 100;

/// Publishes queued notifications (of `runs` when given, else every one not yet published
/// or published so long ago its message must be lost) to the notifications queue, in
/// batches, until none is left or a send fails. Rows are marked published and committed
/// before they are sent, so no lock is held while talking to the queue; what could not be
/// sent is given back. A publisher that dies in between leaves rows the sweep publishes
/// again later; the notifier takes duplicates in its stride.
pub async fn publish(db: &Pool, queue: &dyn MessageQueue, runs: Option<&[Uuid]>) -> StoreResult<Published> {
    let mut total = Published::default();
    loop {
        let ids = {
            let mut client = db.get().await?;
            let tx = client.transaction().await?;
            let ids = match runs {
                Some(runs) => notifications::take_unpublished_of(&tx, runs, BATCH).await?,
                None => notifications::take_unpublished(&tx, BATCH).await?,
            };
            tx.commit().await?;
            ids
        };
        for (i, id) in ids.iter().enumerate() {
            if let Err(e) = queue
                .send(NOTIFICATIONS_QUEUE, &json!({ "notification_id": id }), 0)
                .await
            {
                tracing::warn!(notification_id = id, "publishing a notification failed: {e}");
                let client = db.get().await?;
                notifications::unpublish(&client, &ids[i..], &e.0).await?;
                total.failed += ids.len() - i;
                return Ok(total);
            }
            total.sent += 1;
        }
        if (ids.len() as i64) < BATCH {
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
            attempts: 0,
            policy_id: Uuid::nil(),
            block_document_id: Uuid::nil(),
            message_template: template.map(str::to_string),
            flow_id: Uuid::from_u128(1),
            flow_name: "etl".into(),
            flow_run_id: Uuid::from_u128(2),
            flow_run_name: "happy-otter".into(),
            flow_run_parameters: json!({"x": 1, "ok": true, "none": null, "s": "it's"}),
            state_type: "FAILED".into(),
            state_name: "Failed".into(),
            state_timestamp: chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, 30, 0).unwrap(),
            state_message: None,
        }
    }

    #[test]
    fn templates_use_only_the_allowed_keys() {
        assert!(check_template("Run {flow_run_name} is {flow_run_state_name}. {{literal}}").is_ok());
        assert!(check_template("{flow_name!r:*^20.3} {flow_run_name:>10s}").is_ok());
        for (bad, says) in [
            (
                "{flow_run_state_timestamp:%Y}",
                "Invalid format specifier '%Y' for object of type 'str'",
            ),
            ("{flow_name!x}", "Unknown conversion specifier x"),
            ("{flow_name.upper}", "no attribute"),
            ("Run {nope}", "Invalid template variable provided: 'nope'"),
            ("Run {}", "Positional fields"),
            ("Run }", "Single '}'"),
            ("Run {flow_name", "expected '}'"),
            // Once accepted, these aborted the process on a huge allocation.
            ("{flow_name:>5000000000000000000}", "Too many decimal digits"),
            ("{flow_name:>99999999999999999999999}", "Too many decimal digits"),
            ("{flow_name:.10001}", "Too many decimal digits"),
        ] {
            let err = format!("{:?}", check_template(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn messages_fill_the_template_or_prefects_default() {
        let custom = message(
            &notification(Some(
                "{flow_name}/{flow_run_name}: {flow_run_state_type} {{x}} {flow_run_parameters}",
            )),
            "http://h/",
        );
        assert_eq!(
            custom,
            "etl/happy-otter: StateType.FAILED {x} {'none': None, 'ok': True, 's': \"it's\", 'x': 1}"
        );
        let padded = message(
            &notification(Some("[{flow_name:>5}|{flow_name!r:-^9}|{flow_run_name:.5}]")),
            "",
        );
        assert_eq!(padded, "[  etl|--'etl'--|happy]");
        let default = message(&notification(None), "http://h");
        assert!(
            default.contains("Flow run etl/happy-otter entered state `Failed` at 2026-12-01T10:30:00+00:00.")
        );
        assert!(default
            .contains("Flow run URL: http://h/flow-runs/flow-run/00000000-0000-0000-0000-000000000002"));
        assert!(default.contains("State message: None"));
    }
}
