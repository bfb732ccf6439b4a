//! Row rewriting: a result set's plan (what happens to each column, decided from its
//! definition), the definition edits that keep metadata true for masked values, and the
//! re-encoding of text and binary rows with masked cells. The codec frames whatever payload
//! comes out, so a row whose length changed is framed anew (16 MiB splits included).
//!
//! What each column type gets, by style:
//! - string types (`CHAR`, `VARCHAR`, `TEXT`/`BLOB`, `JSON`, `ENUM`, `SET`, decimals as text in
//!   the text protocol excepted): the style's text; `null` gives `NULL` and the definition's
//!   `NOT_NULL` flag is cleared; `hash` raises the definition's length to at least 64 bytes
//!   (16 hex digits in any character set);
//! - integer types: `hash` gives the keyed hash as a non-negative integer that fits the type
//!   (7, 15, 23, 31 or 63 bits: small types collide); other styles as for the rest below;
//! - every other type (`DECIMAL`, `FLOAT`, `DOUBLE`, dates and times, `YEAR`, `BIT`, spatial):
//!   `NULL` when the column is nullable (`null` style: always, the flag cleared), else the
//!   type's zero value (`0`, `0000-00-00`, `00:00:00`, zero bytes), which the definition
//!   already allows.

use super::{
    Masking,
    detectors::{self, Detector},
    styles::{self, Style},
};
use crate::protocol::{
    packets::{self, Reader},
    values::{self, UNSIGNED_FLAG, Value, field_type as t},
};

/// Column flag: the column is `NOT NULL`.
const NOT_NULL_FLAG: u16 = 0x0001;
/// The least length (bytes) of a `hash`-masked string column's definition.
const HASH_LENGTH: u32 = 64;

/// What happens to one column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Passed unchanged.
    Keep,
    /// Masked by the rule with this index.
    Rule(usize),
    /// Scanned by the content detectors (string columns).
    Scan,
    /// The definition did not decode: values cannot be read, rows are replaced by `NULL`s.
    Unknown,
}

/// One column of a result set as the masker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnPlan {
    column_type: u8,
    unsigned: bool,
    nullable: bool,
    /// Declared length (`BIT`: bits), for zero values.
    length: u32,
    /// What happens to its values.
    pub action: Action,
}

/// True for types whose values the text masks may replace (strings, blobs, JSON).
fn is_textual(column_type: u8) -> bool {
    values::is_string_type(column_type) || column_type == t::JSON
}

/// Bits of a keyed-hash integer for an integer type; `None` for other types.
fn integer_bits(column_type: u8) -> Option<u32> {
    Some(match column_type {
        t::TINY => 7,
        t::SHORT => 15,
        t::INT24 => 23,
        t::LONG => 31,
        t::LONGLONG => 63,
        _ => return None,
    })
}

impl ColumnPlan {
    /// Decides what happens to a column from its definition, editing the definition where
    /// the masked values need it (see the module doc). `rule` is the first rule matching the
    /// column by name or field; `scan` is whether detectors apply to it, `scan_nulls` whether
    /// one of them masks with `NULL`.
    pub(super) fn decide(
        definition: &mut [u8],
        masking: &Masking,
        rule: Option<usize>,
        detectors: bool,
        scan_nulls: bool,
    ) -> Self {
        let Some(d) = packets::parse_column_definition(definition) else {
            return Self {
                column_type: t::NULL,
                unsigned: false,
                nullable: true,
                length: 0,
                action: Action::Unknown,
            };
        };
        let mut plan = Self {
            column_type: d.column_type,
            unsigned: d.flags & UNSIGNED_FLAG != 0,
            nullable: d.flags & NOT_NULL_FLAG == 0,
            length: d.length,
            action: Action::Keep,
        };
        let (mut flags, mut length) = (d.flags, d.length);
        let textual = is_textual(d.column_type);
        if let Some(index) = rule {
            plan.action = Action::Rule(index);
            let style = masking.rules.get(index).map_or(Style::Full, |r| r.style);
            if style == Style::Null {
                flags &= !NOT_NULL_FLAG;
            }
            if style == Style::Hash && textual {
                length = length.max(HASH_LENGTH);
            }
        } else if detectors && textual {
            plan.action = Action::Scan;
            if scan_nulls {
                flags &= !NOT_NULL_FLAG;
            }
        }
        if (flags, length) != (d.flags, d.length) {
            edit_fixed_fields(
                definition,
                (d.charset, d.length, d.column_type),
                flags,
                length,
            );
            plan.nullable = flags & NOT_NULL_FLAG == 0;
        }
        plan
    }
}

