//! Decoding the packets the gateway needs to follow a session, and the few byte-exact edits it
//! makes to the handshake. Pure functions over payloads (no framing, no I/O); every read is
//! bounds-checked, so malformed input yields `None`, never a panic.

use mysql_common::constants::{CapabilityFlags, StatusFlags};

/// MariaDB's extended capability: progress reports inside result streams.
pub const MARIADB_CLIENT_PROGRESS: u32 = 1;
/// MariaDB's extended capability: `COM_STMT_BULK_EXECUTE`.
pub const MARIADB_CLIENT_STMT_BULK_OPERATIONS: u32 = 1 << 2;
/// MariaDB's extended capability: extended type info in column definitions.
pub const MARIADB_CLIENT_EXTENDED_TYPE_INFO: u32 = 1 << 3;
/// MariaDB's extended capability: result-set metadata caching (execute without column defs).
pub const MARIADB_CLIENT_CACHE_METADATA: u32 = 1 << 4;

/// MariaDB extended capabilities the gateway lets through: only those that do not change how
/// responses are framed.
pub const MARIADB_ALLOWED_EXTENDED: u32 = MARIADB_CLIENT_EXTENDED_TYPE_INFO;

/// A cursor over a payload; every read checks bounds.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `payload` from the start.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    #[must_use]
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    /// Little-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    /// Little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// A length-encoded integer (`0xfb` is NULL and reads as `None`).
    pub fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            n @ 0..=0xfa => Some(u64::from(n)),
            0xfc => self.u16().map(u64::from),
            0xfd => self
                .take(3)
                .map(|b| u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16),
            0xfe => self
                .take(8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
            _ => None,
        }
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.lenenc()?).ok()?;
        self.take(len)
    }

    /// A NUL-terminated string (the NUL is consumed, not returned).
    pub fn nul_bytes(&mut self) -> Option<&'a [u8]> {
        let end = self.buf.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }
}

/// What an OK packet (or an EOF packet standing in for it) says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OkInfo {
    /// Rows changed by the statement.
    pub affected_rows: u64,
    /// `LAST_INSERT_ID()` after the statement.
    pub last_insert_id: u64,
    /// Server status flags (`SERVER_MORE_RESULTS_EXISTS` ...).
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
}

impl OkInfo {
    /// True when another result set follows.
    #[must_use]
    pub fn more_results(&self) -> bool {
        self.status & StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits() != 0
    }

    /// True when a cursor was opened (`COM_STMT_EXECUTE` with a cursor: no rows follow).
    #[must_use]
    pub fn cursor_exists(&self) -> bool {
        self.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0
    }
}

/// What an ERR packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrInfo {
    /// Error code.
    pub code: u16,
    /// SQLSTATE, when sent.
    pub sql_state: Option<String>,
    /// Message.
    pub message: String,
}

/// Parses an OK packet (header `0x00`, or `0xfe` when it ends a result set).
#[must_use]
pub fn parse_ok(payload: &[u8]) -> Option<OkInfo> {
    let mut r = Reader::new(payload);
    let header = r.u8()?;
    if header != 0x00 && header != 0xfe {
        return None;
    }
    Some(OkInfo {
        affected_rows: r.lenenc()?,
        last_insert_id: r.lenenc()?,
        status: r.u16().unwrap_or(0),
        warnings: r.u16().unwrap_or(0),
    })
}

/// Parses a classic EOF packet (`0xfe`, warnings, status).
#[must_use]
pub fn parse_eof(payload: &[u8]) -> Option<OkInfo> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xfe {
        return None;
    }
    let warnings = r.u16().unwrap_or(0);
    let status = r.u16().unwrap_or(0);
    Some(OkInfo {
        status,
        warnings,
        ..OkInfo::default()
    })
}

/// Parses an ERR packet (after the handshake, with its SQLSTATE marker when present).
#[must_use]
pub fn parse_err(payload: &[u8]) -> Option<ErrInfo> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xff {
        return None;
    }
    let code = r.u16()?;
    let mut sql_state = None;
    if r.rest().first() == Some(&b'#') {
        r.take(1)?;
        sql_state = Some(String::from_utf8_lossy(r.take(5)?).into_owned());
    }
    Some(ErrInfo {
        code,
        sql_state,
        message: String::from_utf8_lossy(r.rest()).into_owned(),
    })
}

