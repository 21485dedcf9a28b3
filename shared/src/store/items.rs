//! Keys, item encoding and DynamoDB item sizes.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::profiles::Profile;

/// Key formats of the single table.
pub mod keys {
    use chrono::NaiveDate;

    pub const PROFILE: &str = "PROFILE";
    pub const DEDUPE: &str = "DEDUPE";
    pub const DEDUPE_PREFIX: &str = "EVENT#";
    pub const OPS: &str = "OPS";

    pub fn user(user_id: &str) -> String {
        format!("USER#{user_id}")
    }
    pub fn dedupe(event_id: &str) -> String {
        format!("{DEDUPE_PREFIX}{event_id}")
    }
    pub fn aggregate(day: NaiveDate) -> String {
        format!("AGG#{}", day.format("%Y-%m-%d"))
    }
    pub fn shard(shard: u32) -> String {
        format!("SHARD#{shard:03}")
    }
}

/// Attributes that are keys or bookkeeping rather than profile data.
const PROFILE_KEYS: [&str; 2] = ["pk", "sk"];

pub fn profile_to_item(profile: &Profile) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(profile).map_err(|source| StoreError::Encode {
            key: keys::user(&profile.user_id),
            source,
        })?;
    item.insert("pk".into(), AttributeValue::S(keys::user(&profile.user_id)));
    item.insert("sk".into(), AttributeValue::S(keys::PROFILE.into()));
    Ok(item)
}

pub fn profile_from_item(mut item: HashMap<String, AttributeValue>) -> Result<Profile, StoreError> {
    let key = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    for k in PROFILE_KEYS {
        item.remove(k);
    }
    serde_dynamo::from_item(item).map_err(|source| StoreError::Corrupt { key, source })
}

/// Adds the numeric counter attributes of an aggregate item into `totals`.
pub fn add_counters(item: &HashMap<String, AttributeValue>, totals: &mut BTreeMap<String, i64>) {
    for (name, value) in item {
        if name == "pk" || name == "sk" {
            continue;
        }
        if let Ok(text) = value.as_n() {
            if let Ok(v) = text.parse::<i64>() {
                *totals.entry(name.clone()).or_default() += v;
            }
        }
    }
}

/// True when a dedupe item is present and not expired at `now`.
pub fn dedupe_live(item: &HashMap<String, AttributeValue>, now: DateTime<Utc>) -> bool {
    match item.get("expires_at").and_then(|v| v.as_n().ok()) {
        Some(t) => t
            .parse::<i64>()
            .map(|t| t >= now.timestamp())
            .unwrap_or(true),
        None => true,
    }
}

/// Bytes of counter attributes as DynamoDB sizes them.
pub fn counters_size(counters: &BTreeMap<String, i64>) -> usize {
    counters
        .iter()
        .map(|(k, v)| k.len() + number_size(&v.to_string()))
        .sum()
}

fn number_size(text: &str) -> usize {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    digits.div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(items) => items.iter().map(String::len).sum(),
        AttributeValue::Ns(items) => items.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(items) => items.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|i| 1 + value_size(i)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// The size of an item by DynamoDB's rules: attribute names plus values (UTF-8 string bytes,
/// numbers about one byte per two digits plus one, 3 bytes per list or map plus one per
/// element).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_through_its_item() {
        let mut p = Profile::new("u1");
        p.version = 3;
        p.event_count = 9;
        p.active_days.insert("2026-11-01".parse().unwrap());
        let item = profile_to_item(&p).unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), "USER#u1");
        assert_eq!(item["version"].as_n().unwrap(), "3");
        assert_eq!(profile_from_item(item).unwrap(), p);
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        let item = HashMap::from([
            ("pk".to_string(), AttributeValue::S("EVENT#abc".into())),
            ("n".to_string(), AttributeValue::N("12345".into())),
        ]);
        // "pk" 2 + 9, "n" 1 + (ceil(5 / 2) + 1)
        assert_eq!(item_size(&item), 16);
    }

    #[test]
    fn expired_dedupe_records_do_not_count() {
        let now: DateTime<Utc> = "2026-11-24T00:00:00Z".parse().unwrap();
        let item =
            |t: i64| HashMap::from([("expires_at".to_string(), AttributeValue::N(t.to_string()))]);
        assert!(dedupe_live(&item(now.timestamp() + 1), now));
        assert!(!dedupe_live(&item(now.timestamp() - 1), now));
    }
}
