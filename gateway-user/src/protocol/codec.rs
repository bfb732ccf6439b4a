//! Framing of one leg: MySQL packets (3-byte length, sequence id, payloads over 16 MiB split
//! into chunks) read from and written to a socket, with sequence ids checked.
//!
//! The framing itself is `mysql_common`'s `PacketCodec`; this wraps it with buffers and async
//! I/O. "Need more bytes" is not an error: [`Leg::read_packet`] reads until a whole packet is
//! there. An out-of-order sequence id is [`CodecError::OutOfSync`], never a panic.

use bytes::BytesMut;
use mysql_common::proto::codec::{PacketCodec, error::PacketCodecError};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest logical packet accepted (MySQL's own upper bound for `max_allowed_packet`).
pub const MAX_PACKET: usize = 1 << 30;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Flush pending writes once this many bytes are queued, even mid-batch.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// Why a leg could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A packet's sequence id was not the expected one.
    #[error("packets out of order (unexpected sequence id)")]
    OutOfSync,
    /// A packet was larger than [`MAX_PACKET`].
    #[error("packet larger than {MAX_PACKET} bytes")]
    TooLarge,
    /// A compressed packet header was malformed.
    #[error("malformed compressed packet header")]
    BadCompressedHeader,
    /// The peer closed the connection in the middle of a packet.
    #[error("connection closed in the middle of a packet")]
    Truncated,
}

impl From<PacketCodecError> for CodecError {
    fn from(error: PacketCodecError) -> Self {
        match error {
            PacketCodecError::Io(io) => Self::Io(io),
            PacketCodecError::PacketTooLarge => Self::TooLarge,
            PacketCodecError::PacketsOutOfSync => Self::OutOfSync,
            PacketCodecError::BadCompressedPacketHeader => Self::BadCompressedHeader,
        }
    }
}

/// One side of a session (the client's or the database's) as a stream of packets.
#[derive(Debug)]
pub struct Leg<S> {
    stream: S,
    codec: PacketCodec,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Bytes read from the socket, for the session totals.
    pub bytes_read: u64,
    /// Bytes written to the socket, for the session totals.
    pub bytes_written: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Leg<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        let mut codec = PacketCodec::default();
        codec.max_allowed_packet = MAX_PACKET;
        Self {
            stream,
            codec,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// Starts a new exchange: the next packet read or written has sequence id 0.
    pub fn reset_sequence(&mut self) {
        self.codec.reset_seq_id();
    }

    /// Decodes the next packet already in the buffer, without reading the socket.
    pub fn try_packet(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        let mut payload = Vec::new();
        if self.codec.decode(&mut self.read_buf, &mut payload)? {
            Ok(Some(payload))
        } else {
            Ok(None)
        }
    }

    /// Reads the next whole packet; `None` when the peer closed cleanly between packets.
    pub async fn read_packet(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        loop {
            if let Some(packet) = self.try_packet()? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                return if self.read_buf.is_empty() {
                    Ok(None)
                } else {
                    Err(CodecError::Truncated)
                };
            }
        }
    }

    /// Reads more bytes from the socket; false at end of stream.
    pub async fn fill(&mut self) -> Result<bool, CodecError> {
        self.read_buf.reserve(READ_CHUNK);
        let n = self.stream.read_buf(&mut self.read_buf).await?;
        self.bytes_read += n as u64;
        Ok(n > 0)
    }

    /// Queues a packet (split into chunks as needed) with the next sequence id; it is sent by
    /// [`Leg::flush`], or earlier once enough is queued.
    pub async fn write_packet(&mut self, payload: &[u8]) -> Result<(), CodecError> {
        let mut src = payload;
        self.codec.encode(&mut src, &mut self.write_buf)?;
        if self.write_buf.len() >= FLUSH_THRESHOLD {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), CodecError> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.bytes_written += self.write_buf.len() as u64;
            self.write_buf.clear();
        }
        Ok(())
    }

    /// True when a whole or partial packet is already buffered.
    #[must_use]
    pub fn has_buffered(&self) -> bool {
        !self.read_buf.is_empty()
    }

    /// Switches this leg to the compressed protocol (zlib), as negotiated with
    /// `CLIENT_COMPRESS`; takes effect for the next packet.
    pub fn compress(&mut self) {
        self.codec
            .compress(mysql_common::proto::codec::Compression::default());
    }

    /// Takes the leg apart to change its stream (a TLS upgrade): the stream, the codec (whose
    /// sequence id carries on), and bytes already read but not decoded.
    pub fn into_parts(self) -> (S, PacketCodec, BytesMut) {
        (self.stream, self.codec, self.read_buf)
    }

    /// Rebuilds a leg on a new stream with the codec of [`Leg::into_parts`].
    pub fn from_parts(stream: S, codec: PacketCodec, bytes_read: u64, bytes_written: u64) -> Self {
        Self {
            stream,
            codec,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            bytes_read,
            bytes_written,
        }
    }

    /// The underlying stream, e.g. to shut it down.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncWriteExt as _, duplex};

    use super::*;

    #[tokio::test]
    async fn reads_packets_in_order_and_rejects_a_wrong_sequence_id() {
        let (mut peer, ours) = duplex(1024);
        let mut leg = Leg::new(ours);
        peer.write_all(&[1, 0, 0, 0, 0x0e, 1, 0, 0, 1, 0x0e])
            .await
            .expect("write");
        leg.reset_sequence();
        assert_eq!(leg.read_packet().await.expect("first"), Some(vec![0x0e]));
        assert_eq!(leg.read_packet().await.expect("second"), Some(vec![0x0e]));
        peer.write_all(&[1, 0, 0, 7, 0x0e]).await.expect("write");
        assert!(matches!(
            leg.read_packet().await,
            Err(CodecError::OutOfSync)
        ));
    }

    #[tokio::test]
    async fn end_of_stream_between_packets_is_none_and_inside_one_is_an_error() {
        let (peer, ours) = duplex(64);
        drop(peer);
        let mut leg = Leg::new(ours);
        assert_eq!(leg.read_packet().await.expect("eof"), None);

        let (mut peer, ours) = duplex(64);
        peer.write_all(&[5, 0, 0, 0, 1]).await.expect("write");
        drop(peer);
        let mut leg = Leg::new(ours);
        assert!(matches!(
            leg.read_packet().await,
            Err(CodecError::Truncated)
        ));
    }

    #[tokio::test]
    async fn large_payloads_are_split_and_joined() {
        let (a, b) = duplex(1 << 20);
        let mut writer = Leg::new(a);
        let mut reader = Leg::new(b);
        let payload = vec![7u8; 16_777_215 + 10];
        let expected = payload.clone();
        let write = async move {
            writer.write_packet(&payload).await.expect("queue");
            writer.flush().await.expect("flush");
            writer
        };
        let read = async move { reader.read_packet().await.expect("read") };
        let (_writer, got) = tokio::join!(write, read);
        assert_eq!(got.map(|p| p.len()), Some(expected.len()));
    }
}
