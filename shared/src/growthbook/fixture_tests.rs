//! Acceptance against GrowthBook's JavaScript SDK: the cross-SDK subset, the generated fixtures
//! and the upstream cross-SDK cases, all in `fixtures/` (see `scripts/fixtures/gen_growthbook.mjs`).
//! Every expectation is the SDK's own output, so "equal" means bit-equal floats and identical
//! booleans (the one rounded comparison, on the subset's printed ranges, says why).

use serde_json::{Map, Value};

use super::*;

const SUBSET: &str = include_str!("fixtures/growthbook-cases-subset.json");
const ASSIGNMENTS: &str = include_str!("fixtures/generated-assignments.json");
const CONDITIONS: &str = include_str!("fixtures/generated-conditions.json");
const UPSTREAM: &str = include_str!("fixtures/upstream-cases.json");

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture is not JSON: {e}"))
}

fn rows<'a>(doc: &'a Value, section: &str) -> &'a [Value] {
    doc[section]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("fixture section {section} is missing"))
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A float the generator wrote as JavaScript's Number#toString text (parsed exactly).
fn exact(v: &Value) -> f64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("not a float string: {v}"));
    text.parse()
        .unwrap_or_else(|e| panic!("not a float string {text:?}: {e}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn usize_of(v: &Value) -> usize {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or_else(|| panic!("not a count: {v}"))
}

fn map_of(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => panic!("not an object: {other}"),
    }
}

fn ranges_of(v: &Value, number: fn(&Value) -> f64) -> Vec<VariationRange> {
    v.as_array()
        .unwrap_or_else(|| panic!("not ranges: {v}"))
        .iter()
        .map(|r| (number(&r[0]), number(&r[1])))
        .collect()
}

fn variation_of(v: &Value) -> Option<usize> {
    let n = v.as_i64().unwrap_or_else(|| panic!("not a variation: {v}"));
    usize::try_from(n).ok()
}

fn namespace_of(v: &Value) -> Namespace {
    Namespace {
        id: str_of(&v[0]).to_owned(),
        start: f64_of(&v[1]),
        end: f64_of(&v[2]),
    }
}

fn weights_of(v: &Value, number: fn(&Value) -> f64) -> Option<Vec<f64>> {
    v.as_array().map(|ws| ws.iter().map(number).collect())
}

// ------------------------------------------------------------------ the cross-SDK subset

#[test]
fn subset_hashes_match() {
    // Given GrowthBook's cross-SDK hash cases
    let doc = parse(SUBSET);
    for row in rows(&doc, "hash") {
        let version = u32::try_from(row[2].as_u64().unwrap_or(0)).unwrap_or(0);
        // When hashed / Then the value is the SDK's, or None where it gives null
        let got = hash(str_of(&row[0]), str_of(&row[1]), version);
        assert_eq!(got, row[3].as_f64(), "{row}");
    }
}

#[test]
fn subset_bucket_ranges_match() {
    // The cross-SDK file prints ranges rounded (the SDK itself computes 0.2 * 0.2 as
    // 0.04000000000000001), so these compare to 1e-9; upstream-cases.json checks bit-exactness.
    let doc = parse(SUBSET);
    for row in rows(&doc, "getBucketRange") {
        let args = &row[1];
        let weights = weights_of(&args[2], f64_of);
        let got = get_bucket_ranges(usize_of(&args[0]), f64_of(&args[1]), weights.as_deref());
        let want = ranges_of(&row[2], f64_of);
        assert_eq!(got.len(), want.len(), "{row}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.0 - w.0).abs() < 1e-9 && (g.1 - w.1).abs() < 1e-9,
                "{row}: {got:?}"
            );
        }
    }
}

#[test]
fn subset_choose_variation_matches() {
    let doc = parse(SUBSET);
    for row in rows(&doc, "chooseVariation") {
        let got = choose_variation(f64_of(&row[1]), &ranges_of(&row[2], f64_of));
        assert_eq!(got, variation_of(&row[3]), "{row}");
    }
}

#[test]
fn subset_in_namespace_matches() {
    let doc = parse(SUBSET);
    for row in rows(&doc, "inNamespace") {
        let got = in_namespace(str_of(&row[1]), &namespace_of(&row[2]));
        assert_eq!(Some(got), row[3].as_bool(), "{row}");
    }
}

#[test]
fn subset_runs_with_the_key_as_seed_and_hash_version_1() {
    // Given experiment "my-test" as the SDK runs it by default (seed = key, hash version 1)
    let doc = parse(SUBSET);
    let specs = {
        let base = || {
            let mut spec = ExperimentSpec::new("my-test", 2);
            spec.hash_version = 1;
            spec
        };
        let mut uneven = base();
        uneven.weights = Some(vec![0.1, 0.9]);
        let mut partial = base();
        partial.coverage = 0.4;
        let mut three = base();
        three.variations = 3;
        [base(), uneven, partial, three]
    };
    let runs = rows(&doc, "run_default_key_seed");
    assert_eq!(runs.len(), specs.len());
    for (row, spec) in runs.iter().zip(&specs) {
        // When users "1".."9" are assigned
        let got: Vec<Option<usize>> = (1..=9)
            .map(|id| evaluate(spec, &UserContext::with_id(id.to_string())).variation())
            .collect();
        // Then they get the SDK's variations (null = not in the experiment)
        let want: Vec<Option<usize>> = row[1]
            .as_array()
            .unwrap_or_else(|| panic!("{row}"))
            .iter()
            .map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok()))
            .collect();
        assert_eq!(got, want, "{row}");
    }
}

