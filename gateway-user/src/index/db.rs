//! The index file: `SQLite` tables of sessions and statements, full text on SQL, and how far
//! each partition of the topic is indexed.
//!
//! Every write is an idempotent upsert (a statement is keyed by session and `seq`, names by
//! session and name; counts move only when a row is new), so events delivered twice, or
//! indexed again after a crash before the Kafka commit, change nothing.

use std::path::Path;

use clap::ValueEnum as _;
use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    recording::{EventKind, RecordedEvent},
    sessions::{Filter, SessionSummary, StatementKind},
};

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IndexDbError {
    /// `SQLite` failed.
    #[error("index {path}: {error}")]
    Sqlite {
        /// The index file.
        path: String,
        /// `SQLite`'s error.
        error: rusqlite::Error,
    },
    /// There is no index at this path.
    #[error("no index at {path}: build it with `tollgate index --index {path}`")]
    Missing {
        /// The path.
        path: String,
    },
    /// The file is not an index of this version.
    #[error(
        "{path} is not a tollgate index (or one of another version): build it with `tollgate index`"
    )]
    NotAnIndex {
        /// The file.
        path: String,
    },
}

/// Index schema version, in `PRAGMA user_version`.
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    started_at TEXT,
    ended_ns INTEGER,
    user TEXT,
    target TEXT,
    client_addr TEXT,
    started_json TEXT,
    ended_json TEXT,
    statements INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_last ON sessions (last_ns);
