//! Content detectors: personal data found in a value whatever the column is called, so
//! computed columns (`CONCAT(email)`, `GROUP_CONCAT`, JSON documents) are masked too. Each
//! detector is a regular expression over the value's bytes, and a checksum where the data
//! has one (payment cards: Luhn; IBAN: ISO 7064 mod 97), which keeps false positives down.
//! A value that is entirely hex digits or base64 (`HEX(email)`, `TO_BASE64(ssn)`) is decoded
//! and scanned again; a hit there masks the whole value.

use std::sync::LazyLock;

use regex::bytes::Regex;
use serde::Deserialize;

/// A kind of personal or secret data recognized in values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// E-mail addresses.
    Email,
    /// Payment card numbers (13 to 19 digits, spaces or dashes allowed) that pass Luhn.
    Card,
    /// Phone numbers: international (`+` and 9 to 15 digits) and North American
    /// (`(555) 123-4567`, `555-123-4567`).
    Phone,
    /// National identity numbers: US social security numbers (`123-45-6789`, valid areas).
    NationalId,
    /// International bank account numbers that pass the mod-97 check.
    Iban,
    /// API keys of well-known shapes (Stripe, AWS access key ids, GitHub, Slack, Google,
    /// GitLab) and JSON Web Tokens.
    ApiKey,
}

impl Detector {
    /// Its name in configuration.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Card => "card",
            Self::Phone => "phone",
            Self::NationalId => "national_id",
            Self::Iban => "iban",
            Self::ApiKey => "api_key",
        }
    }

    fn regex(self) -> &'static Regex {
        static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
            compiled(r"(?i-u)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}")
        });
        static CARD: LazyLock<Regex> = LazyLock::new(|| compiled(r"(?-u)(?:\d[ \-]?){12,18}\d"));
        static PHONE: LazyLock<Regex> = LazyLock::new(|| {
            compiled(
                r"(?-u)\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{2,4}){2,4}|\(?\b\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}\b",
            )
        });
        static NATIONAL_ID: LazyLock<Regex> =
            LazyLock::new(|| compiled(r"(?-u)\b\d{3}-\d{2}-\d{4}\b"));
        static IBAN: LazyLock<Regex> = LazyLock::new(|| {
            compiled(r"(?i-u)\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?\b")
        });
        static API_KEY: LazyLock<Regex> = LazyLock::new(|| {
            compiled(concat!(
                r"(?-u)eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}",
                r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
                r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
                r"|\bgh[pousr]_[A-Za-z0-9]{36,}",
                r"|\bgithub_pat_[A-Za-z0-9_]{22,}",
                r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}",
                r"|\bAIza[0-9A-Za-z_\-]{35}",
                r"|\bglpat-[A-Za-z0-9_\-]{20,}",
            ))
        });
        match self {
            Self::Email => &EMAIL,
            Self::Card => &CARD,
            Self::Phone => &PHONE,
            Self::NationalId => &NATIONAL_ID,
            Self::Iban => &IBAN,
            Self::ApiKey => &API_KEY,
        }
    }

    /// Whether a match of the regular expression is really this kind of data.
    fn confirms(self, found: &[u8]) -> bool {
        match self {
            Self::Card => luhn(found),
            Self::Iban => iban(found),
            Self::NationalId => ssn(found),
            Self::Phone => {
                let digits = found.iter().filter(|b| b.is_ascii_digit()).count();
                (9..=15).contains(&digits)
            }
            Self::Email | Self::ApiKey => true,
        }
    }

    /// The byte ranges of `value` that hold this kind of data.
    pub fn find(self, value: &[u8], into: &mut Vec<(usize, usize)>) {
        // Cheap checks first: most values hold no '@' and many no digit.
        let possible = match self {
            Self::Email => value.contains(&b'@'),
            Self::Card | Self::Phone | Self::NationalId | Self::Iban => {
                value.iter().any(u8::is_ascii_digit)
            }
            Self::ApiKey => true,
        };
        if !possible {
            return;
        }
        for m in self.regex().find_iter(value) {
            if self.confirms(m.as_bytes()) {
                into.push((m.start(), m.end()));
            }
        }
    }
}

/// The patterns are constants, tested below: they always compile.
fn compiled(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|_| {
        // Unreachable with the constant patterns above; a pattern that never matches keeps
        // the gateway up if one is ever edited wrongly (the unit tests catch it first).
        Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable!("constant pattern"))
    })
}

/// The Luhn check of a card number (spaces and dashes ignored): 13 to 19 digits whose
/// checksum is a multiple of 10.
#[must_use]
pub fn luhn(number: &[u8]) -> bool {
    let digits: Vec<u32> = number
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
        .collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == 0) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let double = d * 2;
                if double > 9 { double - 9 } else { double }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The IBAN check (spaces ignored): country letters, check digits, 11 to 30 more letters or
