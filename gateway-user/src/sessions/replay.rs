//! `tollgate sessions replay`: a recorded session's flow in the terminal, at its original
//! pacing (or faster), statement by statement.

use std::{fmt::Write as _, io, time::Duration};

use crate::recording::{EventKind, RecordedEvent, StatementEvent, event::RecordedValue};

/// Widest a table cell is printed (longer values end with `…`).
pub const MAX_CELL: usize = 40;
/// Most rows printed per result set.
pub const MAX_ROWS: usize = 20;

/// How the replay paces itself.
pub trait Pacer {
    /// Waits `gap` (already divided by the speed) before the next statement.
    fn sleep(&mut self, gap: Duration);
    /// In step mode, waits until the viewer asks for the next statement.
    fn step(&mut self);
}

/// Pacing on the terminal: `thread::sleep`, and Enter on standard input between statements
/// in step mode (at end of input it stops waiting).
#[derive(Debug)]
pub struct TerminalPacer {
    /// Wait for Enter between statements.
    pub step: bool,
}

impl Pacer for TerminalPacer {
    fn sleep(&mut self, gap: Duration) {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }

    fn step(&mut self) {
        if !self.step {
            return;
        }
        eprint!("-- Enter for the next statement --");
        let mut line = String::new();
        match io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => {
                // End of input: play the rest without waiting.
                eprintln!();
                self.step = false;
            }
            Ok(_) => {}
        }
    }
}

/// Replays `events` to `out`: the header, then each statement after the recorded gap since
/// the previous one divided by `speed` (`0`: no waiting), with its outcome.
pub fn replay(
    events: &[RecordedEvent],
    speed: f64,
    pacer: &mut impl Pacer,
    out: &mut impl io::Write,
) -> io::Result<()> {
    let mut previous: Option<u64> = None;
    let mut first = true;
    for event in events {
        match &event.kind {
            EventKind::SessionStarted(_)
            | EventKind::Login(_)
            | EventKind::Gap(_)
            | EventKind::ApprovalRequested(_)
            | EventKind::ApprovalDecided(_) => {
                out.write_all(super::render_session(std::slice::from_ref(event)).as_bytes())?;
            }
            EventKind::Statement(st) => {
                let at = start_ns(st);
                if !first {
                    pacer.step();
                }
                if let Some(previous) = previous
                    && speed > 0.0
                {
                    let gap = Duration::from_nanos(at.saturating_sub(previous));
                    pacer.sleep(gap.div_f64(speed));
                }
                previous = Some(at);
                first = false;
                out.write_all(render_statement(st).as_bytes())?;
                out.flush()?;
            }
            EventKind::SessionEnded(_) => {
                out.write_all(b"\n")?;
                out.write_all(super::render_session(std::slice::from_ref(event)).as_bytes())?;
            }
        }
    }
    out.flush()
}

/// When the statement arrived, in nanoseconds since the epoch.
fn start_ns(st: &StatementEvent) -> u64 {
    if st.started_at_ns > 0 {
        return st.started_at_ns;
    }
    u64::try_from(st.started_at.unix_timestamp_nanos()).unwrap_or_default()
}

/// One statement: its SQL, then what came back.
#[must_use]
pub fn render_statement(st: &StatementEvent) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n#{} {} [{}{}]",
        st.seq,
        st.started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        st.command,
        st.database
            .as_deref()
            .map(|d| format!(" db={d}"))
            .unwrap_or_default()
    );
    let sql = st.sql.as_deref().unwrap_or("");
    let shown = if st.command == "stmt_execute" {
        super::export::inline_params(sql, st).unwrap_or_else(|| sql.to_owned())
    } else {
        sql.to_owned()
    };
    for line in shown.lines() {
        let _ = writeln!(out, "> {line}");
    }
    for set in &st.result {
        let names: Vec<String> = if set.columns.is_empty() {
            st.columns.clone()
        } else {
            set.columns.iter().map(|c| c.name.clone()).collect()
        };
        out.push_str(&table(&names, &set.rows, set.row_count));
    }
    if st.result.is_empty() && st.result_sets > 0 && !st.columns.is_empty() {
        out.push_str(&table(&st.columns, &[], st.rows));
    }
    let duration = super::export::duration(st);
    let _ = match &st.error {
        Some(e) => writeln!(out, "ERROR {}: {} ({duration})", e.code, e.message),
        None if st.result_sets > 0 => writeln!(
            out,
            "{} row(s){} ({duration})",
            st.rows,
            if st.rows_truncated {
                ", not all recorded"
            } else {
                ""
            }
        ),
        None => writeln!(
            out,
            "OK, {} row(s) affected{} ({duration})",
            st.affected_rows,
            st.last_insert_id
                .map(|id| format!(", last insert id {id}"))
                .unwrap_or_default()
        ),
    };
    out
}

