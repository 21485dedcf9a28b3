//! The shapes of template.yaml as written. Everything the local stack relies on is
//! `deny_unknown_fields`, so a misspelt key is an error that names it; sections the local stack
//! has no use for (Policies, alarms, Outputs, ...) are not modelled at all.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_yaml::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Document {
    #[serde(default)]
    pub parameters: BTreeMap<String, Parameter>,
    #[serde(default)]
    pub globals: Globals,
    pub resources: BTreeMap<String, Resource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Parameter {
    pub default: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Globals {
    #[serde(default)]
    pub function: FunctionGlobals,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionGlobals {
    pub environment: Option<Environment>,
    pub timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Environment {
    pub variables: BTreeMap<String, Value>,
}

/// One entry of `Resources`; `Properties` and `Metadata` are read per type.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub properties: Value,
    #[serde(default)]
    pub metadata: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TableProperties {
    pub billing_mode: Option<String>,
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    pub time_to_live_specification: Option<TimeToLive>,
    /// Accepted; no local effect.
    #[serde(rename = "PointInTimeRecoverySpecification")]
    _point_in_time_recovery_specification: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "SSESpecification")]
    _sse_specification: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "DeletionProtectionEnabled")]
    _deletion_protection_enabled: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "Tags")]
    _tags: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AttributeDefinition {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GlobalSecondaryIndex {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: Projection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Projection {
    pub projection_type: String,
    pub non_key_attributes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TimeToLive {
    pub attribute_name: String,
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct QueueProperties {
    pub visibility_timeout: Option<u32>,
    pub message_retention_period: Option<u32>,
    pub delay_seconds: Option<u32>,
    pub receive_message_wait_time_seconds: Option<u32>,
    pub maximum_message_size: Option<u32>,
    pub redrive_policy: Option<RedrivePolicy>,
    /// Accepted; no local effect.
    #[serde(rename = "SqsManagedSseEnabled")]
    _sqs_managed_sse_enabled: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "Tags")]
    _tags: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedrivePolicy {
    pub dead_letter_target_arn: Value,
    pub max_receive_count: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionMetadata {
    pub build_properties: Option<BuildProperties>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuildProperties {
    pub binary: Option<String>,
}

/// Function properties: only `Environment`, `Timeout` and `Events` matter locally, so the
/// rest (CodeUri, Policies, ...) is not modelled; what is modelled is strict.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionProperties {
    pub environment: Option<Environment>,
    pub timeout: Option<u64>,
    #[serde(default)]
    pub events: BTreeMap<String, Event>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    pub properties: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HttpApiEvent {
    pub api_id: Option<Value>,
    pub path: String,
    pub method: String,
    pub auth: Option<HttpApiEventAuth>,
    pub payload_format_version: Option<String>,
    /// Accepted; the local gateway does not time requests out.
    #[serde(rename = "TimeoutInMillis")]
    _timeout_in_millis: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "RouteSettings")]
    _route_settings: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HttpApiEventAuth {
    pub authorizer: Option<String>,
    /// Accepted; scopes are checked by the functions themselves.
    #[serde(rename = "AuthorizationScopes")]
    _authorization_scopes: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SqsEvent {
    pub queue: Value,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_in_seconds: Option<u32>,
    #[serde(default)]
    pub function_response_types: Vec<String>,
    pub enabled: Option<bool>,
    /// Accepted; the local pump runs one batch at a time per queue.
    #[serde(rename = "ScalingConfig")]
    _scaling_config: Option<IgnoredAny>,
}

/// `Type: Schedule` (an EventBridge rule).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScheduleEvent {
    pub schedule: String,
    pub input: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub state: Option<String>,
    /// Accepted; no local effect.
    #[serde(rename = "RetryPolicy")]
    _retry_policy: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "DeadLetterConfig")]
    _dead_letter_config: Option<IgnoredAny>,
}

/// `Type: ScheduleV2` (EventBridge Scheduler).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScheduleV2Event {
    pub schedule_expression: String,
    pub schedule_expression_timezone: Option<String>,
    pub input: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub state: Option<String>,
    /// Accepted; schedules fire on time locally.
    #[serde(rename = "FlexibleTimeWindow")]
    _flexible_time_window: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "RetryPolicy")]
    _retry_policy: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "DeadLetterConfig")]
    _dead_letter_config: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "GroupName")]
    _group_name: Option<IgnoredAny>,
    /// Accepted; no local effect.
    #[serde(rename = "OmitName")]
    _omit_name: Option<IgnoredAny>,
}

/// The parts of an `AWS::Serverless::HttpApi` that decide whether routes need a token.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpApiProperties {
    pub auth: Option<HttpApiAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpApiAuth {
    pub default_authorizer: Option<String>,
}
