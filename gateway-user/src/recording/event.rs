//! Recorded events: versioned JSON documents, one per line in the store.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Version of the event schema written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// Unique id of this event (`UUIDv7`), so consumers can drop duplicates.
    pub id: Uuid,
    /// The session the event belongs to (`UUIDv7`: sorts by start time).
    pub session_id: Uuid,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// Body of `session.login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEvent {
    /// 1-based position in the session.
    pub seq: u64,
    /// Command kind (`query`, `stmt_prepare`, `stmt_execute`, `init_db`, `ping`, ...).
    pub command: String,
    /// Exact SQL text (for executes: the text it was prepared from), truncated at 64 KiB.
    pub sql: Option<String>,
    /// Prepared statement id, for prepare/execute/close/fetch.
    pub statement_id: Option<u32>,
    /// When the command arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// From command to the last packet of the response, in microseconds.
    pub duration_us: u64,
    /// Result sets returned.
    pub result_sets: u32,
    /// Column names (aliases) of the result sets, at most 256.
    pub columns: Vec<String>,
    /// Total columns.
    pub column_count: u64,
    /// Rows returned.
    pub rows: u64,
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
}

/// A client file sent to the database for `LOAD DATA LOCAL INFILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalInfile {
    /// The file name the database asked for (as the statement named it).
    pub file: String,
    /// Bytes of file contents the client sent (0 when it refused or could not read it).
    pub bytes: u64,
}

/// An error answered to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementError {
    /// MySQL error code.
    pub code: u16,
    /// SQLSTATE, when sent.
    pub sql_state: Option<String>,
    /// Message.
    pub message: String,
}

/// Body of `session.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Kernel-attested identity of the connecting process (from the `cgroup/connect*` programs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
            }),
        );
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json["type"], "session.ended");
        assert_eq!(json["reason"], "upstream_unreachable");
        assert_eq!(json["v"], 1);
        let back: RecordedEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }
}
