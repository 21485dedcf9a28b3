//! JavaScript regular expressions (`new RegExp(pattern, "i"?)`, no `u` flag, with the web
//! compatibility grammar of ECMAScript Annex B) translated to the `regex` crate's syntax.
//!
//! JavaScript without the `u` flag matches UTF-16 code units, and the `i` flag compares
//! characters by `Canonicalize` (upper case, except that nothing non-ASCII becomes ASCII). Both
//! are reproduced: the pattern is read as UTF-16 code units, each surrogate code unit standing
//! for itself as a character of Supplementary Private Use Area-B (U+F0000 + offset), and the
//! haystack is rewritten the same way before matching (an emoji becomes two characters, so `.`
//! consumes half of it, as in JavaScript). With `i`, literals, class ranges and the haystack are
//! canonicalized rather than handed to the engine's own case folding (which would let U+017F 'ſ'
//! match "s" and U+212A KELVIN SIGN match "k", where JavaScript doesn't).
//!
//! Also kept: `\d`, `\w`, `\b` are ASCII-only; `\s` is JavaScript's whitespace set; `.` stops at
//! `\r`, `\u2028` and `\u2029` as well as `\n`; `[^]` matches anything and `[]` nothing; a `{` or
//! `}` that doesn't form a quantifier is a literal; `\c`, `\x`, `\u` and legacy octal escapes;
//! unknown escapes are the literal character (`\z` is "z", not an anchor); inline flags such as
//! `(?i)` are syntax errors.
//!
//! Not kept, and rejected as [`JsRegexError::Unsupported`] (the SDK would evaluate them):
//! lookahead, lookbehind and backreferences, which the `regex` crate doesn't have. Case mappings
//! come from Rust's Unicode tables, which may be a version apart from the JavaScript engine's.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use regex::Regex;
use thiserror::Error;

/// Why a pattern can't be used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum JsRegexError {
    /// JavaScript itself rejects the pattern (a `SyntaxError`).
    #[error("invalid pattern at character {at}: {reason}")]
    Syntax { at: usize, reason: &'static str },
    /// Valid JavaScript, but beyond the `regex` crate.
    #[error("unsupported at character {at}: {feature} (no lookaround or backreferences)")]
    Unsupported { at: usize, feature: &'static str },
    /// The translated pattern didn't compile (for example, a repetition too large).
    #[error("pattern too large or complex for the regex engine")]
    Engine(#[source] regex::Error),
}

/// A compiled JavaScript regular expression.
#[derive(Debug, Clone)]
pub struct JsRegex {
    regex: Regex,
    insensitive: bool,
}

impl JsRegex {
    /// `new RegExp(pattern, insensitive ? "i" : undefined)`
    pub fn new(pattern: &str, insensitive: bool) -> Result<Self, JsRegexError> {
        let translated = translate(pattern, insensitive)?;
        let regex = Regex::new(&translated).map_err(JsRegexError::Engine)?;
        Ok(Self { regex, insensitive })
    }

    /// `RegExp.prototype.test(haystack)`
    pub fn is_match(&self, haystack: &str) -> bool {
        self.regex.is_match(&self.prepare(haystack))
    }

    /// The haystack as code units in the pattern's alphabet (canonicalized under `i`).
    fn prepare<'h>(&self, haystack: &'h str) -> Cow<'h, str> {
        if !self.insensitive && haystack.chars().all(|c| u32::from(c) <= 0xFFFF) {
            return Cow::Borrowed(haystack);
        }
        haystack
            .encode_utf16()
            .map(|u| {
                let u = u32::from(u);
                map_unit(if self.insensitive { canonicalize(u) } else { u })
            })
            .collect()
    }
}

/// Compiles a pattern, caching per thread as the SDK caches its `RegExp`s (conditions are
/// evaluated for many users; the cache is emptied when it reaches 256 patterns).
pub(super) fn cached(pattern: &str, insensitive: bool) -> Result<JsRegex, JsRegexError> {
    thread_local! {
        static CACHE: RefCell<HashMap<(String, bool), Result<JsRegex, JsRegexError>>> =
            RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        let key = (pattern.to_owned(), insensitive);
        if let Some(found) = cache.borrow().get(&key) {
            return found.clone();
        }
        let compiled = JsRegex::new(pattern, insensitive);
        let mut cache = cache.borrow_mut();
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        compiled
    })
}

