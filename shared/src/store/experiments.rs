//! Experiments in the single table: definitions, audit records, significance-check history,
//! sticky assignments and the write-sharded sufficient statistics.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::items::item_size;
use super::{n, s, DynamoStore};
use crate::error::StoreError;
use crate::experiments::checks::CheckPoint;
use crate::experiments::fold::{attrs, Assignment, MetricCommit, MetricStore, PhaseStats};
use crate::experiments::lifecycle::AuditRecord;
use crate::experiments::model::{Experiment, Status};
use crate::ingest::{shard_of, CommitOutcome};

/// Key formats of experiment items.
pub mod xkeys {
    pub const DEF: &str = "DEF";
    pub const AUDIT_PREFIX: &str = "AUDIT#";
    pub const CHECK_PREFIX: &str = "CHECK#";
    pub const ASSIGN_PREFIX: &str = "XA#";
    /// Partition of the markers of experiments owing an `experiment_concluded` notice.
    pub const PENDING_NOTICES: &str = "XPENDING";

    pub fn experiment(key: &str) -> String {
        format!("XP#{key}")
    }
    pub fn status(status: &str) -> String {
        format!("XSTATUS#{status}")
    }
    pub fn audit(version: u64) -> String {
        format!("{AUDIT_PREFIX}{version:010}")
    }
    pub fn check(slot: &str) -> String {
        format!("{CHECK_PREFIX}{slot}")
    }
    pub fn assignment(experiment: &str) -> String {
        format!("{ASSIGN_PREFIX}{experiment}")
    }
    /// The statistics of one phase (bucket version) of an experiment.
    pub fn phase(experiment: &str, bucket_version: u32) -> String {
        format!("XS#{experiment}#{bucket_version}")
    }
    /// Dedupe sort key of an event's observation of one metric folded into an experiment
    /// (partition `EVENT#<id>`).
    pub fn observed(experiment: &str, metric: &str) -> String {
        format!("XP#{experiment}#{metric}")
    }
}

/// Whether a conditional write created the item.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Created,
    /// The condition failed: the item exists (or a racing writer won).
    Exists,
}

pub(super) fn encode<T: Serialize>(key: &str, value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Encode {
            key: key.to_string(),
            source: serde::ser::Error::custom(e.to_string()),
        })
}

pub(super) fn decode<T: DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let key = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let text = item
        .get("doc")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("");
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key,
        source: serde::de::Error::custom(e.to_string()),
    })
}

fn experiment_item(e: &Experiment) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let pk = xkeys::experiment(e.key());
    Ok(HashMap::from([
        ("doc".to_string(), encode(&pk, e)?),
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(xkeys::DEF)),
        ("gsi1pk".to_string(), s(xkeys::status(e.status.as_str()))),
        (
            "gsi1sk".to_string(),
            s(format!("{}#{}", e.created_at.to_rfc3339(), e.key())),
        ),
        ("version".to_string(), n(e.version)),
    ]))
}

fn audit_item(a: &AuditRecord) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let pk = xkeys::experiment(&a.experiment);
    Ok(HashMap::from([
        ("doc".to_string(), encode(&pk, a)?),
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(xkeys::audit(a.version))),
    ]))
}

fn assignment_item(a: &Assignment) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let pk = super::keys::user(&a.user_id);
    Ok(HashMap::from([
        ("doc".to_string(), encode(&pk, a)?),
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(xkeys::assignment(&a.experiment))),
        ("bucket_version".to_string(), n(a.bucket_version)),
        ("version".to_string(), n(a.version)),
    ]))
}

/// How a cancelled transaction failed: a condition (someone else's write won: re-read) or
/// only transaction conflicts with concurrent transactions on the same items (retry as is).
enum Cancelled {
    Condition,
    ConflictOnly,
}

fn cancellation(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
    >,
) -> Option<Cancelled> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error()
    else {
        return None;
    };
    let codes: Vec<&str> = e
        .cancellation_reasons()
        .iter()
        .filter_map(|r| r.code())
        .collect();
    if codes.contains(&"ConditionalCheckFailed") {
        Some(Cancelled::Condition)
    } else if codes.contains(&"TransactionConflict") {
        Some(Cancelled::ConflictOnly)
    } else {
        None
    }
}

