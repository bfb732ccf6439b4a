//! Inline masking of result sets (`[[masking]]`): personal data is rewritten in the rows as
//! they stream from the database, so the client, the recording, the logs and the spool only
//! ever see masked values.
//!
//! - [`rules`]: the configured rules (column names, `db.table.column` fields, detectors,
//!   style, exempt groups, targets, statement checks);
//! - [`detectors`]: content detectors (email, payment card with Luhn, phone, national id,
//!   IBAN with mod 97, API keys and JWTs), also under `HEX()`/`TO_BASE64()`;
//! - [`styles`]: full, partial, keyed hash, null;
//! - [`statement`]: statements refused before they run (functions, unions, subqueries, user
//!   variables over masked columns; unparsable ones);
//! - [`row`]: the plan of a result set, definition edits and row re-encoding (text and binary
//!   protocol).
//!
//! The session calls three things: [`SessionMasking::refusal`] before a `COM_QUERY` or
//! `COM_STMT_PREPARE` goes upstream, [`StatementMask::definition`] on every column definition
//! and [`StatementMask::row`] on every row (through `Relay::mask_row`), and remembers the plan
//! of a cursor for `COM_STMT_FETCH`. See `docs/masking.md`.

pub mod detectors;
pub mod row;
pub mod rules;
pub mod statement;
pub mod styles;

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::Deserialize;

pub use self::{
    detectors::Detector,
    row::ColumnPlan,
    rules::{MaskRule, MaskRuleConfig},
    statement::{Check, Refusal},
    styles::Style,
};
use crate::protocol::packets;

/// Cells masked since the gateway started (`tollgate_masked_cells_total`).
static MASKED_CELLS: AtomicU64 = AtomicU64::new(0);
/// Statements refused by masking checks since the gateway started
/// (`tollgate_masking_refused_statements_total`).
static REFUSED_STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Cells masked since the gateway started.
#[must_use]
pub fn masked_cells_total() -> u64 {
    MASKED_CELLS.load(Ordering::Relaxed)
}

/// Statements the masking checks refused since the gateway started.
#[must_use]
pub fn refused_statements_total() -> u64 {
    REFUSED_STATEMENTS.load(Ordering::Relaxed)
}

/// Every `[[masking]]` rule, in order (the first that matches a column masks it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Masking {
    rules: Vec<MaskRule>,
}

/// No rules: what sessions start with.
static NO_MASKING: Masking = Masking { rules: Vec::new() };

impl Masking {
    /// The rules.
    #[must_use]
    pub fn rules(&self) -> &[MaskRule] {
        &self.rules
    }
}

/// A session's masking: the rules of the configuration, its target, and the plans of open
/// cursors (their rows come later, with `COM_STMT_FETCH`).
#[derive(Debug)]
pub struct SessionMasking<'r> {
    masking: &'r Masking,
    target: &'r str,
    cursors: HashMap<u32, Vec<ColumnPlan>>,
}

impl Default for SessionMasking<'_> {
    fn default() -> Self {
        Self::new(&NO_MASKING, "")
    }
}

/// Cursors whose plans a session keeps at most (a client opening more loses the oldest
/// plans: their fetched rows are then replaced by `NULL`s, never passed raw).
const MAX_CURSORS: usize = 1024;

impl<'r> SessionMasking<'r> {
    /// Masking by `masking` on `target`.
    #[must_use]
    pub fn new(masking: &'r Masking, target: &'r str) -> Self {
        Self {
            masking,
            target,
            cursors: HashMap::new(),
        }
    }

