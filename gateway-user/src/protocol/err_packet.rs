//! The ERR packet (`0xFF`), the only way a MySQL client reports a gateway-side failure in words
//! the user can read.

use bytes::{BufMut as _, Bytes, BytesMut};

/// MySQL error codes the gateway sends, with their conventional SQLSTATEs.
pub mod error_code {
    /// `ER_CON_COUNT_ERROR`: too many connections (SQLSTATE 08004).
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    /// `ER_HOST_NOT_PRIVILEGED`: the connection may not use this gateway (SQLSTATE HY000).
    pub const HOST_NOT_PRIVILEGED: u16 = 1130;
    /// `ER_CONNECT_TO_FOREIGN_DATA_SOURCE`: the server could not reach the server behind it
    /// (SQLSTATE HY000). Not 2003 (`CR_CONN_HOST_ERROR`): 2000-2999 are client-side codes, and
    /// MariaDB Connector/C rejects them from a server as a malformed packet.
    pub const CANNOT_REACH_UPSTREAM: u16 = 1429;
    /// `ER_OPTION_PREVENTS_STATEMENT`: a fail-closed target's statement is refused because it
    /// cannot be recorded right now (SQLSTATE HY000).
    pub const RECORDING_UNAVAILABLE: u16 = 1290;
    /// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: a guardrail blocked the statement; the message names
    /// the rule and the risks (SQLSTATE 42000).
    pub const GUARDRAIL_BLOCKED: u16 = 1227;
    /// `ER_USER_LIMIT_REACHED`: a rate guardrail refused the statement (SQLSTATE 42000).
    pub const RATE_LIMITED: u16 = 1226;
    /// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: a masking rule's statement check refused the statement
    /// (a function, union, subquery or user variable over a masked column, or unparsable);
    /// the message names the rule, the check and the column (SQLSTATE 42000).
    pub const MASKING_REFUSED: u16 = 1227;
}

/// Largest payload of one packet; an error message never comes close, but it is cut rather
/// than framed wrongly.
const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// A MySQL ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    /// The error code (e.g. 1040).
    pub code: u16,
    /// Five-character SQLSTATE, e.g. `HY000`.
    pub sql_state: [u8; 5],
    /// Human-readable text shown by the client.
    pub message: String,
}

impl ErrPacket {
    /// An error with SQLSTATE `HY000` (general error).
    #[must_use]
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            sql_state: *b"HY000",
            message: message.into(),
        }
    }

    /// Sets the SQLSTATE.
    #[must_use]
    pub fn with_sql_state(mut self, sql_state: [u8; 5]) -> Self {
        self.sql_state = sql_state;
        self
    }

    /// Frames the packet with sequence id `sequence_id`.
    ///
    /// Before the handshake (`protocol_41 == false`) the SQLSTATE marker is left out, as MySQL
    /// and MariaDB servers do: clients only parse it once `CLIENT_PROTOCOL_41` is negotiated.
    #[must_use]
    pub fn encode(&self, sequence_id: u8, protocol_41: bool) -> Bytes {
        let payload = self.payload(protocol_41);
        let len = payload.len();
        let mut frame = BytesMut::with_capacity(4 + len);
        frame.put_uint_le(len as u64, 3);
        frame.put_u8(sequence_id);
        frame.put_slice(&payload);
        frame.freeze()
    }

    /// The packet's payload, for a codec that frames it.
    #[must_use]
    pub fn payload(&self, protocol_41: bool) -> BytesMut {
        let mut payload = BytesMut::with_capacity(9 + self.message.len());
        payload.put_u8(0xff);
        payload.put_u16_le(self.code);
        if protocol_41 {
            payload.put_u8(b'#');
            payload.put_slice(&self.sql_state);
        }
        let room = MAX_PAYLOAD - payload.len();
        let message = truncate_at_char_boundary(&self.message, room);
        payload.put_slice(message.as_bytes());
        payload
    }
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_handshake_error_has_no_sql_state() {
        let packet = ErrPacket::new(error_code::CANNOT_REACH_UPSTREAM, "no");
        assert_eq!(
            packet.encode(0, false).as_ref(),
            &[0x05, 0x00, 0x00, 0x00, 0xff, 0x95, 0x05, b'n', b'o']
        );
    }

    #[test]
    fn protocol_41_error_has_sql_state() {
        let packet =
            ErrPacket::new(error_code::TOO_MANY_CONNECTIONS, "x").with_sql_state(*b"08004");
        assert_eq!(
            packet.encode(2, true).as_ref(),
            &[
                0x0a, 0x00, 0x00, 0x02, 0xff, 0x10, 0x04, b'#', b'0', b'8', b'0', b'0', b'4', b'x'
            ]
        );
    }

    #[test]
    fn truncation_respects_utf8() {
        assert_eq!(truncate_at_char_boundary("aé", 2), "a");
        assert_eq!(truncate_at_char_boundary("abc", 5), "abc");
    }
}