pub(super) fn put(
    table: &str,
    item: HashMap<String, AttributeValue>,
    condition: Option<(&str, Vec<(&str, AttributeValue)>)>,
) -> Result<TransactWriteItem, StoreError> {
    let mut b = Put::builder().table_name(table).set_item(Some(item));
    if let Some((expr, values)) = condition {
        b = b.condition_expression(expr);
        for (k, v) in values {
            b = b.expression_attribute_values(k, v);
        }
    }
    let p = b
        .build()
        .map_err(|e| StoreError::sdk("TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().put(p).build())
}

pub(super) fn add_update(
    table: &str,
    pk: String,
    sk: String,
    increments: impl IntoIterator<Item = (String, String)>,
) -> Result<(TransactWriteItem, usize), StoreError> {
    let mut expr = Vec::new();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut bytes = pk.len() + sk.len() + 4;
    for (i, (name, amount)) in increments.into_iter().enumerate() {
        expr.push(format!("#a{i} :a{i}"));
        bytes += name.len() + amount.len() / 2 + 1;
        names.insert(format!("#a{i}"), name);
        values.insert(format!(":a{i}"), AttributeValue::N(amount));
    }
    let u = Update::builder()
        .table_name(table)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .update_expression(format!("ADD {}", expr.join(", ")))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|e| StoreError::sdk("TransactWriteItems", e))?;
    Ok((TransactWriteItem::builder().update(u).build(), bytes))
}

/// A number as DynamoDB text: integers without a fraction, others in shortest round-trip form.
fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl DynamoStore {
    /// Runs a transaction. A failed condition is `Conflict` (the caller re-reads); a
    /// cancellation only by conflicts with concurrent transactions on the same items (hot
    /// shard items) is retried here with backoff, as the same writes are still right.
    pub(super) async fn transact(
        &self,
        writes: Vec<TransactWriteItem>,
        bytes: &[usize],
    ) -> Result<CommitOutcome, StoreError> {
        const ATTEMPTS: u32 = 6;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes.clone()))
                .send()
                .await
            {
                Ok(_) => {
                    self.stats.transaction(bytes);
                    return Ok(CommitOutcome::Committed);
                }
                Err(e) => {
                    self.stats.failed_request();
                    match cancellation(&e) {
                        Some(Cancelled::Condition) => return Ok(CommitOutcome::Conflict),
                        Some(Cancelled::ConflictOnly) if attempt < ATTEMPTS => {
                            let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 16);
                            tokio::time::sleep(std::time::Duration::from_millis(
                                (10 << attempt.min(5)) + jitter,
                            ))
                            .await;
                        }
                        Some(Cancelled::ConflictOnly) => return Ok(CommitOutcome::Conflict),
                        None => return Err(StoreError::sdk("TransactWriteItems", e)),
                    }
                }
            }
        }
    }

    pub(super) async fn query_all(
        &self,
        index: Option<&str>,
        key_condition: &str,
        values: Vec<(&str, AttributeValue)>,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut all = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(key_condition)
                .scan_index_forward(forward)
                .set_exclusive_start_key(start.take());
            for (k, v) in &values {
                q = q.expression_attribute_values(*k, v.clone());
            }
            if index.is_none() {
                q = q.consistent_read(true);
            }
            let out = q.send().await.map_err(|e| StoreError::sdk("Query", e))?;
            let found = out.items.unwrap_or_default();
            self.stats
                .read(1, found.iter().map(item_size).sum(), index.is_none());
            all.extend(found);
            if limit.is_some_and(|l| all.len() >= l) {
                all.truncate(limit.unwrap_or(usize::MAX));
                break;
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(all)
    }

    /// Stores a new experiment with its creation audit record; `Exists` if the key is taken.
    pub async fn create_experiment(
        &self,
        e: &Experiment,
        audit: &AuditRecord,
    ) -> Result<Created, StoreError> {
        let (item, audit) = (experiment_item(e)?, audit_item(audit)?);
        let bytes = [item_size(&item), item_size(&audit)];
        let writes = vec![
            put(
                &self.table,
                item,
                Some(("attribute_not_exists(pk)", vec![])),
            )?,
            put(&self.table, audit, None)?,
        ];
        Ok(match self.transact(writes, &bytes).await? {
            CommitOutcome::Committed => Created::Created,
            CommitOutcome::Conflict => Created::Exists,
        })
    }

    /// Replaces an experiment if its stored version is still `expected_version`, with the
    /// audit record of the change in the same transaction.
    pub async fn save_experiment(
        &self,
        e: &Experiment,
        expected_version: u64,
        audit: Option<&AuditRecord>,
    ) -> Result<CommitOutcome, StoreError> {
        let item = experiment_item(e)?;
        let mut bytes = vec![item_size(&item)];
        let mut writes = vec![put(
            &self.table,
            item,
            Some(("version = :v", vec![(":v", n(expected_version))])),
        )?];
        if let Some(a) = audit {
            let a = audit_item(a)?;
            bytes.push(item_size(&a));
            writes.push(put(&self.table, a, None)?);
        }
        // The outbox marker follows `notice_pending` in the same transaction, so the sweep
        // finds every experiment that owes its `experiment_concluded` message.
        let marker_key = HashMap::from([
            ("pk".to_string(), s(xkeys::PENDING_NOTICES)),
            ("sk".to_string(), s(e.key())),
        ]);
        bytes.push(item_size(&marker_key));
        if e.notice_pending {
            writes.push(put(&self.table, marker_key, None)?);
        } else {
            let d = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(marker_key))
                .build()
                .map_err(|e| StoreError::sdk("TransactWriteItems", e))?;
            writes.push(TransactWriteItem::builder().delete(d).build());
        }
        self.transact(writes, &bytes).await
    }

    /// Keys of the experiments that owe an `experiment_concluded` message.
    pub async fn pending_notices(&self) -> Result<Vec<String>, StoreError> {
        let items = self
            .query_all(
                None,
                "pk = :p",
                vec![(":p", s(xkeys::PENDING_NOTICES))],
                true,
                None,
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
            .collect())
    }

    pub async fn get_experiment(&self, key: &str) -> Result<Option<Experiment>, StoreError> {
        match self.get(xkeys::experiment(key), xkeys::DEF).await? {
            None => Ok(None),
            Some(item) => decode(&item).map(Some),
        }
    }

    /// Experiments in the given states, newest first.
    pub async fn list_experiments(
        &self,
        statuses: &[Status],
    ) -> Result<Vec<Experiment>, StoreError> {
        let mut all: Vec<Experiment> = Vec::new();
        for st in statuses {
            let items = self
                .query_all(
                    Some("gsi1"),
                    "gsi1pk = :p",
                    vec![(":p", s(xkeys::status(st.as_str())))],
                    false,
                    None,
                )
                .await?;
            for item in &items {
                all.push(decode(item)?);
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.created_at));
        Ok(all)
    }

    pub async fn experiment_audit(&self, key: &str) -> Result<Vec<AuditRecord>, StoreError> {
        self.prefixed(key, xkeys::AUDIT_PREFIX, true, None).await
    }

    /// The latest `limit` check points, oldest first.
    pub async fn experiment_history(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<Vec<CheckPoint>, StoreError> {
        let mut latest: Vec<CheckPoint> = self
            .prefixed(key, xkeys::CHECK_PREFIX, false, Some(limit))
            .await?;
        latest.reverse();
        Ok(latest)
    }

    async fn prefixed<T: DeserializeOwned>(
        &self,
        key: &str,
        prefix: &str,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<T>, StoreError> {
        let items = self
            .query_all(
                None,
                "pk = :p AND begins_with(sk, :s)",
                vec![(":p", s(xkeys::experiment(key))), (":s", s(prefix))],
                forward,
                limit,
            )
            .await?;
        items.iter().map(decode).collect()
    }

    /// Records one significance check; `Exists` when this slot was already checked.
    pub async fn put_check(&self, key: &str, point: &CheckPoint) -> Result<Created, StoreError> {
        let pk = xkeys::experiment(key);
        let item = HashMap::from([
            ("doc".to_string(), encode(&pk, point)?),
            ("pk".to_string(), s(pk)),
            ("sk".to_string(), s(xkeys::check(&point.slot))),
        ]);
        let bytes = item_size(&item);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => {
                self.stats.write(1, bytes);
                Ok(Created::Created)
            }
            Err(e) => {
                self.stats.failed_request();
                let exists = e
                    .as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception());
                if exists {
                    Ok(Created::Exists)
                } else {
                    Err(StoreError::sdk("PutItem", e))
                }
            }
        }
    }

    /// Stores a first assignment (or the first of a new bucket version) and counts its
    /// exposure in the same transaction; `Exists` when an assignment of this bucket version
    /// is already stored, so each user is exposed once. Forced (QA) assignments are stored
    /// but not counted.
    pub async fn create_assignment(
        &self,
        a: &Assignment,
        shards: u32,
    ) -> Result<Created, StoreError> {
        let item = assignment_item(a)?;
        let mut bytes = vec![item_size(&item)];
        let mut writes = vec![put(
            &self.table,
            item,
            Some((
                "attribute_not_exists(pk) OR bucket_version < :bv",
                vec![(":bv", n(a.bucket_version))],
            )),
        )?];
        if !a.forced {
            let (update, ub) = add_update(
                &self.table,
                xkeys::phase(&a.experiment, a.bucket_version),
                super::keys::shard(shard_of(&a.user_id, shards)),
                [(attrs::exposures(a.epoch, a.variant), "1".to_string())],
            )?;
            bytes.push(ub);
            writes.push(update);
        }
        Ok(match self.transact(writes, &bytes).await? {
            CommitOutcome::Committed => Created::Created,
            CommitOutcome::Conflict => Created::Exists,
        })
    }

    /// The summed statistics of one phase of an experiment (all shards).
    pub async fn phase_stats(
        &self,
        key: &str,
        bucket_version: u32,
    ) -> Result<PhaseStats, StoreError> {
        let items = self
            .query_all(
                None,
                "pk = :p",
                vec![(":p", s(xkeys::phase(key, bucket_version)))],
                true,
                None,
            )
            .await?;
        let mut stats = PhaseStats::default();
        for item in &items {
            for (name, value) in item {
                if let Ok(text) = value.as_n() {
                    if let Ok(v) = text.parse::<f64>() {
                        stats.add_attribute(name, v);
                    }
                }
            }
        }
        Ok(stats)
    }
}

