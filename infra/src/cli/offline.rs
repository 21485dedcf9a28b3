//! `tierup analyze | assign | sample-size | adjust`: the experiment engine offline, for data
//! exported from a warehouse and for scripting. Each reads JSON Lines on stdin and writes one
//! JSON line per input line, in order: the result, or `{"line", "error", "field"?}` for a line
//! it cannot use (the command then exits with status 1 after the last line). Blank lines are
//! skipped. The same functions serve the API (`shared::statistics`, `shared::growthbook`).

use std::io::{BufRead, Write};

use anyhow::{bail, Result};
use clap::Subcommand;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use shared::experiments::model::clean_serde_message;
use shared::{growthbook, statistics};

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum OfflineCommand {
    /// Analyze experiments: {"id", "metric", "alpha", "weights"?, "variants": [{"n", "sum", "sum_squares"}]}
    Analyze,
    /// GrowthBook-compatible assignment: {"seed", "user_id", "variations", "coverage", "weights"?}
    Assign,
    /// Sample size per variant: {"baseline", "mde_absolute" | "mde_relative", "alpha", "power"}
    SampleSize,
    /// Holm and Benjamini-Hochberg adjusted p-values: {"p_values": [...]}
    Adjust,
}

/// A line's failure: the message and, when known, the field at fault.
struct LineError {
    message: String,
    field: Option<String>,
}

fn parse<T: DeserializeOwned>(line: &str) -> Result<T, LineError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        LineError {
            message: clean_serde_message(e.inner()),
            field: (path != ".").then_some(path),
        }
    })?;
    de.end().map_err(|e| LineError {
        message: clean_serde_message(&e),
        field: None,
    })?;
    Ok(value)
}

fn run_line<I, O, E>(
    line: &str,
    f: impl Fn(&I) -> Result<O, E>,
    field: impl Fn(&E) -> Option<String>,
) -> Result<Value, LineError>
where
    I: DeserializeOwned,
    O: Serialize,
    E: std::fmt::Display,
{
    let input: I = parse(line)?;
    let output = f(&input).map_err(|e| LineError {
        message: e.to_string(),
        field: field(&e),
    })?;
    serde_json::to_value(output).map_err(|e| LineError {
        message: e.to_string(),
        field: None,
    })
}

fn one(command: OfflineCommand, line: &str) -> Result<Value, LineError> {
    let stats_field = |e: &statistics::StatsError| Some(e.field().to_string());
    match command {
        OfflineCommand::Analyze => run_line(line, statistics::analyze, stats_field),
        OfflineCommand::SampleSize => run_line(line, statistics::sample_size, stats_field),
        OfflineCommand::Adjust => run_line(line, statistics::adjust, stats_field),
        OfflineCommand::Assign => run_line(line, growthbook::assign_line, |_| None),
    }
}

/// Runs a command over `input`, writing to `output`; returns how many lines failed.
pub fn process(
    command: OfflineCommand,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<usize> {
    let mut failed = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value = match one(command, &line) {
            Ok(v) => v,
            Err(e) => {
                failed += 1;
                let mut v = json!({ "line": i + 1, "error": e.message });
                if let Some(f) = e.field {
                    v["field"] = Value::String(f);
                }
                v
            }
        };
        serde_json::to_writer(&mut output, &value)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(failed)
}

pub fn run(command: OfflineCommand) -> Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let failed = process(
        command,
        stdin.lock(),
        std::io::BufWriter::new(stdout.lock()),
    )?;
    if failed > 0 {
        bail!("{failed} input line(s) could not be processed (see their error lines)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(command: OfflineCommand, input: &str) -> (Vec<Value>, usize) {
        let mut out = Vec::new();
        let failed = process(command, input.as_bytes(), &mut out).unwrap();
        let values = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (values, failed)
    }

    #[test]
    fn every_input_line_gets_one_output_line_in_order() {
        let input = "{\"baseline\": 0.1, \"mde_absolute\": 0.02, \"alpha\": 0.05, \"power\": 0.8}\n\n{\"baseline\": 2, \"mde_absolute\": 0.02, \"alpha\": 0.05, \"power\": 0.8}\nnot json\n";
        let (out, failed) = lines(OfflineCommand::SampleSize, input);
        assert_eq!(failed, 2);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["n_per_variant"], 3623);
        assert_eq!(out[1]["line"], 3);
        assert_eq!(out[1]["field"], "baseline");
        assert_eq!(out[2]["line"], 4);
    }

    #[test]
    fn assign_matches_growthbooks_cross_sdk_case() {
        // cases.json: hash("seed", "a", 2) = 0.0505
        let (out, _) = lines(
            OfflineCommand::Assign,
            r#"{"seed": "seed", "user_id": "a", "variations": 2, "coverage": 1}"#,
        );
        assert_eq!(out[0]["hash"], 0.0505);
        assert_eq!(out[0]["variation"], 0);
    }

    #[test]
    fn adjust_and_analyze_answer_in_the_documented_shape() {
        let (out, _) = lines(
            OfflineCommand::Adjust,
            r#"{"p_values": [0.01, 0.04, 0.03]}"#,
        );
        assert_eq!(out[0]["holm"].as_array().unwrap().len(), 3);
        assert_eq!(out[0]["benjamini_hochberg"].as_array().unwrap().len(), 3);
        let (out, failed) = lines(
            OfflineCommand::Analyze,
            r#"{"id": "x", "metric": "proportion", "alpha": 0.05, "variants": [{"n": 1000, "sum": 100}, {"n": 1000, "sum": 130}, {"n": 1000, "sum": 90}]}"#,
        );
        assert_eq!(failed, 0, "{out:?}");
        assert_eq!(out[0]["id"], "x");
        let comparisons = out[0]["comparisons"].as_array().unwrap();
        assert_eq!(comparisons.len(), 2);
        for part in ["absolute", "relative", "bayesian", "sequential"] {
            assert!(comparisons[0].get(part).is_some(), "{part} missing");
        }
        assert!(out[0]["chi_squared_p_value"].as_f64().is_some());
    }
}
