//! The SDK's `paddedVersionString`, which turns versions into strings that compare in version
//! order: `"v1.2.3-rc.1+build"` → `"    1-    2-    3-rc-    1"`, and a release (three parts)
//! gets a trailing `~` so that it sorts after its pre-releases.

use super::js::{number_to_string, Js};

/// ECMAScript's LineTerminator, which `.` in the SDK's `/\+.*$/` does not cross.
fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

pub(super) fn padded_version_string(input: &Js<'_>) -> String {
    let text = match input {
        Js::Num(n) => number_to_string(*n),
        Js::Str(s) if !s.is_empty() => s.to_string(),
        _ => "0".to_owned(),
    };
    // input.replace(/(^v|\+.*$)/g, ""): a leading "v", and build metadata from the first "+"
    // that no line terminator follows
    let mut s: &str = &text;
    if let Some(rest) = s.strip_prefix('v') {
        s = rest;
    }
    let build = s
        .char_indices()
        .find(|&(i, c)| c == '+' && !s[i..].contains(is_line_terminator))
        .map(|(i, _)| i);
    if let Some(i) = build {
        s = &s[..i];
    }
    let mut parts: Vec<&str> = s.split(['-', '.']).collect();
    if parts.len() == 3 {
        parts.push("~");
    }
    parts
        .iter()
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                format!("{part:>5}")
            } else {
                (*part).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(s: &str) -> String {
        padded_version_string(&Js::Str(s.into()))
    }

    #[test]
    fn versions_pad_numeric_parts_and_mark_releases() {
        assert_eq!(padded("v1.2.3-rc.1+build.7"), "    1-    2-    3-rc-    1");
        assert_eq!(padded("1.2.3"), "    1-    2-    3-~");
        assert_eq!(padded("123456.0.0"), "123456-    0-    0-~");
    }

    #[test]
    fn a_release_sorts_after_its_prereleases() {
        assert!(padded("1.0.0") > padded("1.0.0-beta"));
        assert!(padded("1.0.0-beta.11") > padded("1.0.0-beta.2"));
        assert!(padded("10.0.0") > padded("9.0.0"));
    }

    #[test]
    fn non_strings_become_zero_except_numbers() {
        // ("0" is then a numeric part, padded like any other)
        assert_eq!(padded_version_string(&Js::Null), "    0");
        assert_eq!(padded_version_string(&Js::Bool(true)), "    0");
        assert_eq!(padded(""), "    0");
        assert_eq!(padded_version_string(&Js::Num(2.0)), "    2");
        assert_eq!(padded_version_string(&Js::Num(1.5)), "    1-    5");
    }
}
