//! Targeting conditions: GrowthBook's MongoDB-like syntax, evaluated as the JavaScript SDK's
//! `evalCondition` evaluates it, loose JavaScript comparisons included (a missing attribute is
//! `null`, so `{"age": {"$lt": 5}}` holds for a user without an age, as it does in the SDK).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::js::{json_stringify, less_than, to_lower, Js};
use super::js_regex;
use super::version::padded_version_string;

/// Saved groups by id, as GrowthBook's SDK payload carries them: a bare array of values (v1),
/// `{"type": "list", "attributeKey": ..., "values": [...]}` or
/// `{"type": "condition", "condition": {...}}`.
pub type SavedGroups = Map<String, Value>;

/// Whether `attributes` satisfy `condition`, with no saved groups.
pub fn eval_condition(attributes: &Value, condition: &Value) -> bool {
    eval_condition_with_groups(attributes, condition, &Map::new())
}

/// Whether `attributes` satisfy `condition`, resolving `$inGroup`, `$notInGroup` and
/// `$savedGroup` against `saved_groups`. A condition on which the SDK would throw (a `null`
/// where it expects an object) doesn't match.
pub fn eval_condition_with_groups(
    attributes: &Value,
    condition: &Value,
    saved_groups: &SavedGroups,
) -> bool {
    Evaluator {
        groups: saved_groups,
    }
    .condition(&Js::from_json(attributes), condition, &Visited::Root)
    .unwrap_or(false)
}

/// Evaluation against an attribute map directly (what `evaluate` has).
pub(super) fn eval_condition_on_map(
    attributes: &Map<String, Value>,
    condition: &Value,
    saved_groups: &SavedGroups,
) -> bool {
    Evaluator {
        groups: saved_groups,
    }
    .condition(&Js::Obj(attributes), condition, &Visited::Root)
    .unwrap_or(false)
}

/// The `TypeError` JavaScript would throw, which ends the whole evaluation.
#[derive(Debug)]
struct Thrown;

type Eval = Result<bool, Thrown>;

/// The saved groups being resolved, to stop cycles.
enum Visited<'p> {
    Root,
    Group(&'p str, &'p Visited<'p>),
}

impl Visited<'_> {
    fn contains(&self, id: &str) -> bool {
        match self {
            Visited::Root => false,
            Visited::Group(seen, parent) => *seen == id || parent.contains(id),
        }
    }
}

/// `Object.prototype`'s properties, which `key in object` finds on every object.
const OBJECT_PROTO: &[&str] = &[
    "constructor",
    "__defineGetter__",
    "__defineSetter__",
    "hasOwnProperty",
    "__lookupGetter__",
    "__lookupSetter__",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toString",
    "valueOf",
    "toLocaleString",
];

/// `Array.prototype`'s methods (node 20), which `key in array` finds.
const ARRAY_PROTO: &[&str] = &[
    "at",
    "concat",
    "copyWithin",
    "entries",
    "every",
    "fill",
    "filter",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "flat",
    "flatMap",
    "forEach",
    "includes",
    "indexOf",
    "join",
    "keys",
    "lastIndexOf",
    "map",
    "pop",
    "push",
    "reduce",
    "reduceRight",
    "reverse",
    "shift",
    "slice",
    "some",
    "sort",
    "splice",
    "toReversed",
    "toSorted",
    "toSpliced",
    "unshift",
    "values",
    "with",
];

fn proto_function(part: &str, is_array: bool) -> Option<&'static str> {
    if part == "constructor" {
        return Some(if is_array { "Array" } else { "Object" });
    }
    let from_array = if is_array {
        ARRAY_PROTO.iter().find(|name| **name == part)
    } else {
        None
    };
    from_array
        .or_else(|| OBJECT_PROTO.iter().find(|name| **name == part))
        .copied()
}

/// A canonical array index ("0", "17"; not "01" or "-1").
fn array_index(part: &str) -> Option<usize> {
    let canonical = part == "0"
        || (!part.starts_with('0') && !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if canonical {
        part.parse().ok()
    } else {
        None
    }
}

/// The SDK's `getPath`: follows a dot-separated path through objects and arrays; anything
/// else on the way, or a missing key, gives `null`.
fn get_path<'a>(obj: &Js<'a>, path: &str) -> Js<'a> {
    let mut current = obj.clone();
    for part in path.split('.') {
        current = match current {
            Js::Obj(map) => match map.get(part) {
                Some(v) => Js::from_json(v),
                None => match proto_function(part, false) {
                    Some(f) => Js::Func(f),
                    None => return Js::Null,
                },
            },
            Js::Arr(items) => {
                if part == "length" {
                    Js::Num(items.len() as f64)
                } else if let Some(item) = array_index(part).and_then(|i| items.get(i)) {
                    Js::from_json(item)
                } else {
                    match proto_function(part, true) {
                        Some(f) => Js::Func(f),
                        None => return Js::Null,
                    }
                }
            }
            _ => return Js::Null,
        };
    }
    current
}

