//! Values on the wire: the rows of text and binary result sets, and the parameters of
//! `COM_STMT_EXECUTE` (with `COM_STMT_SEND_LONG_DATA`). Pure and bounds-checked like
//! [`super::packets`]: what does not decode is `None` (or [`Param::Malformed`]), never a panic,
//! and nothing is copied: values borrow from the packet.
//!
//! `mysql_common` has a binary value decoder, but it copies every value and panics
//! (`unimplemented!`) on field types that never travel in rows (`TIMESTAMP2`, ...), which a
//! peer could still send; this one borrows and reports them as undecodable.

use super::packets::Reader;

/// Field types (`enum_field_types`), as in column definitions and parameter types.
pub mod field_type {
    /// `DECIMAL` (old).
    pub const DECIMAL: u8 = 0x00;
    /// `TINYINT`.
    pub const TINY: u8 = 0x01;
    /// `SMALLINT`.
    pub const SHORT: u8 = 0x02;
    /// `INT`.
    pub const LONG: u8 = 0x03;
    /// `FLOAT`.
    pub const FLOAT: u8 = 0x04;
    /// `DOUBLE`.
    pub const DOUBLE: u8 = 0x05;
    /// `NULL`.
    pub const NULL: u8 = 0x06;
    /// `TIMESTAMP`.
    pub const TIMESTAMP: u8 = 0x07;
    /// `BIGINT`.
    pub const LONGLONG: u8 = 0x08;
    /// `MEDIUMINT`.
    pub const INT24: u8 = 0x09;
    /// `DATE`.
    pub const DATE: u8 = 0x0a;
    /// `TIME`.
    pub const TIME: u8 = 0x0b;
    /// `DATETIME`.
    pub const DATETIME: u8 = 0x0c;
    /// `YEAR`.
    pub const YEAR: u8 = 0x0d;
    /// `NEWDATE` (internal).
    pub const NEWDATE: u8 = 0x0e;
    /// `VARCHAR`.
    pub const VARCHAR: u8 = 0x0f;
    /// `BIT`.
    pub const BIT: u8 = 0x10;
    /// `VECTOR` (MySQL 9).
    pub const VECTOR: u8 = 0xf2;
    /// `JSON` (MySQL).
    pub const JSON: u8 = 0xf5;
    /// `DECIMAL`.
    pub const NEWDECIMAL: u8 = 0xf6;
    /// `ENUM`.
    pub const ENUM: u8 = 0xf7;
    /// `SET`.
    pub const SET: u8 = 0xf8;
    /// `TINYBLOB`/`TINYTEXT`.
    pub const TINY_BLOB: u8 = 0xf9;
    /// `MEDIUMBLOB`/`MEDIUMTEXT`.
    pub const MEDIUM_BLOB: u8 = 0xfa;
    /// `LONGBLOB`/`LONGTEXT`.
    pub const LONG_BLOB: u8 = 0xfb;
    /// `BLOB`/`TEXT`.
    pub const BLOB: u8 = 0xfc;
    /// `VARCHAR`/`VARBINARY` in results.
    pub const VAR_STRING: u8 = 0xfd;
    /// `CHAR`/`BINARY`.
    pub const STRING: u8 = 0xfe;
    /// Spatial types.
    pub const GEOMETRY: u8 = 0xff;
}

/// Column flag: the integer is unsigned.
pub const UNSIGNED_FLAG: u16 = 0x20;
/// Parameter type flag (second byte of a parameter's type): the integer is unsigned.
pub const PARAM_UNSIGNED: u8 = 0x80;
/// Character set number of `binary`.
pub const BINARY_CHARSET: u16 = 63;