/// True for a packet that ends a row stream: an EOF packet, or (with `CLIENT_DEPRECATE_EOF`)
/// an OK packet with the `0xfe` header. A row can only start with `0xfe` when its first value
/// is 16 MiB or longer, which makes its payload at least `0xffffff` bytes.
#[must_use]
pub fn is_row_terminator(payload: &[u8], deprecate_eof: bool) -> bool {
    payload.first() == Some(&0xfe) && payload.len() < if deprecate_eof { 0xff_ffff } else { 9 }
}

/// The status a row-stream terminator carries.
#[must_use]
pub fn terminator_info(payload: &[u8], deprecate_eof: bool) -> OkInfo {
    if deprecate_eof {
        parse_ok(payload).unwrap_or_default()
    } else {
        parse_eof(payload).unwrap_or_default()
    }
}

/// The column name (`name`, i.e. the alias) of a column definition (protocol 41).
#[must_use]
pub fn column_name(definition: &[u8]) -> Option<String> {
    let mut r = Reader::new(definition);
    for _ in 0..4 {
        r.lenenc_bytes()?; // catalog, schema, table, org_table
    }
    r.lenenc_bytes()
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// A column definition (protocol 41), borrowed from its packet. MariaDB's extended type
/// information (a length-encoded string after `org_name`, when negotiated) is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDefinition<'a> {
    /// The database of the table (`schema`).
    pub schema: &'a [u8],
    /// The table's alias in the query.
    pub table: &'a [u8],
    /// The table's own name.
    pub org_table: &'a [u8],
    /// The column's alias in the query.
    pub name: &'a [u8],
    /// The column's own name.
    pub org_name: &'a [u8],
    /// Character set (collation id; 63 is `binary`).
    pub charset: u16,
    /// Maximum length of the column's values.
    pub length: u32,
    /// Field type (`MYSQL_TYPE_*`).
    pub column_type: u8,
    /// Field flags (`NOT_NULL`, `UNSIGNED`, `BINARY` ...).
    pub flags: u16,
    /// Decimals (numbers) or fractional-second digits (times).
    pub decimals: u8,
}

/// The fixed-length fields that end a column definition: their length (`0x0c`) and 12 bytes.
const COLUMN_FIXED_FIELDS: usize = 13;

/// Parses a column definition (protocol 41).
#[must_use]
pub fn parse_column_definition(definition: &[u8]) -> Option<ColumnDefinition<'_>> {
    let mut r = Reader::new(definition);
    r.lenenc_bytes()?; // catalog ("def")
    let schema = r.lenenc_bytes()?;
    let table = r.lenenc_bytes()?;
    let org_table = r.lenenc_bytes()?;
    let name = r.lenenc_bytes()?;
    let org_name = r.lenenc_bytes()?;
    // Without extended type information the fixed fields follow at once (COM_FIELD_LIST adds a
    // default value after them); with it, a length-encoded string comes first.
    let direct = r.rest().first() == Some(&0x0c) && r.rest().len() >= COLUMN_FIXED_FIELDS;
    let mut fixed = r.clone();
    if !(direct && fixed_fields_fit(&fixed)) {
        fixed.lenenc_bytes()?;
    }
    if fixed.lenenc()? < 12 {
        return None;
    }
    Some(ColumnDefinition {
        schema,
        table,
        org_table,
        name,
        org_name,
        charset: fixed.u16()?,
        length: fixed.u32()?,
        column_type: fixed.u8()?,
        flags: fixed.u16()?,
        decimals: fixed.u8()?,
    })
}

