//! Connection attributes (`CLIENT_CONNECT_ATTRS`): the key/value pairs a client sends with its
//! handshake response (`_client_name`, `_pid`, `program_name`, ...). The gateway reads them
//! from the client, records them with the login, and passes them on to the database with its
//! own added (`tollgate_user`, `tollgate_session`), so a DBA looking at the database's session
//! list sees who is behind each gateway connection. Pure and bounds-checked.

use super::packets::Reader;

/// Pairs kept per connection at most (the rest are dropped).
pub const MAX_ATTRIBUTES: usize = 64;
/// Bytes kept per key or value at most.
pub const MAX_ATTRIBUTE_LEN: usize = 1024;
/// Encoded bytes sent to the database at most (MySQL's own limit is 64 KiB).
const MAX_ENCODED: usize = 16 * 1024;

/// Connection attributes, in the order the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes(pub Vec<(String, String)>);

impl Attributes {
    /// Decodes the attribute block (the bytes after its length prefix). Malformed trailing
    /// bytes end the list; nothing fails.
    #[must_use]
    pub fn decode(block: &[u8]) -> Self {
        let mut r = Reader::new(block);
        let mut pairs = Vec::new();
        while pairs.len() < MAX_ATTRIBUTES {
            let (Some(key), Some(value)) = (r.lenenc_bytes(), r.lenenc_bytes()) else {
                break;
            };
            pairs.push((bounded(key), bounded(value)));
        }
        Self(pairs)
    }

    /// What the database is sent: the client's attributes (if any) with `tollgate_user` (the
    /// identity the gateway authenticated) and `tollgate_session` set.
    #[must_use]
    pub fn for_database(client: Option<&Self>, identity: &str, session: &str) -> Self {
        let mut attributes = client.cloned().unwrap_or_default();
        attributes.set("tollgate_user", identity.to_owned());
        attributes.set("tollgate_session", session.to_owned());
        attributes
    }

    /// Adds (or replaces) a pair.
    pub fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
    }

    /// The value of `key`, if present.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The block as sent in a handshake response, length prefix included; pairs that would
    /// make it larger than 16 KiB are left out.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut block = Vec::new();
        for (key, value) in &self.0 {
            let mut pair = Vec::with_capacity(key.len() + value.len() + 6);
            put_lenenc_bytes(&mut pair, key.as_bytes());
            put_lenenc_bytes(&mut pair, value.as_bytes());
            if block.len() + pair.len() > MAX_ENCODED {
                break;
            }
            block.extend_from_slice(&pair);
        }
        let mut out = Vec::with_capacity(block.len() + 3);
        put_lenenc_bytes(&mut out, &block);
        out
    }
}

fn bounded(bytes: &[u8]) -> String {
    let cut = bytes.get(..MAX_ATTRIBUTE_LEN).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}

/// Appends a length-encoded string (lengths here stay below 2^24).
fn put_lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len < 0xfb {
        out.push(u8::try_from(len).unwrap_or(0));
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0xfc);
        out.extend_from_slice(&short.to_le_bytes());
    } else {
        let [a, b, c, _] = u32::try_from(len).unwrap_or(0).to_le_bytes();
        out.extend_from_slice(&[0xfd, a, b, c]);
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_identity_and_set_replaces() {
        let mut attributes = Attributes(vec![
            ("_client_name".into(), "libmariadb".into()),
            ("program_name".into(), "x".repeat(300)),
        ]);
        attributes.set("tollgate_user", "alice".into());
        attributes.set("program_name", "mysql".into());
        let encoded = attributes.encode();
        let mut r = Reader::new(&encoded);
        let block = r.lenenc_bytes().expect("length prefix");
        assert!(r.rest().is_empty());
        let decoded = Attributes::decode(block);
        assert_eq!(decoded, attributes);
        assert_eq!(decoded.get("program_name"), Some("mysql"));
        assert_eq!(decoded.get("tollgate_user"), Some("alice"));
    }

    #[test]
    fn long_values_are_cut_and_truncated_blocks_end_the_list() {
        let mut block = Vec::new();
        put_lenenc_bytes(&mut block, b"k");
        put_lenenc_bytes(&mut block, &[b'v'; 5000]);
        put_lenenc_bytes(&mut block, b"dangling key");
        let decoded = Attributes::decode(&block);
        assert_eq!(decoded.0.len(), 1);
        assert_eq!(decoded.0[0].1.len(), MAX_ATTRIBUTE_LEN);
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes: Vec<u8>) {
            let decoded = Attributes::decode(&bytes);
            proptest::prop_assert!(decoded.0.len() <= MAX_ATTRIBUTES);
        }
    }
}
