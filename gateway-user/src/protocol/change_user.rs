//! `COM_CHANGE_USER`: a client's request read in full, and the request the gateway sends the
//! database in its place, with the gateway's own user. Pure and bounds-checked.

use mysql_common::constants::CapabilityFlags;

use super::packets::Reader;

/// The command byte.
pub const COM_CHANGE_USER: u8 = 0x11;

/// What a client's `COM_CHANGE_USER` asks for. Its authentication data is not kept: the
/// gateway authenticates the new identity itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    /// The identity the client wants to become.
    pub user: String,
    /// The new default database.
    pub database: Option<String>,
    /// The new character set (collation id), when the client sent one.
    pub charset: Option<u16>,
    /// The client's authentication plugin, when it named one.
    pub auth_plugin: Option<String>,
}

/// Parses a client's `COM_CHANGE_USER` (command byte included), laid out according to the
/// capabilities the client negotiated at login.
#[must_use]
pub fn parse(payload: &[u8], capabilities: u32) -> Option<ChangeUser> {
    let mut r = Reader::new(payload);
    if r.u8()? != COM_CHANGE_USER {
        return None;
    }
    let user = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
    if capabilities & CapabilityFlags::CLIENT_SECURE_CONNECTION.bits() != 0 {
        let len = usize::from(r.u8()?);
        r.take(len)?;
    } else {
        r.nul_bytes()?;
    }
    let database = r
        .nul_bytes()
        .map(|db| String::from_utf8_lossy(db).into_owned())
        .filter(|db| !db.is_empty());
    let charset = r.u16();
    let auth_plugin =
        if charset.is_some() && capabilities & CapabilityFlags::CLIENT_PLUGIN_AUTH.bits() != 0 {
            r.nul_bytes()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        } else {
            None
        };
    Some(ChangeUser {
        user,
        database,
        charset,
        auth_plugin,
    })
}

/// The `COM_CHANGE_USER` the gateway sends the database: its own `user` with the answer
/// computed for `plugin` against the login's nonce, and the database and character set the
/// client asked for, and the connection attributes (an encoded block) when the database took
/// them at login.
#[must_use]
pub fn build(
    user: &str,
    auth_response: &[u8],
    database: Option<&str>,
    charset: u16,
    plugin: &str,
    attributes: Option<&[u8]>,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + user.len() + auth_response.len());
    p.push(COM_CHANGE_USER);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    // Scrambles are at most 64 bytes (ed25519), well within a one-byte length.
    p.push(u8::try_from(auth_response.len()).unwrap_or(0));
    p.extend_from_slice(auth_response);
    p.extend_from_slice(database.unwrap_or_default().as_bytes());
    p.push(0);
    p.extend_from_slice(&charset.to_le_bytes());
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    if let Some(block) = attributes {
        p.extend_from_slice(block);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: u32 = CapabilityFlags::CLIENT_PROTOCOL_41.bits()
        | CapabilityFlags::CLIENT_SECURE_CONNECTION.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH.bits();

    #[test]
    fn the_gateway_request_parses_back() {
        let bytes = build(
            "app",
            &[9; 20],
            Some("demo"),
            45,
            "caching_sha2_password",
            Some(&[0]),
        );
        let parsed = parse(&bytes, CAPS).expect("parse");
        assert_eq!(
            parsed,
            ChangeUser {
                user: "app".into(),
                database: Some("demo".into()),
                charset: Some(45),
                auth_plugin: Some("caching_sha2_password".into()),
            }
        );
        for len in 0..bytes.len() {
            let _ = parse(&bytes[..len], CAPS);
        }
    }

    #[test]
    fn old_clients_may_stop_after_the_database() {
        let mut bytes = vec![COM_CHANGE_USER];
        bytes.extend_from_slice(b"bob\0\0\0");
        let parsed = parse(&bytes, CAPS).expect("parse");
        assert_eq!(parsed.user, "bob");
        assert_eq!(parsed.database, None);
        assert_eq!(parsed.charset, None);
        assert_eq!(parsed.auth_plugin, None);
        assert!(parse(&[0x03, b'x'], CAPS).is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(bytes: Vec<u8>, caps: u32) {
            let _ = parse(&bytes, caps);
        }
    }
}
