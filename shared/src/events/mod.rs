//! Product events: the typed domain model and the parser that turns client JSON into it.
//!
//! Every event has `event_id` (client-generated, the idempotency key), `type`, `user_id`,
//! `timestamp` (RFC 3339) and type-specific `properties`. [`parse_event`] checks one raw event
//! and returns either the typed [`Event`] or every field-level problem it found. Properties a
//! type does not define are ignored (clients may send more than tierup uses); `identify`'s
//! `custom` object is kept as the user's custom attributes.

mod parse;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use parse::{
    parse_batch, parse_event, BatchError, ParsedBatch, Rejected, MAX_BATCH_BYTES, MAX_BATCH_EVENTS,
};

/// A field-level problem with an input: `field` is a dotted path such as `properties.amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub user_id: String,
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    /// The event's `type` name as clients send it.
    pub fn type_name(&self) -> &'static str {
        self.body.type_name()
    }

    /// UTC calendar day of the event.
    pub fn day(&self) -> NaiveDate {
        self.timestamp.date_naive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "properties", rename_all = "snake_case")]
pub enum EventBody {
    FeatureUsed(FeatureUsed),
    WorkflowStep(WorkflowStep),
    JourneyStage(JourneyStage),
    SubscriptionTrialStarted(SubscriptionChange),
    SubscriptionTrialConverted(SubscriptionChange),
    SubscriptionTrialExpired(SubscriptionChange),
    SubscriptionStarted(SubscriptionChange),
    SubscriptionRenewed(SubscriptionChange),
    SubscriptionUpgraded(SubscriptionChange),
    SubscriptionDowngraded(SubscriptionChange),
    SubscriptionCanceled(SubscriptionChange),
    SubscriptionReactivated(SubscriptionChange),
    PaymentSucceeded(Payment),
    PaymentFailed(Payment),
    CheckoutStarted(Checkout),
    CheckoutStep(Checkout),
    CheckoutCompleted(Checkout),
    CheckoutAbandoned(Checkout),
    CampaignView(CampaignTouch),
    CampaignClick(CampaignTouch),
    CampaignConversion(CampaignTouch),
    NudgeShown(NudgeOutcome),
    NudgeClicked(NudgeOutcome),
    NudgeConverted(NudgeOutcome),
    Metric(MetricValue),
    Identify(Identify),
}

/// Every event type name, in the order of [`EventBody`].
pub const EVENT_TYPES: &[&str] = &[
    "feature_used",
    "workflow_step",
    "journey_stage",
    "subscription_trial_started",
    "subscription_trial_converted",
    "subscription_trial_expired",
    "subscription_started",
    "subscription_renewed",
    "subscription_upgraded",
    "subscription_downgraded",
    "subscription_canceled",
    "subscription_reactivated",
    "payment_succeeded",
    "payment_failed",
    "checkout_started",
    "checkout_step",
    "checkout_completed",
    "checkout_abandoned",
    "campaign_view",
    "campaign_click",
    "campaign_conversion",
    "nudge_shown",
    "nudge_clicked",
    "nudge_converted",
    "metric",
    "identify",
];

impl EventBody {
    pub fn type_name(&self) -> &'static str {
        use EventBody::*;
        match self {
            FeatureUsed(_) => "feature_used",
            WorkflowStep(_) => "workflow_step",
            JourneyStage(_) => "journey_stage",
            SubscriptionTrialStarted(_) => "subscription_trial_started",
            SubscriptionTrialConverted(_) => "subscription_trial_converted",
            SubscriptionTrialExpired(_) => "subscription_trial_expired",
            SubscriptionStarted(_) => "subscription_started",
            SubscriptionRenewed(_) => "subscription_renewed",
            SubscriptionUpgraded(_) => "subscription_upgraded",
            SubscriptionDowngraded(_) => "subscription_downgraded",
            SubscriptionCanceled(_) => "subscription_canceled",
            SubscriptionReactivated(_) => "subscription_reactivated",
            PaymentSucceeded(_) => "payment_succeeded",
            PaymentFailed(_) => "payment_failed",
            CheckoutStarted(_) => "checkout_started",
            CheckoutStep(_) => "checkout_step",
            CheckoutCompleted(_) => "checkout_completed",
            CheckoutAbandoned(_) => "checkout_abandoned",
            CampaignView(_) => "campaign_view",
            CampaignClick(_) => "campaign_click",
            CampaignConversion(_) => "campaign_conversion",
            NudgeShown(_) => "nudge_shown",
            NudgeClicked(_) => "nudge_clicked",
            NudgeConverted(_) => "nudge_converted",
            Metric(_) => "metric",
            Identify(_) => "identify",
        }
    }
}

