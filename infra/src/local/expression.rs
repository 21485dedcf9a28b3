//! EventBridge schedule expressions: `rate(N unit)` and the six-field
//! `cron(minutes hours day-of-month month day-of-week year)`, evaluated in UTC.
//!
//! Supported in cron fields: `*`, `?` (day-of-month or day-of-week, exactly one of them),
//! numbers, ranges `a-b`, lists `a,b`, steps `*/n`, `a/n` and `a-b/n`, month names `JAN`..`DEC`
//! and day names `SUN`..`SAT`. Day-of-week counts like AWS: 1 = SUN .. 7 = SAT. `L`, `W` and
//! `#` are rejected.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Timelike, Utc};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExpressionError {
    #[error("schedule expression {0:?} must be rate(...) or cron(...)")]
    Form(String),
    #[error("rate expression {0:?}: {1}")]
    Rate(String, String),
    #[error("cron expression {0:?}: {1}")]
    Cron(String, String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    Rate(Duration),
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    /// `None` is `?`.
    days_of_month: Option<BTreeSet<u32>>,
    months: BTreeSet<u32>,
    /// `None` is `?`; 1 = Sunday.
    days_of_week: Option<BTreeSet<u32>>,
    years: BTreeSet<u32>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MAX_YEAR: u32 = 2199;

impl Expression {
    pub fn parse(text: &str) -> Result<Expression, ExpressionError> {
        let text = text.trim();
        if let Some(body) = text.strip_prefix("rate(").and_then(|b| b.strip_suffix(')')) {
            parse_rate(body).map_err(|e| ExpressionError::Rate(text.to_string(), e))
        } else if let Some(body) = text.strip_prefix("cron(").and_then(|b| b.strip_suffix(')')) {
            Cron::parse(body)
                .map(|c| Expression::Cron(Box::new(c)))
                .map_err(|e| ExpressionError::Cron(text.to_string(), e))
        } else {
            Err(ExpressionError::Form(text.to_string()))
        }
    }

    /// The first fire time strictly after `after`. Rate schedules count from `anchor` (when the
    /// schedule was created locally); cron schedules fire on whole minutes.
    pub fn next_after(&self, after: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate(period) => {
                if after < anchor {
                    return Some(anchor + *period);
                }
                let period_ms = period.num_milliseconds().max(1);
                let elapsed_ms = (after - anchor).num_milliseconds();
                let periods = elapsed_ms / period_ms + 1;
                Some(anchor + Duration::milliseconds(periods * period_ms))
            }
            Expression::Cron(cron) => cron.next_after(after),
        }
    }
}

fn parse_rate(body: &str) -> Result<Expression, String> {
    let (value, unit) = body
        .trim()
        .split_once(' ')
        .ok_or("expected rate(<value> <unit>)")?;
    let value: i64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))?;
    if value <= 0 {
        return Err("the value must be positive".to_string());
    }
    let singular = value == 1;
    let period = match (unit.trim(), singular) {
        ("minute", true) | ("minutes", false) => Duration::minutes(value),
        ("hour", true) | ("hours", false) => Duration::hours(value),
        ("day", true) | ("days", false) => Duration::days(value),
        (unit, _) => {
            return Err(format!(
                "unit {unit:?} must be minute(s), hour(s) or day(s), singular exactly when the value is 1"
            ))
        }
    };
    Ok(Expression::Rate(period))
}

impl Cron {
    fn parse(body: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = body.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields[..] else {
            return Err(format!(
                "expected 6 fields (minutes hours day-of-month month day-of-week year), got {}",
                fields.len()
            ));
        };
        let days_of_month = optional_field(dom, "day-of-month", 1, 31, &[])?;
        let days_of_week = optional_field(dow, "day-of-week", 1, 7, &DAYS)?;
        if days_of_month.is_some() == days_of_week.is_some() {
            return Err("exactly one of day-of-month and day-of-week must be '?'".to_string());
        }
        Ok(Cron {
            minutes: field(minutes, "minutes", 0, 59, &[])?,
            hours: field(hours, "hours", 0, 23, &[])?,
            days_of_month,
            months: field(month, "month", 1, 12, &MONTHS)?,
            days_of_week,
            years: field(year, "year", 1970, MAX_YEAR, &[])?,
        })
    }

    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .map(|t| t + Duration::minutes(1))?;
        let mut day = start.date_naive();
        let mut from = Some(start.time());
        while day.year() <= MAX_YEAR as i32 {
            if self.matches_day(day) {
                if let Some(time) = self.first_time_from(from) {
                    return Some(day.and_time(time).and_utc());
                }
            }
            day = day.succ_opt()?;
            from = None;
        }
        None
    }

    fn matches_day(&self, day: NaiveDate) -> bool {
        let in_set =
            |set: &Option<BTreeSet<u32>>, v: u32| set.as_ref().is_some_and(|s| s.contains(&v));
        self.years.contains(&(day.year() as u32))
            && self.months.contains(&day.month())
            && (in_set(&self.days_of_month, day.day())
                || in_set(&self.days_of_week, day.weekday().number_from_sunday()))
    }

    /// The first allowed time of day at or after `from` (the whole day when `None`).
    fn first_time_from(&self, from: Option<NaiveTime>) -> Option<NaiveTime> {
        let (from_hour, from_minute) = from.map_or((0, 0), |t| (t.hour(), t.minute()));
        for &hour in self.hours.range(from_hour..) {
            let min_minute = if hour == from_hour { from_minute } else { 0 };
            if let Some(&minute) = self.minutes.range(min_minute..).next() {
                return NaiveTime::from_hms_opt(hour, minute, 0);
            }
        }
        None
    }
}

