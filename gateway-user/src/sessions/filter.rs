//! `tollgate sessions list` filters: time range, who, where, what the statements did.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use crate::recording::{EventKind, RecordedEvent, StatementEvent};

/// What a `--kind` filter asks of at least one statement of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatementKind {
    /// A `DELETE` statement.
    Delete,
    /// An `UPDATE` statement.
    Update,
    /// Data definition: `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `RENAME`.
    Ddl,
    /// A statement that failed (the database's or the gateway's error).
    Error,
    /// A statement the gateway refused itself (it never reached the database).
    Refused,
    /// A statement a guardrail blocked (`[[guardrails]]` with `action = "block"`).
    Blocked,
    /// A statement a guardrail flagged (`action = "flag"`): it ran, marked.
    Flagged,
}

impl StatementKind {
    /// Whether `statement` is of this kind.
    #[must_use]
    pub fn matches(self, statement: &StatementEvent) -> bool {
        let verb = || {
            statement
                .sql
                .as_deref()
                .map(first_keyword)
                .unwrap_or_default()
        };
        let is_sql = matches!(
            statement.command.as_str(),
            "query" | "stmt_prepare" | "stmt_execute"
        );
        match self {
            Self::Delete => is_sql && verb() == "DELETE",
            Self::Update => is_sql && verb() == "UPDATE",
            Self::Ddl => {
                (is_sql
                    && matches!(
                        verb().as_str(),
                        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "RENAME"
                    ))
                    || matches!(statement.command.as_str(), "create_db" | "drop_db")
            }
            Self::Error => statement.error.is_some(),
            Self::Refused => statement.error.as_ref().is_some_and(|e| {
                // The gateway's own refusals are recorded without an SQLSTATE, and their
                // messages name the gateway (`Tollgate: ...`); the database's always carry one.
                e.sql_state.is_none() || e.message.contains("Tollgate:")
            }),
            Self::Blocked => statement
                .guard
                .as_ref()
                .is_some_and(crate::guard::GuardDecision::blocks),
            Self::Flagged => statement
                .guard
                .as_ref()
                .is_some_and(|g| g.action == crate::guard::GuardAction::Flag),
        }
    }
}

/// The first keyword of `sql`, upper-cased, after blanks, comments and opening parentheses.
#[must_use]
pub fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(after) = trimmed.strip_prefix("/*") {
            // Executable comments (`/*! ... */`, `/*M! ... */`) hold SQL: read inside them.
            if let Some(inner) = after.strip_prefix('!').or_else(|| after.strip_prefix("M!")) {
                rest = inner.trim_start_matches(|c: char| c.is_ascii_digit());
                continue;
            }
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else if trimmed.starts_with("--") || trimmed.starts_with('#') {
            rest = trimmed.split_once('\n').map_or("", |(_, r)| r);
        } else {
            return trimmed
                .chars()
                .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
                .collect::<String>()
                .to_ascii_uppercase();
        }
    }
}

/// A time given on the command line that is neither RFC 3339 nor a relative duration.
#[derive(Debug, thiserror::Error)]
#[error(
    "{flag} {given:?} is not a time: give RFC 3339 (2026-11-26T22:00:00Z) or how long ago \
     (30s, 30m, 2h, 7d, 2w)"
)]
pub struct TimeError {
    /// The option (`--since`, `--until`).
    pub flag: &'static str,
    /// What was given.
    pub given: String,
}

/// Parses `text` as an RFC 3339 time or as a duration ago from `now` (`30s`, `30m`, `2h`,
/// `7d`, `2w`; units may be combined: `1h30m`).
pub fn parse_time(
    flag: &'static str,
    text: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, TimeError> {
    let error = || TimeError {
        flag,
        given: text.to_owned(),
    };
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time.to_offset(time::UtcOffset::UTC));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => Duration::SECOND,
            'm' => Duration::MINUTE,
            'h' => Duration::HOUR,
            'd' => Duration::DAY,
            'w' => Duration::WEEK,
            _ => return Err(error()),
        };
        let n: i32 = number.parse().map_err(|_| error())?;
        total = total
            .checked_add(unit.checked_mul(n).ok_or_else(error)?)
            .ok_or_else(error)?;
        number.clear();
        any = true;
    }
    if !any || !number.is_empty() {
        return Err(error());
    }
    now.checked_sub(total).ok_or_else(error)
}

/// The filters of `tollgate sessions list`; every one that is set must hold (AND).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Sessions still running at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Sessions started at or before this time.
    pub until: Option<OffsetDateTime>,
    /// The MySQL user the client logged in as, or the name of its proved identity.
    pub user: Option<String>,
    /// A group of the proved identity.
    pub group: Option<String>,
    /// The configured target name.
    pub target: Option<String>,
    /// Text some statement's SQL contains (case-insensitive).
    pub contains: Option<String>,
    /// Kinds of statement the session must have (one of each).
    pub kinds: Vec<StatementKind>,
    /// Only sessions without `session.ended`.
    pub live: bool,
}

/// What a filter needs to know of one session, gathered from its events.
#[derive(Debug, Default)]
struct Facts {
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    ended: bool,
    users: Vec<String>,
    groups: Vec<String>,
    target: Option<String>,
    contains: bool,
    kinds: Vec<StatementKind>,
}

