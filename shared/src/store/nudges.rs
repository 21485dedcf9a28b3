//! Nudges in the single table: trials and their reminders (with the due-time index the
//! scheduler sweeps), the per-user nudge ledger (cooldown and daily cap), prompts, the social
//! proof catalog with its observed counters, offers and their single-use redemption.
//!
//! Items are JSON documents (`doc`) with an optimistic `version`; [`DocWrite`] lists the
//! writes of one transaction with the condition each must meet.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::experiments::{add_update, decode, encode, put};
use super::items::item_size;
use super::{n, s, DynamoStore};
use crate::error::StoreError;
use crate::ingest::CommitOutcome;

/// Key formats of nudge items.
pub mod nkeys {
    pub const TRIAL_PREFIX: &str = "TRIAL#";
    pub const REMINDER_PREFIX: &str = "REM#";
    pub const LEDGER: &str = "NUDGE_LEDGER";
    pub const PROMPT_PREFIX: &str = "PROMPT#";
    pub const SHOWN_PREFIX: &str = "PSHOWN#";
    pub const OFFER_PREFIX: &str = "OFFER#";
    /// Partition of the social proof catalog (`sk = <proof_id>`).
    pub const PROOFS: &str = "PROOFS";
    pub const DEF: &str = "DEF";
    /// Dedupe sort key of a nudge outcome event (partition `EVENT#<id>`).
    pub const NUDGE_EVENT: &str = "NUDGE";
    /// Shards of the reminder due-time index (gsi1).
    pub const DUE_SHARDS: u32 = 8;

    pub fn trial(trial_id: &str) -> String {
        format!("{TRIAL_PREFIX}{trial_id}")
    }
    pub fn reminder(reminder_id: &str) -> String {
        format!("{REMINDER_PREFIX}{reminder_id}")
    }
    pub fn prompt(prompt_id: &str) -> String {
        format!("{PROMPT_PREFIX}{prompt_id}")
    }
    pub fn shown(proof_id: &str) -> String {
        format!("{SHOWN_PREFIX}{proof_id}")
    }
    /// The offer itself: `pk = OFFER#<code>`, `sk = DEF`.
    pub fn offer(code: &str) -> String {
        format!("{OFFER_PREFIX}{code}")
    }
    /// A user's pointer to one of their offers: `pk = USER#<id>`, `sk = OFFER#<created>#<code>`.
    pub fn user_offer(created: &str, code: &str) -> String {
        format!("{OFFER_PREFIX}{created}#{code}")
    }
    /// The audit trail of one catalog proof (`sk = <version:010>`).
    pub fn proof_audit(proof_id: &str) -> String {
        format!("PROOFAUDIT#{proof_id}")
    }
    /// gsi1 partition of a due reminder.
    pub fn due_shard(shard: u32) -> String {
        format!("RDUE#{shard}")
    }
}

/// A stored document with its optimistic-concurrency version.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
    /// Numeric attributes kept beside the document (counters updated with `ADD`).
    pub counters: HashMap<String, i64>,
}

/// The condition a [`DocWrite`] must meet.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The item must not exist.
    New,
    /// The stored version must be this one.
    Version(u64),
    /// No condition.
    Any,
}

/// One write of a transaction: a document put (with extra attributes such as index keys) or a
/// delete, under a condition.
#[derive(Debug, Clone)]
pub struct DocWrite {
    pub pk: String,
    pub sk: String,
    /// The JSON document; `None` deletes the item.
    pub doc: Option<String>,
    pub version: u64,
    pub expect: Expect,
    pub extra: Vec<(String, AttributeValue)>,
}

impl DocWrite {
    pub fn put<T: Serialize>(
        pk: String,
        sk: String,
        value: &T,
        version: u64,
        expect: Expect,
    ) -> Result<DocWrite, StoreError> {
        let doc = serde_json::to_string(value).map_err(|e| StoreError::Encode {
            key: format!("{pk}/{sk}"),
            source: serde::ser::Error::custom(e.to_string()),
        })?;
        Ok(DocWrite {
            pk,
            sk,
            doc: Some(doc),
            version,
            expect,
            extra: Vec::new(),
        })
    }

