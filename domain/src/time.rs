//! Prefect's JSON conventions for time: datetimes with microseconds and `+00:00`, durations
//! as float seconds, and explicit nulls meaning "default".

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Formats a timestamp the way Prefect does: `2026-11-23T19:15:35.130000+00:00`.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Parses an ISO-8601 timestamp with any offset or `Z`; a naive one is taken as UTC.
pub fn parse_ts(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Some(ts.with_timezone(&Utc));
    }
    if let Ok(ts) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(ts.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(ts) = NaiveDateTime::parse_from_str(text, fmt) {
            return Some(ts.and_utc());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    None
}

/// Serde for `DateTime<Utc>` in Prefect's format, for `#[serde(with = "ts")]`.
pub mod ts {
    use super::*;

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        parse_ts(&text).ok_or_else(|| serde::de::Error::custom(format!("invalid datetime: {text}")))
    }
}

/// Serde for `Option<DateTime<Utc>>` in Prefect's format.
pub mod ts_opt {
    use super::*;

    pub fn serialize<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&format_ts(ts)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => parse_ts(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid datetime: {text}"))),
        }
    }
}

/// Deserialises `null` as the type's default, for fields the client sends as explicit null.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Seconds as Prefect's float duration.
pub fn seconds(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// Deserialises a field that may be absent, null or a value, keeping null apart from
/// absent (with `#[serde(default)]`): `Some(None)` is an explicit null. PATCH bodies need
/// it, as Prefect applies them with pydantic's `exclude_unset`: an explicit null is a
/// change.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::<T>::deserialize(d)?))
}

/// `present` for a timestamp in Prefect's format: `Some(None)` is an explicit null.
pub fn present_ts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<DateTime<Utc>>>, D::Error> {
    Ok(Some(ts_opt::deserialize(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_in_prefect_format() {
        let ts = parse_ts("2026-11-23T19:15:35.13Z").unwrap();
        assert_eq!(format_ts(&ts), "2026-11-23T19:15:35.130000+00:00");
        let ts = parse_ts("2026-11-23T21:15:35+02:00").unwrap();
        assert_eq!(format_ts(&ts), "2026-11-23T19:15:35.000000+00:00");
        assert!(parse_ts("2026-11-23T19:15:35.123456").is_some());
        assert!(parse_ts("yesterday").is_none());
    }
}