/// The name of a field type without its `MYSQL_TYPE_` prefix (`LONGLONG`, `VAR_STRING` ...);
/// `None` for a number no server sends.
#[must_use]
pub fn type_name(column_type: u8) -> Option<&'static str> {
    use field_type as t;
    Some(match column_type {
        t::DECIMAL => "DECIMAL",
        t::TINY => "TINY",
        t::SHORT => "SHORT",
        t::LONG => "LONG",
        t::FLOAT => "FLOAT",
        t::DOUBLE => "DOUBLE",
        t::NULL => "NULL",
        t::TIMESTAMP => "TIMESTAMP",
        t::LONGLONG => "LONGLONG",
        t::INT24 => "INT24",
        t::DATE => "DATE",
        t::TIME => "TIME",
        t::DATETIME => "DATETIME",
        t::YEAR => "YEAR",
        t::NEWDATE => "NEWDATE",
        t::VARCHAR => "VARCHAR",
        t::BIT => "BIT",
        0x11 => "TIMESTAMP2",
        0x12 => "DATETIME2",
        0x13 => "TIME2",
        0x14 => "TYPED_ARRAY",
        t::VECTOR => "VECTOR",
        t::JSON => "JSON",
        t::NEWDECIMAL => "NEWDECIMAL",
        t::ENUM => "ENUM",
        t::SET => "SET",
        t::TINY_BLOB => "TINY_BLOB",
        t::MEDIUM_BLOB => "MEDIUM_BLOB",
        t::LONG_BLOB => "LONG_BLOB",
        t::BLOB => "BLOB",
        t::VAR_STRING => "VAR_STRING",
        t::STRING => "STRING",
        t::GEOMETRY => "GEOMETRY",
        _ => return None,
    })
}

/// True for field types whose values are bytes with no character set of their own (`BIT`,
/// spatial values, vectors): recorded as hex whatever the column's character set says.
#[must_use]
pub fn is_binary_type(column_type: u8) -> bool {
    matches!(
        column_type,
        field_type::BIT | field_type::GEOMETRY | field_type::VECTOR
    )
}

/// True for the string and blob field types (whose character set decides text or bytes).
#[must_use]
pub fn is_string_type(column_type: u8) -> bool {
    matches!(
        column_type,
        field_type::VARCHAR | field_type::TINY_BLOB..=field_type::STRING
    )
}

/// One decoded value, borrowed from its packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// SQL `NULL`.
    Null,
    /// A signed integer (every integer type, and unsigned ones that fit).
    Int(i64),
    /// An unsigned `BIGINT` above `i64::MAX`.
    UInt(u64),
    /// A `FLOAT` or `DOUBLE`.
    Double(f64),
    /// Bytes: every value of the text protocol, strings, blobs and decimals of the binary one.
    Bytes(&'a [u8]),
    /// A binary `DATE`, `DATETIME` or `TIMESTAMP`.
    DateTime(DateTime),
    /// A binary `TIME`.
    Time(Time),
}

/// A binary `DATE`/`DATETIME`/`TIMESTAMP` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DateTime {
    /// True for `DATE` (no time part is shown).
    pub date_only: bool,
    /// Year.
    pub year: u16,
    /// Month (1-12, 0 in zero dates).
    pub month: u8,
    /// Day.
    pub day: u8,
    /// Hour.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second.
    pub second: u8,
    /// Microseconds; shown when not zero.
    pub micros: u32,
}

impl std::fmt::Display for DateTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)?;
        if self.date_only {
            return Ok(());
        }
        write!(f, " {:02}:{:02}:{:02}", self.hour, self.minute, self.second)?;
        if self.micros != 0 {
            write!(f, ".{:06}", self.micros)?;
        }
        Ok(())
    }
}

/// A binary `TIME` value (a duration: it may be negative and exceed 24 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    /// True for negative times.
    pub negative: bool,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u8,
    /// Minutes.
    pub minutes: u8,
    /// Seconds.
    pub seconds: u8,
    /// Microseconds; shown when not zero.
    pub micros: u32,
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hours = u64::from(self.days) * 24 + u64::from(self.hours);
        let sign = if self.negative { "-" } else { "" };
        write!(
            f,
            "{sign}{hours:02}:{:02}:{:02}",
            self.minutes, self.seconds
        )?;
        if self.micros != 0 {
            write!(f, ".{:06}", self.micros)?;
        }
        Ok(())
    }
}

