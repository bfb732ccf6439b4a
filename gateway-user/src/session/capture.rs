//! What a statement's response looks like in the recording: each result set's column
//! definitions and first rows, decoded from the text or binary protocol and bounded by
//! [`RowCaps`], and the conversion of wire values into recorded ones.
//!
//! Memory per statement is bounded: at most [`MAX_RECORDED_COLUMNS`] column definitions and
//! values per row, [`MAX_RECORDED_RESULT_SETS`] result sets, and the rows and bytes of
//! [`RowCaps`]; beyond them rows and bytes are only counted.

use std::fmt::Write as _;

use crate::{
    protocol::{
        packets,
        values::{self, BINARY_CHARSET, UNSIGNED_FLAG, Value},
    },
    recording::event::{Column, RecordedValue, ResultSet},
};

/// Column definitions recorded per statement at most (the rest are counted only); also the
/// most values recorded per row.
pub const MAX_RECORDED_COLUMNS: usize = 256;
/// Result sets recorded per statement at most (a procedure may return many).
pub const MAX_RECORDED_RESULT_SETS: usize = 64;
/// Bytes of each name in a recorded column definition at most.
const MAX_NAME: usize = 256;

/// How many rows of a statement's response the recording keeps. The defaults are what
/// `[recording] max_rows_per_statement` and `max_row_bytes_per_statement` default to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCaps {
    /// Rows recorded per statement at most (across its result sets).
    pub max_rows: u64,
    /// Bytes of row data (row packet payloads) recorded per statement at most; the row that
    /// crosses the limit is recorded with its values cut to fit.
    pub max_bytes: u64,
}

impl RowCaps {
    /// 100 rows.
    pub const DEFAULT_MAX_ROWS: u64 = 100;
    /// 64 KiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024;
}

impl Default for RowCaps {
    fn default() -> Self {
        Self {
            max_rows: Self::DEFAULT_MAX_ROWS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// What decoding a column's values needs (kept for every recorded column, and remembered per
/// prepared statement for the rows `COM_STMT_FETCH` returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Field type.
    pub column_type: u8,
    /// Field flags (unsigned ...).
    pub flags: u16,
    /// Character set (63: bytes, not text).
    pub charset: u16,
}

impl ColumnInfo {
    /// A column whose definition did not decode: its binary values cannot be read.
    const UNKNOWN: Self = Self {
        column_type: 0xf3,
        flags: 0,
        charset: 0,
    };

    /// How values of the column are recorded.
    fn kind(self) -> Kind {
        if values::is_binary_type(self.column_type)
            || self.charset == BINARY_CHARSET && values::is_string_type(self.column_type)
        {
            Kind::Bytes
        } else {
            Kind::Text
        }
    }
}

/// How a value's bytes are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// As text when they are UTF-8, as hex otherwise.
    Text,
    /// As hex.
    Bytes,
}

/// A statement's response as the recording keeps it, filled in as the response streams by.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    caps: RowCaps,
    /// Rows are in the binary protocol (`COM_STMT_EXECUTE`, `COM_STMT_FETCH`).
    binary: bool,
    /// Decoding information of the current result set's first columns.
    columns: Vec<ColumnInfo>,
    /// Columns of the current result set.
    column_count: u64,
    /// True while the current result set is the last entry of `result`.
    recording: bool,
    rows_recorded: u64,
    bytes_recorded: u64,
    definitions_recorded: usize,
    /// The result sets recorded.
    pub result: Vec<ResultSet>,
    /// Bytes of row data returned, recorded or not.
    pub row_bytes: u64,
    /// True when rows or values were left out.
    pub rows_truncated: bool,
}

impl Capture {
    /// An empty capture; `binary` for the binary protocol's rows.
    #[must_use]
    pub fn new(caps: RowCaps, binary: bool) -> Self {
        Self {
            caps,
            binary,
            ..Self::default()
        }
    }

    /// Columns described without a result set (a prepare response's): their definitions
    /// follow and are kept for decoding only.
    pub fn describe(&mut self, column_count: u64) {
        self.columns.clear();
        self.column_count = column_count;
        self.recording = false;
    }

