//! tierup-stats: simulations and the analysis benchmark behind docs/STATISTICS.md. Run from the
//! workspace root:
//!
//! ```text
//! cargo run --release --bin tierup-stats -- aa              # A/A false positives, 20 looks
//! cargo run --release --bin tierup-stats -- power           # detection at the planned n
//! cargo run --release --bin tierup-stats -- bench-analysis  # analyze() vs gbstats, 1,000 experiments
//! ```
//!
//! Options: `--experiments N`, `--seed S`, `--looks L` (aa, power); `--python PATH` (default
//! `.venv-fixtures/bin/python`, see scripts/fixtures/requirements.txt) and `--dir DIR` (default
//! `target/tierup-stats`) for bench-analysis. Every run is deterministic for a given seed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::Value;
use shared::statistics::{
    analyze, sample_size_proportion, AnalysisInput, AnalysisOutput, MetricKind, VariantInput,
};

const ALPHA: f64 = 0.05;

struct Options {
    command: String,
    experiments: usize,
    seed: u64,
    looks: usize,
    python: PathBuf,
    dir: PathBuf,
}

fn options() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let command = args
        .next()
        .context("usage: tierup-stats aa|power|bench-analysis [--experiments N] [--seed S] [--looks L] [--python PATH] [--dir DIR]")?;
    let mut o = Options {
        experiments: match command.as_str() {
            "bench-analysis" => 1000,
            "power" => 10_000,
            _ => 2000,
        },
        command,
        seed: 20240611,
        looks: 20,
        python: PathBuf::from(".venv-fixtures/bin/python"),
        dir: PathBuf::from("target/tierup-stats"),
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--experiments" => o.experiments = value.parse().context("--experiments")?,
            "--seed" => o.seed = value.parse().context("--seed")?,
            "--looks" => o.looks = value.parse().context("--looks")?,
            "--python" => o.python = PathBuf::from(value),
            "--dir" => o.dir = PathBuf::from(value),
            other => bail!("unknown option {other}"),
        }
    }
    if o.experiments == 0 || o.looks == 0 {
        bail!("--experiments and --looks must be positive");
    }
    Ok(o)
}

fn main() -> Result<()> {
    let o = options()?;
    match o.command.as_str() {
        "aa" => aa(&o),
        "power" => power(&o),
        "bench-analysis" => bench_analysis(&o),
        other => bail!("unknown command {other}: aa, power or bench-analysis"),
    }
}

/// One simulated two-arm proportion experiment, observed at `looks` equally spaced interim
/// looks up to `n` units per arm. Returns, per look, the analysis of the data so far.
fn run_experiment(
    rng: &mut StdRng,
    rates: [f64; 2],
    n: u64,
    looks: usize,
) -> Result<Vec<AnalysisOutput>> {
    let mut converted = [0u64; 2];
    let mut seen = 0u64;
    let mut outputs = Vec::with_capacity(looks);
    for look in 1..=looks {
        let until = n * look as u64 / looks as u64;
        for _ in seen..until {
            for (arm, rate) in rates.iter().enumerate() {
                if rng.gen::<f64>() < *rate {
                    converted[arm] += 1;
                }
            }
        }
        seen = until;
        let input = AnalysisInput {
            id: String::new(),
            metric: MetricKind::Proportion,
            alpha: ALPHA,
            weights: None,
            sequential_tuning: 5000.0,
            variants: converted
                .iter()
                .map(|&c| VariantInput {
                    n: seen,
                    sum: c as f64,
                    sum_squares: None,
                })
                .collect(),
        };
        outputs.push(analyze(&input)?);
    }
    Ok(outputs)
}

fn rejects(p: Option<f64>) -> bool {
    p.is_some_and(|p| p < ALPHA)
}

fn rate(count: usize, total: usize) -> String {
    let p = count as f64 / total as f64;
    let se = (p * (1.0 - p) / total as f64).sqrt();
    format!("{:.2}% ± {:.2}% ({count}/{total})", 100.0 * p, 100.0 * se)
}