    /// The rules that apply to an identity in `groups`, by index.
    fn active(&self, groups: &[String]) -> Vec<usize> {
        self.masking
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.applies(self.target, groups))
            .map(|(i, _)| i)
            .collect()
    }

    /// The refusal of a command's SQL by the statement checks (`COM_QUERY` and
    /// `COM_STMT_PREPARE` only), counted.
    #[must_use]
    pub fn refusal(&self, command: u8, packet: &[u8], groups: &[String]) -> Option<Refusal> {
        if self.masking.rules.is_empty() || !matches!(command, 0x03 | 0x16) {
            return None;
        }
        let rules: Vec<&MaskRule> = self
            .active(groups)
            .into_iter()
            .filter_map(|i| self.masking.rules.get(i))
            .collect();
        let sql = String::from_utf8_lossy(packet.get(1..).unwrap_or_default());
        let refusal = statement::check(&rules, &sql)?;
        REFUSED_STATEMENTS.fetch_add(1, Ordering::Relaxed);
        Some(refusal)
    }

    /// The masking of one command's response for an identity in `groups`; for
    /// `COM_STMT_FETCH`, with the plan remembered for the statement's cursor.
    #[must_use]
    pub fn statement(&self, command: u8, packet: &[u8], groups: &[String]) -> StatementMask {
        if self.masking.rules.is_empty() {
            return StatementMask::default();
        }
        let active = self.active(groups);
        let mut detectors: Vec<(Detector, usize)> = Vec::new();
        for &i in &active {
            for &d in self.masking.rules.get(i).map_or(&[][..], |r| &r.detectors) {
                if !detectors.iter().any(|(have, _)| *have == d) {
                    detectors.push((d, i));
                }
            }
        }
        let mut mask = StatementMask {
            binary: matches!(command, 0x17 | 0x1c),
            active,
            kinds: detectors.iter().map(|(d, _)| *d).collect(),
            detectors,
            ..StatementMask::default()
        };
        if command == 0x1c && !mask.active.is_empty() {
            let id = packets::Reader::new(packet.get(1..).unwrap_or_default()).u32();
            match id.and_then(|id| self.cursors.get(&id)) {
                Some(plan) => mask.load(plan.clone()),
                // Not known (evicted): rows are replaced by NULLs.
                None => mask.unknown_cursor = true,
            }
        }
        mask
    }

    /// An execute opened a cursor on statement `id`: its fetched rows are masked by the plan
    /// of the execute's result set.
    pub fn cursor(&mut self, id: u32, mask: &StatementMask) {
        if mask.active.is_empty() {
            return;
        }
        if self.cursors.len() >= MAX_CURSORS && !self.cursors.contains_key(&id) {
            self.cursors.clear();
        }
        self.cursors.insert(id, mask.plan.clone());
    }

    /// A statement was closed (or all, `None`: reset connection, change user).
    pub fn close(&mut self, id: Option<u32>) {
        match id {
            Some(id) => {
                self.cursors.remove(&id);
            }
            None => self.cursors.clear(),
        }
    }

    /// The rules.
    #[must_use]
    pub fn masking(&self) -> &'r Masking {
        self.masking
    }
}

/// The masking of one command's response: which rules apply, the plan of the current result
/// set, and the cells masked so far (recorded as the statement's `masked_cells`).
#[derive(Debug, Default)]
pub struct StatementMask {
    active: Vec<usize>,
    detectors: Vec<(Detector, usize)>,
    kinds: Vec<Detector>,
    binary: bool,
    plan: Vec<ColumnPlan>,
    /// True when some column of the plan is masked or scanned.
    masks: bool,
    /// Rows fetched from a cursor whose plan is not known.
    unknown_cursor: bool,
    /// Cells masked in the response.
    pub masked_cells: u64,
}

impl StatementMask {
    fn load(&mut self, plan: Vec<ColumnPlan>) {
        self.masks = plan.iter().any(|p| p.action != row::Action::Keep);
        self.plan = plan;
    }

    /// A result set begins: its column definitions follow.
    pub fn result_set(&mut self) {
        self.plan.clear();
        self.masks = false;
    }