/// A UTF-16 code unit as a character: itself, or for a surrogate, U+F0000 + its offset.
fn map_unit(u: u32) -> char {
    let u = if (0xD800..=0xDFFF).contains(&u) {
        0xF_0000 + (u - 0xD800)
    } else {
        u
    };
    char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The inverse of [`map_unit`].
fn unit_of(c: char) -> u32 {
    let c = u32::from(c);
    if (0xF_0000..=0xF_07FF).contains(&c) {
        0xD800 + (c - 0xF_0000)
    } else {
        c
    }
}

/// ECMAScript's Canonicalize for the `i` flag without `u`: the code unit's upper case if that
/// is a single code unit and doesn't turn a non-ASCII character into an ASCII one.
fn canonicalize(u: u32) -> u32 {
    let Some(c) = char::from_u32(u) else {
        return u; // a surrogate
    };
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(up), None) if u32::from(up) <= 0xFFFF && !(u >= 128 && u32::from(up) < 128) => {
            u32::from(up)
        }
        _ => u,
    }
}

// JavaScript's WhiteSpace and LineTerminator, as class contents.
const SPACE: &str = r"\t\n\x0B\x0C\r\x20\xA0\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";

/// An element of a character class, in code units.
enum ClassItem {
    Unit(u32),
    Range(u32, u32),
    /// Class contents such as `0-9`, negated or not.
    Set(&'static str, bool),
}

struct Translator {
    chars: Vec<char>,
    pos: usize,
    out: String,
    groups: usize,
    named_groups: Vec<String>,
    has_named_groups: bool,
    /// Whether what was just emitted can take a quantifier.
    quantifiable: bool,
    insensitive: bool,
}

fn syntax(at: usize, reason: &'static str) -> JsRegexError {
    JsRegexError::Syntax { at, reason }
}

pub(super) fn translate(pattern: &str, insensitive: bool) -> Result<String, JsRegexError> {
    let chars: Vec<char> = pattern
        .encode_utf16()
        .map(|u| map_unit(u32::from(u)))
        .collect();
    let (groups, has_named_groups) = count_groups(&chars);
    let mut t = Translator {
        chars,
        pos: 0,
        out: String::with_capacity(pattern.len() * 2 + 8),
        groups,
        named_groups: Vec::new(),
        has_named_groups,
        quantifiable: false,
        insensitive,
    };
    t.run()?;
    Ok(t.out)
}

/// Capturing groups, for telling a backreference `\2` from a legacy octal escape.
fn count_groups(chars: &[char]) -> (usize, bool) {
    let (mut groups, mut named, mut in_class, mut i) = (0, false, false, 0);
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => {
                if chars.get(i + 1) != Some(&'?') {
                    groups += 1;
                } else if chars.get(i + 2) == Some(&'<')
                    && !matches!(chars.get(i + 3), Some('=' | '!'))
                {
                    groups += 1;
                    named = true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    (groups, named)
}

fn push_literal(out: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_control()) {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    }
}

impl Translator {
    /// Emits a literal character (a mapped code unit), canonicalized under `i`.
    fn literal(&mut self, c: char) {
        let c = if self.insensitive {
            map_unit(canonicalize(unit_of(c)))
        } else {
            c
        };
        push_literal(&mut self.out, c);
    }

    fn peek(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn run(&mut self) -> Result<(), JsRegexError> {
        while let Some(c) = self.peek(0) {
            let at = self.pos;
            match c {
                '\\' => self.escape()?,
                '[' => {
                    self.class()?;
                    self.quantifiable = true;
                }
                '.' => {
                    self.pos += 1;
                    self.out.push_str(r"[^\n\r\x{2028}\x{2029}]");
                    self.quantifiable = true;
                }
                '(' => {
                    self.group()?;
                    self.quantifiable = false;
                }
                ')' => {
                    self.pos += 1;
                    self.out.push(')');
                    self.quantifiable = true;
                }
                '|' => {
                    self.pos += 1;
                    self.out.push('|');
                    self.quantifiable = false;
                }
                '^' | '$' => {
                    self.pos += 1;
                    self.out.push(c);
                    self.quantifiable = false;
                }
                '*' | '+' | '?' => {
                    if !self.quantifiable {
                        return Err(syntax(at, "nothing to repeat"));
                    }
                    self.pos += 1;
                    self.out.push(c);
                    self.lazy_suffix();
                }
                '{' => match self.braced_quantifier() {
                    Some((text, len, min, max)) => {
                        if !self.quantifiable {
                            return Err(syntax(at, "nothing to repeat"));
                        }
                        if max.is_some_and(|max| max < min) {
                            return Err(syntax(at, "numbers out of order in {} quantifier"));
                        }
                        self.pos += len;
                        self.out.push_str(&text);
                        self.lazy_suffix();
                    }
                    None => {
                        self.pos += 1;
                        self.literal('{');
                        self.quantifiable = true;
                    }
                },
                other => {
                    self.pos += 1;
                    self.literal(other);
                    self.quantifiable = true;
                }
            }
        }
        Ok(())
    }

    /// After a quantifier: an optional `?` makes it lazy; nothing more may repeat it.
    fn lazy_suffix(&mut self) {
        if self.peek(0) == Some('?') {
            self.pos += 1;
            self.out.push('?');
        }
        self.quantifiable = false;
    }

    /// `{n}`, `{n,}`, `{n,m}` at the cursor: (rust text, length, min, max).
    fn braced_quantifier(&self) -> Option<(String, usize, u64, Option<u64>)> {
        let mut i = 1;
        let digits = |i: &mut usize| {
            let start = *i;
            while self.peek(*i).is_some_and(|c| c.is_ascii_digit()) {
                *i += 1;
            }
            (start..*i).filter_map(|j| self.peek(j)).collect::<String>()
        };
        let min_text = digits(&mut i);
        if min_text.is_empty() {
            return None;
        }
        let (max_text, comma) = if self.peek(i) == Some(',') {
            i += 1;
            (digits(&mut i), true)
        } else {
            (String::new(), false)
        };
        if self.peek(i) != Some('}') {
            return None;
        }
        i += 1;
        let min = min_text.parse::<u64>().unwrap_or(u64::MAX);
        let max = if comma {
            (!max_text.is_empty()).then(|| max_text.parse::<u64>().unwrap_or(u64::MAX))
        } else {
            Some(min)
        };
        let text = match (comma, max) {
            (false, _) => format!("{{{min}}}"),
            (true, None) => format!("{{{min},}}"),
            (true, Some(max)) => format!("{{{min},{max}}}"),
        };
        Some((text, i, min, max))
    }

    fn group(&mut self) -> Result<(), JsRegexError> {
        let at = self.pos;
        if self.peek(1) != Some('?') {
            self.pos += 1;
            self.out.push('(');
            return Ok(());
        }
        match (self.peek(2), self.peek(3)) {
            (Some(':'), _) => {
                self.pos += 3;
                self.out.push_str("(?:");
                Ok(())
            }
            (Some('=' | '!'), _) => Err(JsRegexError::Unsupported {
                at,
                feature: "lookahead",
            }),
            (Some('<'), Some('=' | '!')) => Err(JsRegexError::Unsupported {
                at,
                feature: "lookbehind",
            }),
            (Some('<'), _) => {
                // A named group: its name only matters to backreferences, which are
                // unsupported, so it becomes a plain capturing group.
                let mut i = 3;
                let mut name = String::new();
                loop {
                    match self.peek(i) {
                        Some('>') => break,
                        Some(c) if c.is_alphanumeric() || c == '_' || c == '$' => {
                            name.push(c);
                            i += 1;
                        }
                        _ => return Err(syntax(at, "invalid capture group name")),
                    }
                }
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(syntax(at, "invalid capture group name"));
                }
                if self.named_groups.contains(&name) {
                    return Err(syntax(at, "duplicate capture group name"));
                }
                self.named_groups.push(name);
                self.pos += i + 1;
                self.out.push('(');
                Ok(())
            }
            _ => Err(syntax(at, "invalid group")),
        }
    }

    /// An escape outside a class.
    fn escape(&mut self) -> Result<(), JsRegexError> {
        let at = self.pos;
        let Some(c) = self.peek(1) else {
            return Err(syntax(at, "\\ at end of pattern"));
        };
        self.quantifiable = true;
        match c {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                self.pos += 2;
                let (set, negated) = class_escape_set(c);
                self.out
                    .push_str(&format!("[{}{}]", if negated { "^" } else { "" }, set));
            }
            'b' | 'B' => {
                self.pos += 2;
                self.out
                    .push_str(if c == 'b' { r"(?-u:\b)" } else { r"(?-u:\B)" });
                self.quantifiable = false;
            }
            '1'..='9' => {
                let digits: String = (1..)
                    .map_while(|i| self.peek(i).filter(char::is_ascii_digit))
                    .collect();
                let n = digits.parse::<usize>().unwrap_or(usize::MAX);
                if n <= self.groups {
                    return Err(JsRegexError::Unsupported {
                        at,
                        feature: "backreference",
                    });
                }
                self.pos += 1;
                let ch = self.legacy_escape_char();
                self.literal(ch);
            }
            'k' if self.has_named_groups => {
                return Err(JsRegexError::Unsupported {
                    at,
                    feature: "named backreference",
                })
            }
            'c' if !self.peek(2).is_some_and(|l| l.is_ascii_alphabetic()) => {
                // Annex B: a "\" that matches itself; the "c" is read next as a literal
                self.pos += 1;
                self.literal('\\');
            }
            _ => {
                self.pos += 1;
                let ch = self.char_escape();
                self.literal(ch);
            }
        }
        Ok(())
    }

    /// With the cursor after a `\`: the code unit a CharacterEscape or legacy octal escape
    /// denotes (as a mapped character), consuming it.
    fn char_escape(&mut self) -> char {
        let Some(c) = self.peek(0) else {
            return '\\';
        };
        match c {
            't' | 'n' | 'r' | 'v' | 'f' => {
                self.pos += 1;
                match c {
                    't' => '\t',
                    'n' => '\n',
                    'r' => '\r',
                    'v' => '\u{b}',
                    _ => '\u{c}',
                }
            }
            'c' if self.peek(1).is_some_and(|l| l.is_ascii_alphabetic()) => {
                let letter = self.peek(1).map_or(0, u32::from);
                self.pos += 2;
                map_unit(letter % 32)
            }
            'x' => match self.hex(1, 2) {
                Some(v) => {
                    self.pos += 3;
                    map_unit(v)
                }
                None => {
                    self.pos += 1;
                    'x'
                }
            },
            'u' => match self.hex(1, 4) {
                Some(v) => {
                    self.pos += 5;
                    map_unit(v)
                }
                None => {
                    self.pos += 1;
                    'u'
                }
            },
            '0'..='7' => self.legacy_escape_char(),
            _ => {
                // an identity escape: "\z" is "z", "\/" is "/"
                self.pos += 1;
                c
            }
        }
    }

    /// A legacy octal escape (Annex B), or "8"/"9" as themselves, with the cursor on the digit.
    fn legacy_escape_char(&mut self) -> char {
        let Some(first) = self.peek(0) else {
            return '\\';
        };
        if matches!(first, '8' | '9') {
            self.pos += 1;
            return first;
        }
        let mut value = 0_u32;
        let mut used = 0;
        while used < 3 {
            match self.peek(used).and_then(|d| d.to_digit(8)) {
                Some(d) if value * 8 + d <= 0o377 => {
                    value = value * 8 + d;
                    used += 1;
                }
                _ => break,
            }
        }
        self.pos += used;
        map_unit(value)
    }

    /// `len` hex digits starting `offset` characters after the cursor.
    fn hex(&self, offset: usize, len: usize) -> Option<u32> {
        let mut value = 0;
        for i in 0..len {
            value = value * 16 + self.peek(offset + i)?.to_digit(16)?;
        }
        Some(value)
    }

    fn class(&mut self) -> Result<(), JsRegexError> {
        let at = self.pos;
        self.pos += 1;
        let negated = self.peek(0) == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(syntax(at, "missing /"));
            };
            if c == ']' {
                self.pos += 1;
                break;
            }
            let first = self.class_atom();
            if self.peek(0) == Some('-') && self.peek(1).is_some_and(|n| n != ']') {
                self.pos += 1;
                let second = self.class_atom();
                match (first, second) {
                    (ClassItem::Unit(a), ClassItem::Unit(b)) => {
                        if a > b {
                            return Err(syntax(at, "range out of order in character class"));
                        }
                        items.push(ClassItem::Range(a, b));
                    }
                    // Annex B: a range with a class escape at either end is three items
                    (a, b) => {
                        items.push(a);
                        items.push(ClassItem::Unit(u32::from('-')));
                        items.push(b);
                    }
                }
            } else {
                items.push(first);
            }
        }
        self.push_class(negated, &items);
        Ok(())
    }

    fn class_atom(&mut self) -> ClassItem {
        let unit = |c: char| ClassItem::Unit(unit_of(c));
        let Some(c) = self.peek(0) else {
            return unit('\\'); // the caller reports the unterminated class
        };
        if c != '\\' {
            self.pos += 1;
            return unit(c);
        }
        let Some(e) = self.peek(1) else {
            self.pos += 1;
            return unit('\\');
        };
        match e {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                self.pos += 2;
                let (set, negated) = class_escape_set(e);
                ClassItem::Set(set, negated)
            }
            'b' => {
                self.pos += 2;
                unit('\u{8}')
            }
            '-' => {
                self.pos += 2;
                unit('-')
            }
            // Annex B: in a class, "\c" also takes a digit or "_"
            'c' if self.peek(2).is_some_and(|l| l.is_ascii_digit() || l == '_') => {
                let v = self.peek(2).map_or(0, u32::from) % 32;
                self.pos += 3;
                ClassItem::Unit(v)
            }
            'c' if !self.peek(2).is_some_and(|l| l.is_ascii_alphabetic()) => {
                self.pos += 1;
                unit('\\')
            }
            '1'..='9' => {
                self.pos += 1;
                let c = self.legacy_escape_char();
                unit(c)
            }
            _ => {
                self.pos += 1;
                let c = self.char_escape();
                unit(c)
            }
        }
    }

    fn push_class(&mut self, negated: bool, items: &[ClassItem]) {
        let mut units: Vec<(u32, u32)> = Vec::new();
        let mut sets = String::new();
        for item in items {
            match *item {
                ClassItem::Unit(u) => units.push((u, u)),
                ClassItem::Range(a, b) => units.push((a, b)),
                ClassItem::Set(set, false) => sets.push_str(set),
                ClassItem::Set(set, true) => {
                    sets.push_str("[^");
                    sets.push_str(set);
                    sets.push(']');
                }
            }
        }
        if units.is_empty() && sets.is_empty() {
            // [] matches nothing, [^] anything (including line terminators)
            self.out.push_str(if negated {
                r"[\x00-\x{10FFFF}]"
            } else {
                r"[^\x00-\x{10FFFF}]"
            });
            return;
        }
        if self.insensitive {
            // A class matches a canonicalized character when it holds a member of the same
            // canonical form. (\d, \w and \s are closed under canonicalization, and so are
            // their complements on canonical characters, so they stay as they are.)
            units = canonical_image(&units);
        }
        self.out.push('[');
        if negated {
            self.out.push('^');
        }
        for (a, b) in units {
            push_unit_range(&mut self.out, a, b);
        }
        self.out.push_str(&sets);
        self.out.push(']');
    }
}

