//! Recorded events: versioned JSON documents, one per line in the store.
//!
//! The documents are described by a JSON Schema generated from these types ([`schema`]),
//! committed at `docs/recording/event.schema.json` (a unit test keeps it in step). Versioning:
//! fields added in a backward-compatible way keep [`SCHEMA_VERSION`] (readers take a missing
//! field as its default); a change that breaks readers bumps it. Version 2 added the statement's
//! database, nanosecond times, parameters, result columns and rows, `session.started`'s TLS,
//! and the `gap` event; version 1 documents still read.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Version of the event schema written by this build.
pub const SCHEMA_VERSION: u32 = 2;

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// Unique id of this event (`UUIDv7`), so consumers can drop duplicates.
    pub id: Uuid,
    /// The session the event belongs to (`UUIDv7`: sorts by start time).
    pub session_id: Uuid,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub time: OffsetDateTime,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// 1-based position of the event in its session's hash chain (set by the writer; see
    /// [`super::chain`]). Absent in events recorded before tamper evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_seq: Option<u64>,
    /// Hex SHA-256 of the previous event of the session exactly as stored (its line without
    /// the newline); 64 zeros for the first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    /// `session.ended` only: hex SHA-256 of this line without its `chain_head` and `signature`
    /// members, i.e. the head of the whole chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<String>,
    /// `session.ended` only, when the gateway has a signing key: hex ed25519 signature over
    /// [`super::chain::signed_message`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum EventKind {
    /// A client connection was accepted and its target resolved.
    #[serde(rename = "session.started")]
    SessionStarted(SessionStarted),
    /// The client logged in to the database (or was refused).
    #[serde(rename = "session.login")]
    Login(LoginEvent),
    /// One command and what the database answered.
    #[serde(rename = "statement")]
    Statement(StatementEvent),
    /// The session is over.
    #[serde(rename = "session.ended")]
    SessionEnded(SessionEnded),
    /// Events of the session were lost before they reached the recording (the gateway
    /// records what it lost as soon as it can again).
    #[serde(rename = "gap")]
    Gap(GapEvent),
    /// A statement a guardrail holds for approval was put to the approvers.
    #[serde(rename = "approval.requested")]
    ApprovalRequested(crate::approvals::ApprovalRequest),
    /// An approver approved or denied a held statement.
    #[serde(rename = "approval.decided")]
    ApprovalDecided(crate::approvals::ApprovalDecided),
}

/// Body of `gap`: events the gateway could not record, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GapEvent {
    /// Events lost (of every type).
    pub lost_events: u64,
    /// `statement` events among them.
    pub lost_statements: u64,
    /// `seq` of the first lost statement, when statements were lost.
    #[serde(default)]
    pub first_seq: Option<u64>,
    /// `seq` of the last lost statement, when statements were lost.
    #[serde(default)]
    pub last_seq: Option<u64>,
    /// When the first lost event happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub from: OffsetDateTime,
    /// When the last lost event happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub to: OffsetDateTime,
    /// Why they were lost.
    pub reason: GapReason,
}

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The on-disk spool in front of a sink was full.
    SpoolFull,
    /// The in-memory queue between sessions and the writer was full.
    QueueFull,
    /// The writer had stopped (a sink or the store failed).
    WriterStopped,
}

/// Body of `session.login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LoginEvent {
    /// The MySQL user name the client logged in as.
    pub user: String,
    /// The database account the gateway logged in with, when it terminated the login (the
    /// client's own login is relayed otherwise).
    pub upstream_user: Option<String>,
    /// The initial database, if any.
    pub database: Option<String>,
    /// Whether the database accepted the login.
    pub accepted: bool,
    /// The database's error code when it refused.
    pub error_code: Option<u16>,
    /// The database's error message when it refused (never contains the password).
    pub error_message: Option<String>,
    /// The connection attributes the client sent (`_client_name`, `_pid`, `program_name`, ...),
    /// when the gateway terminated the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_attributes: Option<std::collections::BTreeMap<String, String>>,
    /// The identity the client proved to the gateway (source, subject, issuer, groups), when
    /// the gateway terminated the login and accepted it; never the password or token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::identity::Identity>,
    /// The policy decision (`[[targets.allow]]`): the rule and account, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::Decision>,
    /// The kernel-attested identity of the local process, when the target allows kernel
    /// identities and the client also proved another one (both are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_identity: Option<crate::identity::Identity>,
}