/// Reads one binary-protocol value of `column_type` (rows and `COM_STMT_EXECUTE` parameters
/// share the encoding). `None` when the bytes run out, a length is impossible, or the type is
/// one whose length cannot be known.
pub fn binary_value<'a>(r: &mut Reader<'a>, column_type: u8, unsigned: bool) -> Option<Value<'a>> {
    use field_type as t;
    let int = |v: i64| Some(Value::Int(v));
    match column_type {
        t::NULL => Some(Value::Null),
        t::TINY => {
            let b = r.u8()?;
            int(if unsigned {
                i64::from(b)
            } else {
                i64::from(b.cast_signed())
            })
        }
        t::SHORT | t::YEAR => {
            let v = r.u16()?;
            int(if unsigned {
                i64::from(v)
            } else {
                i64::from(v.cast_signed())
            })
        }
        t::LONG | t::INT24 => {
            let v = r.u32()?;
            int(if unsigned {
                i64::from(v)
            } else {
                i64::from(v.cast_signed())
            })
        }
        t::LONGLONG => {
            let v = r.u64()?;
            if unsigned {
                Some(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
            } else {
                int(v.cast_signed())
            }
        }
        t::FLOAT => {
            let bits = r.u32()?;
            Some(Value::Double(f64::from(f32::from_bits(bits))))
        }
        t::DOUBLE => Some(Value::Double(f64::from_bits(r.u64()?))),
        t::DATE | t::DATETIME | t::TIMESTAMP | t::NEWDATE => {
            let len = r.u8()?;
            let mut d = Reader::new(r.take(usize::from(len))?);
            let mut value = DateTime {
                date_only: matches!(column_type, t::DATE | t::NEWDATE),
                ..DateTime::default()
            };
            match len {
                0 => {}
                4 | 7 | 11 => {
                    value.year = d.u16()?;
                    value.month = d.u8()?;
                    value.day = d.u8()?;
                    if len >= 7 {
                        value.hour = d.u8()?;
                        value.minute = d.u8()?;
                        value.second = d.u8()?;
                    }
                    if len == 11 {
                        value.micros = d.u32()?;
                    }
                }
                _ => return None,
            }
            Some(Value::DateTime(value))
        }
        t::TIME => {
            let len = r.u8()?;
            let mut d = Reader::new(r.take(usize::from(len))?);
            let mut value = Time::default();
            match len {
                0 => {}
                8 | 12 => {
                    value.negative = d.u8()? == 1;
                    value.days = d.u32()?;
                    value.hours = d.u8()?;
                    value.minutes = d.u8()?;
                    value.seconds = d.u8()?;
                    if len == 12 {
                        value.micros = d.u32()?;
                    }
                }
                _ => return None,
            }
            Some(Value::Time(value))
        }
        t::DECIMAL | t::VARCHAR | t::BIT | t::VECTOR | t::JSON | t::NEWDECIMAL..=t::GEOMETRY => {
            r.lenenc_bytes().map(Value::Bytes)
        }
        _ => None,
    }
}

/// Decodes the first `limit` values of a text-protocol row; `None` for each value from the
/// first that does not decode.
#[must_use]
pub fn text_row(payload: &[u8], limit: usize) -> Vec<Option<Value<'_>>> {
    let mut r = Reader::new(payload);
    let mut values = Vec::with_capacity(limit);
    let mut broken = false;
    for _ in 0..limit {
        let value = if broken {
            None
        } else if r.rest().first() == Some(&0xfb) {
            r.take(1);
            Some(Value::Null)
        } else {
            r.lenenc_bytes().map(Value::Bytes)
        };
        broken = value.is_none();
        values.push(value);
    }
    values
}

/// Decodes the first values of a binary-protocol row of `columns` columns, one per entry of
/// `types` (field type and whether unsigned); `None` for each value from the first that does
/// not decode.
#[must_use]
pub fn binary_row<'a>(
    payload: &'a [u8],
    columns: usize,
    types: &[(u8, bool)],
) -> Vec<Option<Value<'a>>> {
    let mut r = Reader::new(payload);
    // Header 0x00, then the NULL bitmap, whose first two bits are reserved.
    let bitmap = (r.u8() == Some(0x00))
        .then(|| r.take(columns.saturating_add(9) / 8))
        .flatten();
    let mut values = Vec::with_capacity(types.len());
    let mut broken = bitmap.is_none();
    for (i, &(column_type, unsigned)) in types.iter().enumerate() {
        let value = if broken {
            None
        } else if bitmap.is_some_and(|b| is_set(b, i + 2)) {
            Some(Value::Null)
        } else {
            binary_value(&mut r, column_type, unsigned)
        };
        broken = value.is_none();
        values.push(value);
    }
    values
}