    /// A result set of `column_count` columns begins (its definitions follow).
    pub fn result_set(&mut self, column_count: u64) {
        self.columns.clear();
        self.column_count = column_count;
        self.recording = self.result.len() < MAX_RECORDED_RESULT_SETS;
        if self.recording {
            self.result.push(ResultSet {
                columns: Vec::new(),
                column_count,
                rows: Vec::new(),
                row_count: 0,
            });
        } else {
            self.rows_truncated = true;
        }
    }

    /// One column definition of the current result set.
    pub fn column_definition(&mut self, definition: &[u8]) {
        let parsed = packets::parse_column_definition(definition);
        if self.columns.len() < MAX_RECORDED_COLUMNS {
            self.columns
                .push(parsed.map_or(ColumnInfo::UNKNOWN, |d| ColumnInfo {
                    column_type: d.column_type,
                    flags: d.flags,
                    charset: d.charset,
                }));
        }
        if !self.recording || self.definitions_recorded >= MAX_RECORDED_COLUMNS {
            return;
        }
        let Some(set) = self.result.last_mut() else {
            return;
        };
        self.definitions_recorded += 1;
        let text = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes.get(..MAX_NAME).unwrap_or(bytes)).into_owned()
        };
        set.columns.push(match parsed {
            Some(d) => Column {
                name: text(d.name),
                org_name: text(d.org_name),
                table: text(d.table),
                org_table: text(d.org_table),
                schema: text(d.schema),
                column_type: type_name(d.column_type),
                length: d.length,
                flags: d.flags,
                decimals: d.decimals,
                charset: d.charset,
            },
            None => Column {
                name: String::new(),
                org_name: String::new(),
                table: String::new(),
                org_table: String::new(),
                schema: String::new(),
                column_type: "UNKNOWN".into(),
                length: 0,
                flags: 0,
                decimals: 0,
                charset: 0,
            },
        });
    }

    /// Rows fetched from a cursor (`COM_STMT_FETCH`): one result set without definitions,
    /// decoded with the columns remembered for the statement (`None`: not known, the rows are
    /// counted only).
    pub fn fetched(&mut self, columns: Option<(&[ColumnInfo], u64)>) {
        self.result_set(columns.map_or(0, |(_, count)| count));
        if let Some((columns, _)) = columns {
            self.columns.extend_from_slice(columns);
        } else {
            self.recording = false;
            self.result.clear();
        }
    }

    /// Decoding information of the current result set's first columns.
    #[must_use]
    pub fn columns(&self) -> &[ColumnInfo] {
        &self.columns
    }

    /// Columns of the current result set.
    #[must_use]
    pub fn column_count(&self) -> u64 {
        self.column_count
    }

    /// One row of the current result set, exactly as the client receives it.
    pub fn row(&mut self, row: &[u8]) {
        self.row_bytes += row.len() as u64;
        let Some(set) = self.result.last_mut().filter(|_| self.recording) else {
            self.rows_truncated = true;
            return;
        };
        set.row_count += 1;
        let remaining = self.caps.max_bytes.saturating_sub(self.bytes_recorded);
        if self.rows_recorded >= self.caps.max_rows || remaining == 0 {
            self.rows_truncated = true;
            return;
        }
        let width = usize::try_from(self.column_count)
            .unwrap_or(usize::MAX)
            .min(MAX_RECORDED_COLUMNS);
        if width < usize::try_from(self.column_count).unwrap_or(usize::MAX) {
            self.rows_truncated = true;
        }
        let decoded = if self.binary {
            let types: Vec<(u8, bool)> = (0..width)
                .map(|i| {
                    let c = self.columns.get(i).copied().unwrap_or(ColumnInfo::UNKNOWN);
                    (c.column_type, c.flags & UNSIGNED_FLAG != 0)
                })
                .collect();
            let columns = usize::try_from(self.column_count).unwrap_or(usize::MAX);
            values::binary_row(row, columns, &types)
        } else {
            values::text_row(row, width)
        };
        let mut allowance = usize::try_from(remaining).unwrap_or(usize::MAX);
        let mut cut = false;
        let values = decoded
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let kind = self.columns.get(i).map_or(Kind::Text, |c| c.kind());
                let (value, was_cut) = recorded(value, kind, &mut allowance);
                cut |= was_cut;
                value
            })
            .collect();
        set.rows.push(values);
        self.rows_recorded += 1;
        self.bytes_recorded = self.bytes_recorded.saturating_add(row.len() as u64);
        if cut || self.bytes_recorded > self.caps.max_bytes {
            self.bytes_recorded = self.caps.max_bytes;
            self.rows_truncated = true;
        }
    }
}

