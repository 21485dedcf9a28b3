//! What nudge experiments' variant configs may say, parsed and validated. `timing`
//! experiments set the trial-expiry offsets, `messaging` ones the reminder templates;
//! `prompt_design` / `cta_design` configs are checked by [`super::usage`] and `offer_type`
//! configs by [`super::offers`].
//!
//! - timing: `{"offsets_hours": [48, 24, 6]}` — 1 to 10 distinct whole hours in 1..=720.
//! - messaging: `{"templates": {"trial_expiry": "Only {hours_left} hours left of {plan}"}}` —
//!   keys are reminder types, values templates with the reminder placeholders.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::reminders::{validate_template, ReminderType};
use crate::events::FieldError;

/// The offsets a `timing` variant sets (`None`: the config leaves them at the defaults).
pub fn timing_override(config: &Value) -> Result<Option<Vec<u32>>, Vec<FieldError>> {
    let Some(v) = config.get("offsets_hours") else {
        return Ok(None);
    };
    let field = "config.offsets_hours";
    let Some(list) = v.as_array() else {
        return Err(vec![FieldError::new(
            field,
            "must be an array of whole hours",
        )]);
    };
    if list.is_empty() || list.len() > 10 {
        return Err(vec![FieldError::new(field, "must list 1 to 10 offsets")]);
    }
    let mut errors = Vec::new();
    let mut offsets = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, x) in list.iter().enumerate() {
        match x.as_u64().filter(|h| (1..=720).contains(h)) {
            Some(h) if seen.insert(h) => offsets.push(h as u32),
            Some(_) => errors.push(FieldError::new(format!("{field}[{i}]"), "is a duplicate")),
            None => errors.push(FieldError::new(
                format!("{field}[{i}]"),
                "must be a whole number of hours in 1..=720",
            )),
        }
    }
    if errors.is_empty() {
        Ok(Some(offsets))
    } else {
        Err(errors)
    }
}

/// The templates a `messaging` variant sets, by reminder type.
pub fn messaging_override(
    config: &Value,
) -> Result<BTreeMap<ReminderType, String>, Vec<FieldError>> {
    let Some(v) = config.get("templates") else {
        return Ok(BTreeMap::new());
    };
    let Some(map) = v.as_object() else {
        return Err(vec![FieldError::new(
            "config.templates",
            "must be an object of reminder type -> template",
        )]);
    };
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (k, t) in map {
        let field = format!("config.templates.{k}");
        let Some(kind) = ReminderType::parse(k) else {
            errors.push(FieldError::new(
                field,
                "is not a reminder type (trial_expiry, feature_usage, value_demonstration, engagement_drop, goal_alignment)",
            ));
            continue;
        };
        match t.as_str() {
            Some(s) if !s.trim().is_empty() && s.len() <= 1000 => match validate_template(s) {
                Ok(()) => {
                    out.insert(kind, s.to_string());
                }
                Err(e) => errors.push(FieldError::new(field, e.to_string())),
            },
            _ => errors.push(FieldError::new(
                field,
                "must be a template of 1..=1000 characters",
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Problems with the keys an `offer_type` variant may set: `offer_type` (an offer type),
/// `discount_value` (a whole number) or `position` (0..=1 within the path's range), not both.
/// Whether a value fits a tier path's range is known only when the offer is made.
pub fn offer_config_problems(config: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(v) = config.get("offer_type") {
        if v.as_str()
            .and_then(super::offers::OfferType::parse)
            .is_none()
        {
            errors.push(FieldError::new(
                "config.offer_type",
                "must be one of percentage_discount, fixed_discount, free_months, feature_upgrade, bonus_features, early_access",
            ));
        }
    }
    let value = config.get("discount_value");
    let position = config.get("position");
    if value.is_some_and(|v| v.as_u64().is_none()) {
        errors.push(FieldError::new(
            "config.discount_value",
            "must be a whole number",
        ));
    }
    if position.is_some_and(|p| !p.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x))) {
        errors.push(FieldError::new(
            "config.position",
            "must be a number in 0..=1",
        ));
    }
    if value.is_some() && position.is_some() {
        errors.push(FieldError::new(
            "config",
            "set discount_value or position, not both",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_timing_variant_sets_the_offsets_and_bad_ones_are_named() {
        assert_eq!(timing_override(&json!({})).unwrap(), None);
        assert_eq!(
            timing_override(&json!({"offsets_hours": [48, 24, 6]})).unwrap(),
            Some(vec![48, 24, 6])
        );
        let err = timing_override(&json!({"offsets_hours": [48, 0, 48]})).unwrap_err();
        assert_eq!(err[0].field, "config.offsets_hours[1]");
        assert_eq!(err[1].field, "config.offsets_hours[2]");
    }

    #[test]
    fn an_offer_variant_names_its_bad_keys() {
        assert!(
            offer_config_problems(&json!({"offer_type": "free_months", "position": 0.5}))
                .is_empty()
        );
        assert!(offer_config_problems(&json!({"headline": "x"})).is_empty());
        let fields: Vec<String> = offer_config_problems(
            &json!({"offer_type": "cashback", "discount_value": 2.5, "position": 3}),
        )
        .into_iter()
        .map(|e| e.field)
        .collect();
        assert_eq!(
            fields,
            [
                "config.offer_type",
                "config.discount_value",
                "config.position",
                "config"
            ]
        );
    }

    #[test]
    fn a_messaging_variant_sets_templates_and_bad_ones_are_named() {
        let t = messaging_override(&json!({"templates": {"trial_expiry": "{hours_left}h left"}}))
            .unwrap();
        assert_eq!(t[&ReminderType::TrialExpiry], "{hours_left}h left");
        let err =
            messaging_override(&json!({"templates": {"trial_expiry": "{bogus}", "nope": "x"}}))
                .unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(err.iter().any(|e| e.field == "config.templates.nope"));
        assert!(err
            .iter()
            .any(|e| e.field == "config.templates.trial_expiry"));
    }
}
