//! Trial reminders end to end through the local stack, on a controllable clock: the reminder
//! sweep is fired with an injected `params.now` (no sleeps), twice at once each time, and
//! each dispatch job is delivered again afterwards. The user lives in a fixed-offset zone
//! chosen so that it is 10:xx there now, which pins every local time below:
//!
//! - day D: an automatic prompt and two offers fill the daily cap (3), so the behavioural
//!   reminders due that day are deferred to D+1 08:00 (quiet hours end);
//! - the trial ends D+1 23:00; its 24 h reminder (D 23:00) moves out of quiet hours to D+1
//!   08:00, where it wins on priority over three lower reminders; the 12 h reminder (11:00)
//!   waits for the 6 h cooldown until 14:00; the 1 h one (22:00) falls in quiet hours past
//!   the trial end and is skipped;
//! - a conversion after the second send cancels the rest.
//!
//! Then a second user whose running `timing` variant plans six expiry reminders 12 h apart:
//! five go out, the sixth and a lower-priority one are skipped by the per-trial cap.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_sqs::Client as Sqs;
use chrono::{DateTime, Duration as Span, FixedOffset, NaiveTime, Timelike, Utc};
use serde_json::{json, Value};
use shared::auth::Role;
use tierup_e2e::{eventually, queue_url, Stack};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fixed-offset zone (`Etc/GMT∓h`) where the local hour is 10 at `now`.
fn zone_at_ten(now: DateTime<Utc>) -> (String, FixedOffset) {
    let mut h = 10 - now.hour() as i32;
    if h > 14 {
        h -= 24;
    }
    if h < -12 {
        h += 24;
    }
    let name = match h {
        0 => "Etc/GMT".to_string(),
        h if h > 0 => format!("Etc/GMT-{h}"),
        h => format!("Etc/GMT+{}", -h),
    };
    (name, FixedOffset::east_opt(h * 3600).unwrap())
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// Reads and deletes the outbox messages about `user` (others are made visible again at
/// once), returning each with its SQS message id.
async fn drain_outbox(sqs: &Sqs, url: &str, user: &str) -> Vec<(String, Value)> {
    let mut mine = Vec::new();
    for _ in 0..5 {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the outbox");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let body: Value = m
                .body()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            let handle = m.receipt_handle().unwrap_or_default().to_string();
            if body["user_id"] == user {
                mine.push((m.message_id().unwrap_or_default().to_string(), body));
                let _ = sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            } else {
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
    }
    mine
}

struct Run<'a> {
    stack: &'a Stack,
    sqs: Sqs,
    outbox: String,
    jobs: String,
    user: String,
    admin: String,
    /// Every outbox message about the user: SQS message id -> body.
    seen: BTreeMap<String, Value>,
}

impl<'a> Run<'a> {
    async fn new(stack: &'a Stack, user: &str, admin: &str) -> Run<'a> {
        Run {
            stack,
            sqs: stack.sqs().await,
            outbox: queue_url("OutboxQueue"),
            jobs: queue_url("JobsQueue"),
            user: user.to_string(),
            admin: admin.to_string(),
            seen: BTreeMap::new(),
        }
    }
}

impl Run<'_> {
    async fn reminders(&self) -> Vec<Value> {
        let (status, body) = self
            .stack
            .get(&format!("/v1/users/{}/reminders", self.user), &self.admin)
            .await;
        assert_eq!(status, 200, "{body}");
        body["trials"][0]["reminders"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn find(reminders: &[Value], id_suffix: &str) -> Value {
        reminders
            .iter()
            .find(|r| r["reminder_id"].as_str().unwrap().ends_with(id_suffix))
            .cloned()
            .unwrap_or_else(|| panic!("no reminder *{id_suffix} in {reminders:?}"))
    }

    /// Fires the reminder sweep as of `now` twice at once, waits until no reminder is still
    /// planned at or before `now`, delivers the user's dispatch job once more (a redelivery),
    /// and returns the reminders sent by it all.
    async fn sweep(&mut self, now: DateTime<Utc>) -> Vec<Value> {
        let body = json!({"params": {"now": now.to_rfc3339()}}).to_string();
        let fire = || {
            self.stack.call(
                reqwest::Method::POST,
                "/_local/schedules/ReminderSweep/run",
                None,
                Some(body.clone().into_bytes()),
            )
        };
        let ((s1, b1), (s2, b2)) = tokio::join!(fire(), fire());
        assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
        let settled = eventually(
            "the dispatch of the due reminders",
            Duration::from_secs(60),
            || async {
                let rs = self.reminders().await;
                let pending = rs
                    .iter()
                    .any(|r| r["status"] == "planned" && at(&r["due_at"]) <= now);
                (!pending).then_some(rs)
            },
        )
        .await;
        // The same dispatch job again, as SQS would redeliver it.
        let job = shared::jobs::reminder_dispatch_message(&self.user, now);
        self.sqs
            .send_message()
            .queue_url(&self.jobs)
            .message_body(serde_json::to_string(&job).unwrap())
            .send()
            .await
            .expect("send the dispatch job again");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut sent = Vec::new();
        for (id, m) in drain_outbox(&self.sqs, &self.outbox, &self.user).await {
            if m["type"] == "trial_reminder" {
                sent.push(m.clone());
            }
            self.seen.insert(id, m);
        }
        let _ = settled;
        sent
    }
}

/// Both trial scenarios, one after the other (see the second one).
#[tokio::test]
async fn a_trial_gets_its_reminders_at_their_times_within_every_cap_and_a_conversion_stops_them() {
    let stack = Stack::from_env();
    let service = stack.token(Role::Service, "e2e-service");
    let admin = stack.token(Role::Admin, "e2e-admin");
    let user = unique("nudge-user");
    let now = Utc::now();
    let (zone, offset) = zone_at_ten(now);
    let local_now = now.with_timezone(&offset);
    let local = |days: i64, h: u32, m: u32| -> DateTime<Utc> {
        (local_now.date_naive() + Span::days(days))
            .and_time(NaiveTime::from_hms_opt(h, m, 0).unwrap())
            .and_local_timezone(offset)
            .unwrap()
            .with_timezone(&Utc)
    };

    // Two weeks ago: traits; then eleven feature uses over seven days (value shown 0.6,
    // confidence 0.88), nothing since (an engagement drop).
    let mut events = vec![json!({
        "event_id": unique("e"), "type": "identify", "user_id": user,
        "timestamp": (now - Span::days(13)).to_rfc3339(),
        "properties": {"timezone": zone, "tier": "budget", "segment": "e2e_nudges",
                       "goals": ["save_money"]}})];
    // Seven active days out of the last fourteen: an engagement score of 0.5.
    let uses = [
        ("budget_tracker", 5),
        ("expense_categorizer", 3),
        ("savings_goals", 3),
    ];
    let mut i = 0;
    for (feature, n) in uses {
        for _ in 0..n {
            events.push(json!({
                "event_id": unique("e"), "type": "feature_used", "user_id": user,
                "timestamp": (now - Span::days(13 - (i % 7))).to_rfc3339(),
                "properties": {"feature": feature, "duration_seconds": 600}}));
            i += 1;
        }
    }
    let (status, body) = stack
        .post_json("/v1/events", &service, &json!({ "events": events }))
        .await;
    assert_eq!(status, 202, "{body}");

    // worker-events evaluates a prompt on the profile update and sends it to the outbox.
    let prompts = eventually("the automatic prompt", Duration::from_secs(90), || async {
        let (_, b) = stack
            .get(&format!("/v1/users/{user}/prompts"), &admin)
            .await;
        let list = b["prompts"].as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert_eq!(prompts[0]["trigger_feature"], "savings_goals");
    assert_eq!(prompts[0]["target_tier"], "mid");
    assert_eq!(prompts[0]["delivered_via"], "outbox");

    // Two offers the same local day: with the prompt, the daily cap of 3 is reached.
    let mut discounts = BTreeSet::new();
    for _ in 0..2 {
        let (status, body) = stack
            .post_json(&format!("/v1/users/{user}/offers"), &service, &json!({}))
            .await;
        assert_eq!(status, 201, "{body}");
        let v = body["offer"]["terms"]["discount_value"].as_u64().unwrap();
        assert!((20..=40).contains(&v), "budget to mid: {body}");
        discounts.insert(v);
    }
    assert_eq!(discounts.len(), 1, "the same user gets the same terms");
    let (status, body) = stack
        .post_json(&format!("/v1/users/{user}/offers"), &service, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["eligible"], false);
    assert_eq!(body["reasons"][0]["code"], "daily_cap", "{body}");

    // The trial starts now and ends tomorrow at 23:00 local time.
    let ends = local(1, 23, 0);
    let trial = json!({"events": [{
        "event_id": unique("e"), "type": "subscription_trial_started", "user_id": user,
        "timestamp": now.to_rfc3339(),
        "properties": {"plan": "mid_monthly", "tier": "mid", "trial_ends_at": ends.to_rfc3339()}}]});
    let (status, body) = stack.post_json("/v1/events", &service, &trial).await;
    assert_eq!(status, 202, "{body}");
    let mut run = Run::new(&stack, &user, &admin).await;
    let planned = eventually("the trial's reminders", Duration::from_secs(90), || async {
        let rs = run.reminders().await;
        (rs.len() >= 8).then_some(rs)
    })
    .await;
    let expiry = |h: u32| Run::find(&planned, &format!(":trial_expiry:{h}h"));
    assert_eq!(at(&expiry(24)["planned_for"]), local(0, 23, 0));
    assert_eq!(at(&expiry(24)["due_at"]), local(1, 8, 0), "quiet hours end");
    assert_eq!(at(&expiry(12)["due_at"]), local(1, 11, 0));
    assert_eq!(at(&expiry(6)["due_at"]), local(1, 17, 0));
    assert_eq!(at(&expiry(2)["due_at"]), local(1, 21, 0));
    assert_eq!(expiry(1)["status"], "skipped");
    assert_eq!(expiry(1)["reason"], "quiet_hours_past_trial_end");
    for h in [24, 12, 6, 2] {
        assert_eq!(expiry(h)["priority"], 10);
        assert_eq!(expiry(h)["status"], "planned");
    }
    let drop = Run::find(&planned, ":engagement_drop");
    let value = Run::find(&planned, ":value_demonstration");
    let goal = Run::find(&planned, ":goal_alignment");
    // Base priority, +1 while engagement has dropped, +3 when due within 24 h of the end.
    assert_eq!(drop["priority"], 7);
    assert_eq!(value["priority"], 9);
    assert_eq!(goal["priority"], 7, "3 + 1 + 3: due at D+1 08:00");
    assert_eq!(
        at(&goal["due_at"]),
        local(1, 8, 0),
        "22:xx moves out of quiet hours"
    );

    // Day D: the behavioural reminders fall due, but the daily cap defers them to D+1 08:00.
    let first = at(&drop["due_at"]);
    assert!(run.sweep(first).await.is_empty());
    let second = at(&value["due_at"]);
    assert!(run.sweep(second).await.is_empty());
    let rs = run.reminders().await;
    for id in [":engagement_drop", ":value_demonstration"] {
        let r = Run::find(&rs, id);
        assert_eq!(r["status"], "planned", "{r}");
        assert_eq!(r["reason"], "daily_cap", "{r}");
        assert_eq!(at(&r["due_at"]), local(1, 8, 0), "{r}");
    }

    // D+1 08:00: four due; the trial-expiry reminder (priority 10) goes, exactly once.
    let sent = run.sweep(local(1, 8, 0)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0]["reminder_id"]
        .as_str()
        .unwrap()
        .ends_with(":trial_expiry:24h"));
    assert_eq!(at(&sent[0]["sent_at"]), local(1, 8, 0));
    assert_eq!(sent[0]["priority"], 10);
    let message = sent[0]["message"].as_str().unwrap();
    assert!(
        message.contains("15 hours"),
        "hours left at 08:00 for 23:00: {message}"
    );
    let rs = run.reminders().await;
    for id in [
        ":engagement_drop",
        ":value_demonstration",
        ":goal_alignment",
    ] {
        let r = Run::find(&rs, id);
        assert_ne!(r["status"], "sent", "{r}");
    }

    // 11:00: the 12 h reminder waits for the cooldown (6 h after 08:00).
    assert!(run.sweep(local(1, 11, 0)).await.is_empty());
    let twelve = Run::find(&run.reminders().await, ":trial_expiry:12h");
    assert_eq!(twelve["reason"], "cooldown", "{twelve}");
    assert_eq!(at(&twelve["due_at"]), local(1, 14, 0));

    // 14:00: it goes.
    let sent = run.sweep(local(1, 14, 0)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0]["reminder_id"]
        .as_str()
        .unwrap()
        .ends_with(":trial_expiry:12h"));
    assert_eq!(at(&sent[0]["sent_at"]), local(1, 14, 0));

    // The user converts: every reminder still planned is cancelled.
    let convert = json!({"events": [{
        "event_id": unique("e"), "type": "subscription_trial_converted", "user_id": user,
        "timestamp": Utc::now().to_rfc3339(),
        "properties": {"plan": "mid_monthly", "tier": "mid", "amount": 9.99,
                       "currency": "USD", "interval": "month"}}]});
    let (status, body) = stack.post_json("/v1/events", &service, &convert).await;
    assert_eq!(status, 202, "{body}");
    let after = eventually("the cancellation", Duration::from_secs(90), || async {
        let rs = run.reminders().await;
        (!rs.iter().any(|r| r["status"] == "planned")).then_some(rs)
    })
    .await;
    let six = Run::find(&after, ":trial_expiry:6h");
    assert_eq!(six["status"], "cancelled");
    assert_eq!(six["reason"], "converted");
    assert!(run.sweep(local(1, 20, 0)).await.is_empty());
    assert!(run.sweep(local(1, 22, 59)).await.is_empty());

    // The whole outbox story: each reminder once, in order, apart by the cooldown, outside
    // quiet hours, within the per-trial cap and the daily cap.
    let reminders: Vec<&Value> = run
        .seen
        .values()
        .filter(|m| m["type"] == "trial_reminder")
        .collect();
    let ids: BTreeSet<&str> = reminders
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        reminders.len(),
        "a reminder reached the outbox twice"
    );
    assert_eq!(reminders.len(), 2);
    let mut times: Vec<DateTime<Utc>> = reminders.iter().map(|m| at(&m["sent_at"])).collect();
    times.sort();
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Span::hours(6), "cooldown: {times:?}");
    }
    for t in &times {
        let h = t.with_timezone(&offset).hour();
        assert!((8..22).contains(&h), "a reminder in quiet hours at {t}");
    }
    let final_list = run.reminders().await;
    assert!(final_list.iter().filter(|r| r["status"] == "sent").count() <= 5);
    let prompt_messages = run
        .seen
        .values()
        .filter(|m| m["type"] == "upgrade_prompt")
        .count();
    assert!(prompt_messages <= 1, "the prompt reached the outbox twice");

    a_timing_variant_with_six_offsets_reaches_the_per_trial_cap_of_five().await;
}

