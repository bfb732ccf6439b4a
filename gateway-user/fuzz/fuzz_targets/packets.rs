//! Every decoder and editor of peer packets, on arbitrary bytes: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags;
use tollgate::protocol::packets;

fuzz_target!(|data: &[u8]| {
    let _ = packets::parse_ok(data);
    let _ = packets::parse_eof(data);
    let _ = packets::parse_err(data);
    let _ = packets::column_name(data);
    let _ = packets::parse_prepare_ok(data);
    let _ = packets::is_row_terminator(data, false);
    let _ = packets::requests_tls(data);
    let strip = CapabilityFlags::CLIENT_SSL | CapabilityFlags::CLIENT_COMPRESS;
    let _ = packets::edit_greeting(&mut data.to_vec(), strip);
    let _ = packets::edit_handshake_response(&mut data.to_vec(), strip);
});