/// Body of `statement`: one command and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatementEvent {
    /// 1-based position in the session.
    pub seq: u64,
    /// Command kind (`query`, `stmt_prepare`, `stmt_execute`, `init_db`, `ping`, ...).
    pub command: String,
    /// Exact SQL text (for executes: the text it was prepared from), truncated at 64 KiB.
    pub sql: Option<String>,
    /// Prepared statement id, for prepare/execute/close/fetch.
    pub statement_id: Option<u32>,
    /// The session's current database when the command ran (`null`: none selected). Absent
    /// in version 1 documents.
    #[serde(default)]
    pub database: Option<String>,
    /// When the command arrived.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub started_at: OffsetDateTime,
    /// When the command arrived, in nanoseconds since the Unix epoch (0 in version 1).
    #[serde(default)]
    pub started_at_ns: u64,
    /// When the last packet of the response went to the client, in nanoseconds since the
    /// Unix epoch (0 in version 1).
    #[serde(default)]
    pub ended_at_ns: u64,
    /// From command to the last packet of the response, in nanoseconds (0 in version 1).
    #[serde(default)]
    pub duration_ns: u64,
    /// From command to the last packet of the response, in microseconds.
    pub duration_us: u64,
    /// `stmt_execute`: the bound parameters, in order (at most 1024; see
    /// `params_truncated`). Absent for other commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<Param>>,
    /// True when the statement has more parameters than `params` holds.
    #[serde(default, skip_serializing_if = "is_false")]
    pub params_truncated: bool,
    /// Result sets returned.
    pub result_sets: u32,
    /// Column names (aliases) of the result sets, at most 256.
    pub columns: Vec<String>,
    /// Total columns.
    pub column_count: u64,
    /// The result sets: their column definitions and first rows, as the client received
    /// them (after masking, once the policy masks). `stmt_fetch` records the fetched rows in
    /// one result set without column definitions (they came with the execute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub result: Vec<ResultSet>,
    /// Rows returned (all of them, recorded or not).
    pub rows: u64,
    /// Bytes of row data returned (row packet payloads, all of them, recorded or not).
    #[serde(default)]
    pub row_bytes: u64,
    /// True when `result` lacks some of the rows or values returned: the per-statement caps
    /// (rows, bytes of row data, 256 columns) cut them.
    #[serde(default)]
    pub rows_truncated: bool,
    /// Rows changed.
    pub affected_rows: u64,
    /// Last insert id, when set.
    pub last_insert_id: Option<u64>,
    /// Warnings.
    pub warnings: u64,
    /// The error, when the command failed.
    pub error: Option<StatementError>,
    /// `LOAD DATA LOCAL INFILE`: the file the database asked the client for and the bytes the
    /// client sent (the contents are not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_infile: Option<LocalInfile>,
    /// What the guardrails (`[[guardrails]]`) decided: flagged, or blocked (then the command
    /// never reached the database and `error` is the gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::guard::GuardDecision>,
    /// The rate guardrail (`[[rate_limits]]`) the statement ran into: delayed, or refused
    /// (then `error` is the gateway's 1226).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::guard::rate::RateLimitHit>,
    /// Cells of the result the gateway masked (`[[masking]]`); the rows above hold the masked
    /// values only. Absent when none were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub masked_cells: u64,
}

