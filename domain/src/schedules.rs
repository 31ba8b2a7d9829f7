//! Deployment schedule shapes (Prefect 2.20's `src/prefect/server/schemas/schedules.py`): an interval, a cron string or an RRule, each
//! with an optional time zone. Validation here checks the shape; computing the dates is
//! the scheduler's work.

use serde_json::Value;

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
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err("The interval must be positive".into());
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
        if !(5..=6).contains(&fields) && !cron.trim_start().starts_with('@') {
            return Err(format!("Invalid cron string: {cron:?}").into());
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
        &["rrule", "timezone"]
    } else {
        return Err("a schedule needs one of interval, cron or rrule".into());
    };
    if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("extra fields not permitted: {extra}").into());
    }
    if let Some(tz) = obj.get("timezone").filter(|v| !v.is_null()) {
        let tz = tz.as_str().ok_or("timezone must be a string")?;
        if tz.is_empty() || tz.contains(' ') {
            return Err(format!("Invalid timezone: {tz:?}").into());
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
}
