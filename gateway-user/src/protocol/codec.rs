//! Framing of one leg: MySQL packets (3-byte length, sequence id, payloads over 16 MiB split
//! into chunks) read from and written to a socket, with sequence ids checked.
//!
//! The plain framing is `mysql_common`'s `PacketCodec`; after [`Leg::compress`] it is the
//! compressed protocol of [`super::compression`] (zlib or zstd). This wraps either with
//! buffers and async I/O. "Need more bytes" is not an error: [`Leg::read_packet`] reads until
//! a whole packet is there. An out-of-order sequence id is [`CodecError::OutOfSync`], a
//! malformed compressed frame [`CodecError::Compression`], never a panic.

use bytes::BytesMut;
use mysql_common::proto::codec::{PacketCodec, error::PacketCodecError};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::compression::{Algorithm, CompressedCodec, CompressionError};

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
    /// A compressed frame was malformed (or the compressor failed).
    #[error("{0}")]
    Compression(#[from] CompressionError),
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

/// A leg's framing: plain, or compressed once negotiated. Carried across a TLS upgrade by
/// [`Leg::into_parts`] and [`Leg::from_parts`].
#[derive(Debug)]
pub struct Framing(FramingKind);

#[derive(Debug)]
enum FramingKind {
    Plain(PacketCodec),
    Compressed(Box<CompressedCodec>),
}

/// One side of a session (the client's or the database's) as a stream of packets.
#[derive(Debug)]
pub struct Leg<S> {
    stream: S,
    codec: Framing,
    read_buf: BytesMut,
    /// The chunks so far of a packet over 16 MiB (plain framing).
    partial: Vec<u8>,
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
            codec: Framing(FramingKind::Plain(codec)),
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            partial: Vec::new(),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// Starts a new exchange: the next packet read or written has sequence id 0.
    pub fn reset_sequence(&mut self) {
        match &mut self.codec.0 {
            FramingKind::Plain(codec) => codec.reset_seq_id(),
            FramingKind::Compressed(codec) => codec.reset_sequence(),
        }
    }

    /// Decodes the next packet already in the buffer, without reading the socket.
    pub fn try_packet(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        match &mut self.codec.0 {
            // The codec appends each chunk of a packet over 16 MiB to `partial` and says
            // "done" at the last one: the same buffer must come back until then.
            FramingKind::Plain(codec) => {
                if codec.decode(&mut self.read_buf, &mut self.partial)? {
                    Ok(Some(std::mem::take(&mut self.partial)))
                } else {
                    Ok(None)
                }
            }
            FramingKind::Compressed(codec) => Ok(codec.decode(&mut self.read_buf)?),
        }
    }

    /// Reads the next whole packet; `None` when the peer closed cleanly between packets.
    pub async fn read_packet(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        loop {
            if let Some(packet) = self.try_packet()? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                return if self.has_buffered() {
                    Err(CodecError::Truncated)
                } else {
                    Ok(None)
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
        match &mut self.codec.0 {
            FramingKind::Plain(codec) => {
                let mut src = payload;
                codec.encode(&mut src, &mut self.write_buf)?;
            }
            FramingKind::Compressed(codec) => codec.encode(payload, &mut self.write_buf)?,
        }
        if self.write_buf.len() >= FLUSH_THRESHOLD {
            self.send().await?;
        }
        Ok(())
    }

    /// Sends everything queued (on a compressed leg: as a frame boundary, after which packet
    /// sequence ids follow frame sequence ids, as MySQL's `net_flush` does).
    pub async fn flush(&mut self) -> Result<(), CodecError> {
        if let FramingKind::Compressed(codec) = &mut self.codec.0 {
            codec.flush(&mut self.write_buf)?;
        }
        self.send().await
    }

    /// Writes the bytes already framed.
    async fn send(&mut self) -> Result<(), CodecError> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            // A TLS stream may keep the tail of what it accepted in its own buffer when the
            // socket would block; flushing pushes it out (a no-op for plain TCP).
            self.stream.flush().await?;
            self.bytes_written += self.write_buf.len() as u64;
            self.write_buf.clear();
        }
        Ok(())
    }

    /// True when a whole or partial packet is already buffered.
    #[must_use]
    pub fn has_buffered(&self) -> bool {
        !self.read_buf.is_empty()
            || !self.partial.is_empty()
            || matches!(&self.codec.0, FramingKind::Compressed(codec) if codec.has_buffered())
    }

    /// Switches this leg to the compressed protocol with `algorithm` (zlib for
    /// `CLIENT_COMPRESS`, zstd for `CLIENT_ZSTD_COMPRESSION_ALGORITHM`); takes effect for the
    /// next packet, with sequence ids from 0.
    pub fn compress(&mut self, algorithm: Algorithm) -> Result<(), CodecError> {
        let codec = CompressedCodec::new(algorithm, MAX_PACKET)?;
        self.codec = Framing(FramingKind::Compressed(Box::new(codec)));
        Ok(())
    }

    /// The compressed protocol's algorithm, when this leg uses it.
    #[must_use]
    pub fn compression(&self) -> Option<Algorithm> {
        match &self.codec.0 {
            FramingKind::Plain(_) => None,
            FramingKind::Compressed(codec) => Some(codec.algorithm()),
        }
    }

    /// Takes the leg apart to change its stream (a TLS upgrade): the stream, the framing
    /// (whose sequence id carries on), and bytes already read but not decoded.
    pub fn into_parts(self) -> (S, Framing, BytesMut) {
        (self.stream, self.codec, self.read_buf)
    }

    /// Rebuilds a leg on a new stream with the framing of [`Leg::into_parts`].
    pub fn from_parts(stream: S, codec: Framing, bytes_read: u64, bytes_written: u64) -> Self {
        Self {
            stream,
            codec,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            partial: Vec::new(),
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
    async fn compressed_legs_round_trip_and_refuse_a_malformed_frame() {
        for algorithm in [Algorithm::Zlib, Algorithm::zstd(Some(5))] {
            let (a, b) = duplex(1 << 20);
            let mut writer = Leg::new(a);
            let mut reader = Leg::new(b);
            writer.compress(algorithm).expect("compress");
            reader.compress(algorithm).expect("compress");
            assert_eq!(reader.compression(), Some(algorithm));
            let packets: Vec<Vec<u8>> = (0..2000u32)
                .map(|i| format!("row {i} {}", "x".repeat(i as usize % 300)).into_bytes())
                .collect();
            let expected = packets.clone();
            let write = async move {
                for packet in &packets {
                    writer.write_packet(packet).await.expect("queue");
                }
                writer.flush().await.expect("flush");
                writer
            };
            let read = async move {
                let mut got = Vec::new();
                for _ in 0..expected.len() {
                    got.push(reader.read_packet().await.expect("read").expect("packet"));
                }
                (reader, got == expected)
            };
            let (_writer, (reader, same)) = tokio::join!(write, read);
            assert!(same, "{algorithm}");
            assert!(!reader.has_buffered());

            // A frame announcing 100 inflated bytes that hold garbage.
            let (mut peer, ours) = duplex(1024);
            let mut leg = Leg::new(ours);
            leg.compress(algorithm).expect("compress");
            let mut frame = vec![60, 0, 0, 0, 100, 0, 0];
            frame.extend_from_slice(&[0x55; 60]);
            peer.write_all(&frame).await.expect("write");
            assert!(matches!(
                leg.read_packet().await,
                Err(CodecError::Compression(_))
            ));
            drop(reader);
        }
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

    #[tokio::test]
    async fn a_packet_whose_last_chunk_arrives_later_is_joined_whole() {
        let (mut peer, ours) = duplex(1 << 16);
        let mut leg = Leg::new(ours);
        let first = 0x00ff_ffff_usize;
        let read = tokio::spawn(async move { leg.read_packet().await.expect("read") });
        let mut wire = vec![0xff, 0xff, 0xff, 0];
        wire.extend(std::iter::repeat_n(1u8, first));
        peer.write_all(&wire).await.expect("first chunk");
        // The reader has decoded the first chunk by now and waits for the rest.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        peer.write_all(&[3, 0, 0, 1, 2, 2, 2])
            .await
            .expect("last chunk");
        let packet = read.await.expect("joined").expect("a packet");
        assert_eq!(packet.len(), first + 3);
        assert_eq!(packet.first(), Some(&1));
        assert_eq!(packet.last(), Some(&2));
    }
}
