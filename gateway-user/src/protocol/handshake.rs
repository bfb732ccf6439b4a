//! The handshake when the gateway terminates the login: the greeting it sends clients, the
//! auth-switch and auth-more-data packets, reading a client's handshake response in full, and
//! the handshake response it sends the database with its own credential. Pure and
//! bounds-checked.

use mysql_common::constants::CapabilityFlags;

use super::{
    attributes::Attributes,
    packets::{MARIADB_ALLOWED_EXTENDED, Reader},
};

/// Length of an authentication nonce (scramble).
pub const NONCE_LEN: usize = 20;

/// What the gateway needs from a database's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGreeting {
    /// Server version string (passed on to clients, so they adapt to the real server).
    pub version: Vec<u8>,
    /// Connection id on the database.
    pub connection_id: u32,
    /// The login nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Capabilities offered.
    pub capabilities: u32,
    /// Default character set.
    pub charset: u8,
    /// Status flags.
    pub status: u16,
    /// MariaDB extended capabilities (0 for MySQL).
    pub mariadb_extended: u32,
    /// Default authentication plugin.
    pub auth_plugin: String,
}

/// Parses a protocol-10 greeting.
#[must_use]
pub fn parse_greeting(payload: &[u8]) -> Option<ServerGreeting> {
    let mut r = Reader::new(payload);
    if r.u8()? != 10 {
        return None;
    }
    let version = r.nul_bytes()?.to_vec();
    let connection_id = r.u32()?;
    let part1 = r.take(8)?;
    r.take(1)?;
    let low = r.u16()?;
    let charset = r.u8()?;
    let status = r.u16()?;
    let high = r.u16()?;
    let auth_len = usize::from(r.u8()?);
    r.take(6)?;
    let ext = r.u32()?;
    let capabilities = u32::from(high) << 16 | u32::from(low);
    let part2_len = auth_len.saturating_sub(8).max(13);
    let part2 = r.take(part2_len)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..8].copy_from_slice(part1);
    nonce[8..].copy_from_slice(part2.get(..12)?);
    let auth_plugin = r
        .nul_bytes()
        .or_else(|| Some(r.rest()))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let mariadb_extended = if capabilities & CapabilityFlags::CLIENT_LONG_PASSWORD.bits() == 0 {
        ext
    } else {
        0
    };
    Some(ServerGreeting {
        version,
        connection_id,
        nonce,
        capabilities,
        charset,
        status,
        mariadb_extended,
        auth_plugin,
    })
}

/// The greeting the gateway sends a client: the database's version, character set and
/// (edited) capabilities, the gateway's own nonce, TLS offered, `caching_sha2_password`.
#[must_use]
pub fn build_greeting(
    server: &ServerGreeting,
    capabilities: u32,
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(128);
    p.push(10);
    p.extend_from_slice(&server.version);
    p.push(0);
    p.extend_from_slice(&server.connection_id.to_le_bytes());
    p.extend_from_slice(&nonce[..8]);
    p.push(0);
    let [b0, b1, b2, b3] = capabilities.to_le_bytes();
    p.extend_from_slice(&[b0, b1]);
    p.push(server.charset);
    p.extend_from_slice(&server.status.to_le_bytes());
    p.extend_from_slice(&[b2, b3]);
    p.push(u8::try_from(NONCE_LEN + 1).unwrap_or(21));
    p.extend_from_slice(&[0; 6]);
    let ext = if capabilities & CapabilityFlags::CLIENT_LONG_PASSWORD.bits() == 0 {
        server.mariadb_extended & MARIADB_ALLOWED_EXTENDED
    } else {
        0
    };
    p.extend_from_slice(&ext.to_le_bytes());
    p.extend_from_slice(&nonce[8..]);
    p.push(0);
    p.extend_from_slice(b"caching_sha2_password\0");
    p
}

/// `AuthSwitchRequest` to `plugin` with `nonce`.
#[must_use]
pub fn auth_switch(plugin: &str, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p.extend_from_slice(nonce);
    p.push(0);
    p
}

/// `AuthMoreData` asking a `caching_sha2_password` client for its password (sent only over
/// TLS, where the client answers in clear text).
pub const PERFORM_FULL_AUTHENTICATION: [u8; 2] = [0x01, 0x04];

/// A client's handshake response, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLogin {
    /// Capabilities the client asked for.
    pub capabilities: u32,
    /// Character set.
    pub charset: u8,
    /// User name.
    pub user: String,
    /// Initial database.
    pub database: Option<String>,
    /// The client's authentication plugin.
    pub auth_plugin: Option<String>,
    /// MariaDB extended capabilities the client asked for (0 for a MySQL client, which sets
    /// `CLIENT_MYSQL`); they change the column definitions a MariaDB server sends.
    pub mariadb_extended: u32,
    /// The zstd level a client asking for `CLIENT_ZSTD_COMPRESSION_ALGORITHM` sent.
    pub zstd_level: Option<u8>,
    /// Connection attributes, when the client sent them.
    pub attributes: Option<Attributes>,
}

