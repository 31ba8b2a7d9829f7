//! The dates a deployment schedule produces (Prefect 2.20's `src/prefect/server/schemas/schedules.py`, `get_dates`): intervals from an
//! anchor, cron strings and RRules, each in its time zone (DST included). Pure code; the
//! scheduler (`stratus_store::scheduler`) turns dates into runs.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::CronParser;
use serde_json::Value;

/// Prefect's default interval anchor (`DEFAULT_ANCHOR_DATE`).
pub fn default_anchor() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2020, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Why a stored schedule cannot give dates.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    #[error("invalid cron string {pattern:?}: {reason}")]
    Cron { pattern: String, reason: String },
    #[error("invalid rrule {rule:?}: {reason}")]
    Rrule { rule: String, reason: String },
    #[error("a schedule needs one of interval, cron or rrule")]
    NoKind,
}

fn timezone(schedule: &Value) -> Result<Tz, ScheduleError> {
    match schedule.get("timezone").and_then(Value::as_str) {
        None => Ok(Tz::UTC),
        Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_string())),
    }
}

/// Up to `max` dates of the schedule in `[start, end]`, ascending.
pub fn dates(
    schedule: &Value,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    let tz = timezone(schedule)?;
    if let Some(seconds) = schedule.get("interval").and_then(Value::as_f64) {
        let anchor = schedule
            .get("anchor_date")
            .and_then(Value::as_str)
            .and_then(crate::time::parse_ts)
            .unwrap_or_else(default_anchor);
        return Ok(interval_dates(seconds, anchor, tz, start, end, max));
    }
    if let Some(cron) = schedule.get("cron").and_then(Value::as_str) {
        let day_or = schedule.get("day_or").and_then(Value::as_bool).unwrap_or(true);
        return cron_dates(cron, day_or, tz, start, end, max);
    }
    if let Some(rrule) = schedule.get("rrule").and_then(Value::as_str) {
        return rrule_dates(rrule, tz, start, end, max);
    }
    Err(ScheduleError::NoKind)
}

/// Fixed intervals count from the anchor. Intervals of whole days keep the anchor's wall
/// clock time in the schedule's time zone across DST changes, as Prefect's do.
fn interval_dates(
    seconds: f64,
    anchor: DateTime<Utc>,
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let step_micros = (seconds * 1_000_000.0).round();
    // Below a microsecond no two dates differ; past i64 microseconds no date is reachable.
    if !(step_micros >= 1.0 && step_micros < i64::MAX as f64) {
        return out;
    }
    let step_micros = step_micros as i64;
    let whole_days = seconds >= 86_400.0 && seconds % 86_400.0 == 0.0;
    let days_per_step = (seconds / 86_400.0) as i64;
    let elapsed = (start - anchor).num_microseconds().unwrap_or(i64::MAX);
    let first = if elapsed > 0 {
        elapsed / step_micros + i64::from(elapsed % step_micros != 0)
    } else {
        0
    };
    // The first date is at or after `start` (whole days may land an hour early across a DST
    // change), so the loop ends after `max` dates and a step or two more.
    for k in (first..).take(max.saturating_add(3)) {
        if out.len() >= max {
            break;
        }
        let date = if whole_days {
            let local = k
                .checked_mul(days_per_step)
                .and_then(Duration::try_days)
                .and_then(|d| anchor.with_timezone(&tz).naive_local().checked_add_signed(d));
            let Some(local) = local else { break };
            match tz.from_local_datetime(&local).earliest() {
                Some(d) => d.with_timezone(&Utc),
                // A wall time skipped by DST: an hour later exists.
                None => match tz.from_local_datetime(&(local + Duration::hours(1))).earliest() {
                    Some(d) => d.with_timezone(&Utc),
                    None => break,
                },
            }
        } else {
            match k
                .checked_mul(step_micros)
                .map(Duration::microseconds)
                .and_then(|d| anchor.checked_add_signed(d))
            {
                Some(d) => d,
                None => break,
            }
        };
        if date > end {
            break;
        }
        if date >= start {
            out.push(date);
        }
    }
    out
}