/// A/A: both arms at 10%. How often does each rule ever declare a difference?
fn aa(o: &Options) -> Result<()> {
    let baseline = 0.10;
    let n = 10_000;
    let mut rng = StdRng::seed_from_u64(o.seed);
    let (mut sequential, mut naive, mut final_only) = (0, 0, 0);
    let started = Instant::now();
    for _ in 0..o.experiments {
        let looks = run_experiment(&mut rng, [baseline, baseline], n, o.looks)?;
        let c = |out: &AnalysisOutput| out.comparisons.first().copied();
        if looks
            .iter()
            .any(|l| rejects(c(l).and_then(|c| c.sequential.p_value)))
        {
            sequential += 1;
        }
        if looks
            .iter()
            .any(|l| rejects(c(l).and_then(|c| c.relative.p_value)))
        {
            naive += 1;
        }
        if looks
            .last()
            .is_some_and(|l| rejects(c(l).and_then(|c| c.relative.p_value)))
        {
            final_only += 1;
        }
    }
    let total = o.experiments;
    println!(
        "A/A simulation: {total} experiments, proportion metric, both arms {baseline}, \
         {n} units per arm, {} equally spaced looks, alpha {ALPHA}, seed {}",
        o.looks, o.seed
    );
    println!(
        "  sequential (always-valid, N* = 5000), reject at any look: {}",
        rate(sequential, total)
    );
    println!(
        "  naive fixed-horizon t-test, reject at any look:           {}",
        rate(naive, total)
    );
    println!(
        "  fixed-horizon t-test at the final look only:              {}",
        rate(final_only, total)
    );
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    let limit = ALPHA + 0.01;
    let fpr = sequential as f64 / total as f64;
    if fpr > limit {
        bail!("sequential false-positive rate {fpr} exceeds alpha + 0.01 = {limit}");
    }
    println!("  sequential false-positive rate <= alpha + 0.01: yes");
    Ok(())
}

