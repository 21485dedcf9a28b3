//! Creates (or reuses) the template's tables and queues in the local emulator.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::template::{physical_name, Physical, Queue, QueueRef, Table, Template};

/// Queues without a VisibilityTimeout get SQS's default.
const DEFAULT_VISIBILITY_TIMEOUT: u32 = 30;

pub struct Emulator {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Emulator {
    /// Every table and queue of the template; queues are configured even when they exist so a
    /// changed template or visibility cap takes effect.
    pub async fn ensure(
        &self,
        template: &Template,
        max_visibility: Option<u32>,
    ) -> Result<Physical> {
        let mut physical = Physical::default();
        for table in &template.tables {
            let name = self
                .ensure_table(table)
                .await
                .with_context(|| format!("table {}", table.logical_id))?;
            physical.tables.insert(table.logical_id.clone(), name);
        }
        for queue in creation_order(&template.queues)? {
            let dlq_arn = match &queue.redrive {
                Some(r) => Some(
                    physical
                        .queues
                        .get(&r.dead_letter_queue)
                        .map(|q| q.arn.clone())
                        .ok_or_else(|| {
                            anyhow!("dead-letter queue {} missing", r.dead_letter_queue)
                        })?,
                ),
                None => None,
            };
            let attributes = queue_attributes(queue, dlq_arn.as_deref(), max_visibility);
            let queue_ref = self
                .ensure_queue(&physical_name(&queue.logical_id), attributes)
                .await
                .with_context(|| format!("queue {}", queue.logical_id))?;
            physical.queues.insert(queue.logical_id.clone(), queue_ref);
        }
        Ok(physical)
    }

    async fn ensure_table(&self, table: &Table) -> Result<String> {
        let name = physical_name(&table.logical_id);
        match self
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
        {
            Ok(existing) => {
                let keys = existing
                    .table()
                    .map(|t| t.key_schema().to_vec())
                    .unwrap_or_default();
                if keys != key_schema(&table.key_schema)? {
                    bail!(
                        "{name} exists with another key schema; delete it or restart the emulator"
                    );
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                self.create_table(&name, table).await?;
            }
            Err(e) => return Err(e).context("DescribeTable"),
        }
        if let Some(ttl) = table.time_to_live.as_ref().filter(|t| t.enabled) {
            self.enable_ttl(&name, &ttl.attribute_name).await?;
        }
        Ok(name)
    }

    async fn create_table(&self, name: &str, table: &Table) -> Result<()> {
        let definitions = table
            .attribute_definitions
            .iter()
            .map(|d| {
                AttributeDefinition::builder()
                    .attribute_name(&d.attribute_name)
                    .attribute_type(ScalarAttributeType::from(d.attribute_type.as_str()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let indexes = table
            .global_secondary_indexes
            .iter()
            .map(|gsi| {
                let projection = Projection::builder()
                    .projection_type(ProjectionType::from(
                        gsi.projection.projection_type.as_str(),
                    ))
                    .set_non_key_attributes(gsi.projection.non_key_attributes.clone())
                    .build();
                Ok(GlobalSecondaryIndex::builder()
                    .index_name(&gsi.index_name)
                    .set_key_schema(Some(key_schema(&gsi.key_schema)?))
                    .projection(projection)
                    .build()?)
            })
            .collect::<Result<Vec<_>>>()?;
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(definitions))
            .set_key_schema(Some(key_schema(&table.key_schema)?))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .send()
            .await
            .context("CreateTable")?;
        Ok(())
    }

    async fn enable_ttl(&self, name: &str, attribute: &str) -> Result<()> {
        let current = self
            .dynamodb
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .context("DescribeTimeToLive")?;
        let description = current.time_to_live_description();
        let enabled = description.and_then(|d| d.time_to_live_status())
            == Some(&TimeToLiveStatus::Enabled)
            && description.and_then(|d| d.attribute_name()) == Some(attribute);
        if !enabled {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(true)
                .build()?;
            self.dynamodb
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
                .context("UpdateTimeToLive")?;
        }
        Ok(())
    }

    async fn ensure_queue(
        &self,
        name: &str,
        attributes: HashMap<QueueAttributeName, String>,
    ) -> Result<QueueRef> {
        let url = match self.sqs.get_queue_url().queue_name(name).send().await {
            Ok(found) => {
                let url = found.queue_url().unwrap_or_default().to_string();
                self.sqs
                    .set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attributes))
                    .send()
                    .await
                    .context("SetQueueAttributes")?;
                url
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                self.sqs
                    .create_queue()
                    .queue_name(name)
                    .set_attributes(Some(attributes))
                    .send()
                    .await
                    .context("CreateQueue")?
                    .queue_url()
                    .unwrap_or_default()
                    .to_string()
            }
            Err(e) => return Err(e).context("GetQueueUrl"),
        };
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .context("GetQueueAttributes")?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| anyhow!("the emulator reported no QueueArn for {name}"))?;
        Ok(QueueRef {
            url,
            arn,
            name: name.to_string(),
        })
    }
}

fn key_schema(elements: &[crate::template::KeyElement]) -> Result<Vec<KeySchemaElement>> {
    elements
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()?)
        })
        .collect()
}

