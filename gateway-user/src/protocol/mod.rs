//! MySQL wire protocol: pure encoders and decoders, no I/O and no policy.
//!
//! The foundation relays bytes without parsing them; what it needs of the protocol is to
//! answer a client with a proper ERR packet when the gateway itself refuses a connection.

mod err_packet;

pub use err_packet::{ErrPacket, error_code};