/// The recorded name of a field type (`TYPE_n` for a number no server sends).
#[must_use]
pub fn type_name(column_type: u8) -> String {
    values::type_name(column_type).map_or_else(|| format!("TYPE_{column_type}"), str::to_owned)
}

/// A wire value as recorded: bytes as text or hex by `kind`, at most `allowance` bytes of
/// them (which is reduced by what is kept); true when the value was cut. `None` (a value that
/// did not decode) is recorded as malformed.
pub fn recorded(
    value: Option<Value<'_>>,
    kind: Kind,
    allowance: &mut usize,
) -> (RecordedValue, bool) {
    let Some(value) = value else {
        return (RecordedValue::Malformed { malformed: true }, false);
    };
    match value {
        Value::Null => (RecordedValue::Null, false),
        Value::Int(v) => (RecordedValue::Int(v), false),
        Value::UInt(v) => (RecordedValue::UInt(v), false),
        Value::Double(v) if v.is_finite() => (RecordedValue::Float(v), false),
        Value::Double(v) => (RecordedValue::Text(v.to_string()), false),
        Value::DateTime(v) => (RecordedValue::Text(v.to_string()), false),
        Value::Time(v) => (RecordedValue::Text(v.to_string()), false),
        Value::Bytes(bytes) => recorded_bytes(bytes, bytes.len() as u64, kind, allowance),
    }
}

