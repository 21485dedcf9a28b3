//! Checking a condition when a client submits it, so that a typo (`$inn`), an operand of the
//! wrong shape (`{"$in": "US"}`) or a regular expression this engine can't run is a 400 at
//! experiment creation rather than an experiment that silently matches nobody.
//!
//! The checks are stricter than the SDK, which evaluates anything and lets what it doesn't
//! understand fail: every key starting with `$` must be an operator the SDK knows, in a place
//! where it means something, with an operand of the type the SDK's typings give it.

use serde_json::{Map, Value};
use thiserror::Error;

use super::condition::is_operator_object;
use super::js_regex::{self, JsRegexError};

/// What is wrong with a condition, and where: `path` is a JSON Pointer (RFC 6901) into the
/// condition, `""` for the condition itself.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConditionError {
    #[error("{}: a condition must be a JSON object", show(.path))]
    NotAnObject { path: String },
    #[error("{}: unknown operator `{operator}`", show(.path))]
    UnknownOperator { path: String, operator: String },
    #[error("{}: `{operator}` expects {expected}", show(.path))]
    InvalidOperand {
        path: String,
        operator: String,
        expected: &'static str,
    },
    #[error("{}: an object mixing `$` operators with attribute keys", show(.path))]
    MixedOperatorObject { path: String },
    #[error("{}: unusable regular expression", show(.path))]
    InvalidRegex {
        path: String,
        #[source]
        source: JsRegexError,
    },
}

impl ConditionError {
    /// The JSON Pointer to the part at fault.
    pub fn path(&self) -> &str {
        match self {
            ConditionError::NotAnObject { path }
            | ConditionError::UnknownOperator { path, .. }
            | ConditionError::InvalidOperand { path, .. }
            | ConditionError::MixedOperatorObject { path }
            | ConditionError::InvalidRegex { path, .. } => path,
        }
    }
}

fn show(path: &str) -> String {
    if path.is_empty() {
        "condition".to_owned()
    } else {
        format!("condition at {path}")
    }
}

/// `path` extended by one reference token (`~` → `~0`, `/` → `~1`).
fn child(path: &str, token: &str) -> String {
    format!("{path}/{}", token.replace('~', "~0").replace('/', "~1"))
}

const TYPES: &[&str] = &[
    "string",
    "number",
    "boolean",
    "array",
    "object",
    "null",
    "undefined",
];

/// Checks a condition (the value of an experiment's `condition`).
pub fn validate_condition(condition: &Value) -> Result<(), ConditionError> {
    check_condition(condition, "")
}

fn check_condition(condition: &Value, path: &str) -> Result<(), ConditionError> {
    let Value::Object(map) = condition else {
        return Err(ConditionError::NotAnObject {
            path: path.to_owned(),
        });
    };
    for (key, value) in map {
        let at = child(path, key);
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Value::Array(items) = value else {
                    return Err(invalid(at, key, "an array of conditions"));
                };
                for (i, item) in items.iter().enumerate() {
                    check_condition(item, &child(&at, &i.to_string()))?;
                }
            }
            "$not" => check_condition(value, &at)?,
            "$savedGroup" => check_saved_group(value, &at)?,
            k if k.starts_with('$') => {
                return Err(ConditionError::UnknownOperator {
                    path: at,
                    operator: key.clone(),
                })
            }
            _ => check_value(value, &at)?,
        }
    }
    Ok(())
}

fn check_saved_group(reference: &Value, path: &str) -> Result<(), ConditionError> {
    let expected = "an object with a string `id` and an optional string `attributeKey`";
    let Value::Object(map) = reference else {
        return Err(invalid(path.to_owned(), "$savedGroup", expected));
    };
    if !matches!(map.get("id"), Some(Value::String(_))) {
        return Err(invalid(child(path, "id"), "$savedGroup", expected));
    }
    if !matches!(map.get("attributeKey"), None | Some(Value::String(_))) {
        return Err(invalid(
            child(path, "attributeKey"),
            "$savedGroup",
            expected,
        ));
    }
    Ok(())
}