/// A cron string as the scheduler reads it (five or six fields, or a macro like `@daily`).
pub fn parse_cron(pattern: &str, day_or: bool) -> Result<croner::Cron, ScheduleError> {
    CronParser::builder()
        .dom_and_dow(!day_or)
        .build()
        .parse(pattern)
        .map_err(|e| ScheduleError::Cron {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })
}

/// An RRule as the scheduler reads it. Without a DTSTART, Prefect anchors RRules at its
/// default anchor date. With `near`, a rule that repeats every few seconds, minutes or hours
/// (and has no COUNT) is anchored on a date of the same series shortly before `near`
/// instead: the dates from there on are the same, and the series is not walked second by
/// second from 2020 (a `FREQ=SECONDLY` rule took 30 s a tick).
pub fn parse_rrule(
    text: &str,
    tz: Tz,
    near: Option<DateTime<Utc>>,
) -> Result<rrule::RRuleSet, ScheduleError> {
    let upper = text.to_uppercase();
    let full = if upper.contains("DTSTART") {
        text.to_string()
    } else {
        let mut anchor = default_anchor().with_timezone(&tz).naive_local();
        if let (Some(near), Some(step)) = (near, series_step_seconds(&upper, tz)) {
            let elapsed = (near.with_timezone(&tz).naive_local() - anchor).num_seconds();
            if elapsed > 2 * step {
                let moved = anchor + Duration::seconds((elapsed / step - 1) * step);
                // Whole days keep the anchor's wall time; a day where that time is skipped
                // or repeated by DST keeps the old anchor.
                if tz.from_local_datetime(&moved).single().is_some() {
                    anchor = moved;
                }
            }
        }
        let rule = if upper.starts_with("RRULE:") {
            text.to_string()
        } else {
            format!("RRULE:{text}")
        };
        if tz == Tz::UTC {
            format!("DTSTART:{}\n{rule}", anchor.format("%Y%m%dT%H%M%SZ"))
        } else {
            format!(
                "DTSTART;TZID={}:{}\n{rule}",
                tz.name(),
                anchor.format("%Y%m%dT%H%M%S")
            )
        }
    };
    full.parse().map_err(|e: rrule::RRuleError| ScheduleError::Rrule {
        rule: text.to_string(),
        reason: e.to_string(),
    })
}

/// How far a rule's anchor may move without changing its dates: a whole number of its
/// periods that is also a whole number of days (so the anchor stays at midnight, clear of
/// DST gaps). None for rules counted from their start, or not repeating within a day, and
/// outside UTC for periods a DST change (an hour, or half of one) would put out of step.
fn series_step_seconds(upper_rule: &str, tz: Tz) -> Option<i64> {
    if upper_rule.contains("COUNT=") {
        return None;
    }
    let field = |name: &str| {
        upper_rule
            .split([';', '\n', ':'])
            .find_map(|part| part.trim().strip_prefix(name))
    };
    let unit: i64 = match field("FREQ=")? {
        "SECONDLY" => 1,
        "MINUTELY" => 60,
        "HOURLY" => 3600,
        _ => return None,
    };
    let interval: i64 = match field("INTERVAL=") {
        Some(n) => n.parse().ok().filter(|n| *n > 0)?,
        None => 1,
    };
    let period = unit.checked_mul(interval)?;
    if tz != Tz::UTC && 1800 % period != 0 {
        return None;
    }
    let day = 86_400;
    let gcd = |mut a: i64, mut b: i64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    (period / gcd(period, day)).checked_mul(day)
}

fn cron_dates(
    pattern: &str,
    day_or: bool,
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    let cron = parse_cron(pattern, day_or)?;
    let mut out = Vec::new();
    let mut cursor = start.with_timezone(&tz);
    let mut inclusive = true;
    while out.len() < max {
        let Ok(next) = cron.find_next_occurrence(&cursor, inclusive) else {
            break;
        };
        let utc = next.with_timezone(&Utc);
        if utc > end {
            break;
        }
        out.push(utc);
        cursor = next;
        inclusive = false;
    }
    Ok(out)
}