// ------------------------------------------------------------------ generated assignments

/// Whether `assign_line` accepts the row (it refuses what the SDK silently corrects).
fn strictly_valid(variations: usize, coverage: f64, weights: Option<&[f64]>) -> bool {
    (0.0..=1.0).contains(&coverage)
        && weights.is_none_or(|ws| {
            ws.len() == variations
                && ws.iter().all(|w| (0.0..=1.0).contains(w))
                && (0.99..=1.01).contains(&ws.iter().fold(0.0, |s, w| w + s))
        })
}

#[test]
fn generated_assignments_match_the_sdk_exactly() {
    // Given 1,200 assignments computed by the SDK over non-ASCII ids and seeds
    let doc = parse(ASSIGNMENTS);
    let (mut accepted, mut refused) = (0, 0);
    for row in rows(&doc, "assignments") {
        let seed = str_of(&row["seed"]);
        let user_id = str_of(&row["user_id"]);
        let variations = usize_of(&row["variations"]);
        let coverage = exact(&row["coverage"]);
        let weights = weights_of(&row["weights"], exact);
        let hash_v2 = exact(&row["hash_v2"]);
        let want = variation_of(&row["variation"]);

        // Then hashes, ranges and the variation are bit-identical
        assert_eq!(
            hash(seed, user_id, 1),
            Some(exact(&row["hash_v1"])),
            "{row}"
        );
        assert_eq!(hash(seed, user_id, 2), Some(hash_v2), "{row}");
        let ranges = get_bucket_ranges(variations, coverage, weights.as_deref());
        assert_eq!(ranges, ranges_of(&row["ranges"], exact), "{row}");
        assert_eq!(choose_variation(hash_v2, &ranges), want, "{row}");

        // And evaluate() agrees (the key stands in for an empty seed, as in the SDK)
        let mut spec = ExperimentSpec::new(seed, variations);
        spec.seed = Some(seed.to_owned());
        spec.coverage = coverage;
        spec.weights = weights.clone();
        let assignment = evaluate(&spec, &UserContext::with_id(user_id));
        assert_eq!(assignment.variation(), want, "{row}");

        // And the `tierup assign` line prints the same, or refuses the input
        let line = AssignInput {
            seed: seed.to_owned(),
            user_id: user_id.to_owned(),
            variations,
            coverage,
            weights: weights.clone(),
        };
        if strictly_valid(variations, coverage, weights.as_deref()) {
            accepted += 1;
            let out = assign_line(&line).unwrap_or_else(|e| panic!("{row}: {e}"));
            assert_eq!(out.hash, hash_v2, "{row}");
            assert_eq!(out.variation, want.map_or(-1, |v| v as i64), "{row}");
        } else {
            refused += 1;
            assert!(assign_line(&line).is_err(), "{row}");
        }
    }
    assert!(accepted >= 1000, "{accepted} accepted, {refused} refused");
}

// ------------------------------------------------------------------ generated conditions

