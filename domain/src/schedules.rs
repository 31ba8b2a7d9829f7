//! Deployment schedule shapes (Prefect 2.20's `src/prefect/server/schemas/schedules.py`): an interval, a cron string or an RRule, each
//! with an optional time zone. Validation here checks the shape; computing the dates is
//! the scheduler's work.

use serde_json::Value;

/// Prefect 2.20's `MAX_RRULE_LENGTH` (`_internal/schemas/validators.py`).
const MAX_RRULE_LENGTH: usize = 6500;
/// Python's largest timedelta: 999,999,999 days.
const MAX_INTERVAL_SECONDS: f64 = 999_999_999.0 * 86_400.0;

/// Why a schedule is refused, in the words the API answers with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchedule(pub String);

impl From<&str> for InvalidSchedule {
    fn from(message: &str) -> Self {
        InvalidSchedule(message.to_string())
    }
}

impl From<String> for InvalidSchedule {
    fn from(message: String) -> Self {
        InvalidSchedule(message)
    }
}

/// Checks a schedule and returns it normalised (interval as float seconds), or why not.
pub fn validate(schedule: &Value) -> Result<Value, InvalidSchedule> {
    let obj = schedule.as_object().ok_or("a schedule must be an object")?;
    let mut out = obj.clone();
    let allowed: &[&str] = if obj.contains_key("interval") {
        let seconds = obj["interval"]
            .as_f64()
            .ok_or("interval must be a number of seconds")?;
        // A timedelta holds whole microseconds, up to 999,999,999 days (Python's limits,
        // which Prefect's `PositiveDuration` inherits).
        if !(seconds.is_finite() && (seconds * 1_000_000.0).round() >= 1.0) {
            return Err("The interval must be positive".into());
        }
        if seconds >= MAX_INTERVAL_SECONDS {
            return Err("The interval is too large".into());
        }
        out.insert("interval".into(), Value::from(seconds));
        if let Some(anchor) = obj.get("anchor_date").filter(|v| !v.is_null()) {
            let text = anchor.as_str().ok_or("anchor_date must be a datetime")?;
            let parsed = crate::time::parse_ts(text).ok_or("anchor_date must be a datetime")?;
            out.insert("anchor_date".into(), Value::from(crate::time::format_ts(&parsed)));
        }
        &["interval", "anchor_date", "timezone"]
    } else if obj.contains_key("cron") {
        let cron = obj["cron"].as_str().ok_or("cron must be a string")?;
        let fields = cron.split_whitespace().count();
        // Prefect's `validate_cron_string`: croniter's syntax, no random or hashed fields.
        if !(5..=6).contains(&fields) && !cron.trim_start().starts_with('@')
            || crate::scheduling::parse_cron(cron, true).is_err()
        {
            return Err(format!("Invalid cron string: {cron:?}").into());
        }
        if cron
            .split_whitespace()
            .any(|f| ["r", "h"].contains(&f.to_lowercase().as_str()))
        {
            return Err(format!("Random and Hashed expressions are unsupported, received: {cron:?}").into());
        }
        if obj.get("day_or").is_some_and(|v| !v.is_boolean() && !v.is_null()) {
            return Err("day_or must be a boolean".into());
        }
        out.entry("day_or").or_insert(Value::Bool(true));
        &["cron", "timezone", "day_or"]
    } else if obj.contains_key("rrule") {
        let rrule = obj["rrule"].as_str().ok_or("rrule must be a string")?;
        if !rrule.to_uppercase().contains("FREQ=") {
            return Err(format!("Invalid RRule string: {rrule:?}").into());
        }
        if rrule.chars().count() > MAX_RRULE_LENGTH {
            let head: String = rrule.chars().take(40).collect();
            return Err(format!(
                "Invalid RRule string \"{head}...\"\nMax length is {MAX_RRULE_LENGTH}, got {}",
                rrule.chars().count()
            )
            .into());
        }
        if let Err(e) = crate::scheduling::parse_rrule(rrule, chrono_tz::Tz::UTC, None) {
            return Err(format!("Invalid RRule string {rrule:?}: {e}").into());
        }
        &["rrule", "timezone"]
    } else {
        return Err("a schedule needs one of interval, cron or rrule".into());
    };
    if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("extra fields not permitted: {extra}").into());
    }
    if let Some(tz) = obj.get("timezone").filter(|v| !v.is_null()) {
        let tz = tz.as_str().ok_or("timezone must be a string")?;
        if tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "Invalid timezone: {tz:?} (specify in IANA tzdata format, for example, America/New_York)"
            )
            .into());
        }
    } else {
        out.insert("timezone".into(), Value::Null);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_the_three_kinds_and_normalises() {
        let s =
            validate(&json!({"interval": 3600, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"}))
                .unwrap();
        assert_eq!(s["interval"], json!(3600.0));
        assert_eq!(s["anchor_date"], "2026-01-01T00:00:00.000000+00:00");
        assert_eq!(validate(&json!({"cron": "*/5 * * * *"})).unwrap()["day_or"], true);
        assert!(validate(&json!({"rrule": "FREQ=DAILY;COUNT=3", "timezone": "Europe/Paris"})).is_ok());
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(validate(&json!({"interval": 0})).is_err());
        assert!(validate(&json!({"cron": "not a cron"})).is_err());
        assert!(validate(&json!({"rrule": "DAILY"})).is_err());
        assert!(validate(&json!({"cron": "* * * * *", "extra": 1})).is_err());
        assert!(validate(&json!({"every": 5})).is_err());
        assert!(validate(&json!("daily")).is_err());
    }

    /// What Prefect 2.20 refuses, and the scheduler could not use (it logged "unusable
    /// schedule" on every tick).
    #[test]
    fn rejects_what_prefect_rejects() {
        for bad in [
            json!({"interval": 1e-7}),
            json!({"interval": 1e300}),
            json!({"interval": 60, "timezone": "Mars/Olympus"}),
            json!({"cron": "99 99 99 99 99"}),
            json!({"cron": "@reboot"}),
            json!({"cron": "H * * * *"}),
            json!({"rrule": format!("FREQ=DAILY;{}", "BYHOUR=1;".repeat(800))}),
            json!({"rrule": "FREQ=FORTNIGHTLY"}),
        ] {
            assert!(validate(&bad).is_err(), "{bad}");
        }
        assert!(validate(&json!({"interval": 1e-6, "timezone": "America/New_York"})).is_ok());
        assert!(validate(&json!({"cron": "@daily"})).is_ok());
        assert!(validate(&json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"})).is_ok());
        assert!(validate(&json!({"rrule": "DTSTART:20260101T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO"})).is_ok());
    }
}