fn rrule_dates(
    text: &str,
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    let set = parse_rrule(text, tz, Some(start))?;
    let rtz: rrule::Tz = tz.into();
    let limit = u16::try_from(max).unwrap_or(u16::MAX);
    let result = set
        .after(start.with_timezone(&rtz) - Duration::microseconds(1))
        .before(end.with_timezone(&rtz))
        .all(limit);
    Ok(result.dates.into_iter().map(|d| d.with_timezone(&Utc)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        crate::time::parse_ts(text).unwrap()
    }

    /// Once, a step count truncated to i32 made these loop forever (the server stopped
    /// answering): short steps far from the anchor, or steps under a microsecond.
    /// Walked from 2020, a `FREQ=SECONDLY` rule took 34 s of a release build per tick.
    #[test]
    fn frequent_rrules_give_the_same_dates_without_walking_from_2020() {
        let start = at("2026-12-04T10:00:00.5Z");
        let end = at("2027-01-04T10:00:00Z");
        let took = std::time::Instant::now();
        let secondly = dates(&json!({"rrule": "FREQ=SECONDLY;INTERVAL=7"}), start, end, 3).unwrap();
        assert!(
            took.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            took.elapsed()
        );
        // The series from 2020-01-01T00:00:00: every 7 s.
        let anchor = at("2020-01-01T00:00:00Z");
        for d in &secondly {
            assert_eq!((*d - anchor).num_seconds() % 7, 0, "{d}");
            assert!(*d >= start);
        }
        assert_eq!(secondly[1] - secondly[0], Duration::seconds(7));
        assert!(secondly[0] - start < Duration::seconds(7));
        // The same dates as walking the whole series, across DST changes.
        for rule in [
            "FREQ=HOURLY;INTERVAL=5;BYMINUTE=30",
            "FREQ=MINUTELY;INTERVAL=15;BYHOUR=9,21",
        ] {
            let found = dates(&json!({"rrule": rule, "timezone": "Europe/Paris"}), start, end, 4).unwrap();
            // Prefect's anchor, 2020-01-01T00:00:00Z, is 01:00 in Paris.
            let set: rrule::RRuleSet = format!("DTSTART;TZID=Europe/Paris:20200101T010000\nRRULE:{rule}")
                .parse()
                .unwrap();
            let rtz: rrule::Tz = Tz::Europe__Paris.into();
            let walked: Vec<DateTime<Utc>> = set
                .after(start.with_timezone(&rtz))
                .before(end.with_timezone(&rtz))
                .all(4)
                .dates
                .into_iter()
                .map(|d| d.with_timezone(&Utc))
                .collect();
            assert_eq!(found, walked, "{rule}");
        }
        assert_eq!(series_step_seconds("FREQ=SECONDLY;COUNT=5", Tz::UTC), None);
        assert_eq!(series_step_seconds("FREQ=DAILY", Tz::UTC), None);
        assert_eq!(
            series_step_seconds("FREQ=MINUTELY;INTERVAL=7", Tz::UTC),
            Some(7 * 86_400)
        );
        assert_eq!(series_step_seconds("FREQ=HOURLY", Tz::Europe__Paris), None);
    }

    #[test]
    fn any_interval_ends_quickly_with_the_right_dates() {
        let start = at("2026-12-04T10:00:00Z");
        let end = at("2026-12-05T10:00:00Z");
        let tenth = dates(&json!({"interval": 0.1}), start, end, 3).unwrap();
        assert_eq!(
            tenth,
            vec![start, at("2026-12-04T10:00:00.1Z"), at("2026-12-04T10:00:00.2Z")]
        );
        let since_1900 = dates(
            &json!({"interval": 1, "anchor_date": "1900-01-01T00:00:00Z"}),
            start,
            end,
            2,
        )
        .unwrap();
        assert_eq!(since_1900, vec![start, at("2026-12-04T10:00:01Z")]);
        for seconds in [1e-7, 1e300] {
            assert!(dates(&json!({"interval": seconds}), start, end, 5)
                .unwrap()
                .is_empty());
        }
        let daily_far = dates(
            &json!({"interval": 86400.0 * 36500.0, "anchor_date": "2026-01-01T00:00:00Z"}),
            start,
            end,
            5,
        );
        assert!(daily_far.unwrap().is_empty());
    }

    #[test]
    fn intervals_count_from_the_anchor() {
        let s = json!({"interval": 3600.0, "anchor_date": "2026-01-01T00:30:00Z"});
        let got = dates(&s, at("2026-11-24T10:00:00Z"), at("2026-11-24T13:00:00Z"), 10).unwrap();
        assert_eq!(
            got,
            vec![
                at("2026-11-24T10:30:00Z"),
                at("2026-11-24T11:30:00Z"),
                at("2026-11-24T12:30:00Z")
            ]
        );
        let capped = dates(&s, at("2026-11-24T10:00:00Z"), at("2026-11-30T00:00:00Z"), 2).unwrap();
        assert_eq!(capped.len(), 2);
    }

    #[test]
    fn daily_intervals_keep_local_time_across_dst() {
        let s = json!({"interval": 86400.0, "anchor_date": "2026-03-01T09:00:00-05:00", "timezone": "America/New_York"});
        // New York moves to summer time on 2026-03-08.
        let got = dates(&s, at("2026-03-07T00:00:00Z"), at("2026-03-09T23:00:00Z"), 10).unwrap();
        assert_eq!(
            got,
            vec![
                at("2026-03-07T14:00:00Z"),
                at("2026-03-08T13:00:00Z"),
                at("2026-03-09T13:00:00Z")
            ]
        );
    }

    #[test]
    fn cron_runs_in_its_time_zone() {
        let s = json!({"cron": "0 9 * * *", "timezone": "Europe/Paris"});
        // Paris is UTC+1 in November.
        let got = dates(&s, at("2026-11-24T00:00:00Z"), at("2026-11-26T00:00:00Z"), 10).unwrap();
        assert_eq!(got, vec![at("2026-11-24T08:00:00Z"), at("2026-11-25T08:00:00Z")]);
        let every5 = dates(
            &json!({"cron": "*/5 * * * *"}),
            at("2026-11-24T10:00:00Z"),
            at("2026-11-24T11:00:00Z"),
            100,
        )
        .unwrap();
        assert_eq!(every5.len(), 13, "an hour of */5 is 13 dates, as Prefect makes");
        assert!(dates(
            &json!({"cron": "nope nope"}),
            at("2026-11-24T00:00:00Z"),
            at("2026-11-25T00:00:00Z"),
            3
        )
        .is_err());
    }

    #[test]
    fn cron_day_or_controls_day_matching() {
        // The 1st of the month, or a Monday (OR); only Mondays that are the 1st (AND).
        let or = dates(
            &json!({"cron": "0 0 1 * MON"}),
            at("2026-06-01T00:00:00Z"),
            at("2026-06-30T00:00:00Z"),
            10,
        )
        .unwrap();
        assert_eq!(or.len(), 5);
        let and = dates(
            &json!({"cron": "0 0 1 * MON", "day_or": false}),
            at("2026-06-01T00:00:00Z"),
            at("2026-06-30T00:00:00Z"),
            10,
        )
        .unwrap();
        assert_eq!(and, vec![at("2026-06-01T00:00:00Z")]);
    }

    #[test]
    fn rrules_with_and_without_dtstart() {
        let got = dates(
            &json!({"rrule": "FREQ=DAILY;BYHOUR=6"}),
            at("2026-11-24T00:00:00Z"),
            at("2026-11-26T00:00:00Z"),
            10,
        )
        .unwrap();
        assert_eq!(got, vec![at("2026-11-24T06:00:00Z"), at("2026-11-25T06:00:00Z")]);
        let with_start = json!({"rrule": "DTSTART:20261124T120000Z\nRRULE:FREQ=HOURLY;COUNT=3"});
        let got = dates(
            &with_start,
            at("2026-11-24T00:00:00Z"),
            at("2026-11-25T00:00:00Z"),
            10,
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], at("2026-11-24T12:00:00Z"));
    }
}