/// True when `r` holds the fixed fields alone (optionally followed by a `COM_FIELD_LIST`
/// default value), not an extended-type string before them.
fn fixed_fields_fit(r: &Reader<'_>) -> bool {
    let rest = r.rest();
    match rest.len() {
        COLUMN_FIXED_FIELDS => true,
        // An extended type string of length 12 followed by the fixed fields is 26 bytes and
        // ends with them; anything else longer is a field list's default value.
        n if n > COLUMN_FIXED_FIELDS => {
            let mut probe = r.clone();
            !(probe.lenenc_bytes().is_some()
                && probe.rest().len() == COLUMN_FIXED_FIELDS
                && probe.rest().first() == Some(&0x0c))
        }
        _ => false,
    }
}

/// The reply to `COM_STMT_PREPARE`: statement id and how many definitions follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// Statement id for execute/close.
    pub statement_id: u32,
    /// Column definitions that follow.
    pub columns: u16,
    /// Parameter definitions that follow.
    pub params: u16,
    /// Warnings.
    pub warnings: u16,
}

/// Parses a `COM_STMT_PREPARE` OK.
#[must_use]
pub fn parse_prepare_ok(payload: &[u8]) -> Option<PrepareOk> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0x00 {
        return None;
    }
    let statement_id = r.u32()?;
    let columns = r.u16()?;
    let params = r.u16()?;
    r.u8();
    Some(PrepareOk {
        statement_id,
        columns,
        params,
        warnings: r.u16().unwrap_or(0),
    })
}

/// The server greeting, as far as the gateway edits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// Capabilities the server offers (after the gateway's edit).
    pub capabilities: u32,
    /// MariaDB extended capabilities (after the edit), 0 for MySQL.
    pub mariadb_extended: u32,
}

/// Offsets of the capability fields inside a protocol-10 greeting.
struct GreetingLayout {
    caps_low: usize,
    caps_high: Option<usize>,
    mariadb_ext: Option<usize>,
}

fn greeting_layout(payload: &[u8]) -> Option<GreetingLayout> {
    let mut r = Reader::new(payload);
    if r.u8()? != 10 {
        return None;
    }
    r.nul_bytes()?; // server version
    r.take(4 + 8 + 1)?; // connection id, auth data part 1, filler
    let caps_low = payload.len() - r.rest().len();
    r.take(2)?;
    if r.rest().is_empty() {
        return Some(GreetingLayout {
            caps_low,
            caps_high: None,
            mariadb_ext: None,
        });
    }
    r.take(1 + 2)?; // charset, status
    let caps_high = payload.len() - r.rest().len();
    r.take(2 + 1 + 6)?; // caps high, auth data length, 6 reserved bytes
    let mariadb_ext = payload.len() - r.rest().len();
    r.take(4)?;
    Some(GreetingLayout {
        caps_low,
        caps_high: Some(caps_high),
        mariadb_ext: Some(mariadb_ext),
    })
}

/// Removes `strip` from the capabilities a greeting offers, and every MariaDB extended
/// capability outside [`MARIADB_ALLOWED_EXTENDED`]; returns what remains. `None` when the
/// payload is not a protocol-10 greeting.
pub fn edit_greeting(payload: &mut [u8], strip: CapabilityFlags) -> Option<Greeting> {
    let layout = greeting_layout(payload)?;
    let low = u16::from_le_bytes([
        *payload.get(layout.caps_low)?,
        *payload.get(layout.caps_low + 1)?,
    ]);
    let high = match layout.caps_high {
        Some(at) => u16::from_le_bytes([*payload.get(at)?, *payload.get(at + 1)?]),
        None => 0,
    };
    let capabilities = (u32::from(high) << 16 | u32::from(low)) & !strip.bits();
    let [b0, b1, b2, b3] = capabilities.to_le_bytes();
    payload
        .get_mut(layout.caps_low..layout.caps_low + 2)?
        .copy_from_slice(&[b0, b1]);
    if let Some(at) = layout.caps_high {
        payload.get_mut(at..at + 2)?.copy_from_slice(&[b2, b3]);
    }
    // MariaDB puts its extended capabilities in the last 4 reserved bytes when it clears
    // CLIENT_MYSQL (bit 0, CLIENT_LONG_PASSWORD).
    let mut mariadb_extended = 0;
    if capabilities & CapabilityFlags::CLIENT_LONG_PASSWORD.bits() == 0
        && let Some(at) = layout.mariadb_ext
    {
        let ext = payload.get_mut(at..at + 4)?;
        mariadb_extended =
            u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]) & MARIADB_ALLOWED_EXTENDED;
        ext.copy_from_slice(&mariadb_extended.to_le_bytes());
    }
    Some(Greeting {
        capabilities,
        mariadb_extended,
    })
}