/// `kept` (the beginning of a value of `total` bytes, or all of it) as recorded, cut to
/// `allowance` bytes; true when what is recorded is not the whole value.
pub fn recorded_bytes(
    kept: &[u8],
    total: u64,
    kind: Kind,
    allowance: &mut usize,
) -> (RecordedValue, bool) {
    let take = kept.len().min(*allowance);
    let prefix = kept.get(..take).unwrap_or(kept);
    let whole = take as u64 == total;
    if kind == Kind::Text {
        let text = match std::str::from_utf8(prefix) {
            Ok(text) => Some(text),
            // Cut inside a character: keep the characters before it.
            Err(e) if e.error_len().is_none() && !whole => {
                std::str::from_utf8(prefix.get(..e.valid_up_to()).unwrap_or_default()).ok()
            }
            Err(_) => None,
        };
        if let Some(text) = text {
            *allowance -= text.len();
            return if whole {
                (RecordedValue::Text(text.to_owned()), false)
            } else {
                let text = text.to_owned();
                (RecordedValue::TruncatedText { text, bytes: total }, true)
            };
        }
    }
    *allowance -= take;
    let mut hex = String::with_capacity(take * 2);
    for b in prefix {
        let _ = write!(hex, "{b:02x}");
    }
    (RecordedValue::Binary { hex, bytes: total }, !whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::values::field_type as t;

    /// A column definition packet.
    fn definition(name: &str, column_type: u8, charset: u16, flags: u16) -> Vec<u8> {
        let mut p = Vec::new();
        for field in [
            &b"def"[..],
            b"demo",
            b"c",
            b"customers",
            name.as_bytes(),
            b"orig",
        ] {
            p.push(u8::try_from(field.len()).expect("short"));
            p.extend_from_slice(field);
        }
        p.push(0x0c);
        p.extend_from_slice(&charset.to_le_bytes());
        p.extend_from_slice(&255u32.to_le_bytes());
        p.push(column_type);
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]);
        p
    }

    fn lenenc_row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut p = Vec::new();
        for v in values {
            match v {
                None => p.push(0xfb),
                Some(v) => {
                    p.push(u8::try_from(v.len()).expect("short"));
                    p.extend_from_slice(v);
                }
            }
        }
        p
    }

    fn text(s: &str) -> RecordedValue {
        RecordedValue::Text(s.into())
    }

    #[test]
    fn text_rows_with_definitions_and_row_cap() {
        let mut c = Capture::new(
            RowCaps {
                max_rows: 2,
                max_bytes: 1024,
            },
            false,
        );
        c.result_set(3);
        c.column_definition(&definition("id", t::LONGLONG, 63, 0));
        c.column_definition(&definition("email", t::VAR_STRING, 45, 0));
        c.column_definition(&definition("raw", t::BLOB, 63, 0x80));
        for i in 0..5u8 {
            c.row(&lenenc_row(&[Some(&[b'0' + i]), None, Some(&[0, 0xff])]));
        }
        let set = &c.result[0];
        assert_eq!(set.columns[1].name, "email");
        assert_eq!(set.columns[1].org_name, "orig");
        assert_eq!(set.columns[1].column_type, "VAR_STRING");
        assert_eq!(set.columns[0].table, "c");
        assert_eq!(set.columns[0].org_table, "customers");
        assert_eq!(set.columns[0].schema, "demo");
        assert_eq!(set.columns[2].flags, 0x80);
        assert_eq!(set.columns[2].charset, 63);
        assert_eq!(set.row_count, 5);
        assert_eq!(
            set.rows,
            [
                vec![
                    text("0"),
                    RecordedValue::Null,
                    RecordedValue::Binary {
                        hex: "00ff".into(),
                        bytes: 2
                    }
                ],
                vec![
                    text("1"),
                    RecordedValue::Null,
                    RecordedValue::Binary {
                        hex: "00ff".into(),
                        bytes: 2
                    }
                ],
            ]
        );
        assert!(c.rows_truncated);
        assert_eq!(c.row_bytes, 5 * 6);
    }

    #[test]
    fn byte_cap_cuts_the_row_that_crosses_it() {
        let mut c = Capture::new(
            RowCaps {
                max_rows: 100,
                max_bytes: 12,
            },
            false,
        );
        c.result_set(2);
        c.column_definition(&definition("a", t::VAR_STRING, 45, 0));
        c.column_definition(&definition("b", t::VAR_STRING, 45, 0));
        c.row(&lenenc_row(&[Some(b"abc"), Some(b"de")])); // 7 bytes
        assert!(!c.rows_truncated);
        // 5 bytes left: "xyz", then 2 bytes of "héllo", cut inside the "é".
        c.row(&lenenc_row(&[Some(b"xyz"), Some("h\u{e9}llo".as_bytes())]));
        c.row(&lenenc_row(&[Some(b"never"), None]));
        let set = &c.result[0];
        assert_eq!(set.rows.len(), 2);
        assert_eq!(
            set.rows[1],
            [
                text("xyz"),
                RecordedValue::TruncatedText {
                    text: "h".into(),
                    bytes: 6
                }
            ]
        );
        assert_eq!(set.row_count, 3);
        assert!(c.rows_truncated);
        assert_eq!(c.row_bytes, 7 + 11 + 7);
    }

    #[test]
    fn binary_rows_are_typed() {
        let mut c = Capture::new(RowCaps::default(), true);
        c.result_set(5);
        c.column_definition(&definition("n", t::LONGLONG, 63, UNSIGNED_FLAG));
        c.column_definition(&definition("d", t::DOUBLE, 63, 0));
        c.column_definition(&definition("s", t::VAR_STRING, 45, 0));
        c.column_definition(&definition("at", t::DATETIME, 63, 0));
        c.column_definition(&definition("gone", t::VAR_STRING, 45, 0));
        // Header, bitmap of (5 + 9) / 8 = 1 byte with column 4 NULL (bit 6).
        let mut row = vec![0x00, 0b0100_0000];
        row.extend_from_slice(&u64::MAX.to_le_bytes());
        row.extend_from_slice(&2.5f64.to_le_bytes());
        row.extend_from_slice(b"\x02hi");
        row.extend_from_slice(&[7, 0xe9, 0x07, 3, 4, 5, 6, 7]);
        c.row(&row);
        assert_eq!(
            c.result[0].rows[0],
            [
                RecordedValue::UInt(u64::MAX),
                RecordedValue::Float(2.5),
                text("hi"),
                text("2025-03-04 05:06:07"),
                RecordedValue::Null,
            ]
        );
        // A row cut short: the value where it breaks and the rest are malformed.
        c.row(&row[..12]);
        assert_eq!(
            c.result[0].rows[1],
            [
                RecordedValue::UInt(u64::MAX),
                RecordedValue::Malformed { malformed: true },
                RecordedValue::Malformed { malformed: true },
                RecordedValue::Malformed { malformed: true },
                RecordedValue::Malformed { malformed: true },
            ]
        );
        assert!(!c.rows_truncated);
    }

    #[test]
    fn binary_byte_cap_and_result_set_counts() {
        let mut c = Capture::new(
            RowCaps {
                max_rows: 10,
                max_bytes: 4,
            },
            true,
        );
        c.result_set(1);
        c.column_definition(&definition("b", t::BLOB, 63, 0));
        let mut row = vec![0x00, 0x00, 6];
        row.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        c.row(&row);
        c.row(&row);
        assert_eq!(
            c.result[0].rows,
            [vec![RecordedValue::Binary {
                hex: "01020304".into(),
                bytes: 6
            }]]
        );
        assert!(c.rows_truncated);
        // A second result set is still described, its rows counted.
        c.result_set(1);
        c.column_definition(&definition("x", t::LONG, 63, 0));
        c.row(&[0x00, 0x00, 1, 0, 0, 0]);
        assert_eq!(c.result.len(), 2);
        assert_eq!(c.result[1].columns[0].name, "x");
        assert_eq!(c.result[1].row_count, 1);
        assert!(c.result[1].rows.is_empty());
        assert_eq!(c.row_bytes, 9 + 9 + 6);
    }

    #[test]
    fn wide_results_keep_the_first_columns() {
        let mut c = Capture::new(RowCaps::default(), false);
        let width = MAX_RECORDED_COLUMNS + 4;
        c.result_set(width as u64);
        for i in 0..width {
            c.column_definition(&definition(&format!("c{i}"), t::VAR_STRING, 45, 0));
        }
        let row = lenenc_row(&vec![Some(&b"v"[..]); width]);
        c.row(&row);
        assert_eq!(c.result[0].columns.len(), MAX_RECORDED_COLUMNS);
        assert_eq!(c.result[0].rows[0].len(), MAX_RECORDED_COLUMNS);
        assert_eq!(c.result[0].column_count, width as u64);
        assert!(c.rows_truncated);
    }

    #[test]
    fn fetched_rows_use_remembered_columns() {
        let columns = [ColumnInfo {
            column_type: t::LONG,
            flags: 0,
            charset: 63,
        }];
        let mut c = Capture::new(RowCaps::default(), true);
        c.fetched(Some((&columns, 1)));
        c.row(&[0x00, 0x00, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.result[0].rows[0], [RecordedValue::Int(-1)]);
        assert!(c.result[0].columns.is_empty());

        let mut unknown = Capture::new(RowCaps::default(), true);
        unknown.fetched(None);
        unknown.row(&[0x00, 0x00, 1, 0, 0, 0]);
        assert!(unknown.result.is_empty());
        assert!(unknown.rows_truncated);
        assert_eq!(unknown.row_bytes, 6);
    }

    #[test]
    fn values_as_recorded() {
        let mut plenty = usize::MAX;
        let (v, cut) = recorded(Some(Value::Bytes(b"\xff\xfe")), Kind::Text, &mut plenty);
        assert_eq!(
            v,
            RecordedValue::Binary {
                hex: "fffe".into(),
                bytes: 2
            }
        );
        assert!(!cut);
        let (v, _) = recorded(Some(Value::Double(f64::NAN)), Kind::Text, &mut plenty);
        assert_eq!(v, text("NaN"));
        let mut none = 0;
        let (v, cut) = recorded(Some(Value::Bytes(b"abc")), Kind::Text, &mut none);
        assert_eq!(
            v,
            RecordedValue::TruncatedText {
                text: String::new(),
                bytes: 3
            }
        );
        assert!(cut);
        assert_eq!(
            serde_json::to_value(RecordedValue::Binary {
                hex: "00".into(),
                bytes: 1
            })
            .expect("json"),
            serde_json::json!({"hex": "00", "bytes": 1})
        );
        assert_eq!(
            serde_json::to_value(vec![RecordedValue::Null, RecordedValue::Int(-1), text("x")])
                .expect("json"),
            serde_json::json!([null, -1, "x"])
        );
    }
}
