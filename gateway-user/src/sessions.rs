//! `tollgate sessions`: reading recorded sessions back from the embedded store or, through
//! [`Source`], from the Kafka topic ([`kafka`]).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use uuid::Uuid;

use crate::recording::{EventKind, RecordedEvent, SessionEnded, SessionStarted, Store, StoreError};

pub mod export;
pub mod filter;
pub mod kafka;
pub mod progress;
pub mod replay;
pub mod tail;

pub use filter::{Filter, StatementKind, TimeError, parse_time};

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

/// Reads the store at `dir` and groups its events by session, oldest first, keeping the
/// sessions that pass `filter`; the second value counts unreadable lines.
pub fn list(dir: &Path, filter: &Filter) -> Result<(Vec<SessionSummary>, usize), StoreError> {
    let (events, skipped) = progress::read_store(dir)?;
    Ok((list_events(events, filter), skipped))
}

/// Groups `events` by session, oldest first, keeping the sessions that pass `filter`.
#[must_use]
pub fn list_events(events: Vec<RecordedEvent>, filter: &Filter) -> Vec<SessionSummary> {
    if filter.is_empty() {
        return summarize(events);
    }
    let keep: std::collections::BTreeSet<Uuid> = filter.sessions(&events).into_iter().collect();
    let events = events
        .into_iter()
        .filter(|e| keep.contains(&e.session_id))
        .collect();
    summarize(events)
}

/// Where `tollgate sessions` reads events from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The embedded store in this directory.
    Store(PathBuf),
    /// The recording topic, only the messages of a time range.
    Kafka(kafka::KafkaSource, kafka::TimeRange),
}

/// Events read from a [`Source`].
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every event once, in the order read.
    pub events: Vec<RecordedEvent>,
    /// Each event's line as stored (or as shipped), beside [`Loaded::events`].
    pub lines: Vec<Vec<u8>>,
    /// Lines or messages that are not events.
    pub skipped: usize,
    /// Kafka only: what was read from each partition.
    pub partitions: Vec<kafka::PartitionRead>,
}

/// Why a [`Source`] could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The topic could not be read.
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaReadError),
}

impl Source {
    /// Reads every event of the source (duplicates from Kafka dropped by event id).
    pub fn load(&self) -> Result<Loaded, SourceError> {
        let (lines, partitions) = match self {
            Self::Store(dir) => (Store::read_lines(dir)?, Vec::new()),
            Self::Kafka(source, range) => {
                let (messages, partitions) = kafka::read(source, *range)?;
                (
                    messages.into_iter().map(|m| m.payload).collect(),
                    partitions,
                )
            }
        };
        let mut loaded = Loaded {
            partitions,
            ..Loaded::default()
        };
        let mut seen = std::collections::HashSet::new();
        for line in lines {
            match serde_json::from_slice::<RecordedEvent>(&line) {
                Ok(event) => {
                    if seen.insert(event.id) {
                        loaded.events.push(event);
                        loaded.lines.push(line);
                    }
                }
                Err(_) => loaded.skipped += 1,
            }
        }
        Ok(loaded)
    }
}

impl Loaded {
    /// The session `id` (full or a unique prefix) picks: its events and their lines, in order.
    pub fn session(self, id: &str) -> Result<(Vec<RecordedEvent>, Vec<Vec<u8>>), ShowError> {
        let session = pick(self.events.iter().map(|e| e.session_id), id)?;
        Ok(self
            .events
            .into_iter()
            .zip(self.lines)
            .filter(|(e, _)| e.session_id == session)
            .unzip())
    }
}

/// The one session among `ids` whose id starts with `id`.
fn pick(ids: impl Iterator<Item = Uuid>, id: &str) -> Result<Uuid, ShowError> {
    let ids: std::collections::BTreeSet<Uuid> =
        ids.filter(|sid| sid.to_string().starts_with(id)).collect();
    match ids.len() {
        0 => Err(ShowError::Unknown(id.to_owned())),
        1 => ids
            .into_iter()
            .next()
            .ok_or_else(|| ShowError::Unknown(id.to_owned())),
        n => Err(ShowError::Ambiguous(id.to_owned(), n)),
    }
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
            EventKind::Gap(_) | EventKind::ApprovalRequested(_) | EventKind::ApprovalDecided(_) => {
            }
        }
    }
    sessions.into_values().collect()
}

/// Every event of one session, in order; the id may be given in full or as a unique prefix.
pub fn events_of(dir: &Path, id: &str) -> Result<Vec<RecordedEvent>, ShowError> {
    let (events, _) = progress::read_store(dir)?;
    let session = pick(events.iter().map(|e| e.session_id), id)?;
    Ok(events
        .into_iter()
        .filter(|e| e.session_id == session)
        .collect())
}

/// Why `sessions show` could not pick a session.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// No session id starts with this.
    #[error("no recorded session matches {0:?}: `tollgate sessions list` shows the ids")]
    Unknown(String),
    /// Several session ids start with this.
    #[error("{0:?} matches {1} sessions: give more of the id")]
    Ambiguous(String, usize),
}