/// A text table of `rows` under `names`, cells cut at [`MAX_CELL`], at most [`MAX_ROWS`].
fn table(names: &[String], rows: &[Vec<RecordedValue>], row_count: u64) -> String {
    let shown: Vec<Vec<String>> = rows
        .iter()
        .take(MAX_ROWS)
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let columns = names
        .len()
        .max(shown.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0_usize; columns];
    let header: Vec<String> = (0..columns)
        .map(|i| cut(names.get(i).map_or("", String::as_str)))
        .collect();
    for row in std::iter::once(&header).chain(shown.iter()) {
        for (i, value) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(value.chars().count());
            }
        }
    }
    let line = |row: &[String]| {
        let mut text = String::from("|");
        for (i, width) in widths.iter().enumerate() {
            let value = row.get(i).map_or("", String::as_str);
            let pad = width.saturating_sub(value.chars().count());
            let _ = write!(text, " {value}{} |", " ".repeat(pad));
        }
        text.push('\n');
        text
    };
    let rule = {
        let mut text = String::from("+");
        for width in &widths {
            let _ = write!(text, "{}+", "-".repeat(width + 2));
        }
        text.push('\n');
        text
    };
    let mut out = rule.clone();
    out.push_str(&line(&header));
    out.push_str(&rule);
    for row in &shown {
        out.push_str(&line(row));
    }
    out.push_str(&rule);
    let recorded = rows.len() as u64;
    if row_count > shown.len() as u64 {
        let _ = writeln!(
            out,
            "({} more row(s){})",
            row_count - shown.len() as u64,
            if row_count > recorded {
                format!(", {} not recorded", row_count - recorded)
            } else {
                String::new()
            }
        );
    }
    out
}

/// A value as a table cell.
fn cell(value: &RecordedValue) -> String {
    let text = match value {
        RecordedValue::Null => "NULL".to_owned(),
        RecordedValue::Int(i) => i.to_string(),
        RecordedValue::UInt(u) => u.to_string(),
        RecordedValue::Float(f) => f.to_string(),
        RecordedValue::Text(t) => t.clone(),
        RecordedValue::Binary { hex, bytes } => format!("0x{hex} ({bytes} bytes)"),
        RecordedValue::TruncatedText { text, bytes } => format!("{text}… ({bytes} bytes)"),
        RecordedValue::Malformed { .. } => "(malformed)".to_owned(),
    };
    cut(&text.replace(['\n', '\r', '\t'], " "))
}

/// `text` cut to [`MAX_CELL`] characters.
fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_CELL - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorded {
        sleeps: Vec<Duration>,
        steps: usize,
    }

    impl Pacer for Recorded {
        fn sleep(&mut self, gap: Duration) {
            self.sleeps.push(gap);
        }
        fn step(&mut self) {
            self.steps += 1;
        }
    }

    fn statement(seq: u64, at_ns: u64, sql: &str) -> RecordedEvent {
        RecordedEvent::now(
            uuid::Uuid::nil(),
            EventKind::Statement(StatementEvent {
                seq,
                command: "query".into(),
                sql: Some(sql.into()),
                started_at_ns: at_ns,
                result_sets: 1,
                columns: vec!["a".into()],
                rows: 1,
                result: vec![crate::recording::event::ResultSet {
                    columns: Vec::new(),
                    column_count: 1,
                    rows: vec![vec![RecordedValue::Text("x".repeat(100))]],
                    row_count: 1,
                }],
                ..StatementEvent::default()
            }),
        )
    }

    #[test]
    fn paces_by_the_recorded_gaps_divided_by_the_speed() {
        let events = [
            statement(1, 1_000_000_000, "SELECT 1"),
            statement(2, 3_000_000_000, "SELECT 2"),
            statement(3, 3_500_000_000, "SELECT 3"),
        ];
        let mut pacer = Recorded::default();
        let mut out = Vec::new();
        replay(&events, 2.0, &mut pacer, &mut out).expect("replay");
        assert_eq!(
            pacer.sleeps,
            [Duration::from_secs(1), Duration::from_millis(250)]
        );
        assert_eq!(pacer.steps, 2);
        let text = String::from_utf8(out).expect("utf8");
        for sql in ["> SELECT 1", "> SELECT 2", "> SELECT 3"] {
            assert!(text.contains(sql), "{text}");
        }
        let cell = format!("{}…", "x".repeat(MAX_CELL - 1));
        assert!(text.contains(&cell), "cells are cut: {text}");

        let mut pacer = Recorded::default();
        replay(&events, 0.0, &mut pacer, &mut Vec::new()).expect("replay");
        assert!(pacer.sleeps.is_empty(), "speed 0 never waits");
    }
}