/// True when bit `bit` of `bitmap` is set (false beyond its end).
fn is_set(bitmap: &[u8], bit: usize) -> bool {
    bitmap
        .get(bit / 8)
        .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
}

/// A parameter's type as `COM_STMT_EXECUTE` sends it: the field type and whether unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamType {
    /// Field type.
    pub column_type: u8,
    /// Flag byte `0x80`: unsigned.
    pub unsigned: bool,
}

/// The fixed part of a `COM_STMT_EXECUTE` (command byte included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    /// The statement (`0xffffffff`: MariaDB's "the one prepared last").
    pub statement_id: u32,
    /// Cursor flags.
    pub flags: u8,
    /// The NULL bitmap (one bit per parameter).
    null_bitmap: &'a [u8],
    /// The parameter types, when the client sent them (new-params-bound flag 1): 2 bytes each.
    types: Option<&'a [u8]>,
    /// The values of the parameters that are neither NULL nor sent as long data.
    values: &'a [u8],
}

/// The statement id of a `COM_STMT_EXECUTE`, `COM_STMT_SEND_LONG_DATA`, `COM_STMT_CLOSE`,
/// `COM_STMT_RESET` or `COM_STMT_FETCH` (command byte included).
#[must_use]
pub fn statement_id(payload: &[u8]) -> Option<u32> {
    Reader::new(payload.get(1..)?).u32()
}

/// Parses a `COM_STMT_EXECUTE` (command byte included) of a statement with `params`
/// parameters (the count comes from the prepare response, not the packet).
#[must_use]
pub fn parse_execute(payload: &[u8], params: u16) -> Option<Execute<'_>> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0x17 {
        return None;
    }
    let statement_id = r.u32()?;
    let flags = r.u8()?;
    r.u32()?; // iteration count, always 1
    if params == 0 {
        return Some(Execute {
            statement_id,
            flags,
            null_bitmap: &[],
            types: None,
            values: &[],
        });
    }
    let null_bitmap = r.take(usize::from(params).div_ceil(8))?;
    let types = match r.u8()? {
        0 => None,
        1 => Some(r.take(usize::from(params) * 2)?),
        _ => return None,
    };
    Some(Execute {
        statement_id,
        flags,
        null_bitmap,
        types,
        values: r.rest(),
    })
}

/// One parameter of an execute, as far as the packet says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    /// A value (NULL when its bit is set).
    Value(Value<'a>),
    /// Sent before the execute with `COM_STMT_SEND_LONG_DATA` (its bytes are not in the
    /// execute).
    LongData,
    /// Could not be decoded: the packet ended early, a length was impossible, or the type is
    /// unknown (this parameter and every later one, whose position is then unknown).
    Malformed,
}

impl<'a> Execute<'a> {
    /// The parameter types the packet carries, the first `limit` of them.
    #[must_use]
    pub fn types(&self, limit: usize) -> Option<Vec<ParamType>> {
        self.types.map(|bytes| {
            bytes
                .chunks_exact(2)
                .take(limit)
                .map(|pair| ParamType {
                    column_type: pair.first().copied().unwrap_or(field_type::NULL),
                    unsigned: pair.get(1).is_some_and(|f| f & PARAM_UNSIGNED != 0),
                })
                .collect()
        })
    }

    /// True when the NULL bitmap marks parameter `i`.
    #[must_use]
    pub fn is_null(&self, i: usize) -> bool {
        is_set(self.null_bitmap, i)
    }