impl Default for StatementEvent {
    /// An empty statement at the Unix epoch (for tests and builders: set what matters).
    fn default() -> Self {
        Self {
            seq: 0,
            command: String::new(),
            sql: None,
            statement_id: None,
            database: None,
            started_at: OffsetDateTime::UNIX_EPOCH,
            started_at_ns: 0,
            ended_at_ns: 0,
            duration_ns: 0,
            duration_us: 0,
            params: None,
            params_truncated: false,
            result_sets: 0,
            columns: Vec::new(),
            column_count: 0,
            result: Vec::new(),
            rows: 0,
            row_bytes: 0,
            rows_truncated: false,
            affected_rows: 0,
            last_insert_id: None,
            warnings: 0,
            error: None,
            local_infile: None,
            guard: None,
            rate_limit: None,
            masked_cells: 0,
        }
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(value: &bool) -> bool {
    !*value
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One bound parameter of a `stmt_execute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Param {
    /// The type the client bound (`LONGLONG`, `VAR_STRING`, `BLOB`, `DATETIME` ...; `UNKNOWN`
    /// when the client sent no types and none were remembered for the statement).
    #[serde(rename = "type")]
    pub param_type: String,
    /// True when the client bound it as unsigned.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unsigned: bool,
    /// True when the value was sent before the execute with `COM_STMT_SEND_LONG_DATA`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub long_data: bool,
    /// The value.
    pub value: RecordedValue,
}

/// One result set of a statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResultSet {
    /// Column definitions, in order (at most 256 per statement, across its result sets).
    pub columns: Vec<Column>,
    /// Columns the result set has.
    pub column_count: u64,
    /// The rows recorded, each a list of values in column order (at most 256 values).
    pub rows: Vec<Vec<RecordedValue>>,
    /// Rows the result set returned (recorded or not).
    pub row_count: u64,
}

/// A column definition as the database sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Column {
    /// Name (alias) in the query.
    pub name: String,
    /// The column's own name.
    pub org_name: String,
    /// Table (alias) in the query.
    pub table: String,
    /// The table's own name.
    pub org_table: String,
    /// Database of the table.
    pub schema: String,
    /// Field type without `MYSQL_TYPE_` (`LONGLONG`, `VAR_STRING`, `NEWDECIMAL`, `BLOB` ...).
    #[serde(rename = "type")]
    pub column_type: String,
    /// Maximum length of the values.
    pub length: u32,
    /// Field flags (`NOT_NULL` 1, `PRI_KEY` 2, `UNSIGNED` 32, `BINARY` 128 ...).
    pub flags: u16,
    /// Decimals, or fractional-second digits.
    pub decimals: u8,
    /// Character set (collation id; 63 is `binary`).
    pub charset: u16,
}

/// A recorded value (of a row, or a parameter).
///
/// Numbers are JSON numbers (binary protocol and parameters; the text protocol sends every
/// value as text, recorded as strings); text is a string; bytes that are not text (binary
/// strings, `BIT`, spatial values) are `{"hex", "bytes"}`. A value cut by a cap keeps its
/// total length in `bytes` (`{"text", "bytes"}` for text). Dates and times are strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RecordedValue {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// An unsigned integer above the signed range.
    UInt(u64),
    /// A floating-point number (non-finite ones are recorded as text).
    Float(f64),
    /// Text, whole.
    Text(String),
    /// Bytes: hex of the first of them, and how many there were.
    Binary {
        /// Lowercase hex of the bytes kept (all of them unless cut).
        hex: String,
        /// Length of the whole value.
        bytes: u64,
    },
    /// Text cut by a cap: its beginning, and the length of the whole value in bytes.
    TruncatedText {
        /// The beginning of the text.
        text: String,
        /// Length of the whole value, in bytes.
        bytes: u64,
    },
    /// The packet did not decode here (the value and those after it in the packet).
    Malformed {
        /// Always true.
        malformed: bool,
    },
}

/// A client file sent to the database for `LOAD DATA LOCAL INFILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalInfile {
    /// The file name the database asked for (as the statement named it).
    pub file: String,
    /// Bytes of file contents the client sent (0 when it refused or could not read it).
    pub bytes: u64,
}

/// An error answered to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatementError {
    /// MySQL error code.
    pub code: u16,
    /// SQLSTATE, when sent.
    pub sql_state: Option<String>,
    /// Message.
    pub message: String,
}

/// Body of `session.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStarted {
    /// Gateway instance that served the session (`host/pid`).
    pub gateway: String,
    /// The client's address as the gateway's listener saw it.
    pub client_addr: SocketAddr,
    /// The connecting process, when the connection was redirected by the kernel.
    pub process: Option<ProcessInfo>,
    /// Name of the target from the configuration.
    pub target: String,
    /// Where the client was connecting to, when redirected.
    pub original_destination: Option<SocketAddr>,
    /// What the gateway dialed.
    pub upstream: String,
    /// The gateway's local address on the upstream connection (what the database sees).
    pub upstream_local_addr: Option<SocketAddr>,
    /// TLS on the two legs, once the legs are set up (absent when the database could not be
    /// reached or the login failed, and in version 1 documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// How the connection reached the gateway: steered by the kernel from a local process
    /// (`local`) or from a routed flow (`routed`); absent when the client dialed the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering: Option<Steering>,
}

/// How a connection was steered into the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Steering {
    /// A process on this host, redirected at `connect()` by the cgroup programs; the recording
    /// carries the process.
    Local,
    /// A flow routed through this host, handed over by the TC program; the recording carries
    /// the client host's address and port (`client_addr`).
    Routed,
}

