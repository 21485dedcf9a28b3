//! CloudFormation intrinsic functions, in short (`!Ref X`) and long (`{Ref: X}`) form,
//! resolved against the resources the local stack created.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use serde_yaml::Value;

use super::{physical_name, Template};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

/// What `Ref` / `Fn::GetAtt` on a queue yield.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRef {
    pub url: String,
    pub arn: String,
    pub name: String,
}

/// The physical resources behind the template's logical ids.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    /// Logical id -> table name.
    pub tables: BTreeMap<String, String>,
    /// Logical id -> queue.
    pub queues: BTreeMap<String, QueueRef>,
}

/// An intrinsic function call, whichever form it was written in.
enum Intrinsic<'a> {
    Ref(&'a Value),
    GetAtt(&'a Value),
    Sub(&'a Value),
}

fn intrinsic(value: &Value) -> Option<Intrinsic<'_>> {
    match value {
        Value::Tagged(tagged) => {
            let inner = &tagged.value;
            match tagged.tag.to_string().as_str() {
                "!Ref" => Some(Intrinsic::Ref(inner)),
                "!GetAtt" => Some(Intrinsic::GetAtt(inner)),
                "!Sub" => Some(Intrinsic::Sub(inner)),
                _ => None,
            }
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next()?;
            match key.as_str()? {
                "Ref" => Some(Intrinsic::Ref(inner)),
                "Fn::GetAtt" => Some(Intrinsic::GetAtt(inner)),
                "Fn::Sub" => Some(Intrinsic::Sub(inner)),
                _ => None,
            }
        }
        _ => None,
    }
}

pub fn scalar_to_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `(logical id, attribute)` of a GetAtt argument: `X.Attr` or `[X, Attr]`.
fn get_att_parts(arg: &Value) -> Result<(String, String)> {
    let parts: Option<(String, String)> = match arg {
        Value::String(s) => s
            .split_once('.')
            .map(|(id, attr)| (id.to_string(), attr.to_string())),
        Value::Sequence(items) if items.len() == 2 => {
            match (items[0].as_str(), items[1].as_str()) {
                (Some(id), Some(attr)) => Some((id.to_string(), attr.to_string())),
                _ => None,
            }
        }
        _ => None,
    };
    parts.ok_or_else(|| anyhow!("GetAtt needs LogicalId.Attribute, got {arg:?}"))
}

/// The logical id in `!GetAtt X.<attribute>`.
pub fn get_att_target(value: &Value, attribute: &str) -> Result<String> {
    match intrinsic(value) {
        Some(Intrinsic::GetAtt(arg)) => {
            let (id, attr) = get_att_parts(arg)?;
            if attr != attribute {
                bail!("expected !GetAtt {id}.{attribute}, got !GetAtt {id}.{attr}");
            }
            Ok(id)
        }
        _ => bail!("expected !GetAtt <LogicalId>.{attribute}, got {value:?}"),
    }
}

/// The logical id in `!Ref X`.
pub fn ref_target(value: &Value) -> Result<String> {
    match intrinsic(value) {
        Some(Intrinsic::Ref(Value::String(id))) => Ok(id.clone()),
        _ => bail!("expected !Ref <LogicalId>, got {value:?}"),
    }
}

/// Resolves values to strings with CloudFormation semantics.
pub struct Resolver<'a> {
    pub template: &'a Template,
    pub physical: &'a Physical,
    /// Parameter values that win over the template's defaults.
    pub parameter_overrides: BTreeMap<String, String>,
}