CREATE INDEX IF NOT EXISTS sessions_target ON sessions (target);
-- Per session: `user` (MySQL user and identity names), `group`, and `kind` (the `--kind`
-- values some statement of the session has).
CREATE TABLE IF NOT EXISTS session_names (
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (kind, name, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS statements (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    command TEXT NOT NULL,
    sql TEXT,
    kind TEXT,
    error TEXT,
    PRIMARY KEY (session_id, seq)
);
CREATE VIRTUAL TABLE IF NOT EXISTS statements_fts USING fts5 (
    sql, session_id UNINDEXED, tokenize = 'trigram'
);
CREATE TABLE IF NOT EXISTS meta (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    high_watermark INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
";

/// How far one partition is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The partition.
    pub partition: i32,
    /// The next offset to index (everything before it is in).
    pub next_offset: i64,
    /// The partition's high watermark when last seen.
    pub high_watermark: i64,
}

/// How far behind the topic the index was at its last update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Messages not indexed yet, over every partition, as of the last update.
    pub messages: i64,
    /// Seconds since the last update (None: never updated).
    pub age_secs: Option<i64>,
}

/// An open index.
#[derive(Debug)]
pub struct IndexDb {
    conn: Connection,
    path: String,
}

fn nanos(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl IndexDb {
    /// Opens (creating when missing) the index at `path`. Several processes may share it
    /// (WAL, writers wait for each other).
    pub fn open(path: &Path) -> Result<Self, IndexDbError> {
        let name = path.display().to_string();
        let conn = Connection::open(path).map_err(|error| IndexDbError::Sqlite {
            path: name.clone(),
            error,
        })?;
        let db = Self { conn, path: name };
        db.setup()?;
        Ok(db)
    }

    /// An index in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Self, IndexDbError> {
        let conn = Connection::open_in_memory().map_err(|error| IndexDbError::Sqlite {
            path: ":memory:".into(),
            error,
        })?;
        let db = Self {
            conn,
            path: ":memory:".into(),
        };
        db.setup()?;
        Ok(db)
    }

    /// Opens an existing index read-only; an error when there is none at `path`.
    pub fn open_existing(path: &Path) -> Result<Self, IndexDbError> {
        let name = path.display().to_string();
        if !path.exists() {
            return Err(IndexDbError::Missing { path: name });
        }
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|error| IndexDbError::Sqlite {
                path: name.clone(),
                error,
            })?;
        let db = Self { conn, path: name };
        let version: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| db.error(e))?;
        if version != VERSION {
            return Err(IndexDbError::NotAnIndex { path: db.path });
        }
        db.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| db.error(e))?;
        Ok(db)
    }

    fn error(&self, error: rusqlite::Error) -> IndexDbError {
        IndexDbError::Sqlite {
            path: self.path.clone(),
            error,
        }
    }

    fn setup(&self) -> Result<(), IndexDbError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| self.error(e))?;
        // WAL: readers do not block the indexer, and indexers of one group may share a file.
        let _: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.error(e))?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.error(e))?;
        if version != 0 && version != VERSION {
            return Err(IndexDbError::NotAnIndex {
                path: self.path.clone(),
            });
        }
        self.conn
            .execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {VERSION}; COMMIT;"
            ))
            .map_err(|e| self.error(e))
    }

    /// Adds `events` and records `progress` (of `topic`), in one transaction: either all of it
    /// is in the index or none.
    pub fn apply(
        &mut self,
        events: &[RecordedEvent],
        topic: &str,
        progress: &[PartitionProgress],
    ) -> Result<(), IndexDbError> {
        let path = self.path.clone();
        let error = |error| IndexDbError::Sqlite {
            path: path.clone(),
            error,
        };
        let tx = self.conn.transaction().map_err(error)?;
        for event in events {
            add_event(&tx, event).map_err(error)?;
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for p in progress {
            tx.execute(
                "INSERT INTO meta (topic, partition, next_offset, high_watermark, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (topic, partition) DO UPDATE SET
                   next_offset = max(next_offset, excluded.next_offset),
                   high_watermark = max(high_watermark, excluded.high_watermark),
                   updated_at = excluded.updated_at",
                params![topic, p.partition, p.next_offset, p.high_watermark, now],
            )
            .map_err(error)?;
        }
        tx.commit().map_err(error)
    }

    /// How far each partition of `topic` is indexed.
    pub fn progress(&self, topic: &str) -> Result<Vec<PartitionProgress>, IndexDbError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT partition, next_offset, high_watermark FROM meta WHERE topic = ?1
                 ORDER BY partition",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([topic], |r| {
                Ok(PartitionProgress {
                    partition: r.get(0)?,
                    next_offset: r.get(1)?,
                    high_watermark: r.get(2)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// How far behind the topic the index was at its last update.
    pub fn lag(&self) -> Result<Lag, IndexDbError> {
        let (messages, updated): (Option<i64>, Option<i64>) = self
            .conn
            .query_row(
                "SELECT sum(max(high_watermark - next_offset, 0)), max(updated_at) FROM meta",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.error(e))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        Ok(Lag {
            messages: messages.unwrap_or(0),
            age_secs: updated.map(|u| (now - u).max(0)),
        })
    }

    /// Sessions indexed.
    pub fn session_count(&self) -> Result<u64, IndexDbError> {
        self.conn
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get::<_, i64>(0))
            .map(i64::unsigned_abs)
            .map_err(|e| self.error(e))
    }

    /// The sessions that pass `filter`, oldest first, as `sessions list` prints them.
    pub fn list(&self, filter: &Filter) -> Result<Vec<SessionSummary>, IndexDbError> {
        let mut sql = String::from(
            "SELECT s.id, s.started_at, s.started_json, s.ended_json, s.user, s.statements
             FROM sessions s WHERE 1",
        );
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, value: rusqlite::types::Value| {
            values.push(value);
            sql.push_str(&clause.replace('?', &format!("?{}", values.len())));
        };
        if let Some(since) = filter.since {
            bind(
                &mut sql,
                " AND (s.ended_ns IS NULL OR s.last_ns >= ?)",
                nanos(since).into(),
            );
        }
        if let Some(until) = filter.until {
            bind(&mut sql, " AND s.first_ns <= ?", nanos(until).into());
        }
        if let Some(user) = &filter.user {
            bind(
                &mut sql,
                " AND s.id IN (SELECT session_id FROM session_names WHERE kind = 'user' AND name = ?)",
                user.clone().into(),
            );
        }
        if let Some(group) = &filter.group {
            bind(
                &mut sql,
                " AND s.id IN (SELECT session_id FROM session_names WHERE kind = 'group' AND name = ?)",
                group.clone().into(),
            );
        }
        if let Some(target) = &filter.target {
            bind(&mut sql, " AND s.target = ?", target.clone().into());
        }
        if let Some(text) = &filter.contains {
            if text.chars().count() >= 3 {
                // The trigram tokenizer finds any substring of 3 characters or more,
                // case-insensitively; the phrase is quoted so no character is an operator.
                bind(
                    &mut sql,
                    " AND s.id IN (SELECT session_id FROM statements_fts WHERE statements_fts MATCH ?)",
                    format!("\"{}\"", text.replace('"', "\"\"")).into(),
                );
            } else {
                bind(
                    &mut sql,
                    " AND s.id IN (SELECT session_id FROM statements WHERE instr(lower(sql), ?) > 0)",
                    text.to_lowercase().into(),
                );
            }
        }
        for kind in &filter.kinds {
            bind(
                &mut sql,
                " AND s.id IN (SELECT session_id FROM session_names WHERE kind = 'kind' AND name = ?)",
                kind_name(*kind).into(),
            );
        }
        if filter.live {
            sql.push_str(" AND s.ended_ns IS NULL");
        }
        sql.push_str(" ORDER BY s.id");
        let mut statement = self.conn.prepare(&sql).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |r| {
                let id: String = r.get(0)?;
                let started: Option<String> = r.get(2)?;
                let ended: Option<String> = r.get(3)?;
                Ok(SessionSummary {
                    id: Uuid::parse_str(&id).unwrap_or_default(),
                    started_at: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    started: started.and_then(|j| serde_json::from_str(&j).ok()),
                    ended: ended.and_then(|j| serde_json::from_str(&j).ok()),
                    user: r.get(4)?,
                    statements: r.get::<_, i64>(5)?.unsigned_abs(),
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Statements indexed.
    pub fn statement_count(&self) -> Result<u64, IndexDbError> {
        self.conn
            .query_row("SELECT count(*) FROM statements", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(i64::unsigned_abs)
            .map_err(|e| self.error(e))
    }
}

/// The `--kind` value of `kind` (`delete`, `ddl`, ...).
fn kind_name(kind: StatementKind) -> String {
    kind.to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// The `--kind` values `statement` is of, in their order.
fn kinds_of(statement: &crate::recording::StatementEvent) -> Vec<String> {
    StatementKind::value_variants()
        .iter()
        .filter(|k| k.matches(statement))
        .map(|k| kind_name(*k))
        .collect()
}

/// Adds one event to the index (idempotent).
fn add_event(tx: &rusqlite::Transaction<'_>, event: &RecordedEvent) -> rusqlite::Result<()> {
    let id = event.session_id.to_string();
    let at = nanos(event.time);
    let started_at = event
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    tx.execute(
        "INSERT INTO sessions (id, first_ns, last_ns, started_at) VALUES (?1, ?2, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET
           started_at = CASE WHEN excluded.first_ns < first_ns THEN excluded.started_at
                        ELSE started_at END,
           first_ns = min(first_ns, excluded.first_ns),
           last_ns = max(last_ns, excluded.last_ns)",
        params![id, at, started_at],
    )?;
    let name = |kind: &str, name: &str| {
        tx.execute(
            "INSERT OR IGNORE INTO session_names (session_id, kind, name) VALUES (?1, ?2, ?3)",
            params![id, kind, name],
        )
    };
    match &event.kind {
        EventKind::SessionStarted(s) => {
            tx.execute(
                "UPDATE sessions SET target = ?2, client_addr = ?3, started_json = ?4 WHERE id = ?1",
                params![
                    id,
                    s.target,
                    s.client_addr.to_string(),
                    serde_json::to_string(s).unwrap_or_default()
                ],
            )?;
        }
        EventKind::Login(l) => {
            tx.execute(
                "UPDATE sessions SET user = ?2 WHERE id = ?1",
                params![id, l.user],
            )?;
            name("user", &l.user)?;
            for identity in l.identity.iter().chain(l.kernel_identity.iter()) {
                name("user", &identity.name)?;
                for group in &identity.groups {
                    name("group", group)?;
                }
            }
        }
        EventKind::Statement(st) => {
            let kinds = kinds_of(st);
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO statements (session_id, seq, time_ns, command, sql, kind, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    i64::try_from(st.seq).unwrap_or(i64::MAX),
                    at,
                    st.command,
                    st.sql,
                    (!kinds.is_empty()).then(|| kinds.join(",")),
                    st.error.as_ref().map(|e| format!("{} {}", e.code, e.message))
                ],
            )?;
            if inserted == 1 {
                if let Some(sql) = &st.sql {
                    tx.execute(
                        "INSERT INTO statements_fts (sql, session_id) VALUES (?1, ?2)",
                        params![sql, id],
                    )?;
                }
                tx.execute(
                    "UPDATE sessions SET statements = statements + 1 WHERE id = ?1",
                    params![id],
                )?;
            }
            for kind in &kinds {
                name("kind", kind)?;
            }
        }
        EventKind::SessionEnded(e) => {
            tx.execute(
                "UPDATE sessions SET ended_ns = ?2, ended_json = ?3 WHERE id = ?1",
                params![id, at, serde_json::to_string(e).unwrap_or_default()],
            )?;
        }
        EventKind::Gap(_) | EventKind::ApprovalRequested(_) | EventKind::ApprovalDecided(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;
    use crate::index::synthetic::Synthetic;

    fn base() -> OffsetDateTime {
        OffsetDateTime::parse("2026-11-01T00:00:00Z", &Rfc3339).expect("base")
    }

    /// 300 synthetic sessions, the last 5 still live, in one index, and their events.
    fn indexed() -> (IndexDb, Vec<RecordedEvent>) {
        let mut events = Vec::new();
        for n in 0..300 {
            let mut session = Synthetic::nth(n, base());
            session.ended = n < 295;
            events.extend(session.events());
        }
        let mut db = IndexDb::in_memory().expect("index");
        for chunk in events.chunks(97) {
            db.apply(chunk, "t", &[]).expect("apply");
        }
        (db, events)
    }

    fn ids(sessions: &[SessionSummary]) -> Vec<Uuid> {
        sessions.iter().map(|s| s.id).collect()
    }

    #[test]
    fn the_index_answers_every_filter_like_the_store() {
        let (db, events) = indexed();
        let at = |secs: i64| Some(base() + time::Duration::seconds(secs));
        let filters = [
            Filter::default(),
            Filter {
                user: Some("alice".into()),
                ..Filter::default()
            },
            Filter {
                user: Some("nobody".into()),
                ..Filter::default()
            },
            Filter {
                group: Some("team-3".into()),
                target: Some("billing".into()),
                ..Filter::default()
            },
            Filter {
                contains: Some("ORDER-123'".into()),
                ..Filter::default()
            },
            Filter {
                contains: Some("status".into()),
                kinds: vec![StatementKind::Delete],
                ..Filter::default()
            },
            Filter {
                contains: Some("id".into()),
                since: at(250),
                ..Filter::default()
            },
            Filter {
                kinds: vec![StatementKind::Ddl, StatementKind::Error],
                ..Filter::default()
            },
            Filter {
                kinds: vec![StatementKind::Update],
                since: at(100),
                until: at(200),
                user: Some("bob".into()),
                ..Filter::default()
            },
            Filter {
                kinds: vec![StatementKind::Refused],
                ..Filter::default()
            },
            Filter {
                live: true,
                ..Filter::default()
            },
            Filter {
                since: at(1000),
                ..Filter::default()
            },
        ];
        for filter in &filters {
            let from_index = ids(&db.list(filter).expect("list"));
            let from_store = ids(&crate::sessions::list_events(events.clone(), filter));
            assert_eq!(from_index, from_store, "{filter:?}");
        }
        let one = db
            .list(&Filter {
                contains: Some("order-123'".into()),
                ..Filter::default()
            })
            .expect("list");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].user.as_deref(), Some("erin"));
        assert_eq!(one[0].statements, 2);
        assert!(one[0].started.is_some() && one[0].ended.is_some());
        assert_eq!(
            db.list(&Filter {
                live: true,
                ..Filter::default()
            })
            .expect("live")
            .len(),
            5
        );
    }

    #[test]
    fn events_indexed_twice_change_nothing() {
        let (mut db, events) = indexed();
        let before = (
            db.session_count().expect("count"),
            db.statement_count().expect("count"),
            db.list(&Filter::default()).expect("list"),
        );
        db.apply(&events[..500], "t", &[]).expect("again");
        db.apply(&events, "t", &[]).expect("again");
        let after = (
            db.session_count().expect("count"),
            db.statement_count().expect("count"),
            db.list(&Filter::default()).expect("list"),
        );
        assert_eq!(before.0, after.0);
        assert_eq!(before.1, after.1);
        let stmts = |l: &[SessionSummary]| l.iter().map(|s| s.statements).collect::<Vec<_>>();
        assert_eq!(stmts(&before.2), stmts(&after.2));
        let contains = Filter {
            contains: Some("invoices".into()),
            ..Filter::default()
        };
        assert_eq!(
            db.list(&contains).expect("fts").len(),
            300,
            "FTS rows not doubled"
        );
    }

    #[test]
    fn progress_and_lag_follow_the_meta_table() {
        let mut db = IndexDb::in_memory().expect("index");
        assert_eq!(db.lag().expect("lag").age_secs, None);
        let p = |partition, next_offset, high_watermark| PartitionProgress {
            partition,
            next_offset,
            high_watermark,
        };
        db.apply(&[], "t", &[p(0, 10, 40), p(1, 5, 5)])
            .expect("apply");
        assert_eq!(db.lag().expect("lag").messages, 30);
        // Offsets never go back (a late batch of another indexer).
        db.apply(&[], "t", &[p(0, 40, 40), p(1, 3, 5)])
            .expect("apply");
        let lag = db.lag().expect("lag");
        assert_eq!(lag.messages, 0);
        assert!(lag.age_secs.is_some_and(|a| a < 5));
        assert_eq!(
            db.progress("t").expect("progress"),
            vec![p(0, 40, 40), p(1, 5, 5)]
        );
    }

    #[test]
    fn a_file_that_is_not_an_index_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("other.db");
        let other = Connection::open(&path).expect("open");
        other
            .execute_batch("PRAGMA user_version = 7; CREATE TABLE x (a);")
            .expect("other");
        drop(other);
        let error = IndexDb::open(&path).expect_err("not an index").to_string();
        assert!(error.contains("not a tollgate index"), "{error}");
        let missing = IndexDb::open_existing(&dir.path().join("missing.db"))
            .expect_err("missing")
            .to_string();
        assert!(missing.contains("tollgate index"), "{missing}");
    }
}