/// `feature_used`: a feature was used for `duration_ms` milliseconds (sent as
/// `duration_seconds`, kept in whole milliseconds so sums are exact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureUsed {
    pub feature: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowStep {
    pub workflow: String,
    pub session_id: String,
    pub step: String,
    pub duration_ms: u64,
    pub completed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyStage {
    pub journey: String,
    pub stage: String,
}

/// Billing interval of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    /// Monthly recurring revenue of a price of `amount_minor` per interval, in minor units,
    /// rounded half away from zero: day x 365/12, week x 52/12, month x 1, year / 12.
    pub fn monthly_minor(self, amount_minor: i64) -> i64 {
        let (num, den) = match self {
            Interval::Day => (365, 12),
            Interval::Week => (52, 12),
            Interval::Month => (1, 1),
            Interval::Year => (1, 12),
        };
        let scaled = amount_minor * num;
        (scaled + den / 2) / den
    }
}

/// Properties of the `subscription_*` events. The amount is in minor units (cents), converted
/// from the decimal `amount` the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionChange {
    pub plan: String,
    pub tier: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub interval: Option<Interval>,
    /// For `subscription_trial_started`: when the trial ends, if the client knows.
    pub trial_ends_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub amount_minor: i64,
    pub currency: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub checkout_id: Option<String>,
    pub step: Option<String>,
    pub plan: Option<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignTouch {
    pub campaign_id: String,
    pub segment: Option<String>,
    pub revenue_minor: Option<i64>,
    pub cost_minor: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NudgeKind {
    Reminder,
    Prompt,
    SocialProof,
    Offer,
}

impl NudgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NudgeKind::Reminder => "reminder",
            NudgeKind::Prompt => "prompt",
            NudgeKind::SocialProof => "social_proof",
            NudgeKind::Offer => "offer",
        }
    }

    pub fn parse(s: &str) -> Option<NudgeKind> {
        match s {
            "reminder" => Some(NudgeKind::Reminder),
            "prompt" => Some(NudgeKind::Prompt),
            "social_proof" => Some(NudgeKind::SocialProof),
            "offer" => Some(NudgeKind::Offer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NudgeOutcome {
    pub nudge_kind: NudgeKind,
    pub nudge_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub name: String,
    pub value: f64,
}

/// `identify`: traits of the user; only the ones present change the profile.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Identify {
    pub tier: Option<String>,
    pub segment: Option<String>,
    pub country: Option<String>,
    pub timezone: Option<String>,
    pub signup_date: Option<NaiveDate>,
    pub goals: Option<Vec<String>>,
    pub custom: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_queue_form() {
        let e = Event {
            event_id: "e1".into(),
            user_id: "u1".into(),
            timestamp: "2026-11-01T10:00:00Z".parse().unwrap(),
            body: EventBody::FeatureUsed(FeatureUsed {
                feature: "budget_tracker".into(),
                duration_ms: 1500,
            }),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "feature_used");
        assert_eq!(json["properties"]["feature"], "budget_tracker");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn monthly_revenue_normalises_every_interval() {
        assert_eq!(Interval::Month.monthly_minor(2999), 2999);
        assert_eq!(Interval::Year.monthly_minor(11988), 999);
        assert_eq!(Interval::Year.monthly_minor(10000), 833); // 833.33
        assert_eq!(Interval::Week.monthly_minor(1000), 4333); // 4333.33
        assert_eq!(Interval::Day.monthly_minor(100), 3042); // 3041.67
    }

    #[test]
    fn every_type_name_is_listed() {
        assert_eq!(EVENT_TYPES.len(), 26);
        let body = EventBody::Identify(Identify::default());
        assert!(EVENT_TYPES.contains(&body.type_name()));
    }
}