/// TLS on the two legs of a session; a leg without TLS is `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsInfo {
    /// Between the client and the gateway.
    #[serde(default)]
    pub client: Option<TlsLeg>,
    /// Between the gateway and the database.
    #[serde(default)]
    pub upstream: Option<TlsLeg>,
}

/// What one leg's TLS negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsLeg {
    /// Protocol version (`TLSv1.3`, `TLSv1.2`).
    pub version: String,
    /// Cipher suite (IANA name, e.g. `TLS13_AES_256_GCM_SHA384`).
    pub cipher: String,
}

impl TlsLeg {
    /// What a rustls connection negotiated; `None` before its handshake finished.
    #[must_use]
    pub fn of(connection: &rustls::CommonState) -> Option<Self> {
        let version = match connection.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
            other => format!("{other:?}"),
        };
        let suite = connection.negotiated_cipher_suite()?.suite();
        let cipher = suite
            .as_str()
            .map_or_else(|| format!("{suite:?}"), str::to_owned);
        Some(Self { version, cipher })
    }
}

/// Kernel-attested identity of the connecting process (from the `cgroup/connect*` programs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessInfo {
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id that called `connect()`.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Command name (`comm`).
    pub comm: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// cgroup v2 path of the process when the gateway accepted the connection (from
    /// `/proc/PID/cgroup`; absent when the process had already gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    /// The container the process runs in, when its cgroup path names one (Docker, containerd,
    /// CRI-O, Podman: a 64-hex-digit id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

impl ProcessInfo {
    /// Fills in the cgroup path and container id from `/proc/PID/cgroup`.
    pub fn resolve_cgroup(&mut self) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid)) else {
            return;
        };
        // The unified (v2) hierarchy's line is "0::/path".
        let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
            return;
        };
        self.container_id = container_id(path);
        self.cgroup_path = Some(path.to_owned());
    }
}

/// The 64-hex-digit container id in a cgroup path (`docker-ID.scope`, `/docker/ID`,
/// `cri-containerd-ID.scope`, `crio-ID.scope`, `libpod-ID.scope`), if any.
#[must_use]
pub fn container_id(cgroup_path: &str) -> Option<String> {
    cgroup_path.split('/').rev().find_map(|segment| {
        let segment = segment.strip_suffix(".scope").unwrap_or(segment);
        let id = segment.rsplit('-').next().unwrap_or(segment);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

/// Body of `session.ended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionEnded {
    /// Why it ended.
    pub reason: EndReason,
    /// Detail for errors (never a credential).
    pub detail: Option<String>,
    /// Bytes relayed client -> database, when known.
    pub bytes_from_client: Option<u64>,
    /// Bytes relayed database -> client, when known.
    pub bytes_from_upstream: Option<u64>,
    /// Session length in milliseconds.
    pub duration_ms: u64,
    /// Commands the client sent after logging in (each recorded as a `statement`, unless a
    /// `gap` says it was lost), when the session got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<u64>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Both sides closed normally.
    Closed,
    /// The target could not be reached; the client got error 1429.
    UpstreamUnreachable,
    /// The database refused the login.
    LoginRefused,
    /// A read or write failed on one of the legs.
    Error,
    /// The gateway shut down while the session was live.
    Shutdown,
    /// An operator ended it (`tollgate sessions kill`); the detail says who and why.
    Killed,
}

impl RecordedEvent {
    /// A new event of `kind` for `session_id`, stamped now.
    #[must_use]
    pub fn now(session_id: Uuid, kind: EventKind) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            session_id,
            time: OffsetDateTime::now_utc(),
            kind,
            chain_seq: None,
            prev_hash: None,
            chain_head: None,
            signature: None,
        }
    }
}