/// Renders one session's events: a header, then one line per statement.
#[must_use]
pub fn render_session(events: &[RecordedEvent]) -> String {
    let mut out = String::new();
    for event in events {
        match &event.kind {
            EventKind::SessionStarted(s) => {
                let _ = writeln!(out, "session   {}", event.session_id);
                let _ = writeln!(out, "target    {} ({})", s.target, s.upstream);
                let _ = writeln!(out, "client    {}", s.client_addr);
                if let Some(p) = &s.process {
                    let _ = writeln!(
                        out,
                        "process   {} pid={} uid={} gid={} cgroup={}{}{}",
                        p.comm,
                        p.pid,
                        p.uid,
                        p.gid,
                        p.cgroup_id,
                        p.cgroup_path
                            .as_deref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default(),
                        p.container_id
                            .as_deref()
                            .map(|c| format!(" container={}", c.get(..12).unwrap_or(c)))
                            .unwrap_or_default()
                    );
                }
            }
            EventKind::Login(l) => render_login(&mut out, l),
            EventKind::Statement(st) => {
                let result = match &st.error {
                    Some(e) => format!("ERROR {} {}", e.code, e.message),
                    None if st.result_sets > 0 => format!("{} row(s)", st.rows),
                    None => format!("{} affected", st.affected_rows),
                };
                let _ = writeln!(
                    out,
                    "#{:<4} {:>8}us  {:<12}  {:<24}  {}",
                    st.seq,
                    st.duration_us,
                    st.command,
                    result,
                    st.sql.as_deref().unwrap_or("")
                );
            }
            EventKind::ApprovalRequested(r) => {
                let _ = writeln!(
                    out,
                    "approval  {} requested: guardrail '{}', ~{} rows ({}): {}",
                    r.approval_id,
                    r.rule,
                    r.impact
                        .rows
                        .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                    r.impact.detail,
                    r.sql
                );
            }
            EventKind::ApprovalDecided(d) => {
                let _ = writeln!(out, "approval  {}", crate::approvals::decided_line(d));
            }
            EventKind::Gap(g) => {
                let _ = writeln!(
                    out,
                    "gap       {} event(s) lost ({} statement(s){}), {:?}",
                    g.lost_events,
                    g.lost_statements,
                    g.first_seq
                        .zip(g.last_seq)
                        .map(|(first, last)| format!(" #{first}-#{last}"))
                        .unwrap_or_default(),
                    g.reason
                );
            }
            EventKind::SessionEnded(e) => {
                let _ = writeln!(
                    out,
                    "ended     {:?} after {} ms{}",
                    e.reason,
                    e.duration_ms,
                    e.detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    out
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

/// The login lines of `tollgate sessions show`: who, as which account, the identity the client
/// proved and the policy's decision.
fn render_login(out: &mut String, l: &crate::recording::LoginEvent) {
    let _ = writeln!(
        out,
        "login     {}{}{} {}",
        l.user,
        l.upstream_user
            .as_deref()
            .map(|u| format!(" (gateway logged in to the database as {u})"))
            .unwrap_or_default(),
        l.database
            .as_deref()
            .map(|d| format!(" db={d}"))
            .unwrap_or_default(),
        if l.accepted { "accepted" } else { "refused" }
    );
    if let Some(identity) = &l.identity {
        let _ = writeln!(
            out,
            "identity  {} ({:?}, subject {}{}) groups=[{}]",
            identity.name,
            identity.source,
            identity.subject,
            identity
                .issuer
                .as_deref()
                .map(|i| format!(", issuer {i}"))
                .unwrap_or_default(),
            identity.groups.join(", ")
        );
    }
    if let Some(policy) = &l.policy {
        let _ = match (&policy.rule, &policy.account, &policy.reason) {
            (Some(rule), Some(account), _) => {
                writeln!(out, "policy    allowed by rule {rule}, account {account}")
            }
            (_, _, reason) => writeln!(
                out,
                "policy    denied: {}",
                reason.as_deref().unwrap_or("no rule matched")
            ),
        };
    }
    if let Some(reason) = l.error_message.as_deref().filter(|_| !l.accepted) {
        let _ = writeln!(out, "          {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::synthetic::Synthetic;

    #[test]
    fn a_source_drops_events_delivered_twice_and_picks_one_session() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store =
            Store::open(dir.path(), crate::recording::StoreOptions::default()).expect("store");
        let base = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let (one, two) = (Synthetic::nth(1, base), Synthetic::nth(2, base));
        let (first, second) = (one.events(), two.events());
        // At least once: the first session's events twice, the second's once.
        for event in first.iter().chain(&first).chain(&second) {
            store.append(event, false).expect("append");
        }
        store.flush().expect("flush");
        let loaded = Source::Store(dir.path().to_owned()).load().expect("load");
        assert_eq!(loaded.events.len(), first.len() + second.len());
        assert_eq!(loaded.lines.len(), loaded.events.len());
        let listed = list_events(loaded.events.clone(), &Filter::default());
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[0].statements,
            one.sql.len() as u64,
            "not counted twice"
        );
        let (events, lines) = loaded.session(&one.id().to_string()).expect("one");
        assert_eq!(events, first);
        assert!(lines.iter().all(|l| {
            serde_json::from_slice::<RecordedEvent>(l).is_ok_and(|e| e.session_id == one.id())
        }));
    }
}