fn optional_field(
    text: &str,
    what: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<Option<BTreeSet<u32>>, String> {
    if text == "?" {
        Ok(None)
    } else {
        field(text, what, min, max, names).map(Some)
    }
}

fn field(
    text: &str,
    what: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<BTreeSet<u32>, String> {
    let mut values = BTreeSet::new();
    for item in text.split(',') {
        values.extend(
            item_values(item, min, max, names).map_err(|e| format!("{what} {text:?}: {e}"))?,
        );
    }
    Ok(values)
}

fn item_values(item: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("step {step:?} is not a number"))?;
            if step == 0 {
                return Err("a step must be positive".to_string());
            }
            (range, Some(step))
        }
        None => (item, None),
    };
    let (low, high) = match range {
        "*" => (min, max),
        _ => match range.split_once('-') {
            Some((a, b)) => (value(a, min, max, names)?, value(b, min, max, names)?),
            // `a/n` runs from a to the end of the field.
            None if step.is_some() => (value(range, min, max, names)?, max),
            None => {
                let v = value(range, min, max, names)?;
                (v, v)
            }
        },
    };
    if low > high {
        return Err(format!("range {low}-{high} runs backwards"));
    }
    Ok((low..=high).step_by(step.unwrap_or(1) as usize).collect())
}

fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(index) = names.iter().position(|n| *n == upper) {
        return Ok(min + index as u32);
    }
    let v: u32 = text.parse().map_err(|_| {
        if upper.contains(['L', 'W', '#']) {
            format!("{text:?}: L, W and # are not supported locally")
        } else {
            format!("{text:?} is not a number or name")
        }
    })?;
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..={max}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> Option<DateTime<Utc>> {
        Expression::parse(expr)
            .unwrap()
            .next_after(at(after), at("2026-01-01T00:00:00Z"))
    }

    #[test]
    fn daily_cron_fires_at_its_minute_and_then_the_next_day() {
        let e = "cron(5 0 * * ? *)";
        assert_eq!(
            next(e, "2026-11-24T00:00:00Z"),
            Some(at("2026-11-24T00:05:00Z"))
        );
        assert_eq!(
            next(e, "2026-11-24T00:05:00Z"),
            Some(at("2026-11-25T00:05:00Z"))
        );
        assert_eq!(
            next(e, "2026-12-31T23:59:59Z"),
            Some(at("2027-01-01T00:05:00Z"))
        );
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            next("cron(0/15 * * * ? *)", "2026-11-24T10:07:30Z"),
            Some(at("2026-11-24T10:15:00Z"))
        );
        assert_eq!(
            next("cron(*/20 9-10 * * ? *)", "2026-11-24T10:45:00Z"),
            Some(at("2026-11-25T09:00:00Z"))
        );
        // 2026-11-27 is a Friday; the next weekday evening is Monday the 30th.
        assert_eq!(
            next("cron(0 18 ? * MON-FRI *)", "2026-11-27T18:00:00Z"),
            Some(at("2026-11-30T18:00:00Z"))
        );
        assert_eq!(
            next("cron(0 8 1 JAN,jul ? 2027)", "2026-11-24T00:00:00Z"),
            Some(at("2027-01-01T08:00:00Z"))
        );
        assert_eq!(
            next("cron(0 8 1 JAN,JUL ? 2027)", "2027-07-01T08:00:00Z"),
            None
        );
    }

    #[test]
    fn day_of_week_one_is_sunday() {
        // Tuesday 2026-11-24 -> Sunday 2026-11-29.
        assert_eq!(
            next("cron(0 12 ? * 1 *)", "2026-11-24T00:00:00Z"),
            Some(at("2026-11-29T12:00:00Z"))
        );
        assert_eq!(
            next("cron(0 12 ? * SAT *)", "2026-11-24T00:00:00Z"),
            Some(at("2026-11-28T12:00:00Z"))
        );
    }

    #[test]
    fn rates_count_from_the_anchor() {
        assert_eq!(
            next("rate(1 hour)", "2026-01-01T00:30:00Z"),
            Some(at("2026-01-01T01:00:00Z"))
        );
        assert_eq!(
            next("rate(5 minutes)", "2026-01-01T00:05:00Z"),
            Some(at("2026-01-01T00:10:00Z"))
        );
        assert_eq!(
            next("rate(2 days)", "2026-01-02T12:00:00Z"),
            Some(at("2026-01-03T00:00:00Z"))
        );
    }

    #[test]
    fn malformed_expressions_are_rejected_with_a_reason() {
        for bad in [
            "rate(1 minutes)",
            "rate(2 hour)",
            "rate(0 days)",
            "rate(5 weeks)",
            "cron(0 12 * * *)",
            "cron(0 12 * * MON *)",
            "cron(0 12 ? * ? *)",
            "cron(0 12 L * ? *)",
            "cron(0 12 ? * 6#3 *)",
            "cron(60 12 * * ? *)",
            "cron(0 12 * FOO ? *)",
            "cron(0 12-3 * * ? *)",
            "every day",
        ] {
            assert!(Expression::parse(bad).is_err(), "{bad} was accepted");
        }
        let err = Expression::parse("cron(0 12 L * ? *)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");
    }
}
