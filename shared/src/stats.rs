//! Daily aggregates: the counters of one UTC day, summed over its write shards.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureTotals {
    pub count: i64,
    pub total_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyStats {
    pub date: NaiveDate,
    pub total_events: i64,
    pub events_by_type: BTreeMap<String, i64>,
    pub active_users_by_tier: BTreeMap<String, i64>,
    /// tier -> feature -> totals
    pub feature_usage_by_tier: BTreeMap<String, BTreeMap<String, FeatureTotals>>,
}

impl DailyStats {
    /// Builds the day's figures from counters already summed over shards (names as in
    /// [`crate::profiles::counters`]). Unknown counter names are ignored.
    pub fn from_counters(date: NaiveDate, counters: &BTreeMap<String, i64>) -> DailyStats {
        let mut stats = DailyStats {
            date,
            total_events: 0,
            events_by_type: BTreeMap::new(),
            active_users_by_tier: BTreeMap::new(),
            feature_usage_by_tier: BTreeMap::new(),
        };
        for (name, &value) in counters {
            if let Some(t) = name.strip_prefix("ev#") {
                stats.events_by_type.insert(t.to_string(), value);
                stats.total_events += value;
            } else if let Some(t) = name.strip_prefix("au#") {
                stats.active_users_by_tier.insert(t.to_string(), value);
            } else if let Some(rest) = name.strip_prefix("fu#") {
                let (rest, is_count) = if let Some(r) = rest.strip_suffix("#n") {
                    (r, true)
                } else if let Some(r) = rest.strip_suffix("#ms") {
                    (r, false)
                } else {
                    continue;
                };
                let Some((tier, feature)) = rest.split_once('#') else {
                    continue;
                };
                let totals = stats
                    .feature_usage_by_tier
                    .entry(tier.to_string())
                    .or_default()
                    .entry(feature.to_string())
                    .or_default();
                if is_count {
                    totals.count = value;
                } else {
                    totals.total_seconds = value as f64 / 1000.0;
                }
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_structured_figures() {
        let counters: BTreeMap<String, i64> = [
            ("ev#feature_used", 5),
            ("ev#identify", 2),
            ("au#pro", 3),
            ("fu#pro#budget#tracker#n", 5),
            ("fu#pro#budget#tracker#ms", 12_500),
            ("zz#other", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let s = DailyStats::from_counters("2026-11-01".parse().unwrap(), &counters);
        assert_eq!(s.total_events, 7);
        assert_eq!(s.active_users_by_tier["pro"], 3);
        let f = &s.feature_usage_by_tier["pro"]["budget#tracker"];
        assert_eq!(f.count, 5);
        assert_eq!(f.total_seconds, 12.5);
    }
}
