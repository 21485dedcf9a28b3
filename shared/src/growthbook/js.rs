//! The few JavaScript semantics GrowthBook's SDK leans on when it reads attributes and conditions:
//! `String(v)`, `Number(v)`, truthiness, `===`, `<` on mixed types, `JSON.stringify`, UTF-16 string
//! order. Each function says which ECMAScript operation it mirrors.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

/// A value as the JavaScript SDK sees it: a JSON value, a number the SDK made (an array's
/// `length`), or a built-in method reached through the prototype chain (`"toString" in {}` is true).
#[derive(Debug, Clone)]
pub(super) enum Js<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    Arr(&'a [Value]),
    Obj(&'a Map<String, Value>),
    /// A native function, by the name `Function.prototype.toString` prints.
    Func(&'static str),
}

impl<'a> Js<'a> {
    pub(super) fn from_json(value: &'a Value) -> Self {
        match value {
            Value::Null => Js::Null,
            Value::Bool(b) => Js::Bool(*b),
            Value::Number(n) => Js::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Js::Str(Cow::Borrowed(s)),
            Value::Array(items) => Js::Arr(items),
            Value::Object(map) => Js::Obj(map),
        }
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(self, Js::Null)
    }

    /// `!!v`
    pub(super) fn truthy(&self) -> bool {
        match self {
            Js::Null => false,
            Js::Bool(b) => *b,
            Js::Num(n) => *n != 0.0 && !n.is_nan(),
            Js::Str(s) => !s.is_empty(),
            Js::Arr(_) | Js::Obj(_) | Js::Func(_) => true,
        }
    }

    /// `String(v)`, which is also what `v + ""` gives for these values.
    pub(super) fn to_js_string(&self) -> Cow<'a, str> {
        match self {
            Js::Null => Cow::Borrowed("null"),
            Js::Bool(true) => Cow::Borrowed("true"),
            Js::Bool(false) => Cow::Borrowed("false"),
            Js::Num(n) => Cow::Owned(number_to_string(*n)),
            Js::Str(s) => s.clone(),
            Js::Arr(items) => Cow::Owned(join_array(items)),
            Js::Obj(_) => Cow::Borrowed("[object Object]"),
            Js::Func(name) => Cow::Owned(format!("function {name}() {{ [native code] }}")),
        }
    }

    /// `Number(v)`
    pub(super) fn to_number(&self) -> f64 {
        match self {
            Js::Null => 0.0,
            Js::Bool(b) => f64::from(u8::from(*b)),
            Js::Num(n) => *n,
            Js::Str(s) => string_to_number(s),
            Js::Arr(_) | Js::Obj(_) | Js::Func(_) => string_to_number(&self.to_js_string()),
        }
    }

    /// `a === b`. Arrays, objects and functions compare by reference, and attributes and
    /// conditions never share one, so those are never equal.
    pub(super) fn strict_eq(&self, other: &Js<'_>) -> bool {
        match (self, other) {
            (Js::Null, Js::Null) => true,
            (Js::Bool(a), Js::Bool(b)) => a == b,
            (Js::Num(a), Js::Num(b)) => a == b,
            (Js::Str(a), Js::Str(b)) => a == b,
            _ => false,
        }
    }

    /// `JSON.stringify(v)`; `None` where JavaScript returns `undefined` (functions).
    pub(super) fn json_stringify(&self) -> Option<String> {
        let mut out = String::new();
        match self {
            Js::Null => out.push_str("null"),
            Js::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Js::Num(n) => push_json_number(&mut out, *n),
            Js::Str(s) => push_json_string(&mut out, s),
            Js::Arr(items) => push_json_array(&mut out, items),
            Js::Obj(map) => push_json_object(&mut out, map),
            Js::Func(_) => return None,
        }
        Some(out)
    }
}

/// `Array.prototype.join(",")` as `String(array)` calls it: null elements print as "".
fn join_array(items: &[Value]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if !item.is_null() {
            out.push_str(&Js::from_json(item).to_js_string());
        }
    }
    out
}

/// `JSON.stringify` of a JSON value.
pub(super) fn json_stringify(value: &Value) -> String {
    let mut out = String::new();
    push_json(&mut out, value);
    out
}

fn push_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => push_json_number(out, n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => push_json_string(out, s),
        Value::Array(items) => push_json_array(out, items),
        Value::Object(map) => push_json_object(out, map),
    }
}

fn push_json_number(out: &mut String, n: f64) {
    if n.is_finite() {
        out.push_str(&number_to_string(n));
    } else {
        out.push_str("null");
    }
}

fn push_json_array(out: &mut String, items: &[Value]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json(out, item);
    }
    out.push(']');
}

fn push_json_object(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, key);
        out.push(':');
        push_json(out, item);
    }
    out.push('}');
}

/// JSON.stringify's QuoteJSONString.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `Number.prototype.toString()` (radix 10): the shortest digits that round-trip, laid out as
/// ECMAScript's Number::toString lays them out (exponent form below 1e-6 and from 1e21).
pub(super) fn number_to_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    // Rust's `{:e}` prints the shortest round-trip digits too: "d.ddde-7"
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    let n = exponent.parse::<i64>().unwrap_or(0) + 1;
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    out
}