/// digits, and the ISO 7064 mod-97 remainder of the rearranged number is 1.
#[must_use]
pub fn iban(text: &[u8]) -> bool {
    let compact: Vec<u8> = text
        .iter()
        .filter(|b| **b != b' ')
        .map(u8::to_ascii_uppercase)
        .collect();
    if !(15..=34).contains(&compact.len())
        || !compact.iter().all(u8::is_ascii_alphanumeric)
        || !compact.iter().take(2).all(u8::is_ascii_uppercase)
        || !compact.iter().skip(2).take(2).all(u8::is_ascii_digit)
    {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for &c in tail.iter().chain(head) {
        let value = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// A US social security number's valid ranges: area not 000, 666 or 9xx, group not 00,
/// serial not 0000.
fn ssn(text: &[u8]) -> bool {
    let digits: Vec<u8> = text.iter().copied().filter(u8::is_ascii_digit).collect();
    let (Some(area), Some(group), Some(serial)) =
        (digits.get(..3), digits.get(3..5), digits.get(5..9))
    else {
        return false;
    };
    area != b"000"
        && area != b"666"
        && area.first() != Some(&b'9')
        && group != b"00"
        && serial != b"0000"
}

/// The ranges of `value` any of `detectors` finds, sorted and merged, each with the index
/// (in `detectors`) of the first detector that found it.
#[must_use]
pub fn spans(value: &[u8], detectors: &[Detector]) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    let mut ranges = Vec::new();
    for (i, detector) in detectors.iter().enumerate() {
        ranges.clear();
        detector.find(value, &mut ranges);
        found.extend(ranges.iter().map(|&(s, e)| (s, e, i)));
    }
    found.sort_unstable_by_key(|&(s, e, i)| (s, std::cmp::Reverse(e), i));
    let mut merged: Vec<(usize, usize, usize)> = Vec::with_capacity(found.len());
    for (s, e, i) in found {
        match merged.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e, i)),
        }
    }
    merged
}

/// `value` decoded when it is entirely hex digits (an even number, at least 10) or base64 (a
/// multiple of 4, at least 8 characters), as `HEX()` and `TO_BASE64()` write them.
#[must_use]
pub fn decoded(value: &[u8]) -> Option<Vec<u8>> {
    let trimmed = value.trim_ascii();
    if trimmed.len() >= 10
        && trimmed.len().is_multiple_of(2)
        && trimmed.iter().all(u8::is_ascii_hexdigit)
    {
        return trimmed
            .chunks_exact(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).ok()?;
                u8::from_str_radix(text, 16).ok()
            })
            .collect();
    }
    let compact: Vec<u8> = trimmed
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    // Base64 of text mixes upper and lower case (each group's first character carries a
    // byte's top bits): a word of one case is not taken for it.
    if compact.len() >= 8
        && compact.len().is_multiple_of(4)
        && compact
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && compact.iter().any(u8::is_ascii_uppercase)
        && compact
            .iter()
            .any(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        use base64::Engine as _;
        return base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(detector: Detector, text: &str) -> Vec<String> {
        let mut ranges = Vec::new();
        detector.find(text.as_bytes(), &mut ranges);
        ranges
            .into_iter()
            .map(|(s, e)| text[s..e].to_owned())
            .collect()
    }

    #[test]
    fn luhn_accepts_real_numbers_only() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(luhn(b"5500-0000-0000-0004"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"0000000000000000"));
        assert!(!luhn(b"411111111111"), "too short");
    }

    #[test]
    fn iban_mod_97() {
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(iban(b"GB82 WEST 1234 5698 7654 32"));
        assert!(iban(b"DE89370400440532013000"));
        assert!(iban(b"fr1420041010050500013m02606"));
        assert!(!iban(b"GB82WEST12345698765433"));
        assert!(!iban(b"GB82WEST"));
    }

    #[test]
    fn detectors_find_their_data_in_text() {
        assert_eq!(
            found(Detector::Email, "mail: Alice.B@Example.co.uk, ok"),
            ["Alice.B@Example.co.uk"]
        );
        assert_eq!(
            found(Detector::Card, "card 4111-1111-1111-1111 and 1234567890123"),
            ["4111-1111-1111-1111"]
        );
        assert_eq!(
            found(Detector::Phone, "call +44 20 7946 0958 or (555) 123-4567"),
            ["+44 20 7946 0958", "(555) 123-4567"]
        );
        assert_eq!(
            found(Detector::NationalId, "ssn 123-45-6789, not 000-12-3456"),
            ["123-45-6789"]
        );
        assert_eq!(
            found(Detector::Iban, "to GB82 WEST 1234 5698 7654 32."),
            ["GB82 WEST 1234 5698 7654 32"]
        );
        assert_eq!(
            found(
                Detector::ApiKey,
                "k=sk_live_4eC39HqLyjWDarjtT1zdp7dc t=eyJhbGciOi.eyJzdWIiOi.abcdefghijklmn"
            ),
            [
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "eyJhbGciOi.eyJzdWIiOi.abcdefghijklmn"
            ]
        );
        assert!(found(Detector::Email, "no at sign here").is_empty());
        assert!(found(Detector::Card, "order 1234567890123456").is_empty());
    }

    #[test]
    fn spans_merge_overlaps() {
        let value = b"x alice@example.com 4111111111111111";
        let spans = spans(value, &[Detector::Card, Detector::Email, Detector::Phone]);
        assert_eq!(spans, [(2, 19, 1), (20, 36, 0)]);
    }

    #[test]
    fn hex_and_base64_are_decoded() {
        assert_eq!(
            decoded(b"616C69636540782E696F").as_deref(),
            Some(&b"alice@x.io"[..])
        );
        assert_eq!(
            decoded(b"YWxpY2VAeC5pbw==").as_deref(),
            Some(&b"alice@x.io"[..])
        );
        assert_eq!(decoded(b"hello"), None);
        assert_eq!(
            decoded(b"xxxxxxxxxxxxxxxx"),
            None,
            "one case: not base64 of text"
        );
        assert_eq!(decoded(b"12345"), None);
    }
}
