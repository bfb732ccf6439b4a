//! The masker on arbitrary result sets: column definitions of fuzzed types and flags, then a
//! fuzzed row in the text or binary protocol. Must never panic; a row that decodes must come
//! out decodable with the same columns (lengths re-encoded, the NULL bitmap kept in step),
//! and a row that does not decode comes out as NULLs, never raw.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tollgate::{
    mask::{Masking, SessionMasking},
    protocol::values::{self, field_type as t},
};

const TYPES: &[u8] = &[
    t::TINY,
    t::SHORT,
    t::LONG,
    t::LONGLONG,
    t::FLOAT,
    t::DOUBLE,
    t::DATE,
    t::DATETIME,
    t::TIME,
    t::YEAR,
    t::NEWDECIMAL,
    t::BIT,
    t::BLOB,
    t::VAR_STRING,
    t::STRING,
    t::JSON,
];

static MASKING: LazyLock<Masking> = LazyLock::new(|| {
    let text = r#"
[[masking]]
name = "full"
columns = ["c0", "c3"]
[[masking]]
name = "partial"
fields = ["db.t.c1", "t.c4"]
style = "partial"
[[masking]]
name = "null"
columns = ["c2"]
style = "null"
[[masking]]
name = "content"
detectors = ["email", "card", "phone", "national_id", "iban", "api_key"]
"#;
    text.parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("masking"))
        .and_then(|rules| rules.try_into::<Masking>().ok())
        .unwrap_or_default()
});

fn lenenc(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).unwrap_or(0));
    out.extend_from_slice(bytes);
}

fn definition(i: usize, column_type: u8, flags: u16) -> Vec<u8> {
    let mut p = Vec::new();
    for field in ["def", "db", "t", "t", &format!("c{i}"), &format!("c{i}")] {
        lenenc(&mut p, field.as_bytes());
    }
    p.push(0x0c);
    p.extend_from_slice(&45u16.to_le_bytes());
    p.extend_from_slice(&20u32.to_le_bytes());
    p.push(column_type);
    p.extend_from_slice(&flags.to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let columns = usize::from(head & 0x07) + 1;
    let binary = head & 0x80 != 0;
    let Some((types, row)) = rest.split_at_checked(columns) else {
        return;
    };
    let session = SessionMasking::new(&MASKING, "db");
    let mut mask = session.statement(if binary { 0x17 } else { 0x03 }, &[], &[]);
    mask.result_set();
    let mut kinds = Vec::new();
    for (i, &byte) in types.iter().enumerate() {
        let column_type = TYPES[usize::from(byte) % TYPES.len()];
        let flags = u16::from(byte >> 7) | (u16::from(byte >> 6 & 1) << 5);
        let _ = mask.definition(&MASKING, definition(i, column_type, flags));
        kinds.push((column_type, flags & 0x20 != 0));
    }
    let decode = |payload: &[u8]| {
        if binary {
            values::binary_row(payload, columns, &kinds)
                .iter()
                .all(Option::is_some)
        } else {
            values::text_row(payload, columns)
                .iter()
                .all(Option::is_some)
        }
    };
    let decodes = decode(row);
    let out = mask.row(&MASKING, row.to_vec());
    if decodes {
        assert!(decode(&out), "{row:?} -> {out:?}");
    }
});