/// Parses a protocol-41 handshake response.
#[must_use]
pub fn parse_client_login(payload: &[u8]) -> Option<ClientLogin> {
    let mut r = Reader::new(payload);
    let capabilities = r.u32()?;
    if capabilities & CapabilityFlags::CLIENT_PROTOCOL_41.bits() == 0 {
        return None;
    }
    r.take(4)?;
    let charset = r.u8()?;
    r.take(19)?;
    let ext = r.u32()?;
    let mariadb_extended = if capabilities & CapabilityFlags::CLIENT_LONG_PASSWORD.bits() == 0 {
        ext & MARIADB_ALLOWED_EXTENDED
    } else {
        0
    };
    let user = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
    if capabilities & CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.bits() != 0 {
        r.lenenc_bytes()?;
    } else if capabilities & CapabilityFlags::CLIENT_SECURE_CONNECTION.bits() != 0 {
        let len = usize::from(r.u8()?);
        r.take(len)?;
    } else {
        r.nul_bytes()?;
    }
    let database = if capabilities & CapabilityFlags::CLIENT_CONNECT_WITH_DB.bits() != 0 {
        r.nul_bytes()
            .map(|db| String::from_utf8_lossy(db).into_owned())
            .filter(|db| !db.is_empty())
    } else {
        None
    };
    let auth_plugin = if capabilities & CapabilityFlags::CLIENT_PLUGIN_AUTH.bits() != 0 {
        r.nul_bytes()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    } else {
        None
    };
    // Some clients set CLIENT_CONNECT_ATTRS without sending attributes when the server did
    // not offer them: a block that does not parse is no block.
    let attributes = if capabilities & CapabilityFlags::CLIENT_CONNECT_ATTRS.bits() != 0 {
        r.clone().lenenc_bytes().map(Attributes::decode)
    } else {
        None
    };
    // The zstd level is the last byte when zstd is asked for (after connection attributes,
    // which a client sends only when the server offered them).
    let zstd_level =
        if capabilities & CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM.bits() != 0 {
            r.rest().last().copied()
        } else {
            None
        };
    Some(ClientLogin {
        capabilities,
        charset,
        user,
        database,
        auth_plugin,
        mariadb_extended,
        zstd_level,
        attributes,
    })
}

/// The authentication data of a handshake response (a password in clear text when the
/// client's plugin is `mysql_clear_password`), or `None` when the packet is malformed.
#[must_use]
pub fn auth_response(payload: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new(payload);
    let capabilities = r.u32()?;
    r.take(4 + 1 + 19 + 4)?;
    r.nul_bytes()?;
    let data = if capabilities & CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.bits() != 0
    {
        r.lenenc_bytes()?
    } else if capabilities & CapabilityFlags::CLIENT_SECURE_CONNECTION.bits() != 0 {
        let len = usize::from(r.u8()?);
        r.take(len)?
    } else {
        r.nul_bytes()?
    };
    Some(data.to_vec())
}

/// The handshake response the gateway sends the database, with its own user and the
/// `auth_response` computed for `plugin`; `client` supplies what the client asked for
/// (character set, MariaDB extensions), so both legs speak the same dialect, and its
/// connection attributes, sent when the database takes them.
#[must_use]
pub fn build_upstream_login(
    capabilities: u32,
    server: &ServerGreeting,
    client: &ClientLogin,
    user: &str,
    auth_response: &[u8],
    database: Option<&str>,
    plugin: &str,
) -> Vec<u8> {
    let attributes = client.attributes.as_ref().map(Attributes::encode);
    let mut caps = capabilities
        | CapabilityFlags::CLIENT_PROTOCOL_41.bits()
        | CapabilityFlags::CLIENT_SECURE_CONNECTION.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.bits();
    caps &= server.capabilities;
    if attributes.is_some() {
        caps |= CapabilityFlags::CLIENT_CONNECT_ATTRS.bits() & server.capabilities;
    } else {
        caps &= !CapabilityFlags::CLIENT_CONNECT_ATTRS.bits();
    }
    if database.is_some() {
        caps |= CapabilityFlags::CLIENT_CONNECT_WITH_DB.bits() & server.capabilities;
    } else {
        caps &= !CapabilityFlags::CLIENT_CONNECT_WITH_DB.bits();
    }
    let mut p = Vec::with_capacity(128);
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(1u32 << 30).to_le_bytes());
    p.push(client.charset);
    p.extend_from_slice(&[0; 19]);
    // A client that sets CLIENT_MYSQL (a MySQL client) gets no MariaDB extensions; nor does
    // the database get asked for any the client did not ask for.
    let ext = if caps & CapabilityFlags::CLIENT_LONG_PASSWORD.bits() == 0 {
        server.mariadb_extended & client.mariadb_extended & MARIADB_ALLOWED_EXTENDED
    } else {
        0
    };
    p.extend_from_slice(&ext.to_le_bytes());
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    // A length-encoded length or a one-byte length: the same byte below 251, and a login
    // scramble is at most 32 bytes.
    p.push(u8::try_from(auth_response.len()).unwrap_or(0));
    p.extend_from_slice(auth_response);
    if let Some(db) =
        database.filter(|_| caps & CapabilityFlags::CLIENT_CONNECT_WITH_DB.bits() != 0)
    {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    if let Some(block) =
        attributes.filter(|_| caps & CapabilityFlags::CLIENT_CONNECT_ATTRS.bits() != 0)
    {
        p.extend_from_slice(&block);
    }
    p
}

