//! `tollgate sessions export`: a session as JSON lines (as stored) or as a replayable SQL
//! script.

use std::{fmt::Write as _, path::Path};

use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::recording::{
    EventKind, RecordedEvent, StatementEvent, Store,
    event::{Param, RecordedValue},
};

use super::ShowError;

/// The lines of session `session` in the store at `dir`, exactly as stored, in write order.
pub fn json_lines(dir: &Path, session: Uuid) -> Result<Vec<Vec<u8>>, ShowError> {
    #[derive(serde::Deserialize)]
    struct Only {
        session_id: Uuid,
    }
    Ok(Store::read_lines(dir)?
        .into_iter()
        .filter(|line| {
            serde_json::from_slice::<Only>(line).is_ok_and(|only| only.session_id == session)
        })
        .collect())
}

/// A SQL script that replays the session's statements in order: each preceded by a comment
/// with its position, time, duration and outcome; commands that are not SQL are comments.
#[must_use]
pub fn sql_script(events: &[RecordedEvent]) -> String {
    let mut out = String::new();
    let mut database: Option<&str> = None;
    for event in events {
        match &event.kind {
            EventKind::SessionStarted(s) => {
                let _ = writeln!(
                    out,
                    "-- tollgate session {} on target {} ({}), from {}",
                    event.session_id, s.target, s.upstream, s.client_addr
                );
                out.push_str(
                    "-- statements that failed when recorded are kept: replay with \
                     `mariadb --force` to go on past them\n",
                );
            }
            EventKind::Login(l) => {
                let _ = writeln!(
                    out,
                    "-- login as {}{}: {}",
                    l.user,
                    l.identity
                        .as_ref()
                        .map(|i| format!(
                            " (identity {}, groups [{}])",
                            i.name,
                            i.groups.join(", ")
                        ))
                        .unwrap_or_default(),
                    if l.accepted { "accepted" } else { "refused" }
                );
                if l.accepted
                    && let Some(db) = l.database.as_deref()
                {
                    let _ = writeln!(out, "USE {};", identifier(db));
                    database = Some(db);
                }
            }
            EventKind::Statement(st) => {
                let _ = writeln!(out, "\n{}", header(st));
                if let Some(db) = st.database.as_deref()
                    && database != Some(db)
                    && st.command != "init_db"
                {
                    let _ = writeln!(out, "USE {};", identifier(db));
                    database = Some(db);
                }
                out.push_str(&statement_sql(st));
                if st.command == "init_db" && st.error.is_none() {
                    database = st.sql.as_deref();
                }
            }
            EventKind::Gap(g) => {
                let _ = writeln!(
                    out,
                    "\n-- GAP: {} event(s) lost ({} statement(s)), {:?}",
                    g.lost_events, g.lost_statements, g.reason
                );
            }
            EventKind::ApprovalRequested(r) => {
                let _ = writeln!(out, "\n-- approval {} requested", r.approval_id);
            }
            EventKind::ApprovalDecided(d) => {
                let _ = writeln!(out, "\n-- {}", crate::approvals::decided_line(d));
            }
            EventKind::SessionEnded(e) => {
                let _ = writeln!(out, "\n-- ended {:?} after {} ms", e.reason, e.duration_ms);
            }
        }
    }
    out
}

/// `-- #seq time, duration, outcome`.
fn header(st: &StatementEvent) -> String {
    let outcome = match &st.error {
        Some(e) => format!("ERROR {}: {}", e.code, one_line(&e.message)),
        None if st.result_sets > 0 => format!("{} row(s)", st.rows),
        None => format!("{} row(s) affected", st.affected_rows),
    };
    format!(
        "-- #{} {} {} {}, {}",
        st.seq,
        st.started_at.format(&Rfc3339).unwrap_or_default(),
        st.command,
        duration(st),
        outcome
    )
}

