//! Request and capacity counters of a store.

use std::sync::atomic::{AtomicU64, Ordering};

/// Units are counted in tenths so read units (0.5 per 4 KB eventually consistent) stay exact.
#[derive(Debug, Default)]
pub struct StoreStats {
    write_requests: AtomicU64,
    write_units_x10: AtomicU64,
    items_written: AtomicU64,
    read_requests: AtomicU64,
    read_units_x10: AtomicU64,
    failed_requests: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StoreStatsSnapshot {
    pub write_requests: u64,
    pub write_units: f64,
    pub items_written: u64,
    pub read_requests: u64,
    pub read_units: f64,
    pub failed_requests: u64,
}

fn kb(bytes: usize) -> u64 {
    (bytes.max(1) as u64).div_ceil(1024)
}

impl StoreStats {
    /// A non-transactional write of one item: one unit per KB.
    pub fn write(&self, requests: u64, bytes: usize) {
        self.write_requests.fetch_add(requests, Ordering::Relaxed);
        self.items_written.fetch_add(1, Ordering::Relaxed);
        self.write_units_x10
            .fetch_add(kb(bytes) * 10, Ordering::Relaxed);
    }

    /// A committed transaction: two units per KB of each item.
    pub fn transaction(&self, item_bytes: &[usize]) {
        self.write_requests.fetch_add(1, Ordering::Relaxed);
        self.items_written
            .fetch_add(item_bytes.len() as u64, Ordering::Relaxed);
        let units: u64 = item_bytes.iter().map(|b| 2 * kb(*b)).sum();
        self.write_units_x10
            .fetch_add(units * 10, Ordering::Relaxed);
    }

    /// A read of `bytes` in total: strongly consistent 1 unit per 4 KB, else half.
    pub fn read(&self, requests: u64, bytes: usize, consistent: bool) {
        self.read_requests.fetch_add(requests, Ordering::Relaxed);
        let units4k = (bytes.max(1) as u64).div_ceil(4096);
        let x10 = if consistent {
            units4k * 10
        } else {
            units4k * 5
        };
        self.read_units_x10.fetch_add(x10, Ordering::Relaxed);
    }

    pub fn failed_request(&self) {
        self.failed_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StoreStatsSnapshot {
        StoreStatsSnapshot {
            write_requests: self.write_requests.load(Ordering::Relaxed),
            write_units: self.write_units_x10.load(Ordering::Relaxed) as f64 / 10.0,
            items_written: self.items_written.load(Ordering::Relaxed),
            read_requests: self.read_requests.load(Ordering::Relaxed),
            read_units: self.read_units_x10.load(Ordering::Relaxed) as f64 / 10.0,
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_writes_cost_two_units_per_kb() {
        let s = StoreStats::default();
        s.transaction(&[100, 1024, 1025]);
        let snap = s.snapshot();
        assert_eq!(snap.write_requests, 1);
        assert_eq!(snap.items_written, 3);
        assert_eq!(snap.write_units, 2.0 + 2.0 + 4.0);
    }
}