#[test]
fn generated_conditions_match_the_sdk() {
    // Given conditions over every operator, evaluated by the SDK on five attribute sets
    let doc = parse(CONDITIONS);
    let groups = map_of(&doc["savedGroups"]);
    let mut failures = Vec::new();
    let cases = rows(&doc, "cases");
    for case in cases {
        let attributes = &doc["attributes"][str_of(&case[1])];
        // When evaluated here
        let got = eval_condition_with_groups(attributes, &case[0], &groups);
        // Then the result is the SDK's
        if Some(got) != case[2].as_bool() {
            failures.push(format!("{case}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn generated_regexes_match_the_sdk() {
    // Given patterns (Annex B leniencies, escapes, classes, Unicode) against haystacks,
    // evaluated by the SDK through $regex and $regexi
    let doc = parse(CONDITIONS);
    let haystacks: Vec<&str> = doc["regexHaystacks"]
        .as_array()
        .unwrap_or_else(|| panic!("regexHaystacks missing"))
        .iter()
        .map(str_of)
        .collect();
    let (mut checked, mut failures) = (0, Vec::new());
    for case in rows(&doc, "regexCases") {
        let pattern = str_of(&case[0]);
        let insensitive = case[1].as_bool().unwrap_or(false);
        let op = if insensitive { "$regexi" } else { "$regex" };
        let condition = serde_json::json!({ "s": { op: pattern } });
        for (haystack, bit) in haystacks.iter().zip(str_of(&case[2]).chars()) {
            let got = eval_condition(&serde_json::json!({ "s": haystack }), &condition);
            if got == (bit == '1') {
                checked += 1;
            } else {
                failures.push(format!(
                    "{pattern:?} i={insensitive} on {haystack:?}: sdk {bit}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differ ({checked} agree):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------------------ upstream cross-SDK cases

#[test]
fn upstream_conditions_match_the_sdk() {
    let doc = parse(UPSTREAM);
    let mut failures = Vec::new();
    let cases = rows(&doc, "evalCondition");
    for case in cases {
        let groups = map_of(case.get(4).unwrap_or(&Value::Null));
        let got = eval_condition_with_groups(&case[2], &case[1], &groups);
        if Some(got) != case[3].as_bool() {
            failures.push(format!("{case}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn upstream_hashing_and_bucketing_match_the_sdk_bit_for_bit() {
    let doc = parse(UPSTREAM);
    for row in rows(&doc, "hash") {
        let version = u32::try_from(row[2].as_u64().unwrap_or(0)).unwrap_or(0);
        assert_eq!(
            hash(str_of(&row[0]), str_of(&row[1]), version),
            row[3].as_f64(),
            "{row}"
        );
    }
    for row in rows(&doc, "getBucketRange") {
        let args = &row[1];
        let weights = weights_of(&args[2], f64_of);
        let got = get_bucket_ranges(usize_of(&args[0]), f64_of(&args[1]), weights.as_deref());
        assert_eq!(got, ranges_of(&row[2], f64_of), "{row}");
    }
    for row in rows(&doc, "chooseVariation") {
        let got = choose_variation(f64_of(&row[1]), &ranges_of(&row[2], f64_of));
        assert_eq!(got, variation_of(&row[3]), "{row}");
    }
    for row in rows(&doc, "inNamespace") {
        let got = in_namespace(str_of(&row[1]), &namespace_of(&row[2]));
        assert_eq!(Some(got), row[3].as_bool(), "{row}");
    }
    for row in rows(&doc, "getEqualWeights") {
        // n = -1 is the SDK's "no variations"
        let n = usize::try_from(row[0].as_i64().unwrap_or(0)).unwrap_or(0);
        let want: Vec<f64> = weights_of(&row[1], f64_of).unwrap_or_default();
        assert_eq!(get_equal_weights(n), want, "{row}");
    }
}

/// Experiment fields `evaluate` has an equivalent for; run cases using others are skipped.
const RUN_EXPERIMENT_FIELDS: &[&str] = &[
    "key",
    "variations",
    "weights",
    "coverage",
    "hashVersion",
    "seed",
    "condition",
    "active",
    "namespace",
    "hashAttribute",
];
const RUN_CONTEXT_FIELDS: &[&str] = &["attributes", "savedGroups"];

#[test]
fn upstream_runs_match_the_sdk() {
    let doc = parse(UPSTREAM);
    let (mut checked, mut skipped) = (0, 0);
    for row in rows(&doc, "run") {
        let (context, exp) = (map_of(&row[1]), map_of(&row[2]));
        if !context
            .keys()
            .all(|k| RUN_CONTEXT_FIELDS.contains(&k.as_str()))
            || !exp
                .keys()
                .all(|k| RUN_EXPERIMENT_FIELDS.contains(&k.as_str()))
        {
            skipped += 1;
            continue;
        }
        let variations = exp["variations"].as_array().cloned().unwrap_or_default();
        let mut spec = ExperimentSpec::new(str_of(&exp["key"]), variations.len());
        spec.seed = exp.get("seed").and_then(Value::as_str).map(str::to_owned);
        // the SDK's default is hash version 1 (`hashVersion || 1`)
        spec.hash_version = exp
            .get("hashVersion")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1);
        spec.weights = exp.get("weights").and_then(|w| weights_of(w, f64_of));
        spec.coverage = exp.get("coverage").map_or(1.0, f64_of);
        spec.namespace = exp.get("namespace").map(namespace_of);
        spec.condition = exp.get("condition").cloned();
        spec.active = exp.get("active").and_then(Value::as_bool).unwrap_or(true);
        if let Some(attr) = exp.get("hashAttribute").and_then(Value::as_str) {
            spec.hash_attribute = attr.to_owned();
        }
        let user = UserContext::new(map_of(context.get("attributes").unwrap_or(&Value::Null)));
        let groups = map_of(context.get("savedGroups").unwrap_or(&Value::Null));

        let got = evaluate_with_groups(&spec, &user, &groups);
        let (value, in_experiment, hash_used) = match got {
            Assignment::InExperiment {
                variation, forced, ..
            } => (variations[variation].clone(), true, !forced),
            Assignment::NotInExperiment { .. } => (
                variations.first().cloned().unwrap_or(Value::Null),
                false,
                false,
            ),
        };
        assert_eq!(value, row[3], "{row}");
        assert_eq!(Some(in_experiment), row[4].as_bool(), "{row}");
        assert_eq!(Some(hash_used), row[5].as_bool(), "{row}");
        checked += 1;
    }
    assert!(checked >= 70, "{checked} checked, {skipped} skipped");
}
