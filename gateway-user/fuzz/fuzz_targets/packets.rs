//! Every decoder and editor of peer packets, on arbitrary bytes: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags;
use tollgate::protocol::{attributes::Attributes, change_user, handshake, packets, values};

fuzz_target!(|data: &[u8]| {
    let _ = packets::parse_ok(data);
    let _ = packets::parse_eof(data);
    let _ = packets::parse_err(data);
    let _ = packets::column_name(data);
    let _ = packets::parse_column_definition(data);
    let _ = packets::parse_prepare_ok(data);
    let _ = packets::is_row_terminator(data, false);
    let _ = packets::requests_tls(data);
    let strip = CapabilityFlags::CLIENT_SSL | CapabilityFlags::CLIENT_COMPRESS;
    let _ = packets::edit_greeting(&mut data.to_vec(), strip);
    let _ = packets::edit_handshake_response(&mut data.to_vec(), strip);
    // The terminated login's decoders: the database's greeting, the client's handshake
    // response and COM_CHANGE_USER (under every capability layout), connection attributes.
    let _ = handshake::parse_greeting(data);
    let _ = handshake::parse_client_login(data);
    let caps = data
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let _ = change_user::parse(data, caps);
    let _ = Attributes::decode(data);
    // Rows and statement parameters, as the recording decodes them: the first byte picks the
    // column type, the second the parameter count.
    let column_type = data.first().copied().unwrap_or(0);
    let _ = values::text_row(data, 16);
    let _ = values::binary_row(data, 16, &[(column_type, false); 16]);
    let _ = values::parse_long_data(data);
    let params = u16::from(data.get(1).copied().unwrap_or(0));
    if let Some(execute) = values::parse_execute(data, params) {
        let types = execute.types(64).unwrap_or_default();
        let _ = execute.params(&types, |p| p % 2 == 1);
    }
    if let Some(login) = handshake::parse_client_login(data) {
        // Whatever a client sent, the response built from it parses back.
        let greeting = handshake::ServerGreeting {
            version: b"8.0.0".to_vec(),
            connection_id: 1,
            nonce: [7; handshake::NONCE_LEN],
            capabilities: u32::MAX,
            charset: 45,
            status: 2,
            mariadb_extended: 0,
            auth_plugin: "mysql_native_password".into(),
        };
        let built = handshake::build_upstream_login(
            login.capabilities,
            &greeting,
            &login,
            &login.user,
            &[],
            login.database.as_deref(),
            "mysql_native_password",
        );
        assert!(handshake::parse_client_login(&built).is_some());
    }
});
