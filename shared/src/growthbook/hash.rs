//! GrowthBook's hashing: 32-bit FNV-1a over UTF-16 code units, as the JavaScript SDK computes it
//! with `charCodeAt` (an astral character such as an emoji counts as two code units).

/// 32-bit FNV-1a over the UTF-16 code units of `parts`, concatenated.
fn fnv1a32_utf16(parts: &[&str]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for part in parts {
        for unit in part.encode_utf16() {
            hash ^= u32::from(unit);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// 32-bit FNV-1a over a string's UTF-16 code units (the JavaScript SDK's `hashFnv32a`).
pub fn fnv1a32(s: &str) -> u32 {
    fnv1a32_utf16(&[s])
}

/// FNV-1a of the decimal digits of `n`, without allocating (ASCII digits are one code unit each).
fn fnv1a32_decimal(n: u32) -> u32 {
    let mut digits = [0_u8; 10];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut hash: u32 = 0x811c_9dc5;
    for &d in &digits[start..] {
        hash ^= u32::from(d);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// GrowthBook's `hash(seed, value, version)`, a number in [0, 1):
/// - version 1: `fnv1a32(value + seed) % 1000 / 1000` (the original, biased one)
/// - version 2: `fnv1a32(String(fnv1a32(seed + value))) % 10000 / 10000`
///
/// Any other version gives `None`, as the SDK's `null`.
pub fn hash(seed: &str, value: &str, version: u32) -> Option<f64> {
    match version {
        1 => Some(f64::from(fnv1a32_utf16(&[value, seed]) % 1000) / 1000.0),
        2 => {
            let first = fnv1a32_utf16(&[seed, value]);
            Some(f64::from(fnv1a32_decimal(first) % 10_000) / 10_000.0)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a32_matches_the_published_vectors_on_ascii() {
        // Given ASCII input, where UTF-16 code units equal bytes
        // Then the published FNV-1a 32 vectors hold
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
        assert_eq!(fnv1a32("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn decimal_digits_hash_like_their_string() {
        for n in [0, 7, 10, 4_294_967_295, 123_456_789] {
            assert_eq!(fnv1a32_decimal(n), fnv1a32(&n.to_string()));
        }
    }

    #[test]
    fn hash_hashes_utf16_code_units_as_javascript_does() {
        // Given ids with accents, CJK and an emoji (two UTF-16 code units)
        // When hashed with version 2 / Then the values are the JavaScript SDK's
        assert_eq!(hash("", "josé", 1), Some(0.586));
        assert_eq!(hash("", "josé", 2), Some(0.1315));
        assert_eq!(hash("", "用户123", 2), Some(0.3071));
        assert_eq!(hash("", "😀", 2), Some(0.4971));
        assert_eq!(hash("expérience", "123", 2), Some(0.9001));
    }

    #[test]
    fn unknown_hash_versions_give_none() {
        assert_eq!(hash("abc", "def", 99), None);
        assert_eq!(hash("abc", "def", 0), None);
    }
}