/// Run after the first scenario, never beside it: a sweep as of some time acts on every
/// user, so two time-travelling scenarios at once would dispatch each other's reminders.
async fn a_timing_variant_with_six_offsets_reaches_the_per_trial_cap_of_five() {
    let stack = Stack::from_env();
    let service = stack.token(Role::Service, "e2e-service");
    let admin = stack.token(Role::Admin, "e2e-admin");
    let user = unique("capped-user");
    let segment = unique("e2e_cap").replace('-', "_");
    let now = Utc::now();
    let (zone, offset) = zone_at_ten(now);
    let local_now = now.with_timezone(&offset);
    let local = |days: i64, h: u32| -> DateTime<Utc> {
        (local_now.date_naive() + Span::days(days))
            .and_time(NaiveTime::from_hms_opt(h, 0, 0).unwrap())
            .and_local_timezone(offset)
            .unwrap()
            .with_timezone(&Utc)
    };

    // A running timing test that only this user's segment enters; its treatment (weight 1)
    // plans six expiry reminders, 12 h apart, all outside quiet hours.
    let key = format!(
        "e2e-cap-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let definition = json!({
        "key": key, "name": "Six reminders", "test_type": "timing",
        "variants": [{"key": "control"},
                     {"key": "six", "config": {"offsets_hours": [84, 72, 60, 48, 36, 24]}}],
        "weights": [0.0, 1.0],
        "condition": {"segment": segment},
        "primary_metric": {"name": "upgraded", "kind": "proportion", "event": "subscription_started"}
    });
    let (status, body) = stack
        .post_json("/v1/experiments", &admin, &definition)
        .await;
    assert_eq!(status, 201, "{body}");
    let status_path = format!("/v1/experiments/{key}/status");
    let (status, body) = stack
        .post_json(&status_path, &admin, &json!({"status": "running"}))
        .await;
    assert_eq!(status, 200, "{body}");

    let ends = local(4, 20);
    let events = json!({"events": [
        {"event_id": unique("e"), "type": "identify", "user_id": user,
         "timestamp": (now - Span::seconds(5)).to_rfc3339(),
         "properties": {"timezone": zone, "segment": segment}},
        {"event_id": unique("e"), "type": "subscription_trial_started", "user_id": user,
         "timestamp": now.to_rfc3339(),
         "properties": {"plan": "pro_monthly", "tier": "professional", "trial_ends_at": ends.to_rfc3339()}}]});
    let (status, body) = stack.post_json("/v1/events", &service, &events).await;
    assert_eq!(status, 202, "{body}");
    let mut run = Run::new(&stack, &user, &admin).await;
    // Six expiry reminders (the variant's offsets), and a low-usage reminder: nothing used yet.
    let expiry = |rs: &[Value]| {
        rs.iter()
            .filter(|r| r["reminder_type"] == "trial_expiry")
            .count()
    };
    let planned = eventually(
        "six planned expiry reminders",
        Duration::from_secs(90),
        || async {
            let rs = run.reminders().await;
            (expiry(&rs) == 6).then_some(rs)
        },
    )
    .await;
    for r in &planned {
        if r["reminder_type"] == "trial_expiry" {
            // The reminders the variant shaped carry its tag.
            assert_eq!(r["experiment"]["key"], key.as_str(), "{r}");
        }
        assert_eq!(r["status"], "planned", "{r}");
    }

    // Each falls due in turn; five go, and the sixth finds the trial's cap reached.
    let mut sent = Vec::new();
    for (days, hour) in [(1, 8), (1, 20), (2, 8), (2, 20), (3, 8), (3, 20)] {
        sent.extend(run.sweep(local(days, hour)).await);
    }
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert!(
        sent.iter().all(|m| m["reminder_type"] == "trial_expiry"),
        "{sent:?}"
    );
    let after = run.reminders().await;
    let last = Run::find(&after, ":trial_expiry:24h");
    assert_eq!(last["status"], "skipped", "{last}");
    assert_eq!(last["reason"], "per_trial_cap", "{last}");
    // The lower-priority reminder lost its place to the expiry ones: higher priority wins
    // when the cap forces a choice.
    for r in after
        .iter()
        .filter(|r| r["reminder_type"] != "trial_expiry")
    {
        assert_eq!(r["status"], "skipped", "{r}");
        assert_eq!(r["reason"], "per_trial_cap", "{r}");
    }
    let ids: BTreeSet<&str> = sent
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "each once");

    let (status, body) = stack
        .post_json(&status_path, &admin, &json!({"status": "cancelled"}))
        .await;
    assert_eq!(status, 200, "{body}");
}