/// Queues ordered so every dead-letter queue comes before the queues that use it.
pub fn creation_order(queues: &[Queue]) -> Result<Vec<&Queue>> {
    let mut ordered: Vec<&Queue> = Vec::with_capacity(queues.len());
    while ordered.len() < queues.len() {
        let before = ordered.len();
        for q in queues {
            let placed = |id: &str| ordered.iter().any(|o| o.logical_id == id);
            let ready = q
                .redrive
                .as_ref()
                .is_none_or(|r| placed(&r.dead_letter_queue));
            if ready && !placed(&q.logical_id) {
                ordered.push(q);
            }
        }
        if ordered.len() == before {
            bail!("the queues' redrive policies form a cycle");
        }
    }
    Ok(ordered)
}

/// The attributes a queue is created or updated with; `max_visibility` caps the visibility
/// timeout so failed messages come back quickly in tests.
pub fn queue_attributes(
    queue: &Queue,
    dlq_arn: Option<&str>,
    max_visibility: Option<u32>,
) -> HashMap<QueueAttributeName, String> {
    let visibility = queue
        .visibility_timeout
        .unwrap_or(DEFAULT_VISIBILITY_TIMEOUT);
    let visibility = max_visibility.map_or(visibility, |cap| visibility.min(cap));
    let mut attributes = HashMap::from([(
        QueueAttributeName::VisibilityTimeout,
        visibility.to_string(),
    )]);
    let optional = [
        (
            QueueAttributeName::MessageRetentionPeriod,
            queue.message_retention_period,
        ),
        (QueueAttributeName::DelaySeconds, queue.delay_seconds),
        (
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
            queue.receive_message_wait_time_seconds,
        ),
        (
            QueueAttributeName::MaximumMessageSize,
            queue.maximum_message_size,
        ),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            attributes.insert(name, value.to_string());
        }
    }
    if let (Some(redrive), Some(arn)) = (&queue.redrive, dlq_arn) {
        let policy = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": redrive.max_receive_count,
        });
        attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    attributes
}

/// `TIERUP_QUEUE_<LogicalId>=<url>` for every queue.
pub fn queue_variables(physical: &Physical) -> BTreeMap<String, String> {
    physical
        .queues
        .iter()
        .map(|(id, q)| (format!("TIERUP_QUEUE_{id}"), q.url.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Redrive;

    fn queue(id: &str, dlq: Option<&str>) -> Queue {
        Queue {
            logical_id: id.into(),
            visibility_timeout: Some(360),
            message_retention_period: Some(60),
            delay_seconds: None,
            receive_message_wait_time_seconds: None,
            maximum_message_size: None,
            redrive: dlq.map(|d| Redrive {
                dead_letter_queue: d.into(),
                max_receive_count: 5,
            }),
        }
    }

    #[test]
    fn dead_letter_queues_are_created_first_and_cycles_rejected() {
        let queues = [queue("Work", Some("Dlq")), queue("Dlq", None)];
        let order: Vec<_> = creation_order(&queues)
            .unwrap()
            .iter()
            .map(|q| q.logical_id.clone())
            .collect();
        assert_eq!(order, ["Dlq", "Work"]);
        let cycle = [queue("A", Some("B")), queue("B", Some("A"))];
        assert!(creation_order(&cycle).is_err());
    }

    #[test]
    fn attributes_carry_the_redrive_policy_and_the_visibility_cap() {
        let q = queue("Work", Some("Dlq"));
        let a = queue_attributes(&q, Some("arn:dlq"), Some(5));
        assert_eq!(a[&QueueAttributeName::VisibilityTimeout], "5");
        assert_eq!(a[&QueueAttributeName::MessageRetentionPeriod], "60");
        let policy: serde_json::Value =
            serde_json::from_str(&a[&QueueAttributeName::RedrivePolicy]).unwrap();
        assert_eq!(policy["maxReceiveCount"], 5);
        assert_eq!(policy["deadLetterTargetArn"], "arn:dlq");
        let uncapped = queue_attributes(&q, Some("arn:dlq"), None);
        assert_eq!(uncapped[&QueueAttributeName::VisibilityTimeout], "360");
    }
}
