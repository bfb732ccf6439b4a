//! Mask styles: what a masked value becomes.
//!
//! - `full`: every character replaced by `X` (the length in characters is kept, so the
//!   column's declared length still holds);
//! - `partial`: like `full` but the last 4 characters are kept (`XXXXXXXXXXXX1111`); values of
//!   4 characters or fewer are masked fully;
//! - `hash`: a keyed HMAC-SHA256 of the value, its first 16 hex digits, the same for the same
//!   value and key (so joins and `GROUP BY` on masked values still line up) and useless
//!   without the key;
//! - `null`: SQL `NULL`.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use zeroize::Zeroizing;

/// How a masked value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Every character replaced by `X`.
    #[default]
    Full,
    /// All but the last 4 characters replaced by `X`.
    Partial,
    /// A keyed hash: 16 hex digits.
    Hash,
    /// SQL `NULL`.
    Null,
}

/// Hex digits a `hash` mask shows.
pub const HASH_DIGITS: usize = 16;

/// The key of `hash` masks, read from a file; never shown (`Debug` is redacted).
#[derive(Clone)]
pub struct HashKey {
    mac: Hmac<Sha256>,
    /// Kept so two rules reading the same file compare equal in tests; zeroized on drop.
    _bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

impl HashKey {
    /// A key from its bytes; `None` when shorter than 16 bytes.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < 16 {
            return None;
        }
        let mac = Hmac::<Sha256>::new_from_slice(&bytes).ok()?;
        Some(Self { mac, _bytes: bytes })
    }

    /// The keyed hash of `value`.
    #[must_use]
    pub fn digest(&self, value: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(value);
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// The first `digits` hex digits of the keyed hash of `value` (at most 64).
    #[must_use]
    pub fn hex(&self, value: &[u8], digits: usize) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.digest(value)
            .iter()
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
            .take(digits)
            .collect()
    }

    /// The keyed hash of `value` as a non-negative integer of at most `bits` bits.
    #[must_use]
    pub fn integer(&self, value: &[u8], bits: u32) -> i64 {
        let digest = self.digest(value);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let n = u64::from_le_bytes(first) >> (64 - bits.clamp(1, 63));
        i64::try_from(n).unwrap_or(0)
    }
}

/// `value` masked by `style` as text: `None` is SQL `NULL`. `key` is needed for `hash` (a
/// rule without one never gets here: loading refuses it; without a key, `full` applies).
#[must_use]
pub fn mask_text(style: Style, value: &[u8], key: Option<&HashKey>) -> Option<Vec<u8>> {
    match (style, key) {
        (Style::Null, _) => None,
        (Style::Hash, Some(key)) => Some(key.hex(value, HASH_DIGITS)),
        (Style::Partial, _) => Some(partial(value)),
        (Style::Full | Style::Hash, _) => Some(full(value)),
    }
}

/// A part of a value (what a detector found) masked by `style`, never longer than the part:
/// `hash` shows at most as many digits as the part has bytes; `null` masks it fully (the
/// whole value becomes `NULL` instead, see the row rewriting).
#[must_use]
pub fn mask_span(style: Style, span: &[u8], key: Option<&HashKey>) -> Vec<u8> {
    match (style, key) {
        (Style::Hash, Some(key)) => key.hex(span, HASH_DIGITS.min(span.len())),
        (Style::Partial, _) => partial(span),
        _ => full(span),
    }
}

/// Characters of `value` (UTF-8; bytes when it is not), each an `X`.
fn full(value: &[u8]) -> Vec<u8> {
    let count = std::str::from_utf8(value).map_or(value.len(), |text| text.chars().count());
    vec![b'X'; count]
}

/// All but the last 4 characters replaced by `X`; fully masked when 4 or fewer.
fn partial(value: &[u8]) -> Vec<u8> {
    let chars = characters(value);
    if chars.len() <= 4 {
        return full(value);
    }
    let keep_from = chars.get(chars.len() - 4).copied().unwrap_or(value.len());
    let mut out = vec![b'X'; chars.len() - 4];
    out.extend_from_slice(value.get(keep_from..).unwrap_or_default());
    out
}

/// Where each character of `value` starts (UTF-8; every byte when it is not UTF-8).
fn characters(value: &[u8]) -> Vec<usize> {
    match std::str::from_utf8(value) {
        Ok(text) => text.char_indices().map(|(i, _)| i).collect(),
        Err(_) => (0..value.len()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HashKey {
        HashKey::new(b"0123456789abcdef0123".to_vec()).expect("long enough")
    }

    #[test]
    fn styles_of_whole_values() {
        assert_eq!(
            mask_text(Style::Full, b"alice@example.com", None).as_deref(),
            Some(&b"XXXXXXXXXXXXXXXXX"[..])
        );
        assert_eq!(
            mask_text(Style::Partial, b"4111111111111111", None).as_deref(),
            Some(&b"XXXXXXXXXXXX1111"[..])
        );
        assert_eq!(
            mask_text(Style::Partial, "h\u{e9}llo w\u{f6}rld".as_bytes(), None).as_deref(),
            Some("XXXXXXX\u{f6}rld".as_bytes())
        );
        assert_eq!(
            mask_text(Style::Partial, b"1234", None).as_deref(),
            Some(&b"XXXX"[..])
        );
        assert_eq!(mask_text(Style::Null, b"x", None), None);
        let hashed = mask_text(Style::Hash, b"alice@example.com", Some(&key())).expect("text");
        assert_eq!(hashed.len(), HASH_DIGITS);
        assert!(hashed.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(
            Some(hashed.clone()),
            mask_text(Style::Hash, b"alice@example.com", Some(&key())),
            "stable"
        );
        assert_ne!(
            Some(hashed),
            mask_text(Style::Hash, b"bob@example.com", Some(&key()))
        );
        let other = HashKey::new(b"another key of 16+ bytes".to_vec()).expect("key");
        assert_ne!(key().hex(b"a", 16), other.hex(b"a", 16), "keyed");
    }

    #[test]
    fn spans_never_grow() {
        assert_eq!(mask_span(Style::Hash, b"a@b.io", Some(&key())).len(), 6);
        assert_eq!(mask_span(Style::Null, b"a@b.io", None), b"XXXXXX");
        assert_eq!(
            mask_span(Style::Partial, b"123-45-6789", None),
            b"XXXXXXX6789"
        );
    }

    #[test]
    fn integers_fit_their_bits_and_keys_are_redacted() {
        for bits in [7, 15, 23, 31, 63] {
            let n = key().integer(b"42", bits);
            assert!(n >= 0 && n < (1i64 << bits).max(1) || bits == 63);
        }
        assert_eq!(format!("{:?}", key()), "HashKey(<redacted>)");
        assert!(HashKey::new(b"short".to_vec()).is_none());
    }
}