/// The login answer for `plugin` to the database's `challenge` (the greeting's or an auth
/// switch's plugin data); `None` for a plugin the gateway cannot use, or a challenge too short
/// for it.
///
/// `mysql_native_password` and `caching_sha2_password` scramble with the first 20 bytes;
/// MariaDB's `client_ed25519` signs the 32-byte nonce with a key derived from the password.
#[must_use]
pub fn scramble(plugin: &str, challenge: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    use mysql_common::auth::plugins::{
        ChallengeResponsePlugin as _,
        caching_sha2_password::scramble_sha256,
        client_ed25519::{ClientEd25519, NONCE_BYTES},
        mysql_native_password::scramble_native,
    };
    match plugin {
        "mysql_native_password" => {
            let nonce = challenge.get(..NONCE_LEN)?;
            Some(
                scramble_native(nonce, password)
                    .map(|s| s.to_vec())
                    .unwrap_or_default(),
            )
        }
        "caching_sha2_password" => {
            let nonce: &[u8; NONCE_LEN] = challenge.get(..NONCE_LEN)?.try_into().ok()?;
            Some(
                scramble_sha256(nonce, password)
                    .map(|s| s.to_vec())
                    .unwrap_or_default(),
            )
        }
        "client_ed25519" => {
            let nonce = challenge.get(..NONCE_BYTES)?;
            ClientEd25519::default()
                .run(PasswordOnly(password), nonce)
                .ok()
                .and_then(|response| response.data().map(<[u8]>::to_vec))
        }
        _ => None,
    }
}

/// What `mysql_common`'s challenge-response plugins may ask for: here only the password.
struct PasswordOnly<'p>(&'p [u8]);

impl mysql_common::auth::plugins::Context for PasswordOnly<'_> {
    fn pass(&self) -> &[u8] {
        self.0
    }

    fn is_ipc_transport(&self) -> bool {
        false
    }

    fn is_tls_transport(&self) -> bool {
        false
    }

    fn scramble(&self) -> &[u8] {
        &[]
    }

    fn server_key_pem(&self) -> Option<&[u8]> {
        None
    }
}