#[async_trait]
impl MetricStore for DynamoStore {
    async fn experiment(&self, key: &str) -> Result<Option<Experiment>, StoreError> {
        self.get_experiment(key).await
    }

    async fn user_assignments(&self, user_id: &str) -> Result<Vec<Assignment>, StoreError> {
        let items = self
            .query_all(
                None,
                "pk = :p AND begins_with(sk, :s)",
                vec![
                    (":p", s(super::keys::user(user_id))),
                    (":s", s(xkeys::ASSIGN_PREFIX)),
                ],
                true,
                None,
            )
            .await?;
        items.iter().map(decode).collect()
    }

    async fn assignment(
        &self,
        experiment: &str,
        user_id: &str,
    ) -> Result<Option<Assignment>, StoreError> {
        match self
            .get(super::keys::user(user_id), &xkeys::assignment(experiment))
            .await?
        {
            None => Ok(None),
            Some(item) => decode(&item).map(Some),
        }
    }

    async fn applied_observations(
        &self,
        experiment: &str,
        observed: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let wanted: Vec<(String, String)> = observed
            .iter()
            .map(|(id, metric)| (id.clone(), xkeys::observed(experiment, metric)))
            .collect();
        let found = self.live_dedupe(&wanted, now).await?;
        Ok(observed
            .iter()
            .zip(wanted)
            .filter(|(_, key)| found.contains(key))
            .map(|(pair, _)| pair.clone())
            .collect())
    }