/// The JSON Schema (draft 2020-12) of a recorded event, generated from these types.
#[must_use]
pub fn schema() -> schemars::Schema {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<RecordedEvent>();
    schema.insert(
        "$id".into(),
        "https://tollgate.invalid/recording/event.schema.json".into(),
    );
    schema.insert(
        "title".into(),
        format!("Tollgate recorded event (v {SCHEMA_VERSION})").into(),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_type_tag_and_round_trip() {
        let event = RecordedEvent::now(
            Uuid::now_v7(),
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::UpstreamUnreachable,
                detail: Some("connection refused".into()),
                bytes_from_client: None,
                bytes_from_upstream: None,
                duration_ms: 3,
                statements: None,
            }),
        );
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json["type"], "session.ended");
        assert_eq!(json["reason"], "upstream_unreachable");
        assert_eq!(json["v"], SCHEMA_VERSION);
        let back: RecordedEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }

    /// A `statement` line as version 1 wrote it.
    const V1_STATEMENT: &str = r#"{"v":1,"id":"01960000-0000-7000-8000-000000000001","session_id":"01960000-0000-7000-8000-000000000002","time":"2025-04-01T10:00:00.5Z","type":"statement","seq":3,"command":"query","sql":"SELECT 1","statement_id":null,"started_at":"2025-04-01T10:00:00.4Z","duration_us":120,"result_sets":1,"columns":["1"],"column_count":1,"rows":1,"affected_rows":0,"last_insert_id":null,"warnings":0,"error":null,"chain_seq":4,"prev_hash":"00"}"#;

    #[test]
    fn version_1_statements_still_read() {
        let event: RecordedEvent = serde_json::from_str(V1_STATEMENT).expect("v1 reads");
        assert_eq!(event.v, 1);
        let EventKind::Statement(st) = event.kind else {
            panic!("statement")
        };
        assert_eq!((st.seq, st.rows, st.duration_us), (3, 1, 120));
        assert_eq!(st.columns, ["1"]);
        assert_eq!(st.database, None);
        assert_eq!(
            (st.started_at_ns, st.ended_at_ns, st.duration_ns),
            (0, 0, 0)
        );
        assert_eq!(st.params, None);
        assert!(st.result.is_empty() && !st.rows_truncated && st.row_bytes == 0);
        let v1_started = r#"{"v":1,"id":"01960000-0000-7000-8000-000000000003","session_id":"01960000-0000-7000-8000-000000000002","time":"2025-04-01T10:00:00Z","type":"session.started","gateway":"h/1","client_addr":"127.0.0.1:5000","process":null,"target":"db","original_destination":null,"upstream":"127.0.0.1:3306","upstream_local_addr":null}"#;
        let event: RecordedEvent = serde_json::from_str(v1_started).expect("v1 reads");
        let EventKind::SessionStarted(started) = event.kind else {
            panic!("session.started")
        };
        assert_eq!(started.tls, None);
    }

    #[test]
    fn statement_fields_serialize_as_documented() {
        let mut event: RecordedEvent = serde_json::from_str(V1_STATEMENT).expect("v1 reads");
        let EventKind::Statement(st) = &mut event.kind else {
            panic!("statement")
        };
        st.database = Some("demo".into());
        st.started_at_ns = 1_743_501_600_400_000_000;
        st.duration_ns = 120_500;
        st.ended_at_ns = st.started_at_ns + st.duration_ns;
        st.params = Some(vec![
            Param {
                param_type: "LONGLONG".into(),
                unsigned: false,
                long_data: false,
                value: RecordedValue::Int(7),
            },
            Param {
                param_type: "BLOB".into(),
                unsigned: false,
                long_data: true,
                value: RecordedValue::Binary {
                    hex: "00ff".into(),
                    bytes: 9000,
                },
            },
        ]);
        st.result = vec![ResultSet {
            columns: vec![Column {
                name: "1".into(),
                org_name: String::new(),
                table: String::new(),
                org_table: String::new(),
                schema: String::new(),
                column_type: "LONGLONG".into(),
                length: 1,
                flags: 129,
                decimals: 0,
                charset: 63,
            }],
            column_count: 1,
            rows: vec![vec![RecordedValue::Text("1".into())]],
            row_count: 1,
        }];
        st.row_bytes = 2;
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json["database"], "demo");
        assert_eq!(json["ended_at_ns"], 1_743_501_600_400_120_500_u64);
        assert_eq!(
            json["params"][0],
            serde_json::json!({"type": "LONGLONG", "value": 7})
        );
        assert_eq!(
            json["params"][1],
            serde_json::json!({"type": "BLOB", "long_data": true, "value": {"hex": "00ff", "bytes": 9000}})
        );
        assert_eq!(json["result"][0]["columns"][0]["type"], "LONGLONG");
        assert_eq!(json["result"][0]["rows"], serde_json::json!([["1"]]));
        assert_eq!(json["rows"], 1);
        assert_eq!(json["rows_truncated"], false);
        let back: RecordedEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }

    #[test]
    fn gap_and_tls_round_trip() {
        let gap = RecordedEvent::now(
            Uuid::now_v7(),
            EventKind::Gap(GapEvent {
                lost_events: 5,
                lost_statements: 4,
                first_seq: Some(10),
                last_seq: Some(13),
                from: OffsetDateTime::UNIX_EPOCH,
                to: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1),
                reason: GapReason::SpoolFull,
            }),
        );
        let json = serde_json::to_value(&gap).expect("serialize");
        assert_eq!(json["type"], "gap");
        assert_eq!(json["reason"], "spool_full");
        assert_eq!(json["to"], "1970-01-01T00:00:01Z");
        assert_eq!(
            serde_json::from_value::<RecordedEvent>(json).expect("read"),
            gap
        );

        let tls = TlsInfo {
            client: Some(TlsLeg {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
            }),
            upstream: None,
        };
        let json = serde_json::to_value(&tls).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"client": {"version": "TLSv1.3", "cipher": "TLS13_AES_256_GCM_SHA384"}, "upstream": null})
        );
        assert_eq!(
            serde_json::from_str::<TlsInfo>("{}").expect("defaults"),
            TlsInfo::default()
        );
    }

    /// The committed schema, next to the recording docs.
    fn schema_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/recording/event.schema.json")
    }

    #[test]
    fn event_schema_matches_the_committed_file() {
        let generated = serde_json::to_string_pretty(&schema()).expect("schema serializes") + "\n";
        let path = schema_path();
        if std::env::var_os("TOLLGATE_UPDATE_SCHEMA").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).expect("write the schema");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} differs from what the event types generate; run \
             `TOLLGATE_UPDATE_SCHEMA=1 cargo test -p gateway-user schema` to regenerate it \
             (and review the diff: a breaking change bumps SCHEMA_VERSION)",
            path.display()
        );
    }

    #[test]
    fn schema_is_draft_2020_12_and_names_every_event_type() {
        let schema = serde_json::to_value(schema()).expect("json");
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let text = schema.to_string();
        for kind in [
            "session.started",
            "session.login",
            "statement",
            "session.ended",
            "gap",
        ] {
            assert!(
                text.contains(&format!("\"{kind}\"")),
                "{kind} in the schema"
            );
        }
    }
}