/// Power at the calculator's sample size, over a grid of baselines and effects. Evan Miller's
/// formula (the one the issue names) takes the null variance from the baseline alone, so its n
/// gives a little less than the planned power when the treatment raises a low rate and a little
/// more when it lowers it. Each scenario reports the simulated detection rate of the pooled
/// two-proportion z-test (the test the formula plans; with two arms it is the chi-squared test
/// without continuity correction) and of gbstats' Welch t-test, next to the normal-approximation
/// power of the pooled test at that n, and the run fails if a simulated rate strays more than
/// 4 standard errors from it or the grid's average detection falls below 78%.
fn power(o: &Options) -> Result<()> {
    let planned_power = 0.8;
    let scenarios: [(f64, f64); 6] = [
        (0.10, 0.02),
        (0.10, -0.02),
        (0.05, 0.01),
        (0.20, 0.03),
        (0.30, -0.03),
        (0.50, 0.05),
    ];
    let mut rng = StdRng::seed_from_u64(o.seed);
    let started = Instant::now();
    println!(
        "Power simulation: {} experiments per scenario, alpha {ALPHA}, planned power {planned_power}, \
         final look, seed {}",
        o.experiments, o.seed
    );
    println!(
        "  {:>8} {:>8} {:>8} {:>14} {:>26} {:>26}",
        "baseline",
        "mde",
        "n/arm",
        "pooled power",
        "pooled z-test detected",
        "Welch t-test detected"
    );
    let mut rates = Vec::new();
    for (baseline, mde) in scenarios {
        let n = sample_size_proportion(baseline, mde, ALPHA, planned_power)?;
        let expected = pooled_power(baseline, baseline + mde, n);
        let (mut pooled, mut welch) = (0, 0);
        for _ in 0..o.experiments {
            let looks = run_experiment(&mut rng, [baseline, baseline + mde], n, 1)?;
            let Some(last) = looks.last() else {
                bail!("no analysis");
            };
            if rejects(last.chi_squared_p_value.flatten()) {
                pooled += 1;
            }
            if rejects(last.comparisons.first().and_then(|c| c.absolute.p_value)) {
                welch += 1;
            }
        }
        let total = o.experiments;
        println!(
            "  {baseline:>8} {mde:>8} {n:>8} {:>13.2}% {:>26} {:>26}",
            100.0 * expected,
            rate(pooled, total),
            rate(welch, total)
        );
        let observed = pooled as f64 / total as f64;
        let se = (expected * (1.0 - expected) / total as f64).sqrt();
        if (observed - expected).abs() > 4.0 * se {
            bail!("scenario {baseline} + {mde}: detection {observed} is not the test's power {expected}");
        }
        rates.push(observed);
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    println!(
        "  average detection over the grid: {:.2}%  ({:.1} s)",
        100.0 * mean,
        started.elapsed().as_secs_f64()
    );
    if mean < 0.78 {
        bail!("average detection {mean} at the planned sample sizes is below 78%");
    }
    println!("  average detection by the planned test >= 78%: yes");
    Ok(())
}

/// Normal-approximation power of the two-sided pooled two-proportion z-test with `n` per arm.
fn pooled_power(p1: f64, p2: f64, n: u64) -> f64 {
    let n = n as f64;
    let pooled = (p1 + p2) / 2.0;
    let se0 = (2.0 * pooled * (1.0 - pooled) / n).sqrt();
    let se1 = ((p1 * (1.0 - p1) + p2 * (1.0 - p2)) / n).sqrt();
    let z = norm_ppf(1.0 - ALPHA / 2.0);
    let d = (p2 - p1).abs();
    norm_cdf((d - z * se0) / se1) + norm_cdf((-d - z * se0) / se1)
}

fn norm_cdf(x: f64) -> f64 {
    // Φ(x) through the power function's own normal: power() of a unit test returns Φ terms.
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn norm_ppf(p: f64) -> f64 {
    // Bisection on Φ: plenty for a report.
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if norm_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// erfc by the Numerical Recipes Chebyshev fit (relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

fn log_uniform(rng: &mut StdRng, lo: f64, hi: f64) -> u64 {
    rng.gen_range(lo.ln()..hi.ln()).exp().round() as u64
}

/// 1,000 experiments of both metric kinds, 2 to 4 variants, n log-uniform in [100, 10^6].
fn bench_experiments(rng: &mut StdRng, count: usize) -> Vec<AnalysisInput> {
    (0..count)
        .map(|i| {
            let k = rng.gen_range(2..=4);
            let proportion = i % 2 == 0;
            let base_rate = rng.gen_range(0.01..0.5);
            let base_mean = rng.gen_range(1.0..50.0);
            let variants = (0..k)
                .map(|_| {
                    let n = log_uniform(rng, 100.0, 1e6);
                    let nf = n as f64;
                    if proportion {
                        let p: f64 = base_rate * rng.gen_range(0.9..1.1);
                        VariantInput {
                            n,
                            sum: (p * nf).round(),
                            sum_squares: None,
                        }
                    } else {
                        let mean = base_mean * rng.gen_range(0.95..1.05);
                        let sd = base_mean * rng.gen_range(0.5..2.0);
                        let sum = mean * nf;
                        VariantInput {
                            n,
                            sum,
                            sum_squares: Some(sd * sd * (nf - 1.0) + sum * sum / nf),
                        }
                    }
                })
                .collect();
            AnalysisInput {
                id: format!("bench-{i:04}"),
                metric: if proportion {
                    MetricKind::Proportion
                } else {
                    MetricKind::Mean
                },
                alpha: ALPHA,
                weights: None,
                sequential_tuning: 5000.0,
                variants,
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct PythonRun {
    experiments: usize,
    seconds: f64,
    outputs: Vec<Value>,
}

/// analyze() against gbstats on the same 1,000 experiments, both in-process, one run each.
fn bench_analysis(o: &Options) -> Result<()> {
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let input_path = o.dir.join("bench-analysis.jsonl");
    let python_path = o.dir.join("bench-analysis-gbstats.json");
    let mut rng = StdRng::seed_from_u64(o.seed);
    let experiments = bench_experiments(&mut rng, o.experiments);
    let mut jsonl = String::new();
    for e in &experiments {
        jsonl.push_str(&serde_json::to_string(e)?);
        jsonl.push('\n');
    }
    std::fs::write(&input_path, jsonl)?;

    // Rust: parse the file as gbstats' side does, then time analyze() over every line.
    let text = std::fs::read_to_string(&input_path)?;
    let inputs: Vec<AnalysisInput> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    if let Some(first) = inputs.first() {
        analyze(first)?; // warm-up, as on the Python side
    }
    let started = Instant::now();
    let outputs: Vec<AnalysisOutput> = inputs.iter().map(analyze).collect::<Result<_, _>>()?;
    let rust_seconds = started.elapsed().as_secs_f64();
    // More passes for a steadier per-experiment figure (the first pass is the one compared).
    let passes = 20;
    let started = Instant::now();
    for _ in 0..passes {
        for input in &inputs {
            std::hint::black_box(analyze(std::hint::black_box(input))?);
        }
    }
    let rust_mean = started.elapsed().as_secs_f64() / passes as f64;

    let status = Command::new(&o.python)
        .arg("scripts/bench/gbstats_analyze.py")
        .arg(&input_path)
        .arg(&python_path)
        .status()
        .with_context(|| {
            format!(
                "running {} (see scripts/fixtures/requirements.txt)",
                o.python.display()
            )
        })?;
    if !status.success() {
        bail!("gbstats_analyze.py failed: {status}");
    }
    let python: PythonRun = serde_json::from_str(&std::fs::read_to_string(&python_path)?)?;
    if python.experiments != outputs.len() || python.outputs.len() != outputs.len() {
        bail!(
            "gbstats analysed {} experiments, Rust {}",
            python.experiments,
            outputs.len()
        );
    }

    // The two must also agree: the same 1e-6 / 1e-9 tolerance as the fixtures.
    let mut worst = 0.0_f64;
    let mut numbers = 0usize;
    for (rust, gb) in outputs.iter().zip(&python.outputs) {
        compare(&serde_json::to_value(rust)?, gb, &mut worst, &mut numbers)?;
    }

    let comparisons: usize = outputs.iter().map(|o| o.comparisons.len()).sum();
    println!(
        "Analysis throughput: {} experiments ({comparisons} treatment comparisons; proportion \
         and mean metrics, 2-4 variants, n log-uniform in [100, 1e6]), seed {}",
        outputs.len(),
        o.seed
    );
    println!(
        "  per experiment: SRM, chi-squared (proportions), and per treatment absolute and \
         relative t-test, Bayesian, sequential"
    );
    println!(
        "  Rust shared::statistics::analyze, first pass: {:.2} ms ({:.0} experiments/s); \
         mean of {passes} more passes: {:.2} ms ({:.2} µs per experiment)",
        rust_seconds * 1e3,
        outputs.len() as f64 / rust_seconds,
        rust_mean * 1e3,
        rust_mean * 1e6 / outputs.len() as f64
    );
    println!(
        "  gbstats 0.8.0 in-process (Python):          {:.2} ms ({:.0} experiments/s)",
        python.seconds * 1e3,
        python.experiments as f64 / python.seconds
    );
    println!(
        "  ratio gbstats / Rust (first pass): {:.0}x",
        python.seconds / rust_seconds
    );
    println!("  outputs agree: {numbers} numbers, max relative error {worst:e}");
    Ok(())
}

fn compare(rust: &Value, gb: &Value, worst: &mut f64, numbers: &mut usize) -> Result<()> {
    match (rust, gb) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let diff = (a - b).abs();
            *numbers += 1;
            if b.abs() >= 1e-6 {
                *worst = worst.max(diff / b.abs());
            }
            if !(diff <= 1e-9 || diff <= 1e-6 * b.abs()) {
                bail!("Rust {a} vs gbstats {b}");
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (a, b) in a.iter().zip(b) {
                compare(a, b, worst, numbers)?;
            }
        }
        (Value::Object(a), Value::Object(b)) if a.len() == b.len() => {
            for (key, a) in a {
                let b = b
                    .get(key)
                    .with_context(|| format!("gbstats output lacks {key}"))?;
                compare(a, b, worst, numbers).with_context(|| key.clone())?;
            }
        }
        (a, b) if a == b => {}
        (a, b) => bail!("Rust {a} vs gbstats {b}"),
    }
    Ok(())
}
