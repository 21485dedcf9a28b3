//! Reads template.yaml, the one source of truth for the local stack: which tables and queues
//! exist, what every function's environment is, and which HTTP routes, queues and schedules
//! trigger which function binary.

mod intrinsics;
mod raw;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_yaml::Value;

pub use intrinsics::{Physical, QueueRef, Resolver, ACCOUNT_ID, REGION};
pub use raw::{AttributeDefinition, GlobalSecondaryIndex, KeyElement, TimeToLive};

/// Physical names are `tierup-<LogicalId>`, locally and in the env files.
pub const NAME_PREFIX: &str = "tierup-";

/// The physical name of a resource.
pub fn physical_name(logical_id: &str) -> String {
    format!("{NAME_PREFIX}{logical_id}")
}

#[derive(Debug)]
pub struct Template {
    /// Parameter defaults (stringified); parameters without a default are absent.
    pub parameter_defaults: BTreeMap<String, String>,
    pub parameter_names: Vec<String>,
    pub global_environment: BTreeMap<String, Value>,
    pub tables: Vec<Table>,
    pub queues: Vec<Queue>,
    pub functions: Vec<Function>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub logical_id: String,
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeyElement>,
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    pub time_to_live: Option<TimeToLive>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    pub logical_id: String,
    pub visibility_timeout: Option<u32>,
    pub message_retention_period: Option<u32>,
    pub delay_seconds: Option<u32>,
    pub receive_message_wait_time_seconds: Option<u32>,
    pub maximum_message_size: Option<u32>,
    pub redrive: Option<Redrive>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Redrive {
    /// Logical id of the dead-letter queue.
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub timeout_seconds: u64,
    pub environment: BTreeMap<String, Value>,
    pub routes: Vec<HttpRoute>,
    pub sqs_sources: Vec<SqsSource>,
    pub schedules: Vec<ScheduleSource>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    pub event_id: String,
    /// Upper-case method, or `ANY`.
    pub method: String,
    pub path: String,
    /// Whether the route sits behind the JWT authorizer.
    pub requires_token: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SqsSource {
    pub event_id: String,
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: u32,
    pub batching_window_seconds: u32,
    pub report_batch_item_failures: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSource {
    pub event_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub expression: String,
    /// The event EventBridge delivers when `Input` is set.
    pub input: Option<serde_json::Value>,
    pub enabled: bool,
}

const DEFAULT_FUNCTION_TIMEOUT: u64 = 3;

impl Template {
    pub fn load(path: &Path) -> Result<Template> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Template::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Template> {
        let doc: raw::Document = serde_yaml::from_str(text)?;
        let mut template = Template {
            parameter_defaults: parameter_defaults(&doc.parameters)?,
            parameter_names: doc.parameters.keys().cloned().collect(),
            global_environment: doc
                .globals
                .function
                .environment
                .map(|e| e.variables)
                .unwrap_or_default(),
            tables: Vec::new(),
            queues: Vec::new(),
            functions: Vec::new(),
        };
        let global_timeout = doc
            .globals
            .function
            .timeout
            .unwrap_or(DEFAULT_FUNCTION_TIMEOUT);
        let apis = http_apis(&doc.resources)?;
        for (id, resource) in &doc.resources {
            let context = || format!("resource {id} ({})", resource.kind);
            match resource.kind.as_str() {
                "AWS::DynamoDB::Table" => template
                    .tables
                    .push(table(id, resource).with_context(context)?),
                "AWS::SQS::Queue" => template
                    .queues
                    .push(queue(id, resource).with_context(context)?),
                "AWS::Serverless::Function" => template
                    .functions
                    .push(function(id, resource, global_timeout, &apis).with_context(context)?),
                _ => {}
            }
        }
        template.check_references()?;
        Ok(template)
    }

    pub fn queue(&self, logical_id: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.logical_id == logical_id)
    }

    pub fn is_table(&self, logical_id: &str) -> bool {
        self.tables.iter().any(|t| t.logical_id == logical_id)
    }

    /// The queues whose redrive policy names `dlq` as their dead-letter queue.
    pub fn sources_of_dlq(&self, dlq: &str) -> Vec<&Queue> {
        self.queues
            .iter()
            .filter(|q| {
                q.redrive
                    .as_ref()
                    .is_some_and(|r| r.dead_letter_queue == dlq)
            })
            .collect()
    }

    fn check_references(&self) -> Result<()> {
        for q in &self.queues {
            if let Some(r) = &q.redrive {
                if self.queue(&r.dead_letter_queue).is_none() {
                    bail!(
                        "queue {}: deadLetterTargetArn names {}, which is not an AWS::SQS::Queue",
                        q.logical_id,
                        r.dead_letter_queue
                    );
                }
            }
        }
        for f in &self.functions {
            for s in &f.sqs_sources {
                if self.queue(&s.queue).is_none() {
                    bail!(
                        "function {} event {}: Queue names {}, which is not an AWS::SQS::Queue",
                        f.logical_id,
                        s.event_id,
                        s.queue
                    );
                }
            }
        }
        Ok(())
    }
}

/// Deserializes a (possibly absent) properties block strictly.
fn properties<T: DeserializeOwned>(value: &Value) -> Result<T> {
    let value = match value {
        Value::Null => Value::Mapping(Default::default()),
        other => other.clone(),
    };
    Ok(serde_yaml::from_value(value)?)
}

fn parameter_defaults(
    parameters: &BTreeMap<String, raw::Parameter>,
) -> Result<BTreeMap<String, String>> {
    let mut defaults = BTreeMap::new();
    for (name, p) in parameters {
        if let Some(value) = &p.default {
            let text = intrinsics::scalar_to_string(value)
                .ok_or_else(|| anyhow!("parameter {name}: Default must be a scalar"))?;
            defaults.insert(name.clone(), text);
        }
    }
    Ok(defaults)
}

/// Logical id of every HttpApi -> whether it has a default authorizer.
fn http_apis(resources: &BTreeMap<String, raw::Resource>) -> Result<BTreeMap<String, bool>> {
    let mut apis = BTreeMap::new();
    for (id, resource) in resources {
        if resource.kind == "AWS::Serverless::HttpApi" {
            let props: raw::HttpApiProperties = properties(&resource.properties)
                .with_context(|| format!("resource {id} (AWS::Serverless::HttpApi)"))?;
            let has_default = props.auth.and_then(|a| a.default_authorizer).is_some();
            apis.insert(id.clone(), has_default);
        }
    }
    Ok(apis)
}

fn table(id: &str, resource: &raw::Resource) -> Result<Table> {
    let props: raw::TableProperties = properties(&resource.properties)?;
    if let Some(mode) = props.billing_mode.as_deref() {
        if mode != "PAY_PER_REQUEST" {
            bail!("BillingMode {mode} is not supported locally (use PAY_PER_REQUEST)");
        }
    }
    Ok(Table {
        logical_id: id.to_string(),
        attribute_definitions: props.attribute_definitions,
        key_schema: props.key_schema,
        global_secondary_indexes: props.global_secondary_indexes,
        time_to_live: props.time_to_live_specification,
    })
}

fn queue(id: &str, resource: &raw::Resource) -> Result<Queue> {
    let props: raw::QueueProperties = properties(&resource.properties)?;
    let redrive = match props.redrive_policy {
        Some(policy) => Some(Redrive {
            dead_letter_queue: intrinsics::get_att_target(&policy.dead_letter_target_arn, "Arn")
                .context("RedrivePolicy.deadLetterTargetArn")?,
            max_receive_count: policy.max_receive_count,
        }),
        None => None,
    };
    Ok(Queue {
        logical_id: id.to_string(),
        visibility_timeout: props.visibility_timeout,
        message_retention_period: props.message_retention_period,
        delay_seconds: props.delay_seconds,
        receive_message_wait_time_seconds: props.receive_message_wait_time_seconds,
        maximum_message_size: props.maximum_message_size,
        redrive,
    })
}

fn function(
    id: &str,
    resource: &raw::Resource,
    global_timeout: u64,
    apis: &BTreeMap<String, bool>,
) -> Result<Function> {
    let metadata: raw::FunctionMetadata = properties(&resource.metadata).context("Metadata")?;
    let binary = metadata
        .build_properties
        .and_then(|b| b.binary)
        .ok_or_else(|| anyhow!("Metadata.BuildProperties.Binary is required"))?;
    let props: raw::FunctionProperties = properties(&resource.properties)?;
    let mut function = Function {
        logical_id: id.to_string(),
        binary,
        timeout_seconds: props.timeout.unwrap_or(global_timeout),
        environment: props.environment.map(|e| e.variables).unwrap_or_default(),
        routes: Vec::new(),
        sqs_sources: Vec::new(),
        schedules: Vec::new(),
    };
    for (event_id, event) in &props.events {
        add_event(&mut function, event_id, event, apis)
            .with_context(|| format!("event {event_id} (Type {})", event.kind))?;
    }
    Ok(function)
}

fn add_event(
    function: &mut Function,
    event_id: &str,
    event: &raw::Event,
    apis: &BTreeMap<String, bool>,
) -> Result<()> {
    match event.kind.as_str() {
        "HttpApi" => function
            .routes
            .push(http_route(event_id, &event.properties, apis)?),
        "SQS" => function
            .sqs_sources
            .push(sqs_source(event_id, &event.properties)?),
        "Schedule" => function
            .schedules
            .push(schedule_v1(event_id, &event.properties)?),
        "ScheduleV2" => function
            .schedules
            .push(schedule_v2(event_id, &event.properties)?),
        other => bail!(
            "event type {other} is not emulated by the local stack \
             (supported: HttpApi, SQS, Schedule, ScheduleV2)"
        ),
    }
    Ok(())
}

fn http_route(event_id: &str, value: &Value, apis: &BTreeMap<String, bool>) -> Result<HttpRoute> {
    let props: raw::HttpApiEvent = properties(value)?;
    if let Some(version) = props.payload_format_version.as_deref() {
        if version != "2.0" {
            bail!("PayloadFormatVersion {version} is not emulated (only 2.0)");
        }
    }
    if !props.path.starts_with('/') {
        bail!("Path must start with '/': {}", props.path);
    }
    let api_has_default_authorizer = match &props.api_id {
        Some(api) => {
            let api_id = intrinsics::ref_target(api).context("ApiId")?;
            *apis
                .get(&api_id)
                .ok_or_else(|| anyhow!("ApiId names {api_id}, which is not an HttpApi"))?
        }
        None => false,
    };
    let authorizer = props.auth.and_then(|a| a.authorizer);
    let requires_token = match authorizer.as_deref() {
        Some("NONE") => false,
        Some(_) => true,
        None => api_has_default_authorizer,
    };
    Ok(HttpRoute {
        event_id: event_id.to_string(),
        method: props.method.to_ascii_uppercase(),
        path: props.path,
        requires_token,
    })
}

fn sqs_source(event_id: &str, value: &Value) -> Result<SqsSource> {
    let props: raw::SqsEvent = properties(value)?;
    let mut report_batch_item_failures = false;
    for t in &props.function_response_types {
        match t.as_str() {
            "ReportBatchItemFailures" => report_batch_item_failures = true,
            other => bail!("unknown FunctionResponseTypes entry {other}"),
        }
    }
    let batch_size = props.batch_size.unwrap_or(10);
    if batch_size == 0 || batch_size > 10_000 {
        bail!("BatchSize must be 1..=10000, got {batch_size}");
    }
    Ok(SqsSource {
        event_id: event_id.to_string(),
        queue: intrinsics::get_att_target(&props.queue, "Arn").context("Queue")?,
        batch_size,
        batching_window_seconds: props.maximum_batching_window_in_seconds.unwrap_or(0),
        report_batch_item_failures,
        enabled: props.enabled.unwrap_or(true),
    })
}

fn schedule_v1(event_id: &str, value: &Value) -> Result<ScheduleSource> {
    let props: raw::ScheduleEvent = properties(value)?;
    let enabled = match (props.enabled, props.state.as_deref()) {
        (Some(enabled), _) => enabled,
        (None, state) => state_enabled(state)?,
    };
    Ok(ScheduleSource {
        event_id: event_id.to_string(),
        name: props.name,
        description: props.description,
        expression: props.schedule,
        input: parse_input(props.input.as_deref())?,
        enabled,
    })
}

fn schedule_v2(event_id: &str, value: &Value) -> Result<ScheduleSource> {
    let props: raw::ScheduleV2Event = properties(value)?;
    if let Some(tz) = props.schedule_expression_timezone.as_deref() {
        if !matches!(tz, "UTC" | "Etc/UTC") {
            bail!("ScheduleExpressionTimezone {tz} is not supported locally (only UTC)");
        }
    }
    Ok(ScheduleSource {
        event_id: event_id.to_string(),
        name: props.name,
        description: props.description,
        expression: props.schedule_expression,
        input: parse_input(props.input.as_deref())?,
        enabled: state_enabled(props.state.as_deref())?,
    })
}

fn state_enabled(state: Option<&str>) -> Result<bool> {
    match state {
        None | Some("ENABLED") => Ok(true),
        Some("DISABLED") => Ok(false),
        Some(other) => bail!("State must be ENABLED or DISABLED, got {other}"),
    }
}

fn parse_input(input: Option<&str>) -> Result<Option<serde_json::Value>> {
    input
        .map(|text| serde_json::from_str(text).context("Input is not valid JSON"))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../../template.yaml");

    #[test]
    fn the_project_template_is_read_completely() {
        let t = Template::parse(TEMPLATE).unwrap();
        assert_eq!(t.tables.len(), 1);
        assert_eq!(t.tables[0].logical_id, "Table");
        assert_eq!(t.tables[0].global_secondary_indexes[0].index_name, "gsi1");
        let events = t.queue("EventsQueue").unwrap();
        assert_eq!(
            events.redrive,
            Some(Redrive {
                dead_letter_queue: "EventsDLQ".into(),
                max_receive_count: 5
            })
        );
        assert_eq!(events.visibility_timeout, Some(360));
        assert!(t.functions.iter().any(|f| f.binary == "api-events"));
        assert_eq!(t.sources_of_dlq("JobsDLQ")[0].logical_id, "JobsQueue");
    }

    const SMALL: &str = r#"
Parameters:
  Issuer:
    Type: String
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
  Dlq:
    Type: AWS::SQS::Queue
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: 3
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: my-fn
    Properties:
      Timeout: 9
      Events:
        Open:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Path: /health
            Method: get
            Auth:
              Authorizer: NONE
        Closed:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Path: /items/{id}
            Method: POST
        Q:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
        Nightly:
          Type: Schedule
          Properties:
            Schedule: cron(0 3 * * ? *)
            Input: '{"job":"x"}'
            Enabled: false
"#;

    #[test]
    fn events_become_routes_pollers_and_schedules() {
        let t = Template::parse(SMALL).unwrap();
        let f = &t.functions[0];
        assert_eq!(f.binary, "my-fn");
        assert_eq!(f.timeout_seconds, 9);
        let closed = f.routes.iter().find(|r| r.event_id == "Closed").unwrap();
        assert!(closed.requires_token);
        let open = f.routes.iter().find(|r| r.event_id == "Open").unwrap();
        assert_eq!(open.method, "GET");
        assert!(!open.requires_token);
        assert_eq!(
            f.sqs_sources[0],
            SqsSource {
                event_id: "Q".into(),
                queue: "Work".into(),
                batch_size: 2,
                batching_window_seconds: 0,
                report_batch_item_failures: true,
                enabled: true,
            }
        );
        assert_eq!(f.schedules[0].input, Some(serde_json::json!({"job": "x"})));
        assert!(!f.schedules[0].enabled);
        assert!(t.parameter_defaults.is_empty());
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", Template::parse(text).unwrap_err())
    }

    #[test]
    fn a_misspelt_key_is_rejected_by_name() {
        let err = error_of(&SMALL.replace("maxReceiveCount", "maxRecieveCount"));
        assert!(err.contains("maxRecieveCount"), "{err}");
        assert!(err.contains("Work"), "{err}");

        let err = error_of(&SMALL.replace("BatchSize", "BatchSise"));
        assert!(err.contains("BatchSise"), "{err}");

        let err = error_of(&TEMPLATE.replace("ProjectionType", "ProjectonType"));
        assert!(err.contains("ProjectonType"), "{err}");
    }

    #[test]
    fn dangling_references_and_unsupported_events_are_rejected() {
        let err = error_of(&SMALL.replace("!GetAtt Dlq.Arn", "!GetAtt Nope.Arn"));
        assert!(err.contains("Nope"), "{err}");

        let err = error_of(&SMALL.replace("Type: SQS", "Type: Kinesis"));
        assert!(err.contains("Kinesis"), "{err}");

        let err = error_of(&SMALL.replace("Binary: my-fn", "Flags: x"));
        assert!(err.contains("Binary"), "{err}");
    }
}