    async fn commit_metrics(
        &self,
        c: &MetricCommit,
        now: DateTime<Utc>,
    ) -> Result<CommitOutcome, StoreError> {
        let mut writes = Vec::new();
        let mut bytes = Vec::new();
        for (id, metric) in &c.observed {
            let item = HashMap::from([
                ("pk".to_string(), s(super::keys::dedupe(id))),
                ("sk".to_string(), s(xkeys::observed(&c.experiment, metric))),
                ("expires_at".to_string(), n(c.dedupe_expires_at)),
            ]);
            bytes.push(item_size(&item));
            writes.push(put(
                &self.table,
                item,
                Some((
                    "attribute_not_exists(pk) OR expires_at < :now",
                    vec![(":now", n(now.timestamp()))],
                )),
            )?);
        }
        let item = assignment_item(&c.assignment)?;
        bytes.push(item_size(&item));
        // The bucket version too: a re-bucketed assignment starts again at version 1, and a
        // stale fold of the old one must not overwrite it.
        writes.push(put(
            &self.table,
            item,
            Some((
                "version = :v AND bucket_version = :bv",
                vec![
                    (":v", n(c.expected_version)),
                    (":bv", n(c.assignment.bucket_version)),
                ],
            )),
        )?);
        if !c.increments.is_empty() {
            let (update, ub) = add_update(
                &self.table,
                xkeys::phase(&c.experiment, c.assignment.bucket_version),
                super::keys::shard(c.shard),
                c.increments
                    .iter()
                    .map(|(k, v)| (k.clone(), number_text(*v))),
            )?;
            bytes.push(ub);
            writes.push(update);
        }
        self.transact(writes, &bytes).await
    }
}
