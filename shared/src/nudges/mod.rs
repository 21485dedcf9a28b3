//! Conversion nudges (the Upgrade Optimization system): smart trial reminders, usage-based
//! upgrade prompts, social proof, limited-time offers and per-user optimization analytics.
//!
//! The rules are pure modules ([`reminders`], [`usage`], [`social_proof`], [`offers`],
//! [`analytics`], [`signals`]); [`service`] runs them against the store, the outbox and the
//! experiments. docs/NUDGES.md states every rule and setting.

pub mod analytics;
pub mod offers;
pub mod reminders;
pub mod service;
pub mod signals;
pub mod social_proof;
pub mod usage;
pub mod variants;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::FieldError;

/// Every nudge setting. Defaults are the reference design's; `NUDGE_SETTINGS` (JSON) may
/// override any of them, and a bad value stops the function at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NudgeSettings {
    pub reminders: reminders::ReminderSettings,
    pub prompts: usage::PromptSettings,
    pub social_proof: social_proof::SocialProofSettings,
    pub offers: offers::OfferSettings,
    pub recommendations: analytics::RecommendationRules,
    /// Features that serve each user goal (`identify.goals`), for goal alignment.
    pub goal_features: BTreeMap<String, Vec<String>>,
    /// No second prompt for the same trigger feature within this many days.
    pub prompt_cooldown_days: u32,
    /// Days of daily aggregates the per-user analytics read for segment figures.
    pub analytics_window_days: u32,
    /// Days over which the engagement score counts active days.
    pub engagement_days: u32,
}

impl Default for NudgeSettings {
    fn default() -> Self {
        let goals = |fs: &[&str]| fs.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        NudgeSettings {
            reminders: Default::default(),
            prompts: Default::default(),
            social_proof: Default::default(),
            offers: Default::default(),
            recommendations: Default::default(),
            goal_features: BTreeMap::from([
                (
                    "save_money".to_string(),
                    goals(&["budget_tracker", "expense_categorizer", "savings_goals"]),
                ),
                (
                    "reduce_debt".to_string(),
                    goals(&["budget_tracker", "expense_categorizer"]),
                ),
                (
                    "invest_for_future".to_string(),
                    goals(&["investment_analysis", "retirement_planner"]),
                ),
                (
                    "plan_retirement".to_string(),
                    goals(&["retirement_planner", "investment_analysis"]),
                ),
            ]),
            prompt_cooldown_days: 7,
            analytics_window_days: 90,
            engagement_days: 14,
        }
    }
}

impl NudgeSettings {
    /// Parses `NUDGE_SETTINGS` (empty means all defaults) and validates every field.
    pub fn from_json(text: &str) -> Result<NudgeSettings, Vec<FieldError>> {
        let text = text.trim();
        let settings: NudgeSettings = if text.is_empty() {
            NudgeSettings::default()
        } else {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                vec![FieldError::new(
                    if path == "." {
                        "NUDGE_SETTINGS".into()
                    } else {
                        path
                    },
                    crate::experiments::model::clean_serde_message(e.inner()),
                )]
            })?
        };
        let errors = settings.validate();
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = self.reminders.validate("reminders");
        errors.extend(self.prompts.validate("prompts"));
        errors.extend(self.social_proof.validate("social_proof"));
        errors.extend(self.offers.validate("offers"));
        errors.extend(self.recommendations.validate("recommendations"));
        if !(1..=365).contains(&self.prompt_cooldown_days) {
            errors.push(FieldError::new(
                "prompt_cooldown_days",
                "must be in 1..=365",
            ));
        }
        if !(1..=365).contains(&self.analytics_window_days) {
            errors.push(FieldError::new(
                "analytics_window_days",
                "must be in 1..=365",
            ));
        }
        if !(1..=28).contains(&self.engagement_days) {
            errors.push(FieldError::new("engagement_days", "must be in 1..=28"));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_settings_are_the_defaults() {
        let s = NudgeSettings::from_json("").unwrap();
        assert_eq!(s, NudgeSettings::default());
        assert_eq!(NudgeSettings::from_json("{}").unwrap(), s);
    }

    #[test]
    fn a_setting_can_be_overridden_and_a_typo_is_named() {
        let s = NudgeSettings::from_json(r#"{"reminders":{"daily_cap":2}}"#).unwrap();
        assert_eq!(s.reminders.daily_cap, 2);
        let err = NudgeSettings::from_json(r#"{"reminders":{"daily_capp":2}}"#).unwrap_err();
        assert_eq!(err[0].field, "reminders.daily_capp");
        assert!(err[0].message.contains("daily_capp"), "{err:?}");
        let err = NudgeSettings::from_json(r#"{"prompt_cooldown_days":0}"#).unwrap_err();
        assert_eq!(err[0].field, "prompt_cooldown_days");
    }
}