/// ECMAScript's WhiteSpace and LineTerminator, which `Number(" 5 ")` trims.
pub(super) fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// `Number(string)`: StringToNumber, NaN for anything that isn't a StringNumericLiteral.
pub(super) fn string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(is_js_whitespace);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return parse_radix(digits, radix);
        }
    }
    let (sign, unsigned) = if let Some(rest) = t.strip_prefix('-') {
        (-1.0, rest)
    } else {
        (1.0, t.strip_prefix('+').unwrap_or(t))
    };
    if unsigned == "Infinity" {
        return sign * f64::INFINITY;
    }
    if !is_decimal_literal(unsigned) {
        return f64::NAN;
    }
    // Rust's parser accepts this grammar and rounds correctly
    unsigned.parse::<f64>().map_or(f64::NAN, |v| sign * v)
}

/// StrUnsignedDecimalLiteral: `1`, `1.`, `.5`, `1.5e-3`; no "inf", "nan" or '_'.
fn is_decimal_literal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = count_digits(&b[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&b[i..]);
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = count_digits(&b[i..]);
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == b.len()
}

fn count_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn parse_radix(digits: &str, radix: u32) -> f64 {
    if digits.is_empty() {
        return f64::NAN;
    }
    let mut value = 0.0_f64;
    for c in digits.chars() {
        match c.to_digit(radix) {
            Some(d) => value = value * f64::from(radix) + f64::from(d),
            None => return f64::NAN,
        }
    }
    value
}

/// IsLessThan(x, y) after ToPrimitive: string order when both are strings, numeric otherwise;
/// `None` is JavaScript's `undefined` (a NaN was involved), which makes every comparison false.
pub(super) fn less_than(x: &Js<'_>, y: &Js<'_>) -> Option<bool> {
    let px = to_primitive(x);
    let py = to_primitive(y);
    if let (Js::Str(a), Js::Str(b)) = (&px, &py) {
        return Some(utf16_cmp(a, b) == Ordering::Less);
    }
    let (a, b) = (px.to_number(), py.to_number());
    if a.is_nan() || b.is_nan() {
        None
    } else {
        Some(a < b)
    }
}

/// ToPrimitive: arrays, objects and functions become their string form.
fn to_primitive<'a>(v: &Js<'a>) -> Js<'a> {
    match v {
        Js::Arr(_) | Js::Obj(_) | Js::Func(_) => Js::Str(v.to_js_string()),
        other => other.clone(),
    }
}

/// JavaScript's string order: by UTF-16 code unit, which differs from Rust's (code point) order
/// for characters above U+FFFF against U+E000..U+FFFF.
pub(super) fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// `String.prototype.toLowerCase`
pub(super) fn to_lower(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        // Given values on each side of JavaScript's layout thresholds
        let cases = [
            (0.1, "0.1"),
            (7.5, "7.5"),
            (30.0, "30"),
            (-0.0, "0"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1.5e-7, "1.5e-7"),
            (1e-6, "0.000001"),
            (0.30000000000000004, "0.30000000000000004"),
            (123456789012345680000.0, "123456789012345680000"),
            (-2.5e-10, "-2.5e-10"),
            (f64::NAN, "NaN"),
        ];
        for (x, expected) in cases {
            // When printed / Then the text matches Number#toString
            assert_eq!(number_to_string(x), expected, "{x:e}");
        }
    }

    #[test]
    fn strings_convert_to_numbers_as_javascript_converts_them() {
        let cases = [
            (" 12 ", 12.0),
            ("", 0.0),
            ("\u{a0}\n", 0.0),
            ("5e0", 5.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("-Infinity", f64::NEG_INFINITY),
            ("0x1F", 31.0),
            ("0b101", 5.0),
        ];
        for (s, expected) in cases {
            assert_eq!(string_to_number(s), expected, "{s:?}");
        }
        for s in [
            "inf",
            "nan",
            "1_000",
            "12px",
            "-0x1",
            "e5",
            "1e",
            "Infinityx",
        ] {
            assert!(string_to_number(s).is_nan(), "{s:?}");
        }
    }

    #[test]
    fn mixed_comparisons_follow_javascript() {
        // Given a missing attribute (null), numeric strings and arrays
        let null = Js::Null;
        let five = Js::Num(5.0);
        let eight_str = Js::Str("8".into());
        let abc = Js::Str("abc".into());
        // When / Then
        assert_eq!(less_than(&null, &five), Some(true));
        assert_eq!(less_than(&five, &eight_str), Some(true));
        assert_eq!(less_than(&abc, &five), None);
        assert_eq!(
            less_than(&Js::Str("10".into()), &Js::Str("9".into())),
            Some(true)
        );
        let arr = json!([5]);
        assert_eq!(less_than(&Js::from_json(&arr), &Js::Num(6.0)), Some(true));
    }

    #[test]
    fn string_order_is_by_utf16_code_unit() {
        // Given an astral character and a character from the private use area
        // When compared / Then the astral one sorts first, as its lead surrogate is 0xD83D
        assert_eq!(utf16_cmp("😀", "\u{e000}"), Ordering::Less);
        assert_eq!("😀".cmp("\u{e000}"), Ordering::Greater);
    }

    #[test]
    fn string_conversion_and_json_match_javascript() {
        let v = json!([1, null, [2, "a"], {"k": 1.0}, true]);
        assert_eq!(
            Js::from_json(&v).to_js_string(),
            "1,,2,a,[object Object],true"
        );
        assert_eq!(
            Js::from_json(&v).json_stringify().as_deref(),
            Some("[1,null,[2,\"a\"],{\"k\":1},true]")
        );
        assert_eq!(json_stringify(&json!("a\u{1}\"é")), "\"a\\u0001\\\"é\"");
        assert_eq!(Js::Func("toString").json_stringify(), None);
    }
}