/// Rewrites the length and flags of a result column definition, whose fixed fields are its
/// last 12 bytes (`charset`, `length`, `type`, `flags`, `decimals`, filler); left alone when
/// they are not where the parsed values say.
fn edit_fixed_fields(definition: &mut [u8], parsed: (u16, u32, u8), flags: u16, length: u32) {
    let n = definition.len();
    let Some(fixed) = n
        .checked_sub(12)
        .and_then(|start| definition.get_mut(start..))
    else {
        return;
    };
    let (charset, old_length, column_type) = parsed;
    let matches = fixed.get(0..2) == Some(&charset.to_le_bytes()[..])
        && fixed.get(2..6) == Some(&old_length.to_le_bytes()[..])
        && fixed.get(6) == Some(&column_type);
    if !matches {
        return;
    }
    if let Some(slot) = fixed.get_mut(2..6) {
        slot.copy_from_slice(&length.to_le_bytes());
    }
    if let Some(slot) = fixed.get_mut(7..9) {
        slot.copy_from_slice(&flags.to_le_bytes());
    }
}

/// A cell after masking.
enum Cell<'a> {
    /// Unchanged: its bytes as they were on the wire (binary: the encoded value).
    Raw(&'a [u8]),
    /// SQL `NULL`.
    Null,
    /// Text (a length-encoded string on the wire in both protocols).
    Text(Vec<u8>),
    /// An integer (text: its digits; binary: the type's width).
    Int(i64),
    /// The type's zero value.
    Zero,
}

/// What rewriting needs besides the plan.
pub(super) struct Masker<'m> {
    pub(super) masking: &'m Masking,
    /// The detectors that apply, each with the rule it belongs to.
    pub(super) detectors: &'m [(Detector, usize)],
    /// The same detectors alone, in the same order.
    pub(super) kinds: &'m [Detector],
}

