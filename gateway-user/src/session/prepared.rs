//! What a session remembers about its prepared statements, for the recording: the SQL text
//! (recorded with each execute), the parameter count and the types last bound (an execute
//! that does not resend them is decoded with them), the long data sent for parameters since the
//! last execute, and the result columns (to decode rows fetched from a cursor).
//!
//! Bounded per session: at most [`MAX_PREPARED`] statements, and [`MAX_MEMORY`] bytes of what
//! they hold; past that a statement is remembered with less (shorter SQL, no types, no long
//! data contents), and its executes record what can still be decoded.

use std::collections::{BTreeMap, HashMap};

use super::capture::{self, ColumnInfo, Kind};
use crate::{
    protocol::values::{self, ParamType},
    recording::event::{Param, RecordedValue},
};

/// Most prepared statements remembered per session.
pub const MAX_PREPARED: usize = 10_000;
/// Bytes of SQL, types, long data and columns remembered per session before statements are
/// remembered with less.
pub const MAX_MEMORY: usize = 16 * 1024 * 1024;
/// SQL text kept per statement (as recorded: the same as a query's).
pub const MAX_SQL: usize = 64 * 1024;
/// SQL text kept per statement once the session is over [`MAX_MEMORY`].
const MAX_SQL_WHEN_FULL: usize = 256;
/// Parameters recorded per execute at most (the rest are left out, `params_truncated`).
pub const MAX_RECORDED_PARAMS: usize = 1024;
/// Bytes of parameter values recorded per execute at most; values past it are cut.
pub const MAX_PARAM_BYTES: usize = 64 * 1024;
/// Bytes of each parameter's long data kept for the recording (the length is always kept).
const MAX_LONG_DATA_KEPT: usize = 4096;
/// The statement id with which MariaDB clients execute the statement prepared last.
const LAST_PREPARED: u32 = u32::MAX;
/// Bookkeeping counted per long-data parameter, per statement.
const ENTRY_COST: usize = 64;

/// A parameter's long data since the last execute.
#[derive(Debug, Default)]
struct LongData {
    /// Bytes received.
    bytes: u64,
    /// The first of them.
    kept: Vec<u8>,
}

/// One prepared statement.
#[derive(Debug, Default)]
struct Prepared {
    sql: String,
    /// Parameters, from the prepare response.
    params: u16,
    /// The types last bound, for the first [`MAX_RECORDED_PARAMS`] parameters.
    types: Option<Vec<ParamType>>,
    /// Long data by parameter (the first [`MAX_RECORDED_PARAMS`]).
    long_data: BTreeMap<u16, LongData>,
    /// Long data arrived that could not be remembered: the next execute cannot be decoded.
    long_data_lost: bool,
    /// Result columns (from the prepare response, replaced by an execute's).
    columns: Vec<ColumnInfo>,
    /// Total result columns.
    column_count: u64,
}

impl Prepared {
    /// Bytes counted against [`MAX_MEMORY`].
    fn cost(&self) -> usize {
        64 + self.sql.len()
            + self.types.as_ref().map_or(0, |t| t.len() * 2)
            + self
                .long_data
                .values()
                .map(|d| ENTRY_COST + d.kept.len())
                .sum::<usize>()
            + self.columns.len() * std::mem::size_of::<ColumnInfo>()
    }
}

/// The prepared statements of a session.
#[derive(Debug, Default)]
pub struct PreparedStatements {
    statements: HashMap<u32, Prepared>,
    /// The statement prepared last (MariaDB's `0xffffffff`).
    last: Option<u32>,
    /// Sum of the statements' [`Prepared::cost`].
    memory: usize,
}

/// What an execute binds, as recorded.
#[derive(Debug, Default, PartialEq)]
pub struct BoundParams {
    /// The parameters (`None` when the statement is unknown or the packet did not decode at
    /// all).
    pub params: Option<Vec<Param>>,
    /// True when the statement has more parameters than recorded.
    pub truncated: bool,
}

impl PreparedStatements {
    /// The statement an id names (MariaDB's `0xffffffff` is the one prepared last).
    #[must_use]
    pub fn resolve(&self, id: u32) -> u32 {
        match (id, self.last) {
            (LAST_PREPARED, Some(last)) => last,
            _ => id,
        }
    }

    /// The SQL text a statement was prepared from.
    #[must_use]
    pub fn sql(&self, id: u32) -> Option<&str> {
        self.statements.get(&id).map(|p| p.sql.as_str())
    }

