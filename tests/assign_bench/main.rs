//! tierup-assign-bench: assignment throughput (hash version 2 + bucket choice) of
//! `shared::growthbook` against GrowthBook's Rust SDK (`growthbook-rust` from crates.io) on the
//! same 1,000,000 ids, one run each, single-threaded, and whether both give the same answers.
//!
//! Run from the workspace root: `cargo run --release --bin tierup-assign-bench`.
//!
//! growthbook-rust keeps its hash private (`mod hash`), so it is measured through the smallest
//! public APIs that reach it: `GrowthBook::check` on a feature whose only rule is the experiment
//! (hash + bucket choice, returning the variation and the hash as `bucket`), and
//! `coverage::Coverage::check` (hash + one comparison, no bucket choice). Users are built
//! before the clock starts, in each library's own form.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use growthbook_rust::coverage::model::Coverage;
use growthbook_rust::dto::GrowthBookFeature;
use growthbook_rust::growthbook::GrowthBook;
use growthbook_rust::model_public::{GrowthBookAttribute, GrowthBookAttributeValue};
use serde_json::{json, Value};
use shared::growthbook::{
    choose_variation, evaluate, get_bucket_ranges, hash, ExperimentSpec, UserContext,
};

const USERS: usize = 1_000_000;
const SEED: &str = "checkout-redesign";
const WEIGHTS: [f64; 3] = [0.2, 0.3, 0.5];
const COVERAGE: f64 = 0.9;
const FEATURE: &str = "checkout";

/// Deterministic ids: four in ten non-ASCII (accents, CJK, emoji, Hebrew), the rest ASCII.
fn ids() -> Vec<String> {
    (0..USERS)
        .map(|i| match i % 10 {
            0 => format!("josé-{i}"),
            1 => format!("用户{i}"),
            2 => format!(
                "{:08x}-{:04x}-4{:03x}",
                i * 2_654_435_761 % 0xffff_ffff,
                i % 0xffff,
                i % 0xfff
            ),
            3 => format!("😀{i}"),
            4 => format!("שלום{i}"),
            _ => format!("user-{i}"),
        })
        .collect()
}

struct Run {
    name: &'static str,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        USERS as f64 / self.elapsed.as_secs_f64()
    }
}

fn time<T>(name: &'static str, f: impl FnOnce() -> T) -> (Run, T) {
    let start = Instant::now();
    let out = black_box(f());
    let run = Run {
        name,
        elapsed: start.elapsed(),
    };
    println!(
        "{:<58} {:>8.1} ms  {:>6.2} M assignments/s",
        run.name,
        run.elapsed.as_secs_f64() * 1e3,
        run.per_second() / 1e6
    );
    (run, out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ids = ids();

    // tierup, primitives: hash, then the variation from ranges built once per experiment
    let ranges = get_bucket_ranges(WEIGHTS.len(), COVERAGE, Some(&WEIGHTS));
    let (ours, ours_out) = time("tierup: hash + choose_variation", || {
        ids.iter()
            .map(|id| {
                let n = hash(SEED, black_box(id), 2).unwrap_or(f64::NAN);
                (n, choose_variation(n, &ranges))
            })
            .collect::<Vec<_>>()
    });

    // tierup, the whole evaluate() per user (ranges rebuilt per call)
    let mut spec = ExperimentSpec::new(SEED, WEIGHTS.len());
    spec.weights = Some(WEIGHTS.to_vec());
    spec.coverage = COVERAGE;
    let users: Vec<UserContext> = ids
        .iter()
        .map(|id| UserContext::with_id(id.as_str()))
        .collect();
    let (ours_eval, eval_out) = time("tierup: evaluate(spec, user)", || {
        users
            .iter()
            .map(|user| evaluate(&spec, black_box(user)).variation())
            .collect::<Vec<_>>()
    });
    drop(users);

    // growthbook-rust: a feature whose one rule is the experiment
    let features: HashMap<String, GrowthBookFeature> = serde_json::from_value(json!({
        FEATURE: {
            "defaultValue": -1,
            "rules": [{
                "key": SEED, "seed": SEED, "hashVersion": 2, "variations": [0, 1, 2],
                "weights": WEIGHTS, "coverage": COVERAGE
            }]
        }
    }))?;
    let gb = GrowthBook {
        forced_variations: None,
        features,
        attributes: None,
        sticky_bucket_service: None,
        saved_groups: HashMap::new(),
    };
    let attributes: Vec<Option<Vec<GrowthBookAttribute>>> = ids
        .iter()
        .map(|id| {
            Some(vec![GrowthBookAttribute::new(
                "id".to_owned(),
                GrowthBookAttributeValue::String(id.clone()),
            )])
        })
        .collect();
    let (theirs, theirs_out) = time(
        "growthbook-rust: GrowthBook::check (experiment rule)",
        || {
            attributes
                .iter()
                .map(|attrs| {
                    let result = gb.check(FEATURE, black_box(attrs));
                    result
                        .experiment_result
                        .filter(|r| r.in_experiment)
                        .map(|r| (r.variation_id, r.bucket))
                })
                .collect::<Vec<_>>()
        },
    );
    drop(attributes);

    // growthbook-rust: hash + coverage comparison only
    let values: Vec<GrowthBookAttributeValue> = ids
        .iter()
        .map(|id| GrowthBookAttributeValue::String(id.clone()))
        .collect();
    let (theirs_hash, hash_out) =
        time("growthbook-rust: Coverage::check (hash < coverage)", || {
            values
                .iter()
                .map(|v| {
                    Coverage::check(
                        black_box(v),
                        Some(COVERAGE),
                        None,
                        SEED,
                        Some(2),
                        Value::Null,
                    )
                    .is_some()
                })
                .collect::<Vec<_>>()
        });

    // Same answers?
    let mut variation_mismatches = 0;
    let mut hash_mismatches = 0;
    let mut in_experiment = 0;
    for (i, &(n, variation)) in ours_out.iter().enumerate() {
        let theirs_variation = theirs_out[i].map(|(v, _)| v);
        if variation.map(|v| v as i64) != theirs_variation || eval_out[i] != variation {
            variation_mismatches += 1;
        }
        if let Some((_, Some(bucket))) = theirs_out[i] {
            if bucket != n {
                hash_mismatches += 1;
            }
        }
        if (n < COVERAGE) != hash_out[i] {
            hash_mismatches += 1;
        }
        in_experiment += usize::from(variation.is_some());
    }
    println!(
        "\nagreement: {variation_mismatches} variation and {hash_mismatches} hash mismatches over {USERS} ids ({in_experiment} in the experiment)"
    );
    println!(
        "ratio (tierup hash + choose_variation / growthbook-rust GrowthBook::check): {:.1}x",
        ours.per_second() / theirs.per_second()
    );
    println!(
        "ratio (tierup evaluate / growthbook-rust GrowthBook::check): {:.1}x",
        ours_eval.per_second() / theirs.per_second()
    );
    println!(
        "ratio (tierup hash + choose_variation / growthbook-rust Coverage::check): {:.1}x",
        ours.per_second() / theirs_hash.per_second()
    );
    if variation_mismatches + hash_mismatches > 0 {
        return Err("the two implementations disagree".into());
    }
    Ok(())
}