impl Masker<'_> {
    /// A value of a column masked by rule `index`; `canonical` is the value as text (what a
    /// keyed hash is taken of, the same in both protocols).
    fn by_rule<'a>(&self, index: usize, plan: &ColumnPlan, canonical: &[u8]) -> Cell<'a> {
        let Some(rule) = self.masking.rules.get(index) else {
            return Cell::Null;
        };
        if is_textual(plan.column_type) {
            return match styles::mask_text(rule.style, canonical, rule.key.as_ref()) {
                Some(text) => Cell::Text(text),
                None => Cell::Null,
            };
        }
        if let (Style::Hash, Some(key), Some(bits)) =
            (rule.style, &rule.key, integer_bits(plan.column_type))
        {
            return Cell::Int(key.integer(canonical, bits));
        }
        if plan.nullable || rule.style == Style::Null {
            Cell::Null
        } else {
            Cell::Zero
        }
    }

    /// A string value scanned by the detectors: `None` when nothing was found.
    fn scan<'a>(&self, value: &[u8]) -> Option<Cell<'a>> {
        let kinds = self.kinds;
        let rule_of = |i: usize| {
            self.detectors
                .get(i)
                .and_then(|(_, r)| self.masking.rules.get(*r))
        };
        // HEX(...) or TO_BASE64(...) of personal data: the whole value goes (checked first:
        // digit runs inside hex must not leave the rest of it readable).
        if let Some(decoded) = detectors::decoded(value)
            && let Some(&(_, _, first)) = detectors::spans(&decoded, kinds).first()
        {
            // A detector always belongs to a rule; if not, the value goes anyway.
            return Some(rule_of(first).map_or(Cell::Null, |rule| match rule.style {
                Style::Null => Cell::Null,
                style => Cell::Text(styles::mask_span(style, value, rule.key.as_ref())),
            }));
        }
        let spans = detectors::spans(value, kinds);
        if spans.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(value.len());
        let mut at = 0;
        for (start, end, detector) in spans {
            let Some(rule) = rule_of(detector) else {
                return Some(Cell::Null);
            };
            if rule.style == Style::Null {
                return Some(Cell::Null);
            }
            out.extend_from_slice(value.get(at..start).unwrap_or_default());
            let span = value.get(start..end).unwrap_or_default();
            out.extend_from_slice(&styles::mask_span(rule.style, span, rule.key.as_ref()));
            at = end;
        }
        out.extend_from_slice(value.get(at..).unwrap_or_default());
        Some(Cell::Text(out))
    }

    /// A cell of `plan`'s column; `canonical` its value as text, `raw` as on the wire.
    fn cell<'a>(&self, plan: &ColumnPlan, canonical: &[u8], raw: &'a [u8]) -> (Cell<'a>, bool) {
        match plan.action {
            Action::Keep => (Cell::Raw(raw), false),
            Action::Rule(index) => (self.by_rule(index, plan, canonical), true),
            Action::Scan => match self.scan(canonical) {
                Some(cell) => (cell, true),
                None => (Cell::Raw(raw), false),
            },
            Action::Unknown => (Cell::Null, true),
        }
    }

    /// Masks a text-protocol row; the new payload and the cells masked. `None` when the row
    /// does not decode.
    pub(super) fn text_row(&self, row: &[u8], plan: &[ColumnPlan]) -> Option<(Vec<u8>, u64)> {
        let mut r = Reader::new(row);
        let mut out = Vec::with_capacity(row.len());
        let mut masked = 0;
        for column in plan {
            let before = r.rest();
            if before.first() == Some(&0xfb) {
                r.take(1)?;
                out.push(0xfb);
                continue;
            }
            let value = r.lenenc_bytes()?;
            let raw = before.get(..before.len() - r.rest().len())?;
            let (cell, was_masked) = self.cell(column, value, raw);
            masked += u64::from(was_masked);
            match cell {
                Cell::Raw(bytes) => out.extend_from_slice(bytes),
                Cell::Null => out.push(0xfb),
                Cell::Text(text) => put_lenenc_bytes(&mut out, &text),
                Cell::Int(n) => put_lenenc_bytes(&mut out, n.to_string().as_bytes()),
                Cell::Zero => put_lenenc_bytes(&mut out, zero_text(column.column_type)),
            }
        }
        r.rest().is_empty().then_some((out, masked))
    }

    /// Masks a binary-protocol row (header, `NULL` bitmap, values); as [`Self::text_row`].
    pub(super) fn binary_row(&self, row: &[u8], plan: &[ColumnPlan]) -> Option<(Vec<u8>, u64)> {
        let mut r = Reader::new(row);
        if r.u8()? != 0x00 {
            return None;
        }
        let bitmap_len = plan.len().saturating_add(9) / 8;
        let old_bitmap = r.take(bitmap_len)?;
        let mut bitmap = old_bitmap.to_vec();
        let mut body = Vec::with_capacity(row.len());
        let mut masked = 0;
        for (i, column) in plan.iter().enumerate() {
            let bit = i + 2;
            if old_bitmap
                .get(bit / 8)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
            {
                continue;
            }
            let before = r.rest();
            let value = values::binary_value(&mut r, column.column_type, column.unsigned)?;
            let raw = before.get(..before.len() - r.rest().len())?;
            let canonical = canonical(value);
            let (cell, was_masked) = self.cell(column, &canonical, raw);
            masked += u64::from(was_masked);
            match cell {
                Cell::Raw(bytes) => body.extend_from_slice(bytes),
                Cell::Null => {
                    if let Some(byte) = bitmap.get_mut(bit / 8) {
                        *byte |= 1 << (bit % 8);
                    }
                }
                Cell::Text(text) => put_lenenc_bytes(&mut body, &text),
                Cell::Int(n) => put_binary_int(&mut body, column.column_type, n),
                Cell::Zero => put_binary_zero(&mut body, column),
            }
        }
        if !r.rest().is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(1 + bitmap.len() + body.len());
        out.push(0x00);
        out.extend_from_slice(&bitmap);
        out.extend_from_slice(&body);
        Some((out, masked))
    }
}

