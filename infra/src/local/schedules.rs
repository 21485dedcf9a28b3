//! EventBridge schedules, emulated: each enabled schedule invokes its function at the next
//! fire time (UTC) with the `Input` JSON, or a "Scheduled Event" when there is none. Any
//! schedule can also be fired on demand.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::expression::Expression;
use super::invoke::{InvokeError, Invoker};
use crate::template::{Template, ACCOUNT_ID, REGION};

#[derive(Debug)]
pub struct Schedule {
    /// The event's logical id, e.g. `DailyRollup`.
    pub id: String,
    /// The `Name` property, e.g. `tierup-daily-rollup`.
    pub name: Option<String>,
    pub binary: String,
    pub expression_text: String,
    expression: Expression,
    input: Option<Value>,
    pub enabled: bool,
    timeout: Duration,
    anchor: DateTime<Utc>,
    next: Mutex<Option<DateTime<Utc>>>,
}

/// What `GET /_local/schedules` lists.
#[derive(Debug, Serialize)]
pub struct ScheduleSummary {
    pub id: String,
    pub name: Option<String>,
    pub function: String,
    pub expression: String,
    pub enabled: bool,
    pub next_fire: Option<String>,
}

#[derive(Debug)]
pub struct Schedules {
    entries: Vec<Arc<Schedule>>,
    invoker: Invoker,
}

impl Schedules {
    pub fn from_template(
        template: &Template,
        invoker: Invoker,
        now: DateTime<Utc>,
    ) -> Result<Schedules> {
        let mut entries = Vec::new();
        let mut names = HashSet::new();
        for function in &template.functions {
            for source in &function.schedules {
                let expression = Expression::parse(&source.expression).with_context(|| {
                    format!("function {} event {}", function.logical_id, source.event_id)
                })?;
                for name in std::iter::once(&source.event_id).chain(source.name.as_ref()) {
                    if !names.insert(name.clone()) {
                        bail!("schedule name {name} is used twice; names must be unique to run them by name");
                    }
                }
                entries.push(Arc::new(Schedule {
                    id: source.event_id.clone(),
                    name: source.name.clone(),
                    binary: function.binary.clone(),
                    expression_text: source.expression.clone(),
                    next: Mutex::new(
                        source
                            .enabled
                            .then(|| expression.next_after(now, now))
                            .flatten(),
                    ),
                    expression,
                    input: source.input.clone(),
                    enabled: source.enabled,
                    timeout: Duration::from_secs(function.timeout_seconds),
                    anchor: now,
                }));
            }
        }
        Ok(Schedules { entries, invoker })
    }

    /// The schedule with this event id or `Name`.
    pub fn find(&self, name: &str) -> Option<&Arc<Schedule>> {
        self.entries
            .iter()
            .find(|s| s.id == name || s.name.as_deref() == Some(name))
    }

    pub fn summaries(&self) -> Vec<ScheduleSummary> {
        self.entries
            .iter()
            .map(|s| ScheduleSummary {
                id: s.id.clone(),
                name: s.name.clone(),
                function: s.binary.clone(),
                expression: s.expression_text.clone(),
                enabled: s.enabled,
                next_fire: s
                    .next_fire()
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            })
            .collect()
    }

    /// Invokes the schedule's function now.
    pub async fn fire(&self, schedule: &Schedule) -> Result<Value, InvokeError> {
        self.fire_with(schedule, None).await
    }

    /// Fires a schedule now; `params` (an object) is merged into the `params` of its `Input`,
    /// e.g. `{"now": "..."}` to run a sweep as of another time.
    pub async fn fire_with(
        &self,
        schedule: &Schedule,
        params: Option<&Value>,
    ) -> Result<Value, InvokeError> {
        let mut event = schedule.event(Utc::now());
        if let (Some(Value::Object(extra)), Some(obj)) = (params, event.as_object_mut()) {
            let target = obj
                .entry("params")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(target) = target.as_object_mut() {
                for (k, v) in extra {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        self.invoker
            .invoke(&schedule.binary, &event, schedule.timeout)
            .await
    }

    /// One timer task per enabled schedule.
    pub fn spawn_timers(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        for schedule in self.entries.iter().filter(|s| s.enabled) {
            let schedules = Arc::clone(self);
            let schedule = Arc::clone(schedule);
            tasks.spawn(async move { schedules.run_timer(&schedule).await });
        }
    }

    async fn run_timer(&self, schedule: &Schedule) {
        while let Some(at) = schedule.next_fire() {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            schedule.set_next(schedule.expression.next_after(at, schedule.anchor));
            match self.fire(schedule).await {
                Ok(_) => {
                    info!(schedule = %schedule.id, function = %schedule.binary, "schedule fired")
                }
                Err(e) => warn!(schedule = %schedule.id, error = %e, "scheduled invocation failed"),
            }
        }
    }
}

impl Schedule {
    fn next_fire(&self) -> Option<DateTime<Utc>> {
        self.next.lock().map(|n| *n).unwrap_or_default()
    }

    fn set_next(&self, next: Option<DateTime<Utc>>) {
        if let Ok(mut slot) = self.next.lock() {
            *slot = next;
        }
    }

    /// What EventBridge delivers: the `Input` JSON when set, else a Scheduled Event.
    pub fn event(&self, now: DateTime<Utc>) -> Value {
        if let Some(input) = &self.input {
            return input.clone();
        }
        let rule = self.name.as_deref().unwrap_or(&self.id);
        json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "region": REGION,
            "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}")],
            "detail": {},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: scheduler
    Properties:
      Events:
        Daily:
          Type: ScheduleV2
          Properties:
            Name: tierup-daily
            ScheduleExpression: cron(5 0 * * ? *)
            Input: '{"job":"daily"}'
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(5 minutes)
            Enabled: false
"#;

    fn schedules() -> Schedules {
        let template = Template::parse(TEMPLATE).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Schedules::from_template(&template, Invoker::new("http://127.0.0.1:9"), now).unwrap()
    }

    #[test]
    fn schedules_are_found_by_event_id_or_name_and_list_their_next_fire() {
        let s = schedules();
        assert_eq!(s.find("Daily").unwrap().binary, "scheduler");
        assert_eq!(s.find("tierup-daily").unwrap().id, "Daily");
        assert!(s.find("nope").is_none());
        let list = s.summaries();
        let daily = list.iter().find(|l| l.id == "Daily").unwrap();
        assert_eq!(daily.next_fire.as_deref(), Some("2026-11-25T00:05:00Z"));
        let tick = list.iter().find(|l| l.id == "Tick").unwrap();
        assert!(!tick.enabled);
        assert_eq!(tick.next_fire, None);
    }

    #[test]
    fn the_event_is_the_input_or_a_scheduled_event() {
        let s = schedules();
        let now = Utc::now();
        assert_eq!(s.find("Daily").unwrap().event(now), json!({"job": "daily"}));
        let event = s.find("Tick").unwrap().event(now);
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(
            event["resources"][0],
            "arn:aws:events:us-east-1:123456789012:rule/Tick"
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = TEMPLATE.replace("Name: tierup-daily", "Name: Tick");
        let template = Template::parse(&text).unwrap();
        let err =
            Schedules::from_template(&template, Invoker::new("http://x"), Utc::now()).unwrap_err();
        assert!(err.to_string().contains("Tick"), "{err}");
    }
}