    /// The result columns remembered for a statement, and how many there are.
    #[must_use]
    pub fn columns(&self, id: u32) -> Option<(&[ColumnInfo], u64)> {
        self.statements
            .get(&id)
            .filter(|p| p.column_count > 0)
            .map(|p| (p.columns.as_slice(), p.column_count))
    }

    /// A statement was prepared: `sql` (the packet's text), its parameter count and result
    /// columns.
    pub fn prepared(&mut self, id: u32, sql: &[u8], params: u16, columns: (&[ColumnInfo], u64)) {
        self.close(id);
        if self.statements.len() >= MAX_PREPARED {
            return;
        }
        let full = self.memory >= MAX_MEMORY;
        let keep = if full { MAX_SQL_WHEN_FULL } else { MAX_SQL };
        let prepared = Prepared {
            sql: String::from_utf8_lossy(sql.get(..keep).unwrap_or(sql)).into_owned(),
            params,
            columns: if full { Vec::new() } else { columns.0.to_vec() },
            column_count: columns.1,
            ..Prepared::default()
        };
        self.memory += prepared.cost();
        self.statements.insert(id, prepared);
        self.last = Some(id);
    }

    /// A statement was closed.
    pub fn close(&mut self, id: u32) {
        if let Some(p) = self.statements.remove(&id) {
            self.memory -= p.cost();
        }
    }

    /// Every statement is gone (`COM_RESET_CONNECTION`, `COM_CHANGE_USER`).
    pub fn clear(&mut self) {
        self.statements.clear();
        self.last = None;
        self.memory = 0;
    }

    /// Changes one statement, keeping the memory count.
    fn update(&mut self, id: u32, change: impl FnOnce(&mut Prepared, bool)) {
        let full = self.memory >= MAX_MEMORY;
        if let Some(p) = self.statements.get_mut(&id) {
            let before = p.cost();
            change(p, full);
            self.memory = self.memory - before + p.cost();
        }
    }

    /// `COM_STMT_RESET`: the long data is dropped.
    pub fn reset(&mut self, id: u32) {
        self.update(id, |p, _| {
            p.long_data.clear();
            p.long_data_lost = false;
        });
    }

    /// An execute opened a cursor: its rows, fetched later, have these columns.
    pub fn cursor(&mut self, id: u32, columns: &[ColumnInfo], column_count: u64) {
        self.update(id, |p, full| {
            p.columns = if full { Vec::new() } else { columns.to_vec() };
            p.column_count = column_count;
        });
    }

    /// A `COM_STMT_SEND_LONG_DATA` packet: the chunk is appended to the parameter's value.
    pub fn long_data(&mut self, packet: &[u8]) {
        let Some(chunk) = values::parse_long_data(packet) else {
            return;
        };
        let id = self.resolve(chunk.statement_id);
        self.update(id, |p, full| {
            if usize::from(chunk.param) >= MAX_RECORDED_PARAMS {
                // Not recorded, and it comes after every recorded parameter: nothing to track.
                return;
            }
            if full && !p.long_data.contains_key(&chunk.param) {
                p.long_data_lost = true;
                return;
            }
            let entry = p.long_data.entry(chunk.param).or_default();
            entry.bytes += chunk.data.len() as u64;
            let room = if full {
                0
            } else {
                MAX_LONG_DATA_KEPT.saturating_sub(entry.kept.len())
            };
            entry
                .kept
                .extend_from_slice(chunk.data.get(..room).unwrap_or(chunk.data));
        });
    }

    /// A `COM_STMT_EXECUTE` packet: its parameters decoded as recorded (with the types sent,
    /// else those last bound), and the statement's long data consumed as the server does.
    pub fn execute(&mut self, packet: &[u8]) -> BoundParams {
        let Some(id) = values::statement_id(packet).map(|id| self.resolve(id)) else {
            return BoundParams::default();
        };
        let Some(params) = self.statements.get(&id).map(|p| p.params) else {
            return BoundParams::default();
        };
        let recorded = usize::from(params).min(MAX_RECORDED_PARAMS);
        let truncated = recorded < usize::from(params);
        let mut bound = None;
        self.update(id, |p, full| {
            bound = Some(bind(p, packet, recorded, full));
            p.long_data.clear();
            p.long_data_lost = false;
        });
        BoundParams {
            params: bound,
            truncated,
        }
    }
}

