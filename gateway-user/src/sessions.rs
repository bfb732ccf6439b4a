//! `tollgate sessions`: reading recorded sessions back from the embedded store.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use uuid::Uuid;

use crate::recording::{EventKind, RecordedEvent, SessionEnded, SessionStarted, Store, StoreError};

/// A session as reassembled from its events.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    /// Session id.
    pub id: Uuid,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The `session.started` body, if recorded.
    pub started: Option<SessionStarted>,
    /// The `session.ended` body, if the session is over.
    pub ended: Option<SessionEnded>,
    /// The MySQL user it logged in as.
    pub user: Option<String>,
    /// Commands recorded.
    pub statements: u64,
}

/// Reads the store at `dir` and groups its events by session, oldest first.
pub fn list(dir: &Path) -> Result<(Vec<SessionSummary>, usize), StoreError> {
    let (events, skipped) = Store::read_all(dir)?;
    Ok((summarize(events), skipped))
}

fn summarize(events: Vec<RecordedEvent>) -> Vec<SessionSummary> {
    let mut sessions: BTreeMap<Uuid, SessionSummary> = BTreeMap::new();
    for event in events {
        let entry = sessions
            .entry(event.session_id)
            .or_insert_with(|| SessionSummary {
                id: event.session_id,
                started_at: event
                    .time
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                started: None,
                ended: None,
                user: None,
                statements: 0,
            });
        match event.kind {
            EventKind::SessionStarted(started) => entry.started = Some(started),
            EventKind::SessionEnded(ended) => entry.ended = Some(ended),
            EventKind::Login(login) => entry.user = Some(login.user),
            EventKind::Statement(_) => entry.statements += 1,
        }
    }
    sessions.into_values().collect()
}

/// Renders sessions as a plain-text table.
#[must_use]
pub fn render_table(sessions: &[SessionSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<30}  {:<12}  {:<12}  {:<22}  {:<28}  {:>5}  {:>8}  {:>10}  END",
        "SESSION", "STARTED", "TARGET", "USER", "CLIENT", "PROCESS", "STMTS", "MS", "BYTES"
    );
    for session in sessions {
        let (target, client, process) = session.started.as_ref().map_or_else(
            || ("?".to_owned(), "?".to_owned(), "-".to_owned()),
            |s| {
                let process = s.process.as_ref().map_or_else(
                    || "- (direct)".to_owned(),
                    |p| format!("{} pid={} uid={}", p.comm, p.pid, p.uid),
                );
                (s.target.clone(), s.client_addr.to_string(), process)
            },
        );
        let (ms, bytes, end) = session.ended.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned(), "live".to_owned()),
            |e| {
                let bytes = match (e.bytes_from_client, e.bytes_from_upstream) {
                    (Some(up), Some(down)) => format!("{}", up + down),
                    _ => "-".to_owned(),
                };
                let end = serde_json::to_value(e.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                (e.duration_ms.to_string(), bytes, end)
            },
        );
        let _ = writeln!(
            out,
            "{:<36}  {:<30}  {:<12}  {:<12}  {:<22}  {:<28}  {:>5}  {:>8}  {:>10}  {}",
            session.id,
            session.started_at,
            target,
            session.user.as_deref().unwrap_or("-"),
            client,
            process,
            session.statements,
            ms,
            bytes,
            end
        );
    }
    out
}