/// A row of `columns` `NULL`s: what the client gets for a row that cannot be decoded while
/// masking applies to it (never the raw row).
pub(super) fn null_row(columns: usize, binary: bool) -> Vec<u8> {
    if binary {
        let mut out = vec![0x00];
        let bitmap_len = columns.saturating_add(9) / 8;
        let mut bitmap = vec![0u8; bitmap_len];
        for bit in 2..columns + 2 {
            if let Some(byte) = bitmap.get_mut(bit / 8) {
                *byte |= 1 << (bit % 8);
            }
        }
        out.extend_from_slice(&bitmap);
        out
    } else {
        vec![0xfb; columns]
    }
}

/// A binary value as text: what a keyed hash is taken of and the detectors read.
fn canonical(value: Value<'_>) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::Int(n) => n.to_string().into_bytes(),
        Value::UInt(n) => n.to_string().into_bytes(),
        Value::Double(n) => n.to_string().into_bytes(),
        Value::Bytes(bytes) => bytes.to_vec(),
        Value::DateTime(d) => d.to_string().into_bytes(),
        Value::Time(d) => d.to_string().into_bytes(),
    }
}

/// The zero value of a type as text.
fn zero_text(column_type: u8) -> &'static [u8] {
    match column_type {
        t::DATE | t::NEWDATE => b"0000-00-00",
        t::DATETIME | t::TIMESTAMP => b"0000-00-00 00:00:00",
        t::TIME => b"00:00:00",
        t::YEAR => b"0000",
        t::BIT | t::GEOMETRY => b"",
        _ => b"0",
    }
}

fn put_binary_int(out: &mut Vec<u8>, column_type: u8, n: i64) {
    let bytes = n.to_le_bytes();
    let width = match column_type {
        t::TINY => 1,
        t::SHORT | t::YEAR => 2,
        t::LONG | t::INT24 => 4,
        _ => 8,
    };
    out.extend_from_slice(bytes.get(..width).unwrap_or(&bytes));
}

fn put_binary_zero(out: &mut Vec<u8>, column: &ColumnPlan) {
    match column.column_type {
        t::TINY | t::SHORT | t::YEAR | t::LONG | t::INT24 | t::LONGLONG => {
            put_binary_int(out, column.column_type, 0);
        }
        t::FLOAT => out.extend_from_slice(&0f32.to_le_bytes()),
        t::DOUBLE => out.extend_from_slice(&0f64.to_le_bytes()),
        // A zero-length date or time is the zero value.
        t::DATE | t::NEWDATE | t::DATETIME | t::TIMESTAMP | t::TIME => out.push(0),
        t::BIT => {
            let bytes = usize::try_from(column.length.div_ceil(8))
                .unwrap_or(1)
                .clamp(1, 8);
            put_lenenc_bytes(out, &vec![0; bytes]);
        }
        other => put_lenenc_bytes(out, zero_text(other)),
    }
}