/// What the gateway reads from a client's handshake response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Capabilities the client asked for (after the gateway's edit).
    pub capabilities: u32,
    /// The MySQL user name.
    pub user: String,
    /// The initial database, if any.
    pub database: Option<String>,
}

/// Whether a handshake response asks for TLS (an `SSLRequest`).
#[must_use]
pub fn requests_tls(payload: &[u8]) -> bool {
    Reader::new(payload)
        .u32()
        .is_some_and(|caps| caps & CapabilityFlags::CLIENT_SSL.bits() != 0)
}

/// Removes `strip` from a protocol-41 handshake response's capabilities (and MariaDB
/// extended capabilities outside [`MARIADB_ALLOWED_EXTENDED`]) and reads the user and
/// database. `None` when the payload is not a protocol-41 handshake response.
pub fn edit_handshake_response(payload: &mut [u8], strip: CapabilityFlags) -> Option<Login> {
    let parsed = super::handshake::parse_client_login(payload)?;
    let caps = parsed.capabilities & !strip.bits();
    let ext = Reader::new(payload.get(28..32)?).u32()?;
    payload.get_mut(0..4)?.copy_from_slice(&caps.to_le_bytes());
    payload
        .get_mut(28..32)?
        .copy_from_slice(&(ext & MARIADB_ALLOWED_EXTENDED).to_le_bytes());
    Some(Login {
        capabilities: caps,
        user: parsed.user,
        database: parsed.database,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MariaDB 10.11 greeting (captured from a real server; scramble zeroed).
    fn mariadb_greeting() -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.5-10.11.14-MariaDB-0+deb12u2\0");
        p.extend_from_slice(&[7, 0, 0, 0]); // connection id
        p.extend_from_slice(&[0; 8]); // scramble part 1
        p.push(0); // filler
        p.extend_from_slice(&0xf7feu16.to_le_bytes()); // caps low (no CLIENT_MYSQL bit)
        p.push(45); // charset
        p.extend_from_slice(&2u16.to_le_bytes()); // status
        p.extend_from_slice(&0x81bfu16.to_le_bytes()); // caps high
        p.push(21); // auth data length
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&0x1du32.to_le_bytes()); // MariaDB extended caps
        p.extend_from_slice(&[0; 12]);
        p.push(0);
        p.extend_from_slice(b"mysql_native_password\0");
        p
    }

    #[test]
    fn greeting_edit_strips_capabilities_and_mariadb_extensions() {
        let mut g = mariadb_greeting();
        let original_len = g.len();
        let strip = CapabilityFlags::CLIENT_SSL | CapabilityFlags::CLIENT_COMPRESS;
        let greeting = edit_greeting(&mut g, strip).expect("greeting");
        assert_eq!(g.len(), original_len);
        assert_eq!(
            greeting.capabilities & CapabilityFlags::CLIENT_SSL.bits(),
            0
        );
        assert_eq!(
            greeting.capabilities & CapabilityFlags::CLIENT_COMPRESS.bits(),
            0
        );
        assert_ne!(
            greeting.capabilities & CapabilityFlags::CLIENT_PROTOCOL_41.bits(),
            0
        );
        assert_eq!(greeting.mariadb_extended, MARIADB_CLIENT_EXTENDED_TYPE_INFO);
        // Parsing the edited packet again gives the same answer.
        assert_eq!(edit_greeting(&mut g, strip), Some(greeting));
    }

    #[test]
    fn greeting_edit_rejects_garbage_without_panicking() {
        for len in 0..mariadb_greeting().len() {
            let mut cut = mariadb_greeting();
            cut.truncate(len);
            let _ = edit_greeting(&mut cut, CapabilityFlags::CLIENT_SSL);
        }
        assert!(edit_greeting(&mut [9, 1, 2], CapabilityFlags::empty()).is_none());
    }

    fn handshake_response(caps: u32, user: &str, db: Option<&str>) -> Vec<u8> {
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&(16u32 << 20).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 19]);
        p.extend_from_slice(&0x1cu32.to_le_bytes());
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(20);
        p.extend_from_slice(&[0xaa; 20]);
        if let Some(db) = db {
            p.extend_from_slice(db.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(b"mysql_native_password\0");
        p
    }

    #[test]
    fn handshake_response_edit_reads_user_and_database() {
        let caps = (CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_CONNECT_WITH_DB
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_LOCAL_FILES)
            .bits();
        let mut p = handshake_response(caps, "app", Some("demo"));
        let login =
            edit_handshake_response(&mut p, CapabilityFlags::CLIENT_LOCAL_FILES).expect("login");
        assert_eq!(login.user, "app");
        assert_eq!(login.database.as_deref(), Some("demo"));
        assert_eq!(
            login.capabilities & CapabilityFlags::CLIENT_LOCAL_FILES.bits(),
            0
        );
        assert_eq!(
            u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
            login.capabilities
        );
        assert_eq!(u32::from_le_bytes([p[28], p[29], p[30], p[31]]), 0x08);
        for len in 0..p.len() {
            let mut cut = p.clone();
            cut.truncate(len);
            let _ = edit_handshake_response(&mut cut, CapabilityFlags::empty());
        }
    }

    #[test]
    fn ok_err_eof_and_terminators() {
        let ok = [0x00, 0x03, 0xfc, 0x10, 0x27, 0x0a, 0x00, 0x01, 0x00];
        let info = parse_ok(&ok).expect("ok");
        assert_eq!((info.affected_rows, info.last_insert_id), (3, 10_000));
        assert!(info.more_results());
        assert_eq!(info.warnings, 1);

        let err = b"\xff\x7a\x04#42S02Table 'x.y' doesn't exist";
        let e = parse_err(err).expect("err");
        assert_eq!(e.code, 1146);
        assert_eq!(e.sql_state.as_deref(), Some("42S02"));
        assert_eq!(e.message, "Table 'x.y' doesn't exist");

        let eof = [0xfe, 0x00, 0x00, 0x40, 0x00];
        assert!(is_row_terminator(&eof, false));
        assert!(terminator_info(&eof, false).cursor_exists());
        let row_starting_with_fe = [0xfe; 9];
        assert!(!is_row_terminator(&row_starting_with_fe, false));
        assert!(is_row_terminator(&[0xfe, 0, 0, 2, 0, 0, 0], true));
    }

    #[test]
    fn column_names_and_prepare_ok() {
        let mut def = Vec::new();
        for field in [&b"def"[..], b"demo", b"c", b"customers", b"e", b"email"] {
            def.push(u8::try_from(field.len()).expect("short"));
            def.extend_from_slice(field);
        }
        assert_eq!(column_name(&def).as_deref(), Some("e"));
        assert_eq!(column_name(&def[..3]), None);

        let prepare = [
            0x00, 0x01, 0, 0, 0, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            parse_prepare_ok(&prepare),
            Some(PrepareOk {
                statement_id: 1,
                columns: 2,
                params: 3,
                warnings: 0
            })
        );
    }

    #[test]
    fn column_definitions_with_and_without_extended_type_info() {
        let mut names = Vec::new();
        for field in [&b"def"[..], b"demo", b"c", b"customers", b"e", b"email"] {
            names.push(u8::try_from(field.len()).expect("short"));
            names.extend_from_slice(field);
        }
        let mut fixed = vec![0x0c];
        fixed.extend_from_slice(&45u16.to_le_bytes());
        fixed.extend_from_slice(&400u32.to_le_bytes());
        fixed.push(0xfd);
        fixed.extend_from_slice(&0x1001u16.to_le_bytes());
        fixed.extend_from_slice(&[0, 0, 0]);
        let expected = ColumnDefinition {
            schema: b"demo",
            table: b"c",
            org_table: b"customers",
            name: b"e",
            org_name: b"email",
            charset: 45,
            length: 400,
            column_type: 0xfd,
            flags: 0x1001,
            decimals: 0,
        };
        let plain = [&names[..], &fixed].concat();
        assert_eq!(parse_column_definition(&plain), Some(expected));
        // MariaDB extended type info: empty, and a 12-byte one (as long as the fixed part).
        let empty_ext = [&names[..], &[0], &fixed].concat();
        assert_eq!(parse_column_definition(&empty_ext), Some(expected));
        let long_ext = [&names[..], &[12], b"\x00\x04json\x01\x05abcd", &fixed].concat();
        assert_eq!(parse_column_definition(&long_ext), Some(expected));
        // COM_FIELD_LIST: a default value after the fixed part.
        let field_list = [&plain[..], b"\x03abc"].concat();
        assert_eq!(parse_column_definition(&field_list), Some(expected));
        for len in 0..plain.len() {
            assert_eq!(parse_column_definition(&plain[..len]), None, "cut at {len}");
        }
    }

    #[test]
    fn lenenc_forms() {
        assert_eq!(Reader::new(&[0xfa]).lenenc(), Some(250));
        assert_eq!(Reader::new(&[0xfc, 0x01, 0x02]).lenenc(), Some(0x0201));
        assert_eq!(Reader::new(&[0xfd, 1, 2, 3]).lenenc(), Some(0x03_0201));
        assert_eq!(
            Reader::new(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 0]).lenenc(),
            Some(1)
        );
        assert_eq!(Reader::new(&[0xfb]).lenenc(), None);
        assert_eq!(Reader::new(&[0xfe, 1]).lenenc(), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use crate::protocol::ErrPacket;

        fn lenenc(n: u64) -> Vec<u8> {
            match n {
                0..=0xfa => vec![u8::try_from(n).unwrap_or(0)],
                0xfb..=0xffff => [&[0xfc][..], &n.to_le_bytes()[..2]].concat(),
                0x1_0000..=0xff_ffff => [&[0xfd][..], &n.to_le_bytes()[..3]].concat(),
                _ => [&[0xfe][..], &n.to_le_bytes()[..]].concat(),
            }
        }

        proptest! {
            #[test]
            fn lenenc_round_trips(n in any::<u64>()) {
                let bytes = lenenc(n);
                let mut r = Reader::new(&bytes);
                prop_assert_eq!(r.lenenc(), Some(n));
                prop_assert!(r.rest().is_empty());
            }

            #[test]
            fn ok_packets_round_trip(affected in any::<u64>(), id in any::<u64>(), status in any::<u16>(), warnings in any::<u16>()) {
                let mut p = vec![0x00];
                p.extend(lenenc(affected));
                p.extend(lenenc(id));
                p.extend(status.to_le_bytes());
                p.extend(warnings.to_le_bytes());
                prop_assert_eq!(parse_ok(&p), Some(OkInfo { affected_rows: affected, last_insert_id: id, status, warnings }));
            }

            #[test]
            fn err_packets_we_send_parse_back(code in any::<u16>(), message in "[ -~]{0,200}") {
                let payload = ErrPacket::new(code, message.clone()).with_sql_state(*b"42S02").payload(true);
                let parsed = parse_err(&payload).expect("our own ERR parses");
                prop_assert_eq!(parsed.code, code);
                prop_assert_eq!(parsed.sql_state.as_deref(), Some("42S02"));
                prop_assert_eq!(parsed.message, message);
            }

            #[test]
            fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = parse_ok(&bytes);
                let _ = parse_eof(&bytes);
                let _ = parse_err(&bytes);
                let _ = column_name(&bytes);
                let _ = parse_column_definition(&bytes);
                let _ = parse_prepare_ok(&bytes);
                let _ = is_row_terminator(&bytes, true);
                let _ = requests_tls(&bytes);
                let _ = edit_greeting(&mut bytes.clone(), CapabilityFlags::CLIENT_SSL);
                let _ = edit_handshake_response(&mut bytes.clone(), CapabilityFlags::CLIENT_SSL);
            }
        }
    }
}