    pub fn delete(pk: String, sk: String, expect: Expect) -> DocWrite {
        DocWrite {
            pk,
            sk,
            doc: None,
            version: 0,
            expect,
            extra: Vec::new(),
        }
    }

    /// Adds a string attribute (e.g. an index key).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> DocWrite {
        self.extra.push((name.to_string(), s(value)));
        self
    }

    /// Adds a numeric attribute.
    pub fn with_number(mut self, name: &str, value: i64) -> DocWrite {
        self.extra.push((name.to_string(), n(value)));
        self
    }

    /// Places the item in the reminder due-time index (gsi1) at `due`.
    pub fn due_at(self, due: DateTime<Utc>, user_id: &str) -> DocWrite {
        let shard = crate::hash::fnv1a32(user_id.as_bytes()) % nkeys::DUE_SHARDS;
        let sk = format!("{}#{}", due_text(due), self.sk);
        let pk = self.pk.clone();
        self.with("gsi1pk", nkeys::due_shard(shard))
            .with("gsi1sk", sk)
            .with("due_user", pk)
    }
}

/// A time as fixed-width RFC 3339 text (UTC, whole seconds), so index keys sort by time.
pub fn due_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn versioned<T: DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<Versioned<T>, StoreError> {
    let value = decode(item)?;
    let mut version = 0;
    let mut counters = HashMap::new();
    for (name, v) in item {
        if let Ok(text) = v.as_n() {
            if let Ok(x) = text.parse::<i64>() {
                if name == "version" {
                    version = x.max(0) as u64;
                } else {
                    counters.insert(name.clone(), x);
                }
            }
        }
    }
    Ok(Versioned {
        value,
        version,
        counters,
    })
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

impl DynamoStore {
    /// Reads one document (strongly consistent).
    pub async fn get_doc<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        match self.get(pk.to_string(), sk).await? {
            // A counter `ADD` that reached a deleted item leaves a stub without a document.
            Some(item) if item.contains_key("doc") => versioned(&item).map(Some),
            _ => Ok(None),
        }
    }

    /// The documents of a partition whose sort key starts with `prefix`, in key order (or
    /// reversed), at most `limit`.
    pub async fn query_docs<T: DeserializeOwned>(
        &self,
        pk: &str,
        prefix: &str,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        let items = if prefix.is_empty() {
            self.query_all(None, "pk = :p", vec![(":p", s(pk))], forward, limit)
                .await?
        } else {
            self.query_all(
                None,
                "pk = :p AND begins_with(sk, :s)",
                vec![(":p", s(pk)), (":s", s(prefix))],
                forward,
                limit,
            )
            .await?
        };
        // A counter `ADD` that reached a deleted item leaves a stub without a document.
        items
            .iter()
            .filter(|i| i.contains_key("doc"))
            .map(versioned)
            .collect()
    }

    /// Writes every [`DocWrite`] in one transaction (at most 100); `Conflict` when a
    /// condition failed.
    pub async fn write_docs(&self, writes: Vec<DocWrite>) -> Result<CommitOutcome, StoreError> {
        if writes.is_empty() {
            return Ok(CommitOutcome::Committed);
        }
        let mut items = Vec::with_capacity(writes.len());
        let mut bytes = Vec::with_capacity(writes.len());
        for w in writes {
            let (expr, values): (Option<&str>, Vec<(&str, AttributeValue)>) = match w.expect {
                Expect::New => (Some("attribute_not_exists(pk)"), vec![]),
                Expect::Version(v) => (Some("version = :v"), vec![(":v", n(v))]),
                Expect::Any => (None, vec![]),
            };
            match w.doc {
                Some(doc) => {
                    let mut item = key(&w.pk, &w.sk);
                    item.insert("doc".to_string(), s(doc));
                    item.insert("version".to_string(), n(w.version));
                    for (k, v) in w.extra {
                        item.insert(k, v);
                    }
                    bytes.push(item_size(&item));
                    items.push(put(&self.table, item, expr.map(|e| (e, values)))?);
                }
                None => {
                    let k = key(&w.pk, &w.sk);
                    bytes.push(item_size(&k));
                    let mut d = Delete::builder().table_name(&self.table).set_key(Some(k));
                    if let Some(e) = expr {
                        d = d.condition_expression(e);
                        for (name, v) in values {
                            d = d.expression_attribute_values(name, v);
                        }
                    }
                    let d = d
                        .build()
                        .map_err(|e| StoreError::sdk("TransactWriteItems", e))?;
                    items.push(TransactWriteItem::builder().delete(d).build());
                }
            }
        }
        self.transact(items, &bytes).await
    }

    /// Keys (`pk`, `sk`) of the reminders due at or before `now`, across the index shards
    /// (gsi1, eventually consistent: the dispatch re-reads each item).
    pub async fn due_reminders(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let upper = format!("{}~", due_text(now));
        let mut keys = Vec::new();
        for shard in 0..nkeys::DUE_SHARDS {
            let items = self
                .query_all(
                    Some("gsi1"),
                    "gsi1pk = :p AND gsi1sk <= :u",
                    vec![(":p", s(nkeys::due_shard(shard))), (":u", s(upper.clone()))],
                    true,
                    None,
                )
                .await?;
            for item in items {
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned();
                let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned();
                if let (Some(pk), Some(sk)) = (pk, sk) {
                    keys.push((pk, sk));
                }
            }
        }
        Ok(keys)
    }

    /// Adds to numeric attributes of one item (created if absent), unconditionally, or with
    /// a nudge event's dedupe record in the same transaction so a redelivery adds nothing.
    pub async fn add_counters(
        &self,
        pk: &str,
        sk: &str,
        increments: &[(&str, i64)],
        dedupe: Option<(&str, i64)>,
        now: DateTime<Utc>,
    ) -> Result<CommitOutcome, StoreError> {
        let (update, ub) = add_update(
            &self.table,
            pk.to_string(),
            sk.to_string(),
            increments
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        let mut writes = vec![update];
        let mut bytes = vec![ub];
        if let Some((event_id, expires_at)) = dedupe {
            let item = HashMap::from([
                ("pk".to_string(), s(super::keys::dedupe(event_id))),
                ("sk".to_string(), s(nkeys::NUDGE_EVENT)),
                ("expires_at".to_string(), n(expires_at)),
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
        self.transact(writes, &bytes).await
    }

    /// Whether a nudge event was already applied (its live dedupe record exists).
    pub async fn nudge_event_applied(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(!self
            .live_dedupe_records(&[event_id.to_string()], nkeys::NUDGE_EVENT, now)
            .await?
            .is_empty())
    }

    /// The dedupe record of a nudge event as a write of a [`Self::write_docs`] transaction.
    pub fn nudge_dedupe_write(event_id: &str, expires_at: i64) -> DocWrite {
        DocWrite {
            pk: super::keys::dedupe(event_id),
            sk: nkeys::NUDGE_EVENT.to_string(),
            doc: Some("{}".to_string()),
            version: 0,
            expect: Expect::New,
            extra: vec![("expires_at".to_string(), n(expires_at))],
        }
    }

    /// Redeems an offer once: `redemptions` goes from below `usage_limit` to one more, in a
    /// single conditional update. `Conflict` when the limit was already reached.
    pub async fn redeem_offer(
        &self,
        code: &str,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<CommitOutcome, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(nkeys::offer(code)))
            .key("sk", s(nkeys::DEF))
            // The version moves too, so a concurrent document put (a view) re-reads first.
            .update_expression("ADD redemptions :one, version :one SET redeemed_ts = :ts, redeemed_by = :u")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(redemptions) OR redemptions < usage_limit)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ts", n(now.timestamp()))
            .expression_attribute_values(":u", s(user_id))
            .send()
            .await;
        match result {
            Ok(_) => {
                self.stats.write(1, 64 + code.len());
                Ok(CommitOutcome::Committed)
            }
            Err(e) => {
                self.stats.failed_request();
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception())
                {
                    Ok(CommitOutcome::Conflict)
                } else {
                    Err(StoreError::sdk("UpdateItem", e))
                }
            }
        }
    }

    /// Stores a JSON document and its key without a version (used for small records such as
    /// "proof shown to user").
    pub async fn put_plain<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let mut item = key(pk, sk);
        item.insert("doc".to_string(), encode(pk, value)?);
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
}
