#![doc = include_str!("README.md")]

mod experiments;
mod items;
mod nudges;
mod stats_counter;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::StoreError;
use crate::ingest::{CommitOutcome, FoldCommit, IngestStore};
use crate::profiles::Profile;
use crate::stats::DailyStats;

pub use experiments::{xkeys, Created};
pub use items::{item_size, keys};
pub use nudges::{nkeys, DocWrite, Expect, Versioned};
pub use stats_counter::{StoreStats, StoreStatsSnapshot};

/// A DynamoDB-backed store. Cheap to clone; build one per cold start.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    stats: Arc<StoreStats>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
            stats: Arc::new(StoreStats::default()),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Requests and capacity units spent through this store so far.
    pub fn stats(&self) -> StoreStatsSnapshot {
        self.stats.snapshot()
    }

    /// Reachability of the table (DescribeTable).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| StoreError::sdk("DescribeTable", e))?;
        Ok(())
    }

    async fn get(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::sdk("GetItem", e))?;
        self.stats
            .read(1, out.item.as_ref().map(item_size).unwrap_or(0), true);
        Ok(out.item)
    }

    /// Reads a user's profile.
    pub async fn get_profile(&self, user_id: &str) -> Result<Option<Profile>, StoreError> {
        match self.get(keys::user(user_id), keys::PROFILE).await? {
            None => Ok(None),
            Some(item) => items::profile_from_item(item).map(Some),
        }
    }

    /// The counters of one day, summed over its shards.
    pub async fn daily_stats(&self, day: NaiveDate) -> Result<DailyStats, StoreError> {
        let totals = self.daily_counters(day).await?;
        Ok(DailyStats::from_counters(day, &totals))
    }

    /// The raw counters of one day, summed over its shards.
    pub async fn daily_counters(
        &self,
        day: NaiveDate,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(keys::aggregate(day)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::sdk("Query", e))?;
            let found = out.items.unwrap_or_default();
            self.stats.read(1, found.iter().map(item_size).sum(), false);
            for item in &found {
                items::add_counters(item, &mut totals);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(totals)
    }

    /// Stores a JSON document under `pk = OPS`, `sk = <name>` (operational state).
    pub async fn put_ops_document(
        &self,
        name: &str,
        document: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let item: HashMap<String, AttributeValue> = HashMap::from([
            ("pk".to_string(), s(keys::OPS)),
            ("sk".to_string(), s(name)),
            ("doc".to_string(), s(document.to_string())),
        ]);
        self.stats.write(1, item_size(&item));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::sdk("PutItem", e))?;
        Ok(())
    }

    /// Reads an operational document stored by [`Self::put_ops_document`].
    pub async fn get_ops_document(
        &self,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(item) = self.get(keys::OPS.to_string(), name).await? else {
            return Ok(None);
        };
        let text = item
            .get("doc")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        Ok(serde_json::from_str(&text).ok())
    }
}

impl DynamoStore {
    /// The subset of `event_ids` whose dedupe record `EVENT#<id>` / `sk` exists and has not
    /// expired at `now`.
    pub(crate) async fn live_dedupe_records(
        &self,
        event_ids: &[String],
        sk: &str,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<(String, String)> = event_ids
            .iter()
            .map(|id| (id.clone(), sk.to_string()))
            .collect();
        Ok(self
            .live_dedupe(&keys, now)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// The subset of `(event id, sort key)` dedupe records that exist and have not expired at
    /// `now` (strongly consistent BatchGetItem, unprocessed keys retried).
    pub(crate) async fn live_dedupe(
        &self,
        wanted: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let mut applied = HashSet::new();
        let unique: Vec<&(String, String)> =
            wanted.iter().collect::<HashSet<_>>().into_iter().collect();
        for chunk in unique.chunks(100) {
            let key_list: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|(id, sk)| {
                    HashMap::from([
                        ("pk".to_string(), s(keys::dedupe(id))),
                        ("sk".to_string(), s(sk.as_str())),
                    ])
                })
                .collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(key_list))
                .consistent_read(true)
                .projection_expression("pk, sk, expires_at")
                .build()
                .map_err(|e| StoreError::sdk("BatchGetItem", e))?;
            let mut attempt = 0u32;
            loop {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request.clone())
                    .send()
                    .await
                    .map_err(|e| StoreError::sdk("BatchGetItem", e))?;
                let found = out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default();
                self.stats.read(1, found.iter().map(item_size).sum(), true);
                for item in found {
                    if !items::dedupe_live(&item, now) {
                        continue;
                    }
                    let id = item
                        .get("pk")
                        .and_then(|v| v.as_s().ok())
                        .and_then(|pk| pk.strip_prefix(keys::DEDUPE_PREFIX));
                    let sk = item.get("sk").and_then(|v| v.as_s().ok());
                    if let (Some(id), Some(sk)) = (id, sk) {
                        applied.insert((id.to_string(), sk.clone()));
                    }
                }
                match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(rest) if !rest.keys.is_empty() => {
                        attempt += 1;
                        request = rest;
                        tokio::time::sleep(std::time::Duration::from_millis(
                            20 * u64::from(attempt.min(10)),
                        ))
                        .await;
                    }
                    _ => break,
                }
            }
        }
        Ok(applied)
    }
}

