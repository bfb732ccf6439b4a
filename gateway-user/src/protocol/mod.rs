//! MySQL wire protocol: framing ([`codec`]; the compressed protocol, zlib or zstd, in
//! [`compression`]), the packets the gateway reads and the edits it makes ([`packets`]), the
//! values of rows and statement parameters ([`values`]), the terminated login ([`handshake`])
//! and re-authentication ([`change_user`]), and the ERR packet it sends ([`ErrPacket`]). Pure
//! except for [`codec::Leg`], which owns one socket.

pub mod attributes;
pub mod change_user;
pub mod codec;
pub mod compression;
mod err_packet;
pub mod handshake;
pub mod packets;
pub mod values;

pub use err_packet::{ErrPacket, error_code};