/// The canonical forms of the code units in `ranges`, as sorted, merged ranges.
fn canonical_image(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut units: Vec<u32> = ranges
        .iter()
        .flat_map(|&(a, b)| (a..=b).map(canonicalize))
        .collect();
    units.sort_unstable();
    units.dedup();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for u in units {
        match merged.last_mut() {
            Some((_, end)) if *end + 1 == u => *end = u,
            _ => merged.push((u, u)),
        }
    }
    merged
}

/// A range of code units as class contents, split where surrogates map elsewhere.
fn push_unit_range(out: &mut String, a: u32, b: u32) {
    for (lo, hi) in [
        (a, b.min(0xD7FF)),
        (a.max(0xD800), b.min(0xDFFF)),
        (a.max(0xE000), b),
    ] {
        if lo <= hi {
            push_class_char(out, map_unit(lo));
            if hi > lo {
                out.push('-');
                push_class_char(out, map_unit(hi));
            }
        }
    }
}

fn class_escape_set(c: char) -> (&'static str, bool) {
    match c {
        'd' => (DIGIT, false),
        'D' => (DIGIT, true),
        'w' => (WORD, false),
        'W' => (WORD, true),
        's' => (SPACE, false),
        _ => (SPACE, true),
    }
}

fn push_class_char(out: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_control()) {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(pattern: &str, haystack: &str) -> Result<bool, JsRegexError> {
        Ok(JsRegex::new(pattern, false)?.is_match(haystack))
    }

    #[test]
    fn common_patterns_match_as_in_javascript() {
        // Given patterns clients write for targeting
        // When matched / Then they behave as JavaScript's RegExp#test
        assert_eq!(is_match(r"@example\.com$", "jane@example.com"), Ok(true));
        assert_eq!(is_match("(Mobile|Tablet)", "Android Mobile"), Ok(true));
        assert_eq!(is_match(r"^\d+$", "123"), Ok(true));
        assert_eq!(is_match("a/b", "xa/by"), Ok(true));
        assert_eq!(
            JsRegex::new("^JOSÉ", true).map(|r| r.is_match("josé")),
            Ok(true)
        );
    }

    #[test]
    fn class_escapes_are_ascii_as_in_javascript() {
        // Given a non-ASCII digit and letter
        // Then \d and \w don't match them, and \b sees no word boundary inside "é"
        assert_eq!(is_match(r"^\d$", "١"), Ok(false));
        assert_eq!(is_match(r"^\w$", "é"), Ok(false));
        assert_eq!(is_match(r"\bJos\b", "Josés"), Ok(true));
        assert_eq!(is_match(r"^\s$", "\u{feff}"), Ok(true));
        assert_eq!(is_match(r"^\s$", "\u{85}"), Ok(false));
    }

    #[test]
    fn annex_b_leniencies_are_literals() {
        assert_eq!(is_match("a{", "a{"), Ok(true));
        assert_eq!(is_match("a{,5}", "a{,5}"), Ok(true));
        assert_eq!(is_match("]", "]"), Ok(true));
        assert_eq!(is_match(r"\z", "z"), Ok(true));
        assert_eq!(is_match(r"\8", "8"), Ok(true));
        assert_eq!(is_match(r"\cA", "\u{1}"), Ok(true));
        assert_eq!(is_match(r"[\w-a]", "-"), Ok(true));
        assert_eq!(is_match("[^]", "\n"), Ok(true));
        assert_eq!(is_match("[]", "anything"), Ok(false));
        assert_eq!(is_match(r"\u0041\x41", "AA"), Ok(true));
        assert_eq!(is_match(r"\uD83D\uDE00", "😀"), Ok(true));
        assert_eq!(is_match(r"^.$", "\r"), Ok(false));
    }

    #[test]
    fn astral_characters_are_two_code_units_as_in_javascript() {
        // Given an emoji, which is two UTF-16 code units
        // Then "." consumes half of it, and a class holding it holds each half
        assert_eq!(is_match("^.$", "😀"), Ok(false));
        assert_eq!(is_match("^..$", "😀"), Ok(true));
        assert_eq!(is_match("^[😀]$", "😀"), Ok(false));
        assert_eq!(is_match("^[😀]{2}$", "😀"), Ok(true));
        assert_eq!(is_match("^x😀$", "x😀"), Ok(true));
    }

    #[test]
    fn case_insensitivity_is_javascript_canonicalization() {
        let i = |p: &str, h: &str| JsRegex::new(p, true).map(|r| r.is_match(h));
        // Given characters whose Unicode case folding is wider than JavaScript's
        // Then they only match themselves, as in JavaScript
        assert_eq!(i("^s$", "ſ"), Ok(false));
        assert_eq!(i("^k$", "\u{212a}"), Ok(false));
        assert_eq!(i("^[a-z]+$", "ſ"), Ok(false));
        // And ordinary letters match in either case, classes included
        assert_eq!(i("^[a-z]+$", "ABC"), Ok(true));
        assert_eq!(i("^ÉTÉ$", "été"), Ok(true));
        assert_eq!(i("^[^a-z]$", "A"), Ok(false));
    }

    #[test]
    fn javascript_syntax_errors_are_errors() {
        for pattern in ["[", "(?i)a", "{2}", "a**", "a{2,1}", "(", r"\", "(?<1a>x)"] {
            assert!(
                matches!(
                    JsRegex::new(pattern, false),
                    Err(JsRegexError::Syntax { .. } | JsRegexError::Engine(_))
                ),
                "{pattern}"
            );
        }
    }

    #[test]
    fn lookaround_and_backreferences_are_unsupported() {
        for pattern in ["(?=a)", "(?<!a)b", r"(a)\1", r"(?<n>a)\k<n>"] {
            assert!(
                matches!(
                    JsRegex::new(pattern, false),
                    Err(JsRegexError::Unsupported { .. })
                ),
                "{pattern}"
            );
        }
        // While a "\1" with no group before it in count is an octal escape
        assert_eq!(is_match(r"\1", "\u{1}"), Ok(true));
    }
}