/// The first `recorded` parameters of an execute of `p`, as recorded; remembers the types
/// sent (unless the session is `full`).
fn bind(p: &mut Prepared, packet: &[u8], recorded: usize, full: bool) -> Vec<Param> {
    let malformed = |param_type: String| Param {
        param_type,
        unsigned: false,
        long_data: false,
        value: RecordedValue::Malformed { malformed: true },
    };
    let Some(execute) = values::parse_execute(packet, p.params) else {
        return vec![malformed("UNKNOWN".into()); recorded];
    };
    let sent = execute.types(recorded);
    let types = match (sent, full) {
        (Some(types), false) => p.types.insert(types).clone(),
        (Some(types), true) => {
            p.types = None;
            types
        }
        (None, _) => p.types.clone().unwrap_or_default(),
    };
    if types.len() < recorded || p.long_data_lost {
        // No types to decode with (never sent, or forgotten): NULLs are still known.
        return (0..recorded)
            .map(|i| {
                let mut param = malformed(
                    types
                        .get(i)
                        .map_or_else(|| "UNKNOWN".into(), |t| capture::type_name(t.column_type)),
                );
                if execute.is_null(i) {
                    param.value = RecordedValue::Null;
                }
                param
            })
            .collect();
    }
    let mut allowance = MAX_PARAM_BYTES;
    execute
        .params(&types, |i| p.long_data.contains_key(&i))
        .into_iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (param, ty))| {
            let kind = if values::is_binary_type(ty.column_type) {
                Kind::Bytes
            } else {
                Kind::Text
            };
            let long = u16::try_from(i).ok().and_then(|i| p.long_data.get(&i));
            let value = match (param, long) {
                (values::Param::LongData, Some(data)) => {
                    capture::recorded_bytes(&data.kept, data.bytes, kind, &mut allowance).0
                }
                (values::Param::Value(value), _) => {
                    capture::recorded(Some(value), kind, &mut allowance).0
                }
                _ => RecordedValue::Malformed { malformed: true },
            };
            Param {
                param_type: capture::type_name(ty.column_type),
                unsigned: ty.unsigned,
                long_data: long.is_some(),
                value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::values::{field_type as t, tests::execute};

    fn long_data(id: u32, param: u16, data: &[u8]) -> Vec<u8> {
        let mut p = vec![0x18];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&param.to_le_bytes());
        p.extend_from_slice(data);
        p
    }

    fn param(ty: &str, value: RecordedValue) -> Param {
        Param {
            param_type: ty.into(),
            unsigned: false,
            long_data: false,
            value,
        }
    }

    #[test]
    fn executes_record_params_with_sent_then_remembered_types() {
        let mut s = PreparedStatements::default();
        s.prepared(5, b"SELECT ?, ?", 2, (&[], 0));
        let mut values = 42i64.to_le_bytes().to_vec();
        values.extend_from_slice(b"\x03bob");
        let types = [(t::LONGLONG, 0x80), (t::VAR_STRING, 0)];
        let bound = s.execute(&execute(5, &[0], Some(&types), &values));
        let params = bound.params.expect("params");
        assert_eq!(params[0].param_type, "LONGLONG");
        assert!(params[0].unsigned);
        assert_eq!(params[0].value, RecordedValue::Int(42));
        assert_eq!(
            params[1],
            param("VAR_STRING", RecordedValue::Text("bob".into()))
        );
        assert!(!bound.truncated);
        // Second execute without types, first parameter NULL.
        let bound = s.execute(&execute(5, &[0b01], None, b"\x02al"));
        let params = bound.params.expect("params");
        assert_eq!(params[0].value, RecordedValue::Null);
        assert_eq!(params[1].value, RecordedValue::Text("al".into()));
        // MariaDB's "statement prepared last".
        let bound = s.execute(&execute(u32::MAX, &[0b11], None, &[]));
        assert_eq!(bound.params.expect("params")[1].value, RecordedValue::Null);
        assert_eq!(s.sql(s.resolve(u32::MAX)), Some("SELECT ?, ?"));
    }

    #[test]
    fn long_data_is_the_param_value_and_is_consumed_by_the_execute() {
        let mut s = PreparedStatements::default();
        s.prepared(1, b"INSERT INTO t VALUES (?, ?)", 2, (&[], 0));
        s.long_data(&long_data(1, 0, b"hello "));
        s.long_data(&long_data(1, 0, b"world"));
        let types = [(t::BLOB, 0), (t::LONG, 0)];
        let bound = s.execute(&execute(1, &[0], Some(&types), &7i32.to_le_bytes()));
        let params = bound.params.expect("params");
        assert!(params[0].long_data);
        assert_eq!(params[0].value, RecordedValue::Text("hello world".into()));
        assert_eq!(params[1].value, RecordedValue::Int(7));
        // Consumed: the next execute sends the value inline.
        let bound = s.execute(&execute(1, &[0], None, b"\x01x\x08\x00\x00\x00"));
        let params = bound.params.expect("params");
        assert!(!params[0].long_data);
        assert_eq!(params[0].value, RecordedValue::Text("x".into()));
        assert_eq!(params[1].value, RecordedValue::Int(8));

        // A big binary value: its first bytes kept, its length whole.
        let big = vec![0xffu8; 10_000];
        s.long_data(&long_data(1, 0, &big));
        let bound = s.execute(&execute(1, &[0], None, &1i32.to_le_bytes()));
        let RecordedValue::Binary { hex, bytes } = &bound.params.expect("params")[0].value else {
            panic!("binary")
        };
        assert_eq!(*bytes, 10_000);
        assert_eq!(hex.len(), MAX_LONG_DATA_KEPT * 2);

        // COM_STMT_RESET drops it.
        s.long_data(&long_data(1, 0, b"dropped"));
        s.reset(1);
        let bound = s.execute(&execute(1, &[0], None, b"\x01y\x01\x00\x00\x00"));
        assert_eq!(
            bound.params.expect("params")[0].value,
            RecordedValue::Text("y".into())
        );
    }

    #[test]
    fn malformed_and_unknown_executes_keep_going() {
        let mut s = PreparedStatements::default();
        assert_eq!(
            s.execute(&execute(9, &[0], None, &[])),
            BoundParams::default()
        );
        s.prepared(2, b"SELECT ?", 1, (&[], 0));
        // No types ever sent: the value cannot be decoded.
        let bound = s.execute(&execute(2, &[0], None, &[1, 2, 3]));
        assert_eq!(
            bound.params.expect("params"),
            [param(
                "UNKNOWN",
                RecordedValue::Malformed { malformed: true }
            )]
        );
        // Header cut short.
        let bound = s.execute(&execute(2, &[0], None, &[])[..7]);
        assert_eq!(
            bound.params.expect("params"),
            [param(
                "UNKNOWN",
                RecordedValue::Malformed { malformed: true }
            )]
        );
        // A string longer than the packet.
        let bound = s.execute(&execute(2, &[0], Some(&[(t::VAR_STRING, 0)]), &[9, b'a']));
        assert_eq!(
            bound.params.expect("params"),
            [param(
                "VAR_STRING",
                RecordedValue::Malformed { malformed: true }
            )]
        );
        assert_eq!(s.statements.len(), 1);
    }

    #[test]
    fn memory_is_counted_and_released() {
        let mut s = PreparedStatements::default();
        s.prepared(1, &vec![b'x'; 100_000], 0, (&[], 0));
        assert_eq!(s.sql(1).map(str::len), Some(MAX_SQL));
        s.prepared(2, b"SELECT ?", 1, (&[], 0));
        s.long_data(&long_data(2, 0, &[0; 100]));
        let _ = s.execute(&execute(2, &[0], Some(&[(t::BLOB, 0)]), &[]));
        let total: usize = s.statements.values().map(Prepared::cost).sum();
        assert_eq!(s.memory, total);
        s.close(1);
        s.close(2);
        assert_eq!(s.memory, 0);
        // Over the budget: statements are kept with less.
        s.memory = MAX_MEMORY;
        s.prepared(3, &vec![b'y'; 1000], 1, (&[], 0));
        assert_eq!(s.sql(3).map(str::len), Some(MAX_SQL_WHEN_FULL));
        s.long_data(&long_data(3, 0, b"lost"));
        let bound = s.execute(&execute(3, &[0], Some(&[(t::BLOB, 0)]), &[]));
        assert_eq!(
            bound.params.expect("params")[0].value,
            RecordedValue::Malformed { malformed: true }
        );
    }

    #[test]
    fn many_params_are_cut() {
        let mut s = PreparedStatements::default();
        let count = u16::try_from(MAX_RECORDED_PARAMS + 1).expect("fits");
        s.prepared(1, b"INSERT ...", count, (&[], 0));
        let bitmap = vec![0xff; usize::from(count).div_ceil(8)];
        let types = vec![(t::LONG, 0); usize::from(count)];
        let bound = s.execute(&execute(1, &bitmap, Some(&types), &[]));
        assert!(bound.truncated);
        let params = bound.params.expect("params");
        assert_eq!(params.len(), MAX_RECORDED_PARAMS);
        assert!(params.iter().all(|p| p.value == RecordedValue::Null));
    }
}