/// A condition on one attribute: a literal (implicit equality) or an operator object.
fn check_value(value: &Value, path: &str) -> Result<(), ConditionError> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    if map.is_empty() || map.keys().all(|k| !k.starts_with('$')) {
        return Ok(()); // equality with an object
    }
    if !is_operator_object(map) {
        return Err(ConditionError::MixedOperatorObject {
            path: path.to_owned(),
        });
    }
    for (op, operand) in map {
        check_operator(op, operand, &child(path, op))?;
    }
    Ok(())
}

fn invalid(path: String, operator: &str, expected: &'static str) -> ConditionError {
    ConditionError::InvalidOperand {
        path,
        operator: operator.to_owned(),
        expected,
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn check_operator(op: &str, operand: &Value, path: &str) -> Result<(), ConditionError> {
    let fail = |expected| Err(invalid(path.to_owned(), op, expected));
    match op {
        "$eq" | "$ne" => {
            if !is_scalar(operand) {
                return fail("a string, number, boolean or null");
            }
        }
        "$lt" | "$lte" | "$gt" | "$gte" => {
            if !matches!(operand, Value::String(_) | Value::Number(_)) {
                return fail("a string or a number");
            }
        }
        "$veq" | "$vne" | "$vgt" | "$vgte" | "$vlt" | "$vlte" => {
            if !matches!(operand, Value::String(_) | Value::Number(_)) {
                return fail("a version string");
            }
        }
        "$regex" | "$regexi" => {
            let Value::String(pattern) = operand else {
                return fail("a regular expression string");
            };
            if let Err(source) = js_regex::JsRegex::new(pattern, op == "$regexi") {
                return Err(ConditionError::InvalidRegex {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        "$in" | "$nin" | "$ini" | "$nini" => match operand {
            Value::Array(items) => {
                if let Some(i) = items.iter().position(|item| !is_scalar(item)) {
                    return Err(invalid(
                        child(path, &i.to_string()),
                        op,
                        "an array of strings, numbers, booleans or nulls",
                    ));
                }
            }
            _ => return fail("an array of strings, numbers, booleans or nulls"),
        },
        "$all" | "$alli" => {
            let Value::Array(items) = operand else {
                return fail("an array");
            };
            for (i, item) in items.iter().enumerate() {
                check_value(item, &child(path, &i.to_string()))?;
            }
        }
        "$size" => match operand {
            Value::Number(_) => {}
            Value::Object(map) if is_operator_object(map) => check_value(operand, path)?,
            _ => return fail("a number or an operator object"),
        },
        "$elemMatch" => {
            let Value::Object(map) = operand else {
                return fail("an object");
            };
            check_elem_match(map, operand, path)?;
        }
        "$not" => check_value(operand, path)?,
        "$type" => {
            if !operand.as_str().is_some_and(|t| TYPES.contains(&t)) {
                return fail("one of string, number, boolean, array, object, null, undefined");
            }
        }
        "$exists" => {
            if !operand.is_boolean() {
                return fail("a boolean");
            }
        }
        "$inGroup" | "$notInGroup" => {
            if !operand.is_string() {
                return fail("a saved group id (string)");
            }
        }
        _ => {
            return Err(ConditionError::UnknownOperator {
                path: path.to_owned(),
                operator: op.to_owned(),
            })
        }
    }
    Ok(())
}

/// `$elemMatch` takes operators for each element (`{"$gt": 10}`) or a condition on each
/// element's fields (`{"name": "x"}`).
fn check_elem_match(
    map: &Map<String, Value>,
    operand: &Value,
    path: &str,
) -> Result<(), ConditionError> {
    if is_operator_object(map) {
        check_value(operand, path)
    } else {
        check_condition(operand, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_formed_conditions_pass() {
        // Given conditions using every operator
        let condition = json!({
            "$and": [{"country": {"$in": ["US", "CA"]}}, {"age": {"$gte": 18, "$lt": 65}}],
            "$or": [{"email": {"$regex": "@example\\.com$"}}, {"tags": {"$elemMatch": {"$eq": "vip"}}}],
            "$nor": [{"plan": {"$exists": false}}],
            "$not": {"version": {"$vlt": "1.2.0"}},
            "address.city": "Paris",
            "tags": {"$all": ["a", {"$regexi": "^B"}], "$size": {"$gt": 1}, "$nin": [null]},
            "hobbies": {"$elemMatch": {"name": "chess", "level": {"$type": "number"}}},
            "id": {"$inGroup": "staff", "$not": {"$notInGroup": "blocked"}},
            "$savedGroup": {"id": "adults"},
            "prefs": {"theme": "dark"},
            "v": {"$veq": "1.0.0", "$vne": "2", "$vgt": "0.1", "$vgte": "0", "$vlte": "9"},
            "n": {"$eq": 1, "$ne": null, "$lte": 3, "$gt": 0, "$ini": ["A"], "$nini": ["b"], "$alli": ["X"]}
        });
        // When validated / Then
        assert_eq!(validate_condition(&condition), Ok(()));
        assert_eq!(validate_condition(&json!({})), Ok(()));
    }

    #[test]
    fn unknown_operators_are_rejected_with_their_path() {
        // Given a typo inside a nested $or
        let condition = json!({"$or": [{"country": "US"}, {"country": {"$inn": ["FR"]}}]});
        // When validated
        let err = validate_condition(&condition).unwrap_err();
        // Then the error names the operator and points at it
        assert_eq!(
            err,
            ConditionError::UnknownOperator {
                path: "/$or/1/country/$inn".to_owned(),
                operator: "$inn".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "condition at /$or/1/country/$inn: unknown operator `$inn`"
        );
        // And an operator at the top level is not taken for an attribute
        assert_eq!(
            validate_condition(&json!({"$in": ["a"]})).map_err(|e| e.path().to_owned()),
            Err("/$in".to_owned())
        );
    }

    #[test]
    fn malformed_operands_are_rejected() {
        let cases = [
            (json!({"country": {"$in": "US"}}), "/country/$in"),
            (json!({"tags": {"$in": [["a"]]}}), "/tags/$in/0"),
            (json!({"$and": {"a": 1}}), "/$and"),
            (json!({"$or": [1]}), "/$or/0"),
            (json!({"age": {"$gt": [1]}}), "/age/$gt"),
            (json!({"a": {"$exists": "yes"}}), "/a/$exists"),
            (json!({"a": {"$type": "int"}}), "/a/$type"),
            (json!({"a": {"$elemMatch": 3}}), "/a/$elemMatch"),
            (json!({"a": {"$size": "2"}}), "/a/$size"),
            (json!({"a": {"$inGroup": 5}}), "/a/$inGroup"),
            (json!({"a/b": {"$eq": {}}}), "/a~1b/$eq"),
            (json!({"$savedGroup": {"id": 1}}), "/$savedGroup/id"),
            (json!({"a": {"$gt": 1, "b": 2}}), "/a"),
            (json!([]), ""),
        ];
        for (condition, path) in cases {
            let err = validate_condition(&condition).unwrap_err();
            assert_eq!(err.path(), path, "{condition}");
        }
    }

    #[test]
    fn regexes_must_compile_here() {
        // Given a JavaScript syntax error and a lookahead this engine can't run
        for pattern in ["[", "(?=x)"] {
            let err = validate_condition(&json!({"ua": {"$regex": pattern}})).unwrap_err();
            // Then both are rejected at the pattern's path, with the reason as the source
            assert!(
                matches!(err, ConditionError::InvalidRegex { ref path, .. } if path == "/ua/$regex")
            );
            assert!(std::error::Error::source(&err).is_some());
        }
    }
}