#[async_trait]
impl IngestStore for DynamoStore {
    async fn load_profile(&self, user_id: &str) -> Result<Option<Profile>, StoreError> {
        self.get_profile(user_id).await
    }

    async fn applied_events(
        &self,
        event_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        self.live_dedupe_records(event_ids, keys::DEDUPE, now).await
    }

    async fn commit_fold(
        &self,
        commit: &FoldCommit,
        now: DateTime<Utc>,
    ) -> Result<CommitOutcome, StoreError> {
        let mut writes: Vec<TransactWriteItem> = Vec::new();
        let mut bytes: Vec<usize> = Vec::new();
        for id in &commit.event_ids {
            let item = HashMap::from([
                ("pk".to_string(), s(keys::dedupe(id))),
                ("sk".to_string(), s(keys::DEDUPE)),
                ("user_id".to_string(), s(commit.profile.user_id.clone())),
                ("expires_at".to_string(), n(commit.dedupe_expires_at)),
            ]);
            bytes.push(item_size(&item));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
                .expression_attribute_values(":now", n(now.timestamp()))
                .build()
                .map_err(|e| StoreError::sdk("TransactWriteItems", e))?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        let profile_item = items::profile_to_item(&commit.profile)?;
        bytes.push(item_size(&profile_item));
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(profile_item));
        put = match commit.expected_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        writes.push(
            TransactWriteItem::builder()
                .put(
                    put.build()
                        .map_err(|e| StoreError::sdk("TransactWriteItems", e))?,
                )
                .build(),
        );
        for agg in &commit.aggregates {
            let mut expr = Vec::new();
            let mut names = HashMap::new();
            let mut values = HashMap::new();
            for (i, (counter, amount)) in agg.counters.iter().enumerate() {
                expr.push(format!("#c{i} :c{i}"));
                names.insert(format!("#c{i}"), counter.clone());
                values.insert(format!(":c{i}"), n(amount));
            }
            let key = HashMap::from([
                ("pk".to_string(), s(keys::aggregate(agg.day))),
                ("sk".to_string(), s(keys::shard(agg.shard))),
            ]);
            bytes.push(item_size(&key) + items::counters_size(&agg.counters));
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .update_expression(format!("ADD {}", expr.join(", ")))
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(|e| StoreError::sdk("TransactWriteItems", e))?;
            writes.push(TransactWriteItem::builder().update(update).build());
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => {
                self.stats.transaction(&bytes);
                Ok(CommitOutcome::Committed)
            }
            Err(err) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                let service = err.as_service_error();
                let conflict = match service {
                    Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                        e.cancellation_reasons().iter().any(|r| {
                            matches!(
                                r.code(),
                                Some("ConditionalCheckFailed") | Some("TransactionConflict")
                            )
                        })
                    }
                    _ => false,
                };
                self.stats.failed_request();
                if conflict {
                    Ok(CommitOutcome::Conflict)
                } else {
                    Err(StoreError::sdk("TransactWriteItems", err))
                }
            }
        }
    }
}