    /// Decodes the parameters of `types` (the first parameters, in order): NULL from the
    /// bitmap, long data where `long_data` says the server holds some for the parameter, and
    /// values read from the packet otherwise.
    #[must_use]
    pub fn params(&self, types: &[ParamType], long_data: impl Fn(u16) -> bool) -> Vec<Param<'a>> {
        let mut r = Reader::new(self.values);
        let mut broken = false;
        let mut params = Vec::with_capacity(types.len());
        for (i, ty) in types.iter().enumerate() {
            let param = if broken {
                Param::Malformed
            } else if is_set(self.null_bitmap, i) {
                Param::Value(Value::Null)
            } else if u16::try_from(i).is_ok_and(&long_data) {
                Param::LongData
            } else {
                binary_value(&mut r, ty.column_type, ty.unsigned)
                    .map_or(Param::Malformed, Param::Value)
            };
            broken = param == Param::Malformed;
            params.push(param);
        }
        params
    }
}

/// A `COM_STMT_SEND_LONG_DATA` chunk (command byte included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongData<'a> {
    /// The statement.
    pub statement_id: u32,
    /// The parameter (0-based).
    pub param: u16,
    /// The chunk (appended to what the parameter already holds).
    pub data: &'a [u8],
}

/// Parses a `COM_STMT_SEND_LONG_DATA` (command byte included).
#[must_use]
pub fn parse_long_data(payload: &[u8]) -> Option<LongData<'_>> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0x18 {
        return None;
    }
    Some(LongData {
        statement_id: r.u32()?,
        param: r.u16()?,
        data: r.rest(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `COM_STMT_EXECUTE` with the types sent (new-params-bound 1, unless `types` is None).
    pub(crate) fn execute(
        id: u32,
        bitmap: &[u8],
        types: Option<&[(u8, u8)]>,
        values: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0); // no cursor
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(bitmap);
        match types {
            Some(types) => {
                p.push(1);
                for (t, f) in types {
                    p.extend_from_slice(&[*t, *f]);
                }
            }
            None => p.push(0),
        }
        p.extend_from_slice(values);
        p
    }

    fn types_of(e: &Execute<'_>) -> Vec<ParamType> {
        e.types(usize::MAX).expect("types sent")
    }

    #[test]
    fn execute_params_of_every_common_type() {
        use field_type as t;
        let types = [
            (t::TINY, 0),
            (t::SHORT, 0x80),
            (t::LONG, 0),
            (t::LONGLONG, 0),
            (t::LONGLONG, 0x80),
            (t::FLOAT, 0),
            (t::DOUBLE, 0),
            (t::VAR_STRING, 0),
            (t::BLOB, 0),
            (t::DATE, 0),
            (t::DATETIME, 0),
            (t::TIME, 0),
            (t::NEWDECIMAL, 0),
            (t::NULL, 0),
        ];
        let mut values = vec![0xff]; // TINY -1
        values.extend_from_slice(&65_535u16.to_le_bytes());
        values.extend_from_slice(&(-70_000i32).to_le_bytes());
        values.extend_from_slice(&(-5i64).to_le_bytes());
        values.extend_from_slice(&u64::MAX.to_le_bytes());
        values.extend_from_slice(&1.5f32.to_le_bytes());
        values.extend_from_slice(&(-0.25f64).to_le_bytes());
        values.extend_from_slice(b"\x05hello");
        values.extend_from_slice(b"\x03\x00\x01\xff");
        values.extend_from_slice(&[4, 0xe8, 0x07, 12, 31]); // 2024-12-31
        values.extend_from_slice(&[11, 0xe8, 0x07, 1, 2, 3, 4, 5, 0x40, 0xe2, 0x01, 0x00]);
        values.extend_from_slice(&[8, 1, 1, 0, 0, 0, 2, 3, 4]); // -26:03:04
        values.extend_from_slice(b"\x0412.5");
        // NULL type: no bytes; bit 13 set too.
        let bitmap = [0, 0b0010_0000];
        let packet = execute(7, &bitmap, Some(&types), &values);
        let e = parse_execute(&packet, 14).expect("execute");
        assert_eq!(e.statement_id, 7);
        let params = e.params(&types_of(&e), |_| false);
        let v = |v| Param::Value(v);
        assert_eq!(
            params,
            [
                v(Value::Int(-1)),
                v(Value::Int(65_535)),
                v(Value::Int(-70_000)),
                v(Value::Int(-5)),
                v(Value::UInt(u64::MAX)),
                v(Value::Double(1.5)),
                v(Value::Double(-0.25)),
                v(Value::Bytes(b"hello")),
                v(Value::Bytes(b"\x00\x01\xff")),
                v(Value::DateTime(DateTime {
                    date_only: true,
                    year: 2024,
                    month: 12,
                    day: 31,
                    ..DateTime::default()
                })),
                v(Value::DateTime(DateTime {
                    date_only: false,
                    year: 2024,
                    month: 1,
                    day: 2,
                    hour: 3,
                    minute: 4,
                    second: 5,
                    micros: 123_456,
                })),
                v(Value::Time(Time {
                    negative: true,
                    days: 1,
                    hours: 2,
                    minutes: 3,
                    seconds: 4,
                    micros: 0,
                })),
                v(Value::Bytes(b"12.5")),
                v(Value::Null),
            ]
        );
        let Param::Value(Value::DateTime(dt)) = params[10] else {
            panic!("datetime")
        };
        assert_eq!(dt.to_string(), "2024-01-02 03:04:05.123456");
        let Param::Value(Value::Time(time)) = params[11] else {
            panic!("time")
        };
        assert_eq!(time.to_string(), "-26:03:04");
    }

    #[test]
    fn null_bitmap_skips_values_and_remembered_types_apply() {
        use field_type as t;
        let types = [(t::LONGLONG, 0), (t::VAR_STRING, 0), (t::LONGLONG, 0)];
        // Second parameter NULL: its bytes are absent.
        let mut values = 1i64.to_le_bytes().to_vec();
        values.extend_from_slice(&3i64.to_le_bytes());
        let first = execute(1, &[0b010], Some(&types), &values);
        let e = parse_execute(&first, 3).expect("execute");
        let remembered = types_of(&e);
        assert_eq!(
            e.params(&remembered, |_| false),
            [
                Param::Value(Value::Int(1)),
                Param::Value(Value::Null),
                Param::Value(Value::Int(3))
            ]
        );
        // The next execute sends no types: the remembered ones decode it.
        let mut values = 9i64.to_le_bytes().to_vec();
        values.extend_from_slice(b"\x02hi");
        let second = execute(1, &[0b100], None, &values);
        let e = parse_execute(&second, 3).expect("execute");
        assert_eq!(e.types(10), None);
        assert_eq!(
            e.params(&remembered, |_| false),
            [
                Param::Value(Value::Int(9)),
                Param::Value(Value::Bytes(b"hi")),
                Param::Value(Value::Null)
            ]
        );
        // More than 8 parameters: a two-byte bitmap.
        let nine = [(t::TINY, 0); 9];
        let packet = execute(2, &[0, 1], Some(&nine), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let e = parse_execute(&packet, 9).expect("execute");
        let params = e.params(&types_of(&e), |_| false);
        assert_eq!(params[7], Param::Value(Value::Int(8)));
        assert_eq!(params[8], Param::Value(Value::Null));
    }

    #[test]
    fn long_data_parameters_have_no_bytes_in_the_execute() {
        use field_type as t;
        let types = [(t::BLOB, 0), (t::LONG, 0)];
        let packet = execute(3, &[0], Some(&types), &42i32.to_le_bytes());
        let e = parse_execute(&packet, 2).expect("execute");
        assert_eq!(
            e.params(&types_of(&e), |p| p == 0),
            [Param::LongData, Param::Value(Value::Int(42))]
        );
        let chunk = [&[0x18, 3, 0, 0, 0, 0, 0][..], b"abc"].concat();
        assert_eq!(
            parse_long_data(&chunk),
            Some(LongData {
                statement_id: 3,
                param: 0,
                data: b"abc"
            })
        );
        assert_eq!(parse_long_data(&chunk[..5]), None);
    }

    #[test]
    fn malformed_executes_never_panic_and_mark_the_rest() {
        use field_type as t;
        let types = [(t::LONG, 0), (t::VAR_STRING, 0), (t::TINY, 0)];
        // The string claims 200 bytes; only 3 follow.
        let mut values = 5i32.to_le_bytes().to_vec();
        values.extend_from_slice(&[200, b'a', b'b', b'c']);
        let packet = execute(1, &[0], Some(&types), &values);
        let e = parse_execute(&packet, 3).expect("header");
        assert_eq!(
            e.params(&types_of(&e), |_| false),
            [
                Param::Value(Value::Int(5)),
                Param::Malformed,
                Param::Malformed
            ]
        );
        // A type no server uses in values.
        let packet = execute(1, &[0], Some(&[(0x13, 0)]), &[1, 2, 3]);
        let e = parse_execute(&packet, 1).expect("header");
        assert_eq!(e.params(&types_of(&e), |_| false), [Param::Malformed]);
        // A bad new-params-bound flag, a short header.
        assert_eq!(parse_execute(&execute(1, &[0], None, &[])[..9], 1), None);
        let mut bad_flag = execute(1, &[0], None, &[]);
        bad_flag[11] = 7;
        assert_eq!(parse_execute(&bad_flag, 1), None);
        for len in 0..packet.len() {
            if let Some(e) = parse_execute(&packet[..len], 1) {
                let _ = e.params(&e.types(4).unwrap_or_default(), |_| false);
            }
        }
    }

    #[test]
    fn text_and_binary_rows() {
        use field_type as t;
        let text = b"\x011\xfb\x03abc";
        assert_eq!(
            text_row(text, 3),
            [
                Some(Value::Bytes(b"1")),
                Some(Value::Null),
                Some(Value::Bytes(b"abc"))
            ]
        );
        assert_eq!(text_row(text, 2).len(), 2);
        assert_eq!(
            text_row(b"\x011\x09ab", 3),
            [Some(Value::Bytes(b"1")), None, None]
        );

        // 3 columns, the second NULL (bit 1 + 2 = 3).
        let mut row = vec![0x00, 0b0000_1000];
        row.extend_from_slice(&7i64.to_le_bytes());
        row.extend_from_slice(b"\x02ok");
        let types = [
            (t::LONGLONG, false),
            (t::VAR_STRING, false),
            (t::VAR_STRING, false),
        ];
        assert_eq!(
            binary_row(&row, 3, &types),
            [
                Some(Value::Int(7)),
                Some(Value::Null),
                Some(Value::Bytes(b"ok"))
            ]
        );
        // Only the first column asked for.
        assert_eq!(binary_row(&row, 3, &types[..1]), [Some(Value::Int(7))]);
        // Cut short, wrong header.
        assert_eq!(binary_row(&row[..5], 3, &types), [None, None, None]);
        assert_eq!(binary_row(&[0xfe, 0], 1, &types[..1]), [None]);
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(field_type::LONGLONG), Some("LONGLONG"));
        assert_eq!(type_name(field_type::VAR_STRING), Some("VAR_STRING"));
        assert_eq!(type_name(0x42), None);
        assert!(is_string_type(field_type::BLOB) && is_string_type(field_type::VARCHAR));
        assert!(!is_string_type(field_type::LONG) && !is_string_type(field_type::JSON));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
            params in 0u16..40,
            column_type in proptest::prelude::any::<u8>(),
        ) {
            let _ = text_row(&bytes, 8);
            let _ = binary_row(&bytes, 8, &[(column_type, false); 8]);
            let _ = parse_long_data(&bytes);
            let mut packet = vec![0x17];
            packet.extend_from_slice(&bytes);
            if let Some(e) = parse_execute(&packet, params) {
                let types = e.types(64).unwrap_or_else(|| vec![ParamType { column_type, unsigned: true }; 64]);
                let _ = e.params(&types, |p| p % 3 == 0);
            }
            let mut r = Reader::new(&bytes);
            for _ in 0..bytes.len() {
                if binary_value(&mut r, column_type, false).is_none() {
                    break;
                }
            }
        }
    }
}
