//! MySQL wire protocol: framing ([`codec`]), the packets the gateway reads and the edits it
//! makes ([`packets`]), and the ERR packet it sends ([`ErrPacket`]). Pure except for
//! [`codec::Leg`], which owns one socket.

pub mod codec;
mod err_packet;
pub mod handshake;
pub mod packets;

pub use err_packet::{ErrPacket, error_code};