/// Appends a length-encoded string.
pub(super) fn put_lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len() as u64;
    match n {
        0..=250 => out.push(u8::try_from(n).unwrap_or(0)),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&n.to_le_bytes()[..2]);
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&n.to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result column definition as MariaDB sends it.
    pub(crate) fn definition(
        table: &str,
        name: &str,
        alias: &str,
        column_type: u8,
        flags: u16,
    ) -> Vec<u8> {
        let mut p = Vec::new();
        for field in ["def", "shop", table, table, alias, name] {
            put_lenenc_bytes(&mut p, field.as_bytes());
        }
        p.push(0x0c);
        p.extend_from_slice(&45u16.to_le_bytes());
        p.extend_from_slice(&40u32.to_le_bytes());
        p.push(column_type);
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]);
        p
    }

    fn masking(toml_text: &str) -> Masking {
        #[derive(serde::Deserialize)]
        struct File {
            masking: Masking,
        }
        toml::from_str::<File>(toml_text).expect("valid").masking
    }

    fn plan_of(m: &Masking, defs: &mut [Vec<u8>]) -> Vec<ColumnPlan> {
        let detectors = m.rules.iter().any(|r| !r.detectors.is_empty());
        defs.iter_mut()
            .map(|d| {
                let parsed = packets::parse_column_definition(d).expect("parses");
                let column = super::super::rules::ColumnName {
                    schema: std::str::from_utf8(parsed.schema).expect("utf8"),
                    org_table: std::str::from_utf8(parsed.org_table).expect("utf8"),
                    org_name: std::str::from_utf8(parsed.org_name).expect("utf8"),
                    name: std::str::from_utf8(parsed.name).expect("utf8"),
                };
                let rule = m.rules.iter().position(|r| r.matches_column(column));
                ColumnPlan::decide(d, m, rule, detectors, false)
            })
            .collect()
    }

    #[test]
    fn text_rows_are_reframed_with_new_lengths() {
        let m = masking(
            "[[masking]]\nname = \"cards\"\nfields = [\"customers.card\"]\nstyle = \"partial\"\n[[masking]]\nname = \"content\"\ndetectors = [\"email\"]\n",
        );
        let mut defs = vec![
            definition("customers", "id", "id", t::LONG, NOT_NULL_FLAG),
            definition("customers", "card", "c", t::VAR_STRING, 0),
            definition("", "", "CONCAT(email)", t::VAR_STRING, 0),
        ];
        let plan = plan_of(&m, &mut defs);
        assert_eq!(
            plan.iter().map(|p| p.action).collect::<Vec<_>>(),
            [Action::Keep, Action::Rule(0), Action::Scan]
        );
        let mut row = Vec::new();
        put_lenenc_bytes(&mut row, b"7");
        put_lenenc_bytes(&mut row, b"4111111111111111");
        let long = format!("{}<a@example.com>", "x".repeat(300));
        put_lenenc_bytes(&mut row, long.as_bytes());
        let detectors = [(Detector::Email, 1)];
        let masker = Masker {
            masking: &m,
            detectors: &detectors,
            kinds: &[Detector::Email],
        };
        let (out, cells) = masker.text_row(&row, &plan).expect("decodes");
        assert_eq!(cells, 2);
        let mut expected = Vec::new();
        put_lenenc_bytes(&mut expected, b"7");
        put_lenenc_bytes(&mut expected, b"XXXXXXXXXXXX1111");
        put_lenenc_bytes(
            &mut expected,
            format!("{}<XXXXXXXXXXXXX>", "x".repeat(300)).as_bytes(),
        );
        assert_eq!(out, expected);
        assert_eq!(
            out[19], 0xfc,
            "a 2-byte length prefix for the 317-byte value"
        );
        // A row cut short does not decode.
        assert!(masker.text_row(&row[..10], &plan).is_none());
    }

    #[test]
    fn binary_rows_get_nulls_zeros_and_hashed_integers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, b"0123456789abcdef0123").expect("write");
        let m = masking(&format!(
            "[[masking]]\nname = \"ids\"\ncolumns = [\"ssn_id\"]\nstyle = \"hash\"\nhash_key_file = \"{}\"\n[[masking]]\nname = \"dates\"\ncolumns = [\"born\", \"salary\"]\n[[masking]]\nname = \"e\"\ncolumns = [\"email\"]\nstyle = \"null\"\n",
            key.display()
        ));
        let mut defs = vec![
            definition("p", "ssn_id", "ssn_id", t::LONG, NOT_NULL_FLAG),
            definition("p", "born", "born", t::DATE, NOT_NULL_FLAG),
            definition("p", "salary", "salary", t::DOUBLE, 0),
            definition("p", "email", "email", t::VAR_STRING, NOT_NULL_FLAG),
            definition("p", "name", "name", t::VAR_STRING, 0),
        ];
        let plan = plan_of(&m, &mut defs);
        // The null style cleared NOT_NULL on the email column's definition.
        let email = packets::parse_column_definition(&defs[3]).expect("parses");
        assert_eq!(email.flags & NOT_NULL_FLAG, 0);
        assert_eq!(email.length, 40);
        let mut row = vec![0x00, 0x00];
        row.extend_from_slice(&123_456_789u32.to_le_bytes());
        row.extend_from_slice(&[4, 0xd0, 0x07, 1, 2]);
        row.extend_from_slice(&1000.5f64.to_le_bytes());
        put_lenenc_bytes(&mut row, b"a@b.io");
        put_lenenc_bytes(&mut row, b"Alice");
        let masker = Masker {
            masking: &m,
            detectors: &[],
            kinds: &[],
        };
        let (out, cells) = masker.binary_row(&row, &plan).expect("decodes");
        assert_eq!(cells, 4);
        let rule_key = m.rules[0].key.as_ref().expect("key");
        let hashed = i32::try_from(rule_key.integer(b"123456789", 31)).expect("31 bits");
        let mut expected = vec![0x00, 0b0011_0000];
        expected.extend_from_slice(&hashed.to_le_bytes());
        expected.push(0); // NOT NULL date: the zero date
        put_lenenc_bytes(&mut expected, b"Alice");
        assert_eq!(out, expected);
        let decoded = values::binary_row(
            &out,
            5,
            &[
                (t::LONG, false),
                (t::DATE, false),
                (t::DOUBLE, false),
                (t::VAR_STRING, false),
                (t::VAR_STRING, false),
            ],
        );
        assert_eq!(decoded[2], Some(Value::Null));
        assert_eq!(decoded[3], Some(Value::Null));
        assert_eq!(decoded[4], Some(Value::Bytes(b"Alice")));
        // The same value hashes alike over the text protocol.
        let mut text = Vec::new();
        for v in [
            &b"123456789"[..],
            b"2000-01-02",
            b"1000.5",
            b"a@b.io",
            b"Alice",
        ] {
            put_lenenc_bytes(&mut text, v);
        }
        let (out, _) = masker.text_row(&text, &plan).expect("decodes");
        let mut r = Reader::new(&out);
        assert_eq!(
            r.lenenc_bytes(),
            Some(hashed.to_string().as_bytes()),
            "joins line up across protocols"
        );
        assert_eq!(r.lenenc_bytes(), Some(&b"0000-00-00"[..]));
    }

    #[test]
    fn hash_raises_the_declared_length_and_null_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, b"0123456789abcdef0123").expect("write");
        let m = masking(&format!(
            "[[masking]]\nname = \"h\"\ncolumns = [\"code\"]\nstyle = \"hash\"\nhash_key_file = \"{}\"\n",
            key.display()
        ));
        let mut defs = vec![definition("t", "code", "code", t::STRING, 0)];
        let _ = plan_of(&m, &mut defs);
        let d = packets::parse_column_definition(&defs[0]).expect("parses");
        assert_eq!(d.length, HASH_LENGTH);
        assert_eq!(null_row(3, false), [0xfb; 3]);
        assert_eq!(null_row(7, true), [0x00, 0b1111_1100, 0b0000_0001]);
    }
}
