//! Configuration, read once from the environment at cold start. Missing or malformed settings
//! fail the start with every problem listed, not the first request.
//!
//! | variable | required | default | meaning |
//! |---|---|---|---|
//! | `TABLE_NAME` | yes | | the DynamoDB table |
//! | `EVENTS_QUEUE_URL` | yes | | queue of accepted events (api-events -> worker-events) |
//! | `JOBS_QUEUE_URL` | yes | | queue of job messages (scheduler -> worker-jobs) |
//! | `OUTBOX_QUEUE_URL` | yes | | outbound messages for the app's notification service |
//! | `AUTH_ISSUER` | yes | | JWT issuer (`iss`) |
//! | `AUTH_AUDIENCE` | yes | | JWT audience (`aud`) |
//! | `AUTH_JWKS_URL` | yes | | JWKS location, `https://...` or `file:///...` |
//! | `EVENTS_DLQ_URL`, `JOBS_DLQ_URL`, `OUTBOX_DLQ_URL` | no | | dead-letter queues the `dlq-watch` job checks |
//! | `AUTH_ROLE_CLAIM` | no | `role` | claim carrying the role (`cognito:groups` for Cognito) |
//! | `DEDUPE_TTL_DAYS` | no | 35 | how long an `event_id` is remembered |
//! | `AGGREGATE_SHARDS` | no | 16 | write shards per daily aggregate (1..=256) |
//! | `ENGAGEMENT_WINDOW_DAYS` | no | 28 | rolling window of the engagement score |
//! | `DEFAULT_TRIAL_DAYS` | no | 14 | trial length when a trial event names no end |
//!
//! The SDK's own settings (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials) are read by
//! `aws_config`, so local and AWS differ only by configuration.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub role_claim: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub table_name: String,
    pub events_queue_url: String,
    pub jobs_queue_url: String,
    pub outbox_queue_url: String,
    pub auth: AuthConfig,
    pub dedupe_ttl_days: u32,
    pub aggregate_shards: u32,
    pub engagement_window_days: u32,
    pub default_trial_days: u32,
    /// (name, url) of each configured dead-letter queue.
    pub dead_letter_queues: Vec<(String, String)>,
    /// Nudge rules and thresholds (`NUDGE_SETTINGS`, JSON overrides of the defaults).
    pub nudges: crate::nudges::NudgeSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_map(&std::env::vars().collect())
    }

    /// Reads a map of variables (the environment, or a test's map).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut required = |name: &str| -> String {
            match vars.get(name).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => {
                    problems.push(format!("{name} is required"));
                    String::new()
                }
            }
        };
        let table_name = required("TABLE_NAME");
        let events_queue_url = required("EVENTS_QUEUE_URL");
        let jobs_queue_url = required("JOBS_QUEUE_URL");
        let outbox_queue_url = required("OUTBOX_QUEUE_URL");
        let issuer = required("AUTH_ISSUER");
        let audience = required("AUTH_AUDIENCE");
        let jwks_url = required("AUTH_JWKS_URL");
        let role_claim = vars
            .get("AUTH_ROLE_CLAIM")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "role".to_string());
        let mut number = |name: &str, default: u32, min: u32, max: u32| -> u32 {
            match vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => default,
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        problems.push(format!(
                            "{name} must be an integer in {min}..={max}, got '{v}'"
                        ));
                        default
                    }
                },
            }
        };
        let dedupe_ttl_days = number("DEDUPE_TTL_DAYS", 35, 1, 3650);
        let aggregate_shards = number("AGGREGATE_SHARDS", 16, 1, 256);
        let engagement_window_days = number("ENGAGEMENT_WINDOW_DAYS", 28, 1, 365);
        let default_trial_days = number("DEFAULT_TRIAL_DAYS", 14, 1, 365);
        let dead_letter_queues = [
            ("events", "EVENTS_DLQ_URL"),
            ("jobs", "JOBS_DLQ_URL"),
            ("outbox", "OUTBOX_DLQ_URL"),
        ]
        .into_iter()
        .filter_map(|(name, var)| {
            vars.get(var)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect();
        let nudges = match crate::nudges::NudgeSettings::from_json(
            vars.get("NUDGE_SETTINGS").map(String::as_str).unwrap_or(""),
        ) {
            Ok(s) => s,
            Err(errors) => {
                for e in errors {
                    problems.push(format!("NUDGE_SETTINGS {}: {}", e.field, e.message));
                }
                crate::nudges::NudgeSettings::default()
            }
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            table_name,
            events_queue_url,
            jobs_queue_url,
            outbox_queue_url,
            auth: AuthConfig {
                issuer,
                audience,
                jwks_url,
                role_claim,
            },
            dedupe_ttl_days,
            aggregate_shards,
            engagement_window_days,
            default_trial_days,
            dead_letter_queues,
            nudges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> HashMap<String, String> {
        [
            ("TABLE_NAME", "t"),
            ("EVENTS_QUEUE_URL", "q1"),
            ("JOBS_QUEUE_URL", "q2"),
            ("OUTBOX_QUEUE_URL", "q3"),
            ("AUTH_ISSUER", "iss"),
            ("AUTH_AUDIENCE", "aud"),
            ("AUTH_JWKS_URL", "file:///tmp/jwks.json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn defaults_apply_when_optional_settings_are_absent() {
        let c = Config::from_map(&full()).unwrap();
        assert_eq!(c.auth.role_claim, "role");
        assert_eq!(c.dedupe_ttl_days, 35);
        assert_eq!(c.aggregate_shards, 16);
        assert_eq!(c.engagement_window_days, 28);
        assert_eq!(c.default_trial_days, 14);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut vars = full();
        vars.remove("TABLE_NAME");
        vars.remove("AUTH_ISSUER");
        vars.insert("AGGREGATE_SHARDS".into(), "0".into());
        let err = Config::from_map(&vars).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("TABLE_NAME is required"));
        assert!(err.to_string().contains("AGGREGATE_SHARDS must be"));
    }

    #[test]
    fn a_bad_nudge_setting_stops_the_function_at_start() {
        let mut vars = full();
        vars.insert(
            "NUDGE_SETTINGS".into(),
            r#"{"reminders":{"cooldown_hours":6,"daily_cap":"three"}}"#.into(),
        );
        let err = Config::from_map(&vars).unwrap_err();
        assert!(
            err.to_string()
                .contains("NUDGE_SETTINGS reminders.daily_cap"),
            "{err}"
        );
        vars.insert(
            "NUDGE_SETTINGS".into(),
            r#"{"reminders":{"daily_cap":2}}"#.into(),
        );
        assert_eq!(
            Config::from_map(&vars).unwrap().nudges.reminders.daily_cap,
            2
        );
    }
}
