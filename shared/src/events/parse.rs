//! The edge: raw JSON in, typed [`Event`]s or field-level problems out.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Map, Value};

use super::*;

/// At most this many events in one request.
pub const MAX_BATCH_EVENTS: usize = 500;
/// At most this many bytes in one request body.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Events may be at most this far in the future (client clock skew).
const MAX_FUTURE: Duration = Duration::minutes(5);
/// Events may be at most this old.
const MAX_AGE_DAYS: i64 = 400;
const MAX_ID_LEN: usize = 128;
const MAX_TEXT_LEN: usize = 256;
/// Largest money amount accepted, in major units.
const MAX_AMOUNT: f64 = 1e9;
/// Longest duration accepted for one usage or step, in seconds (one day).
const MAX_DURATION_SECONDS: f64 = 86_400.0;
const MAX_GOALS: usize = 50;
const MAX_CUSTOM_ATTRIBUTES: usize = 50;

/// Why a whole batch was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("the body is {bytes} bytes; at most {MAX_BATCH_BYTES} are accepted")]
    TooLarge { bytes: usize },
    #[error("the batch holds {count} events; at most {MAX_BATCH_EVENTS} are accepted")]
    TooManyEvents { count: usize },
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
}

/// One event of a batch that was refused, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub index: usize,
    pub event_id: Option<String>,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBatch {
    /// Valid events, in request order, each `event_id` once.
    pub accepted: Vec<Event>,
    pub rejected: Vec<Rejected>,
}

/// Parses a request body `{"events": [...]}`. The body as a whole may be refused (too large,
/// not JSON, no `events` array); otherwise each event stands or falls on its own.
pub fn parse_batch(body: &[u8], now: DateTime<Utc>) -> Result<ParsedBatch, BatchError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge { bytes: body.len() });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    let events = match value.get("events") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(BatchError::Invalid(FieldError::new(
                "events",
                "must be an array of events",
            )))
        }
        None => {
            return Err(BatchError::Invalid(FieldError::new(
                "events",
                "is required: the body is {\"events\": [...]}",
            )))
        }
    };
    if events.is_empty() {
        return Err(BatchError::Invalid(FieldError::new(
            "events",
            "must hold at least one event",
        )));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(BatchError::TooManyEvents {
            count: events.len(),
        });
    }
    let mut accepted: Vec<Event> = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, raw) in events.iter().enumerate() {
        match parse_event(raw, now) {
            // A repeated event_id in one batch is the same event sent twice: keep it once.
            Ok(event) => {
                if seen.insert(event.event_id.clone()) {
                    accepted.push(event);
                }
            }
            Err(errors) => rejected.push(Rejected {
                index,
                event_id: raw
                    .get("event_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                errors,
            }),
        }
    }
    Ok(ParsedBatch { accepted, rejected })
}

/// Parses one raw event, collecting every field-level problem.
pub fn parse_event(raw: &Value, now: DateTime<Utc>) -> Result<Event, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = raw.as_object() else {
        return Err(vec![FieldError::new("", "an event must be a JSON object")]);
    };
    let mut top = Fields::new(Some(obj), "", &mut errors);
    let event_id = top.identifier("event_id");
    let user_id = top.identifier("user_id");
    let type_name = top.required_text("type");
    let timestamp = top.timestamp("timestamp", now);
    let props_value = obj.get("properties");
    let props = match props_value {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            errors.push(FieldError::new("properties", "must be an object"));
            None
        }
    };
    let body = type_name.and_then(|t| parse_body(&t, props, &mut errors));
    match (event_id, user_id, timestamp, body) {
        (Some(event_id), Some(user_id), Some(timestamp), Some(body)) if errors.is_empty() => {
            Ok(Event {
                event_id,
                user_id,
                timestamp,
                body,
            })
        }
        _ => Err(errors),
    }
}