impl Filter {
    /// Whether no filter is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.user.is_none()
            && self.group.is_none()
            && self.target.is_none()
            && self.contains.is_none()
            && self.kinds.is_empty()
            && !self.live
    }

    /// The sessions of `events` that pass every filter, in order of their first event.
    #[must_use]
    pub fn sessions(&self, events: &[RecordedEvent]) -> Vec<Uuid> {
        let needle = self.contains.as_deref().map(str::to_lowercase);
        let mut order = Vec::new();
        let mut facts: BTreeMap<Uuid, Facts> = BTreeMap::new();
        for event in events {
            let f = facts.entry(event.session_id).or_insert_with(|| {
                order.push(event.session_id);
                Facts::default()
            });
            f.first = Some(f.first.map_or(event.time, |t| t.min(event.time)));
            f.last = Some(f.last.map_or(event.time, |t| t.max(event.time)));
            match &event.kind {
                EventKind::SessionStarted(s) => f.target = Some(s.target.clone()),
                EventKind::Login(l) => {
                    f.users.push(l.user.clone());
                    for identity in l.identity.iter().chain(l.kernel_identity.iter()) {
                        f.users.push(identity.name.clone());
                        f.groups.extend(identity.groups.iter().cloned());
                    }
                }
                EventKind::Statement(st) => {
                    if let (Some(needle), Some(sql)) = (&needle, &st.sql) {
                        f.contains |= sql.to_lowercase().contains(needle.as_str());
                    }
                    for kind in &self.kinds {
                        if !f.kinds.contains(kind) && kind.matches(st) {
                            f.kinds.push(*kind);
                        }
                    }
                }
                EventKind::SessionEnded(_) => f.ended = true,
                EventKind::Gap(_)
                | EventKind::ApprovalRequested(_)
                | EventKind::ApprovalDecided(_) => {}
            }
        }
        order
            .into_iter()
            .filter(|id| facts.get(id).is_some_and(|f| self.passes(f)))
            .collect()
    }

    fn passes(&self, f: &Facts) -> bool {
        let since_ok = self
            .since
            .is_none_or(|since| !f.ended || f.last.is_some_and(|t| t >= since));
        let until_ok = self
            .until
            .is_none_or(|until| f.first.is_some_and(|t| t <= until));
        since_ok
            && until_ok
            && self.user.as_ref().is_none_or(|u| f.users.contains(u))
            && self.group.as_ref().is_none_or(|g| f.groups.contains(g))
            && self
                .target
                .as_ref()
                .is_none_or(|t| f.target.as_ref() == Some(t))
            && (self.contains.is_none() || f.contains)
            && self.kinds.iter().all(|k| f.kinds.contains(k))
            && (!self.live || !f.ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_how_long_ago() {
        let now = OffsetDateTime::parse("2026-11-26T12:00:00Z", &Rfc3339).expect("now");
        let at = |s: &str| parse_time("--since", s, now).map(|t| t.format(&Rfc3339).expect("fmt"));
        assert_eq!(at("2h").expect("2h"), "2026-11-26T10:00:00Z");
        assert_eq!(at("30m").expect("30m"), "2026-11-26T11:30:00Z");
        assert_eq!(at("7d").expect("7d"), "2026-11-19T12:00:00Z");
        assert_eq!(at("1h30m").expect("1h30m"), "2026-11-26T10:30:00Z");
        assert_eq!(
            at("2026-11-01T00:00:00+01:00").expect("rfc3339"),
            "2026-10-31T23:00:00Z"
        );
        for bad in [
            "",
            "2",
            "h",
            "2x",
            "yesterday",
            "2026-11-01",
            "99999999999d",
        ] {
            let error = at(bad).expect_err(bad).to_string();
            assert!(
                error.contains("RFC 3339") && !error.contains('\n'),
                "{error}"
            );
        }
    }

    #[test]
    fn kinds_read_the_first_keyword() {
        let st = |sql: &str| StatementEvent {
            command: "query".into(),
            sql: Some(sql.into()),
            ..StatementEvent::default()
        };
        assert!(StatementKind::Delete.matches(&st("  delete from t")));
        assert!(StatementKind::Delete.matches(&st("/* why */ DELETE FROM t")));
        assert!(StatementKind::Ddl.matches(&st("-- x\ncreate table t (a int)")));
        assert!(StatementKind::Ddl.matches(&st("/*!40000 ALTER TABLE t DISABLE KEYS */")));
        assert!(StatementKind::Update.matches(&st("(UPDATE t SET a = 1)")));
        assert!(!StatementKind::Delete.matches(&st("SELECT 'DELETE'")));
        assert!(!StatementKind::Error.matches(&st("SELECT 1")));
    }

    #[test]
    fn refusals_are_the_gateways_own_errors() {
        use crate::recording::event::StatementError;
        let failed = |code, sql_state: Option<&str>, message: &str| StatementEvent {
            command: "query".into(),
            error: Some(StatementError {
                code,
                sql_state: sql_state.map(str::to_owned),
                message: message.into(),
            }),
            ..StatementEvent::default()
        };
        let refused = failed(1290, None, "Tollgate: the recording is unavailable");
        let database = failed(1146, Some("42S02"), "Table 'shop.missing' doesn't exist");
        let denied = failed(
            1044,
            Some("42000"),
            "Tollgate: access denied to database 'mysql'",
        );
        assert!(StatementKind::Refused.matches(&refused));
        assert!(StatementKind::Refused.matches(&denied));
        assert!(!StatementKind::Refused.matches(&database));
        assert!(StatementKind::Error.matches(&database) && StatementKind::Error.matches(&refused));
    }
}