    /// One column definition of the current result set (or of a prepare response): decides
    /// what happens to the column's values and returns the definition the client gets.
    #[must_use]
    pub fn definition(&mut self, masking: &Masking, mut definition: Vec<u8>) -> Vec<u8> {
        if self.active.is_empty() {
            return definition;
        }
        let rule = packets::parse_column_definition(&definition).and_then(|d| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let (schema, org_table, org_name, name) = (
                text(d.schema),
                text(d.org_table),
                text(d.org_name),
                text(d.name),
            );
            let column = rules::ColumnName {
                schema: &schema,
                org_table: &org_table,
                org_name: &org_name,
                name: &name,
            };
            self.active.iter().copied().find(|&i| {
                masking
                    .rules
                    .get(i)
                    .is_some_and(|r| r.matches_column(column))
            })
        });
        let scan_nulls = self.detectors.iter().any(|(_, i)| {
            masking
                .rules
                .get(*i)
                .is_some_and(|r| r.style == Style::Null)
        });
        let plan = ColumnPlan::decide(
            &mut definition,
            masking,
            rule,
            !self.detectors.is_empty(),
            scan_nulls,
        );
        self.masks |= plan.action != row::Action::Keep;
        self.plan.push(plan);
        definition
    }

    /// One row of the current result set, masked; counts the masked cells.
    #[must_use]
    pub fn row(&mut self, masking: &Masking, row: Vec<u8>) -> Vec<u8> {
        if self.unknown_cursor {
            // The width is unknown too: a row of one NULL is all that can be said safely.
            self.masked_cells += 1;
            MASKED_CELLS.fetch_add(1, Ordering::Relaxed);
            return row::null_row(1, self.binary);
        }
        if !self.masks {
            return row;
        }
        let masker = row::Masker {
            masking,
            detectors: &self.detectors,
            kinds: &self.kinds,
        };
        let rewritten = if self.binary {
            masker.binary_row(&row, &self.plan)
        } else {
            masker.text_row(&row, &self.plan)
        };
        let (out, cells) = rewritten.unwrap_or_else(|| {
            // A row that does not decode is never passed on raw.
            let columns = self.plan.len();
            (row::null_row(columns, self.binary), columns as u64)
        });
        self.masked_cells += cells;
        MASKED_CELLS.fetch_add(cells, Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masking() -> Masking {
        #[derive(Deserialize)]
        struct File {
            masking: Masking,
        }
        toml::from_str::<File>(
            "[[masking]]\nname = \"pii\"\ncolumns = [\"email\"]\nexempt_groups = [\"pii-readers\"]\ntargets = [\"shop\"]\n",
        )
        .expect("valid")
        .masking
    }

    /// A column definition of a `VARCHAR` named `name`.
    fn definition(name: &str) -> Vec<u8> {
        let mut p = Vec::new();
        for field in ["def", "shop", "c", "c", name, name] {
            row::put_lenenc_bytes(&mut p, field.as_bytes());
        }
        p.extend_from_slice(&[0x0c, 45, 0, 40, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
        p
    }

    fn text_row(values: &[&[u8]]) -> Vec<u8> {
        let mut p = Vec::new();
        for v in values {
            row::put_lenenc_bytes(&mut p, v);
        }
        p
    }

    #[test]
    fn a_session_masks_unless_exempt_or_another_target() {
        let m = masking();
        let row = text_row(&[b"1", b"a@b.io"]);
        for (target, groups, masked) in [
            ("shop", vec![], true),
            ("shop", vec!["pii-readers".to_owned()], false),
            ("other", vec![], false),
        ] {
            let session = SessionMasking::new(&m, target);
            let mut mask = session.statement(0x03, b"\x03SELECT", &groups);
            mask.result_set();
            let _ = mask.definition(&m, definition("id"));
            let _ = mask.definition(&m, definition("email"));
            let out = mask.row(&m, row.clone());
            assert_eq!(out != row, masked, "{target} {groups:?}");
            assert_eq!(mask.masked_cells, u64::from(masked));
        }
    }

    #[test]
    fn cursors_keep_their_plan_and_unknown_ones_give_nulls() {
        let m = masking();
        let mut session = SessionMasking::new(&m, "shop");
        let mut execute = session.statement(0x17, b"\x17\x07\x00\x00\x00", &[]);
        execute.result_set();
        let _ = execute.definition(&m, definition("email"));
        session.cursor(7, &execute);
        // A binary row: header, bitmap, "a@b.io".
        let mut row = vec![0x00, 0x00];
        row::put_lenenc_bytes(&mut row, b"a@b.io");
        let mut fetch = session.statement(0x1c, b"\x1c\x07\x00\x00\x00\x0a\x00\x00\x00", &[]);
        let mut expected = vec![0x00, 0x00];
        row::put_lenenc_bytes(&mut expected, b"XXXXXX");
        assert_eq!(fetch.row(&m, row.clone()), expected);
        session.close(Some(7));
        let mut unknown = session.statement(0x1c, b"\x1c\x07\x00\x00\x00\x0a\x00\x00\x00", &[]);
        assert_eq!(
            unknown.row(&m, row),
            [0x00, 0x04],
            "a NULL, never the raw row"
        );
    }

    #[test]
    fn refusals_are_counted_and_only_for_queries_and_prepares() {
        let m = masking();
        let session = SessionMasking::new(&m, "shop");
        let before = refused_statements_total();
        let refusal = session
            .refusal(0x03, b"\x03SELECT HEX(email) FROM c", &[])
            .expect("refused");
        assert_eq!(refusal.check, Check::Function);
        assert!(refused_statements_total() > before);
        assert!(session.refusal(0x02, b"\x02email", &[]).is_none());
        assert!(
            session
                .refusal(
                    0x03,
                    b"\x03SELECT HEX(email) FROM c",
                    &["pii-readers".into()]
                )
                .is_none()
        );
    }
}