fn parse_body(
    type_name: &str,
    props: Option<&Map<String, Value>>,
    errors: &mut Vec<FieldError>,
) -> Option<EventBody> {
    use EventBody as B;
    let mut p = Fields::new(props, "properties", errors);
    let body = match type_name {
        "feature_used" => B::FeatureUsed(FeatureUsed {
            feature: p.required_text("feature").unwrap_or_default(),
            duration_ms: p.duration_ms("duration_seconds"),
        }),
        "workflow_step" => B::WorkflowStep(WorkflowStep {
            workflow: p.required_text("workflow").unwrap_or_default(),
            session_id: p.required_text("session_id").unwrap_or_default(),
            step: p.required_text("step").unwrap_or_default(),
            duration_ms: p.duration_ms("duration_seconds"),
            completed: p.optional_bool("completed").unwrap_or(false),
        }),
        "journey_stage" => B::JourneyStage(JourneyStage {
            journey: p.required_text("journey").unwrap_or_default(),
            stage: p.required_text("stage").unwrap_or_default(),
        }),
        "subscription_trial_started" => B::SubscriptionTrialStarted(p.subscription(false)),
        "subscription_trial_converted" => B::SubscriptionTrialConverted(p.subscription(true)),
        "subscription_trial_expired" => B::SubscriptionTrialExpired(p.subscription(false)),
        "subscription_started" => B::SubscriptionStarted(p.subscription(true)),
        "subscription_renewed" => B::SubscriptionRenewed(p.subscription(true)),
        "subscription_upgraded" => B::SubscriptionUpgraded(p.subscription(true)),
        "subscription_downgraded" => B::SubscriptionDowngraded(p.subscription(true)),
        "subscription_canceled" => B::SubscriptionCanceled(p.subscription(false)),
        "subscription_reactivated" => B::SubscriptionReactivated(p.subscription(true)),
        "payment_succeeded" => B::PaymentSucceeded(p.payment()),
        "payment_failed" => B::PaymentFailed(p.payment()),
        "checkout_started" => B::CheckoutStarted(p.checkout()),
        "checkout_step" => B::CheckoutStep(p.checkout()),
        "checkout_completed" => B::CheckoutCompleted(p.checkout()),
        "checkout_abandoned" => B::CheckoutAbandoned(p.checkout()),
        "campaign_view" => B::CampaignView(p.campaign()),
        "campaign_click" => B::CampaignClick(p.campaign()),
        "campaign_conversion" => B::CampaignConversion(p.campaign()),
        "nudge_shown" => B::NudgeShown(p.nudge()),
        "nudge_clicked" => B::NudgeClicked(p.nudge()),
        "nudge_converted" => B::NudgeConverted(p.nudge()),
        "metric" => B::Metric(MetricValue {
            name: p.required_text("name").unwrap_or_default(),
            value: p.required_number("value").unwrap_or_default(),
        }),
        "identify" => B::Identify(p.identify()),
        other => {
            errors.push(FieldError::new(
                "type",
                format!(
                    "unknown event type '{}'; known types: {}",
                    truncate(other),
                    EVENT_TYPES.join(", ")
                ),
            ));
            return None;
        }
    };
    Some(body)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Reads fields of one JSON object, recording a [`FieldError`] per problem.
struct Fields<'a, 'e> {
    obj: Option<&'a Map<String, Value>>,
    prefix: &'static str,
    errors: &'e mut Vec<FieldError>,
}

impl<'a, 'e> Fields<'a, 'e> {
    fn new(
        obj: Option<&'a Map<String, Value>>,
        prefix: &'static str,
        errors: &'e mut Vec<FieldError>,
    ) -> Self {
        Fields {
            obj,
            prefix,
            errors,
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() || key.is_empty() {
            format!("{}{}", self.prefix, key)
        } else {
            format!("{}.{}", self.prefix, key)
        }
    }

    fn fail(&mut self, key: &str, message: impl Into<String>) {
        let field = self.path(key);
        self.errors.push(FieldError::new(field, message));
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj?.get(key).filter(|v| !v.is_null())
    }

    fn optional_text(&mut self, key: &str) -> Option<String> {
        let value = self.get(key)?;
        match value.as_str().map(str::trim) {
            Some("") => {
                self.fail(key, "must not be empty");
                None
            }
            Some(s) if s.chars().count() > MAX_TEXT_LEN => {
                self.fail(key, format!("must be at most {MAX_TEXT_LEN} characters"));
                None
            }
            Some(s) if s.chars().any(char::is_control) => {
                self.fail(key, "must not contain control characters");
                None
            }
            Some(s) => Some(s.to_string()),
            None => {
                self.fail(key, "must be a string");
                None
            }
        }
    }

    fn required_text(&mut self, key: &str) -> Option<String> {
        if self.get(key).is_none() {
            self.fail(key, "is required");
            return None;
        }
        self.optional_text(key)
    }

    /// Identifiers: 1..=128 characters, no whitespace, control characters or '/'.
    fn identifier(&mut self, key: &str) -> Option<String> {
        let Some(value) = self.get(key) else {
            self.fail(key, "is required");
            return None;
        };
        let Some(s) = value.as_str() else {
            self.fail(key, "must be a string");
            return None;
        };
        let len = s.chars().count();
        if len == 0 || len > MAX_ID_LEN {
            self.fail(key, format!("must be 1 to {MAX_ID_LEN} characters"));
            return None;
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            self.fail(
                key,
                "must not contain whitespace, control characters or '/'",
            );
            return None;
        }
        Some(s.to_string())
    }

    fn timestamp(&mut self, key: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(value) = self.get(key) else {
            self.fail(key, "is required");
            return None;
        };
        let Some(parsed) = value
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        else {
            self.fail(
                key,
                "must be an RFC 3339 date-time, e.g. 2026-11-24T10:00:00Z",
            );
            return None;
        };
        let ts = parsed.with_timezone(&Utc);
        if ts > now + MAX_FUTURE {
            self.fail(key, "is more than 5 minutes in the future");
            return None;
        }
        if ts < now - Duration::days(MAX_AGE_DAYS) {
            self.fail(key, format!("is more than {MAX_AGE_DAYS} days old"));
            return None;
        }
        Some(ts)
    }

    fn optional_number(&mut self, key: &str) -> Option<f64> {
        let value = self.get(key)?;
        match value.as_f64() {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                self.fail(key, "must be a number");
                None
            }
        }
    }

    fn required_number(&mut self, key: &str) -> Option<f64> {
        if self.get(key).is_none() {
            self.fail(key, "is required");
            return None;
        }
        self.optional_number(key)
    }

    fn optional_bool(&mut self, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.fail(key, "must be true or false");
                None
            }
        }
    }

    /// A non-negative duration in seconds (at most a day), kept in whole milliseconds.
    fn duration_ms(&mut self, key: &str) -> u64 {
        match self.optional_number(key) {
            None => 0,
            Some(s) if (0.0..=MAX_DURATION_SECONDS).contains(&s) => (s * 1000.0).round() as u64,
            Some(_) => {
                self.fail(
                    key,
                    format!("must be between 0 and {MAX_DURATION_SECONDS} seconds"),
                );
                0
            }
        }
    }

    /// A non-negative money amount in major units, kept in minor units (x100, rounded).
    fn amount_minor(&mut self, key: &str, required: bool) -> Option<i64> {
        let n = if required {
            self.required_number(key)?
        } else {
            self.optional_number(key)?
        };
        if !(0.0..=MAX_AMOUNT).contains(&n) {
            self.fail(key, format!("must be between 0 and {MAX_AMOUNT}"));
            return None;
        }
        Some((n * 100.0).round() as i64)
    }

    fn currency(&mut self, key: &str, required: bool) -> Option<String> {
        let s = if required {
            self.required_text(key)?
        } else {
            self.optional_text(key)?
        };
        if s.len() == 3 && s.chars().all(|c| c.is_ascii_alphabetic()) {
            Some(s.to_ascii_uppercase())
        } else {
            self.fail(key, "must be a three-letter ISO 4217 code such as USD");
            None
        }
    }

    /// Tier names key the daily aggregates, so they may not contain '#'.
    fn tier(&mut self, required: bool) -> Option<String> {
        let tier = if required {
            self.required_text("tier")?
        } else {
            self.optional_text("tier")?
        };
        if tier.contains('#') {
            self.fail("tier", "must not contain '#'");
            return None;
        }
        Some(tier)
    }

    /// Segment names key the segment counters (`sg#<segment>#...`), so no '#' either.
    fn segment(&mut self) -> Option<String> {
        let segment = self.optional_text("segment")?;
        if segment.contains('#') {
            self.fail("segment", "must not contain '#'");
            return None;
        }
        Some(segment)
    }

    fn subscription(&mut self, paid: bool) -> SubscriptionChange {
        let plan = self.required_text("plan").unwrap_or_default();
        let tier = self.tier(true).unwrap_or_default();
        let amount_minor = self.amount_minor("amount", paid);
        let currency = self.currency("currency", paid);
        let interval = match if paid {
            self.required_text("interval")
        } else {
            self.optional_text("interval")
        } {
            None => None,
            Some(s) => match Interval::parse(&s) {
                Some(i) => Some(i),
                None => {
                    self.fail("interval", "must be one of day, week, month, year");
                    None
                }
            },
        };
        let trial_ends_at = match self.get("trial_ends_at") {
            None => None,
            Some(v) => match v
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            {
                Some(t) => Some(t.with_timezone(&Utc)),
                None => {
                    self.fail("trial_ends_at", "must be an RFC 3339 date-time");
                    None
                }
            },
        };
        SubscriptionChange {
            plan,
            tier,
            amount_minor,
            currency,
            interval,
            trial_ends_at,
        }
    }

    fn payment(&mut self) -> Payment {
        Payment {
            amount_minor: self.amount_minor("amount", true).unwrap_or_default(),
            currency: self.currency("currency", true).unwrap_or_default(),
            reason: self.optional_text("reason"),
        }
    }

    fn checkout(&mut self) -> Checkout {
        Checkout {
            checkout_id: self.optional_text("checkout_id"),
            step: self.optional_text("step"),
            plan: self.optional_text("plan"),
            amount_minor: self.amount_minor("amount", false),
            currency: self.currency("currency", false),
        }
    }

    fn campaign(&mut self) -> CampaignTouch {
        CampaignTouch {
            campaign_id: self.required_text("campaign_id").unwrap_or_default(),
            segment: self.optional_text("segment"),
            revenue_minor: self.amount_minor("revenue", false),
            cost_minor: self.amount_minor("cost", false),
        }
    }

    fn nudge(&mut self) -> NudgeOutcome {
        let kind = self.required_text("nudge_kind").and_then(|k| {
            let parsed = NudgeKind::parse(&k);
            if parsed.is_none() {
                self.fail(
                    "nudge_kind",
                    "must be one of reminder, prompt, social_proof, offer",
                );
            }
            parsed
        });
        NudgeOutcome {
            nudge_kind: kind.unwrap_or(NudgeKind::Reminder),
            nudge_id: self.required_text("nudge_id").unwrap_or_default(),
        }
    }

    fn identify(&mut self) -> Identify {
        let country = self.optional_text("country").and_then(|c| {
            if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                Some(c.to_ascii_uppercase())
            } else {
                self.fail("country", "must be a two-letter ISO 3166-1 code such as US");
                None
            }
        });
        let timezone = self.optional_text("timezone").and_then(|tz| {
            if tz.parse::<chrono_tz::Tz>().is_ok() {
                Some(tz)
            } else {
                self.fail(
                    "timezone",
                    "must be an IANA time zone such as Europe/Berlin",
                );
                None
            }
        });
        let signup_date = self.optional_text("signup_date").and_then(|s| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .ok()
                .or_else(|| {
                    DateTime::parse_from_rfc3339(&s)
                        .ok()
                        .map(|d| d.date_naive())
                })
                .or_else(|| {
                    self.fail(
                        "signup_date",
                        "must be a date (YYYY-MM-DD) or RFC 3339 date-time",
                    );
                    None
                })
        });
        let goals = match self.get("goals") {
            None => None,
            Some(Value::Array(items))
                if items.len() <= MAX_GOALS
                    && items
                        .iter()
                        .all(|g| g.as_str().is_some_and(|s| !s.trim().is_empty())) =>
            {
                Some(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|s| s.trim().to_string())
                        .collect(),
                )
            }
            Some(_) => {
                self.fail(
                    "goals",
                    format!("must be an array of at most {MAX_GOALS} non-empty strings"),
                );
                None
            }
        };
        let custom = match self.get("custom") {
            None => BTreeMap::new(),
            Some(Value::Object(map))
                if map.len() <= MAX_CUSTOM_ATTRIBUTES
                    && map.values().all(|v| {
                        matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
                    }) =>
            {
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            Some(_) => {
                self.fail(
                    "custom",
                    format!(
                        "must be an object of at most {MAX_CUSTOM_ATTRIBUTES} string, number or boolean attributes"
                    ),
                );
                BTreeMap::new()
            }
        };
        let identify = Identify {
            tier: self.tier(false),
            segment: self.segment(),
            country,
            timezone,
            signup_date,
            goals,
            custom,
        };
        if identify == Identify::default() && self.errors.is_empty() {
            self.fail(
                "",
                "identify needs at least one of tier, segment, country, timezone, signup_date, goals, custom",
            );
        }
        identify
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-24T12:00:00Z".parse().unwrap()
    }

    fn feature(id: &str) -> Value {
        json!({"event_id": id, "type": "feature_used", "user_id": "u1",
               "timestamp": "2026-11-24T11:00:00Z",
               "properties": {"feature": "budget_tracker", "duration_seconds": 12.5}})
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_valid_feature_event_parses_into_its_type() {
        let e = parse_event(&feature("e1"), now()).unwrap();
        assert_eq!(
            e.body,
            EventBody::FeatureUsed(FeatureUsed {
                feature: "budget_tracker".into(),
                duration_ms: 12_500
            })
        );
    }

    #[test]
    fn every_problem_of_an_event_is_named_by_its_field() {
        let raw = json!({"event_id": "", "type": "payment_failed", "user_id": "u 1",
                         "timestamp": "yesterday",
                         "properties": {"amount": -3, "currency": "dollars"}});
        let errors = parse_event(&raw, now()).unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "event_id",
                "user_id",
                "timestamp",
                "properties.amount",
                "properties.currency"
            ]
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_rejected() {
        let mut raw = feature("e1");
        raw["timestamp"] = json!("2026-11-24T12:06:00Z");
        assert_eq!(
            fields(&parse_event(&raw, now()).unwrap_err()),
            vec!["timestamp"]
        );
        raw["timestamp"] = json!("2025-10-19T12:00:00Z");
        assert_eq!(
            fields(&parse_event(&raw, now()).unwrap_err()),
            vec!["timestamp"]
        );
        raw["timestamp"] = json!("2026-11-24T13:04:00+01:00");
        assert!(parse_event(&raw, now()).is_ok(), "offsets are honoured");
    }

    #[test]
    fn an_unknown_type_is_a_per_event_error() {
        let mut raw = feature("e1");
        raw["type"] = json!("page_view");
        let errors = parse_event(&raw, now()).unwrap_err();
        assert_eq!(fields(&errors), vec!["type"]);
        assert!(errors[0].message.contains("unknown event type 'page_view'"));
    }

    #[test]
    fn paid_subscription_events_need_price_fields() {
        let raw = json!({"event_id": "e", "type": "subscription_started", "user_id": "u",
                         "timestamp": "2026-11-24T11:00:00Z",
                         "properties": {"plan": "pro_monthly", "tier": "pro"}});
        assert_eq!(
            fields(&parse_event(&raw, now()).unwrap_err()),
            vec![
                "properties.amount",
                "properties.currency",
                "properties.interval"
            ]
        );
        let raw = json!({"event_id": "e", "type": "subscription_started", "user_id": "u",
                         "timestamp": "2026-11-24T11:00:00Z",
                         "properties": {"plan": "pro_monthly", "tier": "pro", "amount": 29.99,
                                        "currency": "usd", "interval": "month"}});
        match parse_event(&raw, now()).unwrap().body {
            EventBody::SubscriptionStarted(s) => {
                assert_eq!(s.amount_minor, Some(2999));
                assert_eq!(s.currency.as_deref(), Some("USD"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn identify_checks_timezone_and_country() {
        let raw = json!({"event_id": "e", "type": "identify", "user_id": "u",
                         "timestamp": "2026-11-24T11:00:00Z",
                         "properties": {"timezone": "Mars/Olympus", "country": "USA"}});
        assert_eq!(
            fields(&parse_event(&raw, now()).unwrap_err()),
            vec!["properties.country", "properties.timezone"]
        );
        let raw = json!({"event_id": "e", "type": "identify", "user_id": "u",
                         "timestamp": "2026-11-24T11:00:00Z", "properties": {}});
        assert_eq!(
            fields(&parse_event(&raw, now()).unwrap_err()),
            vec!["properties"]
        );
    }

    #[test]
    fn tier_names_may_not_contain_the_key_separator() {
        let raw = json!({"event_id": "e", "type": "identify", "user_id": "u",
                         "timestamp": "2026-11-24T11:00:00Z", "properties": {"tier": "pro#1"}});
        assert_eq!(
            fields(&parse_event(&raw, now()).unwrap_err()),
            vec!["properties.tier"]
        );
        let raw = json!({"event_id": "e", "type": "identify", "user_id": "u",
                         "timestamp": "2026-11-24T11:00:00Z", "properties": {"segment": "smb#rev"}});
        assert_eq!(
            fields(&parse_event(&raw, now()).unwrap_err()),
            vec!["properties.segment"]
        );
    }

    #[test]
    fn a_partly_bad_batch_keeps_its_valid_events() {
        let body = json!({"events": [feature("a"), {"event_id": "b"}, feature("c"), feature("a")]});
        let batch = parse_batch(body.to_string().as_bytes(), now()).unwrap();
        let ids: Vec<_> = batch.accepted.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "c"], "the repeated 'a' is kept once");
        assert_eq!(batch.rejected.len(), 1);
        assert_eq!(batch.rejected[0].index, 1);
        assert_eq!(batch.rejected[0].event_id.as_deref(), Some("b"));
        assert_eq!(
            fields(&batch.rejected[0].errors),
            vec!["user_id", "type", "timestamp"]
        );
    }

    #[test]
    fn whole_batch_limits() {
        assert!(matches!(
            parse_batch(b"{not json", now()),
            Err(BatchError::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(b"{\"events\": {}}", now()),
            Err(BatchError::Invalid(_))
        ));
        assert!(matches!(
            parse_batch(b"{\"events\": []}", now()),
            Err(BatchError::Invalid(_))
        ));
        let many = json!({"events": (0..501).map(|i| feature(&i.to_string())).collect::<Vec<_>>()});
        assert!(matches!(
            parse_batch(many.to_string().as_bytes(), now()),
            Err(BatchError::TooManyEvents { count: 501 })
        ));
        let big = vec![b' '; MAX_BATCH_BYTES + 1];
        assert!(matches!(
            parse_batch(&big, now()),
            Err(BatchError::TooLarge { .. })
        ));
    }
}