/// The SDK's `isOperatorObject`: non-empty, and every key starts with `$`.
pub(super) fn is_operator_object(map: &Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|k| k.starts_with('$'))
}

/// `getType`
fn type_name(v: &Js<'_>) -> &'static str {
    match v {
        Js::Null => "null",
        Js::Arr(_) => "array",
        Js::Bool(_) => "boolean",
        Js::Num(_) => "number",
        Js::Str(_) => "string",
        Js::Obj(_) => "object",
        Js::Func(_) => "unknown",
    }
}

/// A one-code-unit string for each character, as `Object.entries("ab")` and `"ab"[i]` give
/// (an astral character, which JavaScript splits into two lone surrogates, stays whole).
fn string_units(s: &str) -> impl Iterator<Item = (usize, Value)> + '_ {
    s.chars().scan(0, |index, c| {
        let at = *index;
        *index += c.len_utf16();
        Some((at, Value::String(c.to_string())))
    })
}

struct Evaluator<'g> {
    groups: &'g SavedGroups,
}

impl Evaluator<'_> {
    /// `evalCondition(obj, condition)`
    fn condition(&self, obj: &Js<'_>, condition: &Value, visited: &Visited<'_>) -> Eval {
        match condition {
            Value::Object(map) => {
                for (key, value) in map {
                    if !self.entry(obj, key, value, visited)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            // Object.entries of an array or a string: index keys
            Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    if !self.entry(obj, &i.to_string(), value, visited)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Value::String(s) => {
                for (i, unit) in string_units(s) {
                    if !self.entry(obj, &i.to_string(), &unit, visited)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            // Object.entries(null) throws
            Value::Null => Err(Thrown),
            Value::Bool(_) | Value::Number(_) => Ok(true),
        }
    }

    fn entry(&self, obj: &Js<'_>, key: &str, value: &Value, visited: &Visited<'_>) -> Eval {
        match key {
            "$or" => self.or(obj, value, visited),
            "$nor" => Ok(!self.or(obj, value, visited)?),
            "$and" => self.and(obj, value, visited),
            "$not" => Ok(!self.condition(obj, value, visited)?),
            "$savedGroup" => self.saved_group(obj, value, visited),
            path => self.value(value, &get_path(obj, path), false, visited),
        }
    }

    /// `evalOr`: true when empty, or when any holds. A non-array has no `length`, and
    /// `!undefined` is true.
    fn or(&self, obj: &Js<'_>, conditions: &Value, visited: &Visited<'_>) -> Eval {
        match conditions {
            Value::Array(items) => {
                if items.is_empty() {
                    return Ok(true);
                }
                for c in items {
                    if self.condition(obj, c, visited)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::String(s) => {
                if s.is_empty() {
                    return Ok(true);
                }
                for (_, unit) in string_units(s) {
                    if self.condition(obj, &unit, visited)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::Null => Err(Thrown),
            _ => Ok(true),
        }
    }

    /// `evalAnd`: every one holds (vacuously for a non-array).
    fn and(&self, obj: &Js<'_>, conditions: &Value, visited: &Visited<'_>) -> Eval {
        match conditions {
            Value::Array(items) => {
                for c in items {
                    if !self.condition(obj, c, visited)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Value::String(s) => {
                for (_, unit) in string_units(s) {
                    if !self.condition(obj, &unit, visited)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Value::Null => Err(Thrown),
            _ => Ok(true),
        }
    }

    /// `evalSavedGroup`: anything unrecognised matches nobody.
    fn saved_group(&self, obj: &Js<'_>, reference: &Value, visited: &Visited<'_>) -> Eval {
        let Value::Object(reference) = reference else {
            return Ok(false);
        };
        let Some(Value::String(id)) = reference.get("id") else {
            return Ok(false);
        };
        if visited.contains(id) {
            return Ok(false);
        }
        let attribute_override = match reference.get("attributeKey") {
            None => None,
            Some(Value::String(key)) => Some(key),
            Some(_) => return Ok(false),
        };
        let Some(Value::Object(entry)) = self.groups.get(id.as_str()) else {
            return Ok(false);
        };
        match entry.get("type").and_then(Value::as_str) {
            Some("list") => {
                let key = match attribute_override {
                    Some(key) => Some(key),
                    None => match entry.get("attributeKey") {
                        Some(Value::String(key)) => Some(key),
                        _ => None,
                    },
                };
                let (Some(key), Some(Value::Array(values))) = (key, entry.get("values")) else {
                    return Ok(false);
                };
                Ok(is_in(&get_path(obj, key), values, false))
            }
            Some("condition") => match entry.get("condition") {
                Some(c @ (Value::Object(_) | Value::Array(_))) => {
                    self.condition(obj, c, &Visited::Group(id, visited))
                }
                _ => Ok(false),
            },
            _ => Ok(false),
        }
    }

    /// `evalConditionValue(condition, value)`
    fn value(
        &self,
        condition: &Value,
        actual: &Js<'_>,
        insensitive: bool,
        visited: &Visited<'_>,
    ) -> Eval {
        Ok(match condition {
            Value::String(expected) => {
                let text = actual.to_js_string();
                if insensitive {
                    to_lower(&text) == to_lower(expected)
                } else {
                    text == expected.as_str()
                }
            }
            Value::Number(n) => n.as_f64().is_some_and(|n| actual.to_number() == n),
            Value::Bool(b) => !actual.is_null() && actual.truthy() == *b,
            Value::Null => actual.is_null(),
            Value::Object(map) if is_operator_object(map) => {
                for (op, expected) in map {
                    if !self.operator(op, actual, expected, visited)? {
                        return Ok(false);
                    }
                }
                true
            }
            // arrays and plain objects: JSON.stringify equality
            Value::Array(_) | Value::Object(_) => {
                actual.json_stringify().as_deref() == Some(json_stringify(condition).as_str())
            }
        })
    }

    /// `evalOperatorCondition(operator, actual, expected)`
    fn operator(&self, op: &str, actual: &Js<'_>, expected: &Value, visited: &Visited<'_>) -> Eval {
        let exp = Js::from_json(expected);
        Ok(match op {
            "$veq" | "$vne" | "$vgt" | "$vgte" | "$vlt" | "$vlte" => {
                let a = padded_version_string(actual);
                let b = padded_version_string(&exp);
                let order = super::js::utf16_cmp(&a, &b);
                match op {
                    "$veq" => order.is_eq(),
                    "$vne" => order.is_ne(),
                    "$vgt" => order.is_gt(),
                    "$vgte" => order.is_ge(),
                    "$vlt" => order.is_lt(),
                    _ => order.is_le(),
                }
            }
            "$eq" => actual.strict_eq(&exp),
            "$ne" => !actual.strict_eq(&exp),
            "$lt" => less_than(actual, &exp) == Some(true),
            "$lte" => less_than(&exp, actual) == Some(false),
            "$gt" => less_than(&exp, actual) == Some(true),
            "$gte" => less_than(actual, &exp) == Some(false),
            "$exists" => {
                if exp.truthy() {
                    !actual.is_null()
                } else {
                    actual.is_null()
                }
            }
            "$in" | "$nin" | "$ini" | "$nini" => match expected {
                Value::Array(values) => {
                    let found = is_in(actual, values, op.ends_with('i'));
                    if op.starts_with("$n") {
                        !found
                    } else {
                        found
                    }
                }
                _ => false,
            },
            "$inGroup" => match self.group_values(expected) {
                Some(values) => is_in(actual, &values, false),
                None => false,
            },
            "$notInGroup" => match self.group_values(expected) {
                Some(values) => !is_in(actual, &values, false),
                None => false,
            },
            "$not" => !self.value(expected, actual, false, visited)?,
            "$size" => match actual {
                Js::Arr(items) => {
                    self.value(expected, &Js::Num(items.len() as f64), false, visited)?
                }
                _ => false,
            },
            "$elemMatch" => self.elem_match(actual, expected, visited)?,
            "$all" | "$alli" => match expected {
                Value::Array(values) => self.is_in_all(actual, values, op == "$alli", visited)?,
                _ => false,
            },
            "$regex" | "$regexi" => match expected {
                // anything else makes the SDK's `regex.replace` throw inside its try
                Value::String(pattern) => js_regex::cached(pattern, op == "$regexi")
                    .is_ok_and(|re| re.is_match(&actual.to_js_string())),
                _ => false,
            },
            "$type" => expected.as_str() == Some(type_name(actual)),
            _ => false,
        })
    }

    /// `getSavedGroupArrayValues(savedGroups[expected])`: an unknown id is an empty list, a
    /// v1 array or v2 list gives its values, anything else `None` (which matches nobody).
    fn group_values(&self, id: &Value) -> Option<Cow<'_, [Value]>> {
        let key = Js::from_json(id).to_js_string();
        match self.groups.get(key.as_ref()) {
            None => Some(Cow::Owned(Vec::new())),
            Some(Value::Array(values)) => Some(Cow::Borrowed(values.as_slice())),
            Some(Value::Object(entry))
                if entry.get("type").and_then(Value::as_str) == Some("list") =>
            {
                match entry.get("values") {
                    Some(Value::Array(values)) => Some(Cow::Borrowed(values.as_slice())),
                    _ => None,
                }
            }
            Some(_) => None,
        }
    }

    /// `elemMatch`: some non-null element satisfies the operators, or the condition.
    fn elem_match(&self, actual: &Js<'_>, expected: &Value, visited: &Visited<'_>) -> Eval {
        let Js::Arr(items) = actual else {
            return Ok(false);
        };
        let operators = match expected {
            Value::Null => return Err(Thrown), // Object.keys(null)
            Value::Object(map) => is_operator_object(map),
            _ => false,
        };
        for item in items.iter().filter(|item| !item.is_null()) {
            let item = Js::from_json(item);
            let matched = if operators {
                self.value(expected, &item, false, visited)?
            } else {
                self.condition(&item, expected, visited)?
            };
            if matched {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `isInAll`: every expected value matches some element.
    fn is_in_all(
        &self,
        actual: &Js<'_>,
        expected: &[Value],
        insensitive: bool,
        visited: &Visited<'_>,
    ) -> Eval {
        let Js::Arr(items) = actual else {
            return Ok(false);
        };
        for condition in expected {
            let mut passed = false;
            for item in *items {
                if self.value(condition, &Js::from_json(item), insensitive, visited)? {
                    passed = true;
                    break;
                }
            }
            if !passed {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `isIn`: strict membership, or intersection when the attribute is an array; the
/// insensitive form lower-cases strings on both sides.
fn is_in(actual: &Js<'_>, expected: &[Value], insensitive: bool) -> bool {
    let member = |item: &Js<'_>| match item {
        Js::Str(s) if insensitive => {
            let folded = to_lower(s);
            expected
                .iter()
                .any(|e| matches!(e, Value::String(x) if to_lower(x) == folded))
        }
        // compared by reference in JavaScript, so never equal to a condition's value
        Js::Arr(_) | Js::Obj(_) | Js::Func(_) => false,
        item => expected.iter().any(|e| item.strict_eq(&Js::from_json(e))),
    };
    match actual {
        Js::Arr(items) => items.iter().any(|item| member(&Js::from_json(item))),
        other => member(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_reach_into_objects_and_arrays() {
        // Given nested attributes
        let attrs = json!({"device": {"os": {"name": "iOS"}}, "tags": ["a", "b"]});
        // When conditions use dotted paths / Then they reach the values
        assert!(eval_condition(&attrs, &json!({"device.os.name": "iOS"})));
        assert!(eval_condition(&attrs, &json!({"tags.1": "b"})));
        assert!(eval_condition(&attrs, &json!({"tags.length": 2})));
        assert!(!eval_condition(
            &attrs,
            &json!({"device.os.name.x": {"$exists": true}})
        ));
    }

    #[test]
    fn a_missing_attribute_is_null_and_compares_loosely() {
        // Given no attributes
        let attrs = json!({});
        // Then null < 5 and null == 0 numerically, as in the SDK
        assert!(eval_condition(&attrs, &json!({"age": {"$lt": 5}})));
        assert!(eval_condition(&attrs, &json!({"age": 0})));
        assert!(eval_condition(&attrs, &json!({"age": null})));
        assert!(eval_condition(&attrs, &json!({"age": {"$exists": false}})));
        assert!(!eval_condition(&attrs, &json!({"age": {"$gt": 5}})));
    }

    #[test]
    fn in_and_nin_intersect_array_attributes() {
        let attrs = json!({"tags": ["d", "b"], "country": "US"});
        assert!(eval_condition(
            &attrs,
            &json!({"tags": {"$in": ["a", "b"]}})
        ));
        assert!(!eval_condition(
            &attrs,
            &json!({"tags": {"$nin": ["a", "b"]}})
        ));
        assert!(eval_condition(
            &attrs,
            &json!({"country": {"$ini": ["us"]}})
        ));
        assert!(!eval_condition(&attrs, &json!({"country": {"$in": "US"}})));
    }

    #[test]
    fn logical_operators_nest() {
        let attrs = json!({"age": 70, "name": "santa", "bday": "1980-12-25"});
        let condition = json!({"$and": [
            {"age": {"$gt": 65}},
            {"$or": [{"bday": {"$regex": "-12-25$"}}, {"name": "rudolph"}]},
            {"$nor": [{"name": "grinch"}]},
            {"$not": {"age": {"$lt": 18}}}
        ]});
        assert!(eval_condition(&attrs, &condition));
        assert!(eval_condition(&attrs, &json!({"$or": []})));
    }

    #[test]
    fn elem_match_all_and_size_test_arrays() {
        let attrs = json!({"nums": [0, 5, 15], "hobbies": [{"name": "pingpong"}]});
        assert!(eval_condition(
            &attrs,
            &json!({"nums": {"$elemMatch": {"$gt": 10}}})
        ));
        assert!(eval_condition(
            &attrs,
            &json!({"hobbies": {"$elemMatch": {"name": {"$regex": "^ping"}}}})
        ));
        assert!(eval_condition(&attrs, &json!({"nums": {"$all": [0, 15]}})));
        assert!(eval_condition(
            &attrs,
            &json!({"nums": {"$size": {"$gte": 3}}})
        ));
        assert!(!eval_condition(
            &attrs,
            &json!({"nums": {"$elemMatch": null}})
        ));
    }

    #[test]
    fn saved_groups_resolve_and_stop_cycles() {
        // Given v1 and v2 saved groups, two of which refer to each other
        let groups = json!({
            "staff": ["u1", "u2"],
            "adults": {"type": "condition", "condition": {"age": {"$gte": 18}}},
            "a": {"type": "condition", "condition": {"$savedGroup": {"id": "b"}}},
            "b": {"type": "condition", "condition": {"$savedGroup": {"id": "a"}}}
        });
        let Value::Object(groups) = groups else {
            unreachable!("a JSON object literal")
        };
        let attrs = json!({"id": "u1", "age": 30});
        let eval = |c: Value| eval_condition_with_groups(&attrs, &c, &groups);
        // Then
        assert!(eval(json!({"id": {"$inGroup": "staff"}})));
        assert!(!eval(json!({"id": {"$notInGroup": "staff"}})));
        assert!(eval(json!({"id": {"$notInGroup": "nobody"}})));
        assert!(eval(json!({"$savedGroup": {"id": "adults"}})));
        assert!(!eval(json!({"$savedGroup": {"id": "a"}})));
    }

    #[test]
    fn regex_errors_and_unknown_operators_never_match() {
        let attrs = json!({"name": "hello"});
        assert!(!eval_condition(
            &attrs,
            &json!({"name": {"$regex": "/???***[)"}})
        ));
        assert!(!eval_condition(
            &attrs,
            &json!({"name": {"$regx": "hello"}})
        ));
        assert!(eval_condition(
            &attrs,
            &json!({"name": {"$not": {"$regx": "hello"}}})
        ));
    }

    #[test]
    fn versions_compare_padded() {
        let attrs = json!({"v": "1.0.0-alpha.10", "w": "10.12.13"});
        assert!(eval_condition(
            &attrs,
            &json!({"v": {"$vgt": "1.0.0-alpha", "$vlt": "1.0.0-beta"}})
        ));
        assert!(eval_condition(
            &attrs,
            &json!({"w": {"$vgt": "9.99.8", "$vlt": "11.0.1"}})
        ));
    }

    #[test]
    fn prototype_properties_are_found_as_in_javascript() {
        // Given attributes without a "constructor" key
        let attrs = json!({"id": "1"});
        // Then `"constructor" in attributes` is still true in the SDK
        assert!(eval_condition(
            &attrs,
            &json!({"constructor": {"$exists": true}})
        ));
        assert!(eval_condition(
            &attrs,
            &json!({"toString": {"$type": "unknown"}})
        ));
    }
}