/// An OK packet (after authentication).
#[must_use]
pub fn ok_packet(status: u16) -> Vec<u8> {
    let mut p = vec![0x00, 0x00, 0x00];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

/// A fresh nonce: 20 random printable bytes without NUL, as MySQL servers make them.
#[must_use]
pub fn new_nonce() -> [u8; NONCE_LEN] {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let mut nonce = [0u8; NONCE_LEN];
    for byte in &mut nonce {
        *byte = rng.random_range(0x21..0x7f);
    }
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting() -> ServerGreeting {
        ServerGreeting {
            version: b"5.5.5-10.11.14-MariaDB".to_vec(),
            connection_id: 9,
            nonce: *b"abcdefghijklmnopqrst",
            capabilities: 0x81bf_f7fe,
            charset: 45,
            status: 2,
            mariadb_extended: 0x1d,
            auth_plugin: "mysql_native_password".into(),
        }
    }

    #[test]
    fn a_zstd_client_login_ends_with_its_level() {
        use CapabilityFlags as C;
        let caps = C::CLIENT_PROTOCOL_41
            | C::CLIENT_SECURE_CONNECTION
            | C::CLIENT_PLUGIN_AUTH
            | C::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | C::CLIENT_CONNECT_ATTRS
            | C::CLIENT_ZSTD_COMPRESSION_ALGORITHM;
        let mut p = caps.bits().to_le_bytes().to_vec();
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(255);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"alice\0\0caching_sha2_password\0");
        p.extend_from_slice(b"\x0b\x04_pid\x0512345");
        p.push(7);
        let login = parse_client_login(&p).expect("parse");
        assert_eq!(login.zstd_level, Some(7));
        assert_eq!(login.auth_plugin.as_deref(), Some("caching_sha2_password"));
        assert_eq!(
            login.attributes.as_ref().and_then(|a| a.get("_pid")),
            Some("12345")
        );
        // Connection attributes are only sent when the server offered them; MySQL 9's client
        // still sets the flag.
        let mut no_attributes = p[..p.len() - 13].to_vec();
        no_attributes.push(9);
        let login = parse_client_login(&no_attributes).expect("parse");
        assert_eq!(login.zstd_level, Some(9));
        assert_eq!(login.attributes, None);
        let without = (caps - C::CLIENT_ZSTD_COMPRESSION_ALGORITHM)
            .bits()
            .to_le_bytes();
        p[..4].copy_from_slice(&without);
        assert_eq!(parse_client_login(&p).expect("parse").zstd_level, None);
        for len in 0..p.len() {
            let _ = parse_client_login(&p[..len]);
        }
    }

    #[test]
    fn the_gateway_greeting_parses_back_with_its_own_nonce() {
        let nonce = *b"ABCDEFGHIJKLMNOPQRST";
        let bytes = build_greeting(&greeting(), greeting().capabilities, &nonce);
        let parsed = parse_greeting(&bytes).expect("parse");
        assert_eq!(parsed.nonce, nonce);
        assert_eq!(parsed.version, greeting().version);
        assert_eq!(parsed.auth_plugin, "caching_sha2_password");
        assert_eq!(parsed.mariadb_extended, 0x1d & MARIADB_ALLOWED_EXTENDED);
        for len in 0..bytes.len() {
            let _ = parse_greeting(&bytes[..len]);
        }
    }

    #[test]
    fn ed25519_signs_the_nonce_with_the_password_derived_key() {
        use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
        use sha2::{Digest as _, Sha512};
        let nonce = [7u8; 32];
        let signature = scramble("client_ed25519", &nonce, b"secret").expect("ed25519");
        // MariaDB stores the public key of the clamped first half of SHA-512(password).
        let digest = Sha512::digest(b"secret");
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&digest[..32]);
        let scalar = curve25519_dalek::Scalar::from_bytes_mod_order(
            curve25519_dalek::scalar::clamp_integer(seed),
        );
        let public = curve25519_dalek::EdwardsPoint::mul_base(&scalar).compress();
        let key = VerifyingKey::from_bytes(public.as_bytes()).expect("key");
        let signature = Signature::from_slice(&signature).expect("64 bytes");
        assert!(key.verify(&nonce, &signature).is_ok());
        assert!(key.verify(&[8u8; 32], &signature).is_err());
    }

    #[test]
    fn upstream_login_parses_as_a_client_login() {
        let scrambled =
            scramble("mysql_native_password", &greeting().nonce, b"pw").expect("native");
        let client = ClientLogin {
            capabilities: greeting().capabilities,
            charset: 45,
            user: "alice".into(),
            database: None,
            auth_plugin: None,
            mariadb_extended: 0,
            zstd_level: None,
            attributes: Some(Attributes(vec![("tollgate_user".into(), "alice".into())])),
        };
        let bytes = build_upstream_login(
            greeting().capabilities | CapabilityFlags::CLIENT_CONNECT_ATTRS.bits(),
            &greeting(),
            &client,
            "app",
            &scrambled,
            Some("demo"),
            "mysql_native_password",
        );
        let login = parse_client_login(&bytes).expect("parse");
        assert_eq!(auth_response(&bytes), Some(scrambled.clone()));
        for len in 0..bytes.len() {
            let _ = auth_response(&bytes[..len]);
        }
        assert_eq!(login.attributes, client.attributes);
        assert_eq!(login.user, "app");
        assert_eq!(login.database.as_deref(), Some("demo"));
        assert_eq!(login.auth_plugin.as_deref(), Some("mysql_native_password"));
        assert_eq!(
            login.mariadb_extended, 0,
            "not asked for by the client: not requested"
        );
        assert!(scramble("dialog", &greeting().nonce, b"pw").is_none());
        assert!(
            scramble("client_ed25519", &greeting().nonce, b"pw").is_none(),
            "ed25519 needs a 32-byte nonce"
        );
        assert!(new_nonce().iter().all(|b| (0x21..0x7f).contains(b)));
    }
}
