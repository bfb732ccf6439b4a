//! Synthetic sessions for the index's unit tests and benchmark (`cargo xtask bench --only
//! index`): realistic events without a gateway.

use std::net::SocketAddr;

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{
    identity::{Identity, IdentitySource},
    recording::{
        EndReason, EventKind, LoginEvent, RecordedEvent, SessionEnded, SessionStarted,
        StatementEvent, event::StatementError,
    },
};

/// Users the synthetic sessions are spread over (session `n` is `USERS[n % len]`).
pub const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
/// Targets the synthetic sessions are spread over (session `n` is `TARGETS[n % len]`).
pub const TARGETS: &[&str] = &["orders", "billing", "reports"];

/// What synthetic session `n` is like: who, where, when and which statements.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// Its number.
    pub n: u64,
    /// When it starts.
    pub start: OffsetDateTime,
    /// The MySQL user (and identity name).
    pub user: String,
    /// Its identity's groups.
    pub groups: Vec<String>,
    /// Its target.
    pub target: String,
    /// Its statements' SQL, in order.
    pub sql: Vec<String>,
    /// Whether the last statement failed.
    pub last_fails: bool,
    /// Whether it has ended.
    pub ended: bool,
}

impl Synthetic {
    /// Session `n` of a run that starts at `base`, one session a second: a few selects, every
    /// 10th an update, every 50th a delete, every 100th a DDL and a failure; each names an
    /// order number (`order-{n}`) so a search can find one session among many.
    #[must_use]
    pub fn nth(n: u64, base: OffsetDateTime) -> Self {
        let user = USERS[usize::try_from(n).unwrap_or(0) % USERS.len()];
        let target = TARGETS[usize::try_from(n).unwrap_or(0) % TARGETS.len()];
        let mut sql = vec![
            format!("SELECT * FROM orders WHERE reference = 'order-{n}'"),
            format!(
                "SELECT customer, total FROM invoices WHERE customer_id = {}",
                n % 997
            ),
        ];
        if n.is_multiple_of(10) {
            sql.push(format!(
                "UPDATE orders SET status = 'shipped' WHERE id = {n}"
            ));
        }
        if n.is_multiple_of(50) {
            sql.push(format!("DELETE FROM carts WHERE order_id = {n}"));
        }
        if n.is_multiple_of(100) {
            sql.push(format!("ALTER TABLE audit_{n} ADD COLUMN note TEXT"));
        }
        Self {
            n,
            start: base + Duration::seconds(i64::try_from(n).unwrap_or(0)),
            user: user.to_owned(),
            groups: vec![format!("team-{}", n % 5), "everyone".to_owned()],
            target: target.to_owned(),
            sql,
            last_fails: n.is_multiple_of(100),
            ended: true,
        }
    }

    /// Its session id: a `UUIDv7` of its start (so ids sort by start) and its number, the same
    /// at every call.
    #[must_use]
    pub fn id(&self) -> Uuid {
        let millis = u64::try_from(self.start.unix_timestamp()).unwrap_or(0) * 1000;
        let mut tail = [0_u8; 10];
        tail[2..].copy_from_slice(&self.n.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
    }

    /// Its events, in order: started, login, statements, ended (when it has).
    #[must_use]
    pub fn events(&self) -> Vec<RecordedEvent> {
        let session_id = self.id();
        let mut at = self.start;
        let event = |kind: EventKind, at: OffsetDateTime| RecordedEvent {
            time: at,
            ..RecordedEvent::now(session_id, kind)
        };
        let client: SocketAddr = ([10, 0, 0, 1], 40_000).into();
        let mut events = vec![
            event(
                EventKind::SessionStarted(SessionStarted {
                    gateway: "synthetic/1".into(),
                    client_addr: client,
                    process: None,
                    target: self.target.clone(),
                    original_destination: None,
                    upstream: format!("{}:3306", self.target),
                    upstream_local_addr: None,
                    tls: None,
                    steering: None,
                }),
                at,
            ),
            event(
                EventKind::Login(LoginEvent {
                    user: self.user.clone(),
                    upstream_user: Some("app".into()),
                    database: None,
                    accepted: true,
                    error_code: None,
                    error_message: None,
                    client_attributes: None,
                    identity: Some(Identity {
                        source: IdentitySource::Password,
                        subject: self.user.clone(),
                        name: self.user.clone(),
                        issuer: None,
                        groups: self.groups.clone(),
                    }),
                    policy: None,
                    kernel_identity: None,
                }),
                at,
            ),
        ];
        for (i, sql) in self.sql.iter().enumerate() {
            at += Duration::milliseconds(10);
            let last = i + 1 == self.sql.len();
            events.push(event(
                EventKind::Statement(StatementEvent {
                    seq: i as u64 + 1,
                    command: "query".into(),
                    sql: Some(sql.clone()),
                    started_at: at,
                    error: (last && self.last_fails).then(|| StatementError {
                        code: 1146,
                        sql_state: Some("42S02".into()),
                        message: "Table doesn't exist".into(),
                    }),
                    ..StatementEvent::default()
                }),
                at,
            ));
        }
        if self.ended {
            at += Duration::milliseconds(10);
            events.push(event(
                EventKind::SessionEnded(SessionEnded {
                    reason: EndReason::Closed,
                    detail: None,
                    bytes_from_client: Some(100),
                    bytes_from_upstream: Some(1000),
                    duration_ms: 10 * self.sql.len() as u64 + 10,
                    statements: Some(self.sql.len() as u64),
                }),
                at,
            ));
        }
        events
    }
}