/// The statement's duration, in the finest unit recorded.
pub(super) fn duration(st: &StatementEvent) -> String {
    let ns = if st.duration_ns > 0 {
        st.duration_ns
    } else {
        st.duration_us.saturating_mul(1000)
    };
    #[expect(
        clippy::cast_precision_loss,
        reason = "a duration to three digits for people"
    )]
    let ms = ns as f64 / 1e6;
    format!("{ms:.3} ms")
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The SQL that replays `st`, or comments when it cannot be replayed.
fn statement_sql(st: &StatementEvent) -> String {
    let sql = st.sql.as_deref().unwrap_or("");
    match st.command.as_str() {
        "query" => terminated(sql),
        "init_db" => format!("USE {};\n", identifier(sql)),
        "stmt_prepare" => comment("prepared", sql),
        "stmt_execute" => inline_params(sql, st).map_or_else(
            || {
                let params = st
                    .params
                    .iter()
                    .flatten()
                    .map(|p| serde_json::to_string(&p.value).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut out = comment("executed (parameters not replayable)", sql);
                let _ = writeln!(
                    out,
                    "-- parameters: [{params}]{}",
                    if st.params_truncated { " ..." } else { "" }
                );
                out
            },
            |sql| terminated(&sql),
        ),
        other => format!(
            "-- {other}{}\n",
            st.sql
                .as_deref()
                .map(|s| format!(" {}", one_line(s)))
                .unwrap_or_default()
        ),
    }
}

fn comment(what: &str, sql: &str) -> String {
    let mut out = format!("-- {what}:\n");
    for line in sql.lines() {
        let _ = writeln!(out, "--   {line}");
    }
    out
}

/// `sql` ending with `;` and a newline (a trailing `--` comment gets its own line first).
fn terminated(sql: &str) -> String {
    let trimmed = sql.trim_end();
    if trimmed.ends_with(';') {
        format!("{trimmed}\n")
    } else if trimmed
        .lines()
        .last()
        .is_some_and(|l| l.contains("--") || l.contains('#'))
    {
        format!("{trimmed}\n;\n")
    } else {
        format!("{trimmed};\n")
    }
}

/// A backquoted identifier.
fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `sql` with its `?` placeholders replaced by the bound values as SQL literals; `None` when a
/// value was not recorded whole or the count of placeholders and values differ.
#[must_use]
pub fn inline_params(sql: &str, st: &StatementEvent) -> Option<String> {
    if st.params_truncated {
        return None;
    }
    let params = st.params.as_deref().unwrap_or_default();
    let mut values = params.iter();
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '?' => out.push_str(&literal(values.next()?)?),
            '\'' | '"' | '`' => {
                out.push(c);
                while let Some(inner) = chars.next() {
                    out.push(inner);
                    if inner == '\\' && c != '`' {
                        out.extend(chars.next());
                    } else if inner == c {
                        if chars.peek() == Some(&c) {
                            out.extend(chars.next());
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '#' => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(c);
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    out.push(inner);
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
            }
            _ => out.push(c),
        }
    }
    values.next().is_none().then_some(out)
}

/// `param` as an SQL literal, when it was recorded whole.
fn literal(param: &Param) -> Option<String> {
    Some(match &param.value {
        RecordedValue::Null => "NULL".to_owned(),
        RecordedValue::Int(i) => i.to_string(),
        RecordedValue::UInt(u) => u.to_string(),
        RecordedValue::Float(f) if f.is_finite() => format!("{f:?}"),
        RecordedValue::Text(text) => quoted(text),
        RecordedValue::Binary { hex, bytes } if hex.len() as u64 == bytes.saturating_mul(2) => {
            if hex.is_empty() {
                "''".to_owned()
            } else {
                format!("X'{hex}'")
            }
        }
        RecordedValue::Float(_)
        | RecordedValue::Binary { .. }
        | RecordedValue::TruncatedText { .. }
        | RecordedValue::Malformed { .. } => return None,
    })
}

/// A single-quoted string literal (quotes doubled, backslashes escaped, NUL written `\0`).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute(sql: &str, values: Vec<RecordedValue>) -> StatementEvent {
        StatementEvent {
            command: "stmt_execute".into(),
            sql: Some(sql.into()),
            params: Some(
                values
                    .into_iter()
                    .map(|value| Param {
                        param_type: "VAR_STRING".into(),
                        unsigned: false,
                        long_data: false,
                        value,
                    })
                    .collect(),
            ),
            ..StatementEvent::default()
        }
    }

    #[test]
    fn parameters_are_inlined_outside_strings_and_comments() {
        let st = execute(
            "SELECT ?, '?', `a?`, ? -- ?\n, /* ? */ ?",
            vec![
                RecordedValue::Int(7),
                RecordedValue::Text("it's \\ here".into()),
                RecordedValue::Null,
            ],
        );
        assert_eq!(
            inline_params(st.sql.as_deref().unwrap_or_default(), &st).as_deref(),
            Some("SELECT 7, '?', `a?`, 'it''s \\\\ here' -- ?\n, /* ? */ NULL")
        );
        let binary = execute(
            "SELECT ?",
            vec![RecordedValue::Binary {
                hex: "00ff".into(),
                bytes: 2,
            }],
        );
        assert_eq!(
            inline_params("SELECT ?", &binary).as_deref(),
            Some("SELECT X'00ff'")
        );
    }

    #[test]
    fn cut_values_and_miscounts_are_not_inlined() {
        let cut = execute(
            "SELECT ?",
            vec![RecordedValue::TruncatedText {
                text: "ab".into(),
                bytes: 9000,
            }],
        );
        assert_eq!(inline_params("SELECT ?", &cut), None);
        let script = statement_sql(&cut);
        assert!(script.lines().all(|l| l.starts_with("--")), "{script}");
        let few = execute("SELECT ?, ?", vec![RecordedValue::Int(1)]);
        assert_eq!(inline_params("SELECT ?, ?", &few), None);
    }

    #[test]
    fn queries_end_with_a_semicolon() {
        assert_eq!(terminated("SELECT 1"), "SELECT 1;\n");
        assert_eq!(terminated("SELECT 1;  "), "SELECT 1;\n");
        assert_eq!(terminated("SELECT 1 -- x"), "SELECT 1 -- x\n;\n");
    }
}