impl Resolver<'_> {
    pub fn resolve(&self, value: &Value) -> Result<String> {
        if let Some(text) = scalar_to_string(value) {
            return Ok(text);
        }
        match intrinsic(value) {
            Some(Intrinsic::Ref(Value::String(name))) => self.reference(name),
            Some(Intrinsic::GetAtt(arg)) => {
                let (id, attr) = get_att_parts(arg)?;
                self.attribute(&id, &attr)
            }
            Some(Intrinsic::Sub(arg)) => self.sub(arg),
            _ => bail!("cannot resolve {value:?} (supported: scalars, Ref, GetAtt, Sub)"),
        }
    }

    fn reference(&self, name: &str) -> Result<String> {
        if let Some(value) = self.parameter_overrides.get(name) {
            return Ok(value.clone());
        }
        if let Some(value) = self.template.parameter_defaults.get(name) {
            return Ok(value.clone());
        }
        if self.template.parameter_names.iter().any(|p| p == name) {
            bail!("parameter {name} has no Default and no local value");
        }
        if let Some(table) = self.physical.tables.get(name) {
            return Ok(table.clone());
        }
        if let Some(queue) = self.physical.queues.get(name) {
            return Ok(queue.url.clone());
        }
        match name {
            "AWS::Region" => Ok(REGION.to_string()),
            "AWS::AccountId" => Ok(ACCOUNT_ID.to_string()),
            "AWS::StackName" => Ok("tierup".to_string()),
            "AWS::Partition" => Ok("aws".to_string()),
            "AWS::URLSuffix" => Ok("amazonaws.com".to_string()),
            _ => bail!("!Ref {name}: no parameter, table or queue of that name"),
        }
    }

    fn attribute(&self, id: &str, attr: &str) -> Result<String> {
        if let Some(queue) = self.physical.queues.get(id) {
            return match attr {
                "Arn" => Ok(queue.arn.clone()),
                "QueueName" => Ok(queue.name.clone()),
                "QueueUrl" => Ok(queue.url.clone()),
                _ => bail!("!GetAtt {id}.{attr}: queues have Arn, QueueName, QueueUrl"),
            };
        }
        if self.template.is_table(id) {
            return match attr {
                "Arn" => Ok(format!(
                    "arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{}",
                    physical_name(id)
                )),
                _ => bail!("!GetAtt {id}.{attr}: only Arn is available for tables locally"),
            };
        }
        bail!("!GetAtt {id}.{attr}: no table or queue named {id}")
    }

    /// `!Sub "text ${Name} ${X.Attr} ${!Literal}"` or `!Sub [text, {Name: value}]`.
    fn sub(&self, arg: &Value) -> Result<String> {
        let (text, variables) = match arg {
            Value::String(text) => (text.as_str(), None),
            Value::Sequence(items) if items.len() == 2 => {
                let text = items[0]
                    .as_str()
                    .ok_or_else(|| anyhow!("!Sub: the first element must be a string"))?;
                (text, items[1].as_mapping())
            }
            _ => bail!("!Sub needs a string or [string, variables]"),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| anyhow!("!Sub: unterminated ${{ in {text:?}"))?;
            let name = &after[..end];
            out.push_str(&self.sub_variable(name, variables)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn sub_variable(&self, name: &str, variables: Option<&serde_yaml::Mapping>) -> Result<String> {
        if let Some(literal) = name.strip_prefix('!') {
            return Ok(format!("${{{literal}}}"));
        }
        if let Some(value) = variables.and_then(|v| v.get(name)) {
            return self.resolve(value);
        }
        match name.split_once('.') {
            Some((id, attr)) if !name.starts_with("AWS::") => self.attribute(id, attr),
            _ => self.reference(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template::parse(
            r#"
Parameters:
  Issuer:
    Type: String
  Shards:
    Type: Number
    Default: 16
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Q:
    Type: AWS::SQS::Queue
"#,
        )
        .unwrap()
    }

    fn physical() -> Physical {
        let mut p = Physical::default();
        p.tables.insert("T".into(), "tierup-T".into());
        p.queues.insert(
            "Q".into(),
            QueueRef {
                url: "http://127.0.0.1:5000/123456789012/tierup-Q".into(),
                arn: "arn:aws:sqs:us-east-1:123456789012:tierup-Q".into(),
                name: "tierup-Q".into(),
            },
        );
        p
    }

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn refs_and_attributes_follow_cloudformation() {
        let t = template();
        let p = physical();
        let r = Resolver {
            template: &t,
            physical: &p,
            parameter_overrides: [("Issuer".to_string(), "tierup-local".to_string())].into(),
        };
        assert_eq!(r.resolve(&yaml("!Ref T")).unwrap(), "tierup-T");
        assert_eq!(
            r.resolve(&yaml("!Ref Q")).unwrap(),
            "http://127.0.0.1:5000/123456789012/tierup-Q"
        );
        assert_eq!(r.resolve(&yaml("!GetAtt Q.QueueName")).unwrap(), "tierup-Q");
        assert_eq!(
            r.resolve(&yaml("{'Fn::GetAtt': [Q, Arn]}")).unwrap(),
            "arn:aws:sqs:us-east-1:123456789012:tierup-Q"
        );
        assert_eq!(r.resolve(&yaml("!Ref Shards")).unwrap(), "16");
        assert_eq!(r.resolve(&yaml("!Ref Issuer")).unwrap(), "tierup-local");
        assert_eq!(r.resolve(&yaml("{Ref: T}")).unwrap(), "tierup-T");
        assert_eq!(
            r.resolve(&yaml(r#"!Sub "${Q.QueueName}-${AWS::Region}-${!x}""#))
                .unwrap(),
            "tierup-Q-us-east-1-${x}"
        );
        assert_eq!(r.resolve(&yaml("7")).unwrap(), "7");
    }

    #[test]
    fn unknown_names_and_parameters_without_values_are_errors() {
        let t = template();
        let p = physical();
        let r = Resolver {
            template: &t,
            physical: &p,
            parameter_overrides: BTreeMap::new(),
        };
        let err = r.resolve(&yaml("!Ref Issuer")).unwrap_err().to_string();
        assert!(err.contains("Issuer"), "{err}");
        assert!(r.resolve(&yaml("!Ref Nope")).is_err());
        assert!(r.resolve(&yaml("!GetAtt Q.Nope")).is_err());
        assert!(r.resolve(&yaml("!Join [',', [a, b]]")).is_err());
    }
}
