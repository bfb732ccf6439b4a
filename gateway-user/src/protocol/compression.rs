//! MySQL's compressed protocol, zlib (`CLIENT_COMPRESS`) and zstd
//! (`CLIENT_ZSTD_COMPRESSION_ALGORITHM`, MySQL 8.0.18+): a stream of ordinary packets (4-byte
//! header, sequence id, 16 MiB chunks) cut into compressed frames.
//!
//! A frame is a 7-byte header (3-byte payload length, 1-byte compressed sequence id, 3-byte
//! uncompressed length) and a payload: stored as is when the uncompressed length is 0, else
//! one complete zlib stream or zstd frame that inflates to exactly that many bytes. Frames
//! need not align with packets: a packet may span frames and a frame may carry many packets.
//!
//! Sequence ids follow MySQL's `net_serv.cc`: each frame has the next compressed sequence id
//! (reset with the packet sequence id at each command, and counting on across both
//! directions of an exchange); packets inside frames carry their own sequence ids, which
//! readers do not check (the frame's id orders the stream; MySQL servers do not check them
//! either); after each flush the packet sequence id is synchronised to the compressed one.
//!
//! Pure: bytes in, bytes out; bounded memory (a frame is at most 16 MiB each way, and only
//! the packet being assembled is held beyond that). Malformed input is a
//! [`CompressionError`], never a panic.

use std::fmt;

use bytes::{Buf as _, BufMut as _, BytesMut};

/// Length of a compressed frame's header.
pub const FRAME_HEADER: usize = 7;
/// Largest payload (compressed or not) of one frame, and largest packet chunk: 2^24 - 1.
pub const MAX_FRAME: usize = 0x00ff_ffff;
/// Frames with fewer uncompressed bytes are stored as is (MySQL's `MIN_COMPRESS_LENGTH`).
pub const MIN_COMPRESS_LENGTH: usize = 50;
/// Plain bytes gathered before a frame is cut even without a flush: big enough to compress
/// well, small enough to keep rows streaming.
const BATCH: usize = 64 * 1024;
/// zlib level, as MySQL servers use (zlib's default).
const ZLIB_LEVEL: u32 = 6;
/// zstd level when the client names none (MySQL's default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The negotiated algorithm of a compressed leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// zlib, at MySQL's level.
    Zlib,
    /// zstd at `level` (1..=22).
    Zstd {
        /// Compression level for what the gateway sends.
        level: i32,
    },
}

impl Algorithm {
    /// zstd at the level a client asked for in its handshake response, clamped to 1..=22
    /// (3 when it named none or 0).
    #[must_use]
    pub fn zstd(level: Option<u8>) -> Self {
        let level = match level {
            None | Some(0) => DEFAULT_ZSTD_LEVEL,
            Some(level) => i32::from(level).clamp(1, 22),
        };
        Self::Zstd { level }
    }

    /// The algorithm a client chose among those `offered`: zlib when it set `CLIENT_COMPRESS`
    /// (MySQL servers let it take precedence), else zstd at `zstd_level` when it set
    /// `CLIENT_ZSTD_COMPRESSION_ALGORITHM`, else none.
    #[must_use]
    pub fn negotiate(client: u32, offered: u32, zstd_level: Option<u8>) -> Option<Self> {
        use mysql_common::constants::CapabilityFlags as C;
        let agreed = client & offered;
        if agreed & C::CLIENT_COMPRESS.bits() != 0 {
            Some(Self::Zlib)
        } else if agreed & C::CLIENT_ZSTD_COMPRESSION_ALGORITHM.bits() != 0 {
            Some(Self::zstd(zstd_level))
        } else {
            None
        }
    }

    /// The level used for what the gateway sends.
    #[must_use]
    pub fn level(self) -> i32 {
        match self {
            Self::Zlib => 6,
            Self::Zstd { level } => level,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Zlib => "zlib",
            Self::Zstd { .. } => "zstd",
        })
    }
}

/// Why compressed input could not be decoded or output not encoded.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// A frame's compressed sequence id was not the expected one.
    #[error("compressed packets out of order (sequence id {got}, expected {expected})")]
    OutOfSync {
        /// The id expected.
        expected: u8,
        /// The id received.
        got: u8,
    },
    /// A frame announced uncompressed data but carried no payload.
    #[error("malformed compressed packet header (no payload for {0} uncompressed bytes)")]
    EmptyPayload(usize),
    /// A frame's payload is not valid zlib or zstd data.
    #[error("compressed packet does not decompress: {0}")]
    Corrupt(String),
    /// A frame inflated to a different length than its header announced.
    #[error("compressed packet inflates to {actual} bytes, its header says {declared}")]
    LengthMismatch {
        /// The length in the header.
        declared: usize,
        /// What the payload really holds (a lower bound when it holds more).
        actual: usize,
    },
    /// A packet was larger than the leg accepts.
    #[error("packet larger than {0} bytes")]
    TooLarge(usize),
    /// The compressor failed (out of memory, in practice).
    #[error("compressing failed: {0}")]
    Compress(String),
}

/// One leg's compressed framing: decodes frames into packets and encodes packets into
/// frames, with both sequence ids.
pub struct CompressedCodec {
    /// The negotiated algorithm.
    algorithm: Algorithm,
    /// Largest logical packet accepted or sent.
    max_packet: usize,
    /// Sequence id of the next packet written.
    seq: u8,
    /// Sequence id of the next frame, read or written.
    comp_seq: u8,
    /// Inflated bytes not yet parsed into packets (at most a partial chunk plus one frame).
    plain_in: BytesMut,
    /// The packet being assembled from chunks of 16 MiB - 1.
    pending: Vec<u8>,
    /// Plain packet bytes not yet cut into a frame (at most [`MAX_FRAME`]).
    plain_out: BytesMut,
    /// Scratch space for one compressed frame payload.
    scratch: Vec<u8>,
    /// The algorithm's contexts, kept across frames.
    engine: Engine,
}

impl fmt::Debug for CompressedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressedCodec")
            .field("algorithm", &self.algorithm)
            .field("seq", &self.seq)
            .field("comp_seq", &self.comp_seq)
            .field("plain_in", &self.plain_in.len())
            .field("pending", &self.pending.len())
            .field("plain_out", &self.plain_out.len())
            .finish_non_exhaustive()
    }
}

/// Compression and decompression contexts.
enum Engine {
    Zlib {
        deflate: Box<flate2::Compress>,
        inflate: Box<flate2::Decompress>,
    },
    Zstd {
        compressor: Box<zstd::bulk::Compressor<'static>>,
        decompressor: Box<zstd::bulk::Decompressor<'static>>,
    },
}

impl CompressedCodec {
    /// A codec for `algorithm` accepting packets of up to `max_packet` bytes; sequence ids
    /// start at 0.
    pub fn new(algorithm: Algorithm, max_packet: usize) -> Result<Self, CompressionError> {
        let engine = match algorithm {
            Algorithm::Zlib => Engine::Zlib {
                deflate: Box::new(flate2::Compress::new(
                    flate2::Compression::new(ZLIB_LEVEL),
                    true,
                )),
                inflate: Box::new(flate2::Decompress::new(true)),
            },
            Algorithm::Zstd { level } => Engine::Zstd {
                compressor: Box::new(
                    zstd::bulk::Compressor::new(level)
                        .map_err(|e| CompressionError::Compress(e.to_string()))?,
                ),
                decompressor: Box::new(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| CompressionError::Compress(e.to_string()))?,
                ),
            },
        };
        Ok(Self {
            algorithm,
            max_packet,
            seq: 0,
            comp_seq: 0,
            plain_in: BytesMut::new(),
            pending: Vec::new(),
            plain_out: BytesMut::new(),
            scratch: Vec::new(),
            engine,
        })
    }

    /// The negotiated algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Starts a new exchange: packet and frame sequence ids back to 0.
    pub fn reset_sequence(&mut self) {
        self.seq = 0;
        self.comp_seq = 0;
    }

    /// True when inflated bytes of a packet not yet returned are held.
    #[must_use]
    pub fn has_buffered(&self) -> bool {
        !self.plain_in.is_empty() || !self.pending.is_empty()
    }

    /// Decodes the next packet from `src` (raw bytes from the socket), consuming whole frames;
    /// `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<u8>>, CompressionError> {
        loop {
            if let Some(packet) = self.next_packet()? {
                // As `net_read_packet` does: writes go on from the frame sequence id.
                self.seq = self.comp_seq;
                return Ok(Some(packet));
            }
            if !self.inflate_frame(src)? {
                return Ok(None);
            }
        }
    }

    /// Parses whole chunks out of `plain_in` into `pending`; the packet once its last chunk
    /// (shorter than 16 MiB - 1) is there.
    fn next_packet(&mut self) -> Result<Option<Vec<u8>>, CompressionError> {
        loop {
            let Some(header) = self.plain_in.get(..4) else {
                return Ok(None);
            };
            let len = u24(header);
            if self.plain_in.len() < 4 + len {
                return Ok(None);
            }
            if self.pending.len() + len > self.max_packet {
                return Err(CompressionError::TooLarge(self.max_packet));
            }
            self.plain_in.advance(4);
            self.pending.extend_from_slice(&self.plain_in.split_to(len));
            if len < MAX_FRAME {
                return Ok(Some(std::mem::take(&mut self.pending)));
            }
        }
    }

    /// Moves one whole frame from `src` into `plain_in`, inflated; false when `src` does not
    /// hold a whole frame yet.
    fn inflate_frame(&mut self, src: &mut BytesMut) -> Result<bool, CompressionError> {
        let Some(header) = src.get(..FRAME_HEADER) else {
            return Ok(false);
        };
        let payload_len = u24(header);
        let got = header.get(3).copied().unwrap_or_default();
        let declared = u24(header.get(4..).unwrap_or_default());
        if got != self.comp_seq {
            return Err(CompressionError::OutOfSync {
                expected: self.comp_seq,
                got,
            });
        }
        if payload_len == 0 && declared != 0 {
            return Err(CompressionError::EmptyPayload(declared));
        }
        if src.len() < FRAME_HEADER + payload_len {
            return Ok(false);
        }
        src.advance(FRAME_HEADER);
        let payload = src.split_to(payload_len);
        self.comp_seq = self.comp_seq.wrapping_add(1);
        if declared == 0 {
            self.plain_in.extend_from_slice(&payload);
            return Ok(true);
        }
        self.scratch.clear();
        self.scratch.reserve_exact(declared);
        let actual = match &mut self.engine {
            Engine::Zlib { inflate, .. } => inflate_zlib(inflate, &payload, &mut self.scratch)?,
            Engine::Zstd { decompressor, .. } => {
                // zstd frames written by MySQL (one-shot) state their content size: a lie is
                // caught before anything is inflated.
                if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&payload) {
                    let size = usize::try_from(size).unwrap_or(usize::MAX);
                    if size != declared {
                        return Err(CompressionError::LengthMismatch {
                            declared,
                            actual: size,
                        });
                    }
                }
                // Inflates into the declared room only: more is an error, not a reallocation.
                decompressor
                    .decompress_to_buffer(&payload[..], &mut self.scratch)
                    .map_err(|e| CompressionError::Corrupt(e.to_string()))?
            }
        };
        if actual != declared {
            return Err(CompressionError::LengthMismatch { declared, actual });
        }
        self.plain_in.extend_from_slice(&self.scratch);
        Ok(true)
    }

    /// Queues `payload` as a packet (split into chunks as needed) with the next sequence id;
    /// whole frames go to `dst` as they fill. [`CompressedCodec::flush`] frames the rest.
    pub fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), CompressionError> {
        if payload.len() > self.max_packet {
            return Err(CompressionError::TooLarge(self.max_packet));
        }
        let mut rest = payload;
        loop {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            let header = u32::try_from(chunk.len()).unwrap_or(0) | u32::from(self.seq) << 24;
            self.seq = self.seq.wrapping_add(1);
            self.append(&header.to_le_bytes(), dst)?;
            self.append(chunk, dst)?;
            rest = tail;
            // A packet of a multiple of 16 MiB - 1 ends with an empty chunk.
            if chunk.len() < MAX_FRAME {
                break;
            }
        }
        if self.plain_out.len() >= BATCH {
            self.cut_frame(dst)?;
        }
        Ok(())
    }

    /// Frames everything queued into `dst` and synchronises the packet sequence id with the
    /// frame sequence id, as MySQL's `net_flush` does.
    pub fn flush(&mut self, dst: &mut BytesMut) -> Result<(), CompressionError> {
        if !self.plain_out.is_empty() {
            self.cut_frame(dst)?;
        }
        self.seq = self.comp_seq;
        Ok(())
    }

    /// Appends plain bytes, cutting a frame each time [`MAX_FRAME`] bytes are gathered.
    fn append(&mut self, mut bytes: &[u8], dst: &mut BytesMut) -> Result<(), CompressionError> {
        while !bytes.is_empty() {
            let room = MAX_FRAME - self.plain_out.len();
            let (now, later) = bytes.split_at(bytes.len().min(room));
            self.plain_out.extend_from_slice(now);
            bytes = later;
            if self.plain_out.len() == MAX_FRAME {
                self.cut_frame(dst)?;
            }
        }
        Ok(())
    }

    /// Writes `plain_out` to `dst` as one frame: compressed when that makes it smaller and it
    /// is at least [`MIN_COMPRESS_LENGTH`] bytes, stored otherwise.
    fn cut_frame(&mut self, dst: &mut BytesMut) -> Result<(), CompressionError> {
        let plain = self.plain_out.split();
        let compressed = plain.len() >= MIN_COMPRESS_LENGTH && self.compress(&plain)?;
        let (payload, uncompressed_len): (&[u8], usize) = if compressed {
            (&self.scratch, plain.len())
        } else {
            (&plain, 0)
        };
        dst.reserve(FRAME_HEADER + payload.len());
        put_u24(dst, payload.len());
        dst.put_u8(self.comp_seq);
        put_u24(dst, uncompressed_len);
        dst.extend_from_slice(payload);
        self.comp_seq = self.comp_seq.wrapping_add(1);
        // Keep a big frame's buffer only while it is in use.
        if self.plain_out.capacity() > 4 * BATCH {
            self.plain_out = BytesMut::new();
        }
        if self.scratch.capacity() > 4 * BATCH {
            self.scratch = Vec::new();
        }
        Ok(())
    }

    /// Compresses `plain` into `scratch`; false when that would not make it smaller.
    fn compress(&mut self, plain: &[u8]) -> Result<bool, CompressionError> {
        self.scratch.clear();
        match &mut self.engine {
            Engine::Zlib { deflate, .. } => {
                deflate.reset();
                loop {
                    if self.scratch.len() >= plain.len() {
                        return Ok(false);
                    }
                    self.scratch.reserve((plain.len() / 2).max(256));
                    let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
                    let status = deflate
                        .compress_vec(
                            plain.get(consumed..).unwrap_or_default(),
                            &mut self.scratch,
                            flate2::FlushCompress::Finish,
                        )
                        .map_err(|e| CompressionError::Compress(e.to_string()))?;
                    if status == flate2::Status::StreamEnd {
                        break;
                    }
                }
            }
            Engine::Zstd { compressor, .. } => {
                self.scratch
                    .reserve(zstd::zstd_safe::compress_bound(plain.len()));
                compressor
                    .compress_to_buffer(plain, &mut self.scratch)
                    .map_err(|e| CompressionError::Compress(e.to_string()))?;
            }
        }
        Ok(self.scratch.len() < plain.len())
    }
}

/// Inflates one complete zlib stream into `out`'s spare capacity (the declared length);
/// returns how many bytes it holds. More than that is a [`CompressionError::LengthMismatch`].
fn inflate_zlib(
    inflate: &mut flate2::Decompress,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    inflate.reset(true);
    let declared = out.capacity();
    let status = inflate
        .decompress_vec(payload, out, flate2::FlushDecompress::Finish)
        .map_err(|e| CompressionError::Corrupt(e.to_string()))?;
    match status {
        flate2::Status::StreamEnd => Ok(out.len()),
        // Out of room before the end: the stream holds more than announced.
        _ if out.len() >= declared => Err(CompressionError::LengthMismatch {
            declared,
            actual: declared + 1,
        }),
        _ => Err(CompressionError::Corrupt("truncated zlib stream".into())),
    }
}

fn u24(bytes: &[u8]) -> usize {
    match bytes {
        [a, b, c, ..] => usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16,
        _ => 0,
    }
}

fn put_u24(dst: &mut BytesMut, value: usize) {
    let [a, b, c, ..] = u32::try_from(value).unwrap_or(0).to_le_bytes();
    dst.put_slice(&[a, b, c]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MAX: usize = 1 << 30;

    fn codec(algorithm: Algorithm) -> CompressedCodec {
        CompressedCodec::new(algorithm, MAX).expect("codec")
    }

    fn algorithms() -> [Algorithm; 2] {
        [Algorithm::Zlib, Algorithm::zstd(Some(7))]
    }

    /// Encodes `packets` as one exchange and decodes them back with a fresh peer.
    fn round_trip(algorithm: Algorithm, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut writer = codec(algorithm);
        let mut wire = BytesMut::new();
        for packet in packets {
            writer.encode(packet, &mut wire).expect("encode");
        }
        writer.flush(&mut wire).expect("flush");
        let mut reader = codec(algorithm);
        let mut out = Vec::new();
        while let Some(packet) = reader.decode(&mut wire).expect("decode") {
            out.push(packet);
        }
        assert!(wire.is_empty(), "all frames consumed");
        assert!(!reader.has_buffered());
        out
    }

    fn frame(seq: u8, uncompressed: usize, payload: &[u8]) -> Vec<u8> {
        let mut f = BytesMut::new();
        put_u24(&mut f, payload.len());
        f.put_u8(seq);
        put_u24(&mut f, uncompressed);
        f.extend_from_slice(payload);
        f.to_vec()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("deflate");
        e.finish().expect("deflate")
    }

    #[test]
    fn a_small_packet_is_stored_and_a_large_one_compressed() {
        for algorithm in algorithms() {
            let mut c = codec(algorithm);
            let mut wire = BytesMut::new();
            c.encode(&[0x03, b'S'], &mut wire).expect("encode");
            c.flush(&mut wire).expect("flush");
            // Stored frame, seq 0, uncompressed length 0, then the packet (seq 0).
            assert_eq!(&wire[..], &[6, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x03, b'S']);

            let mut wire = BytesMut::new();
            c.encode(&[b'a'; 1000], &mut wire).expect("encode");
            c.flush(&mut wire).expect("flush");
            assert_eq!(wire[3], 1, "the second frame");
            assert_eq!(u24(&wire[4..]), 1004, "uncompressed: header and payload");
            assert!(u24(&wire[..]) < 100, "compressed");
        }
    }

    #[test]
    fn reads_hand_built_zlib_and_stored_frames() {
        let mut c = codec(Algorithm::Zlib);
        let mut plain = vec![0x2e, 0, 0, 0, 0x03];
        plain.extend_from_slice(&[b'x'; 45]);
        let mut wire = BytesMut::from(&frame(0, plain.len(), &zlib(&plain))[..]);
        // A stored frame holding two packets, the second split across the next frame.
        wire.extend_from_slice(&frame(1, 0, &[1, 0, 0, 1, 0x0e, 3, 0, 0, 2, b'a']));
        wire.extend_from_slice(&frame(2, 0, b"bc"));
        let first = c.decode(&mut wire).expect("decode").expect("packet");
        assert_eq!(first.len(), 0x2e);
        assert_eq!(c.decode(&mut wire).expect("decode"), Some(vec![0x0e]));
        assert_eq!(c.decode(&mut wire).expect("decode"), Some(b"abc".to_vec()));
        assert_eq!(c.decode(&mut wire).expect("decode"), None);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut c = codec(Algorithm::Zlib);
        let whole = frame(0, 0, &[1, 0, 0, 0, 0x0e]);
        let mut wire = BytesMut::new();
        for byte in &whole {
            assert_eq!(c.decode(&mut wire).expect("decode"), None);
            wire.put_u8(*byte);
        }
        assert_eq!(c.decode(&mut wire).expect("decode"), Some(vec![0x0e]));
    }

    /// Whether an error is the one a malformed frame should give.
    type Expected = fn(&CompressionError) -> bool;

    #[test]
    fn malformed_frames_are_errors() {
        let zero_payload = frame(0, 10, &[]);
        let wrong_seq = frame(3, 0, &[1, 0, 0, 0, 0x0e]);
        let garbage = frame(0, 100, &[0x55; 60]);
        let plain = [b'y'; 200];
        let longer = frame(0, 100, &zlib(&plain));
        let shorter = frame(0, 300, &zlib(&plain));
        let zstd_plain = zstd::bulk::compress(&plain, 3).expect("zstd");
        let zstd_longer = frame(0, 100, &zstd_plain);
        let zstd_shorter = frame(0, 300, &zstd_plain);
        let cases: [(Algorithm, &[u8], Expected); 7] = [
            (Algorithm::Zlib, &zero_payload, |e| {
                matches!(e, CompressionError::EmptyPayload(10))
            }),
            (Algorithm::Zlib, &wrong_seq, |e| {
                matches!(
                    e,
                    CompressionError::OutOfSync {
                        expected: 0,
                        got: 3
                    }
                )
            }),
            (Algorithm::Zlib, &garbage, |e| {
                matches!(e, CompressionError::Corrupt(_))
            }),
            (Algorithm::Zlib, &longer, |e| {
                matches!(e, CompressionError::LengthMismatch { declared: 100, .. })
            }),
            (Algorithm::Zlib, &shorter, |e| {
                matches!(
                    e,
                    CompressionError::LengthMismatch {
                        declared: 300,
                        actual: 200
                    }
                )
            }),
            (Algorithm::zstd(None), &zstd_longer, |e| {
                matches!(
                    e,
                    CompressionError::LengthMismatch {
                        declared: 100,
                        actual: 200
                    }
                )
            }),
            (Algorithm::zstd(None), &zstd_shorter, |e| {
                matches!(
                    e,
                    CompressionError::LengthMismatch {
                        declared: 300,
                        actual: 200
                    }
                )
            }),
        ];
        for (algorithm, bytes, expected) in cases {
            let mut wire = BytesMut::from(bytes);
            let error = codec(algorithm).decode(&mut wire).expect_err("malformed");
            assert!(expected(&error), "{algorithm}: {error:?}");
        }
        let mut wire = BytesMut::from(&frame(0, 50, &[0x28, 0xb5, 0x2f, 0xfd, 0, 0])[..]);
        assert!(codec(Algorithm::zstd(None)).decode(&mut wire).is_err());
    }

    #[test]
    fn packets_larger_than_the_limit_are_refused_both_ways() {
        let mut c = CompressedCodec::new(Algorithm::Zlib, 10).expect("codec");
        assert!(matches!(
            c.encode(&[0; 11], &mut BytesMut::new()),
            Err(CompressionError::TooLarge(10))
        ));
        let mut wire =
            BytesMut::from(&frame(0, 0, &[11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])[..]);
        assert!(matches!(
            c.decode(&mut wire),
            Err(CompressionError::TooLarge(10))
        ));
    }

    #[test]
    fn sequence_ids_follow_mysql() {
        let mut c = codec(Algorithm::zstd(Some(1)));
        // The client's command in frame 0; the answer starts at packet and frame id 1.
        let mut wire = BytesMut::from(&frame(0, 0, &[1, 0, 0, 0, 0x0e])[..]);
        assert!(c.decode(&mut wire).expect("decode").is_some());
        let mut out = BytesMut::new();
        c.encode(&[0; 3], &mut out).expect("encode");
        c.encode(&[0; 3], &mut out).expect("encode");
        c.flush(&mut out).expect("flush");
        assert_eq!(out[3], 1, "frame id");
        assert_eq!(out[FRAME_HEADER + 3], 1, "first packet id");
        assert_eq!(out[FRAME_HEADER + 7 + 3], 2, "second packet id");
        // After the flush the packet id is synchronised to the frame id.
        let mut out = BytesMut::new();
        c.encode(&[0; 3], &mut out).expect("encode");
        c.flush(&mut out).expect("flush");
        assert_eq!((out[3], out[FRAME_HEADER + 3]), (2, 2));
        c.reset_sequence();
        let mut out = BytesMut::new();
        c.encode(&[0; 3], &mut out).expect("encode");
        c.flush(&mut out).expect("flush");
        assert_eq!((out[3], out[FRAME_HEADER + 3]), (0, 0));
    }

    #[test]
    fn boundary_sizes_round_trip() {
        let sizes = [
            0,
            1,
            45,
            46,
            49,
            50,
            51,
            BATCH,
            MAX_FRAME - 4,
            MAX_FRAME - 1,
            MAX_FRAME,
            MAX_FRAME + 1,
            2 * MAX_FRAME,
        ];
        for algorithm in algorithms() {
            let packets: Vec<Vec<u8>> = sizes
                .iter()
                .map(|&n| (0..n).map(|i| u8::try_from(i % 251).unwrap_or(0)).collect())
                .collect();
            assert_eq!(round_trip(algorithm, &packets), packets, "{algorithm}");
        }
    }

    #[test]
    fn incompressible_frames_are_stored() {
        use rand::RngCore as _;
        let mut data = vec![0u8; 5000];
        rand::rng().fill_bytes(&mut data);
        for algorithm in algorithms() {
            let mut c = codec(algorithm);
            let mut wire = BytesMut::new();
            c.encode(&data, &mut wire).expect("encode");
            c.flush(&mut wire).expect("flush");
            assert_eq!(u24(&wire[4..]), 0, "{algorithm}: stored");
            assert_eq!(round_trip(algorithm, &[data.clone()]), vec![data.clone()]);
        }
    }

    #[test]
    fn levels_are_clamped() {
        use mysql_common::constants::CapabilityFlags as C;
        assert_eq!(Algorithm::zstd(None), Algorithm::Zstd { level: 3 });
        assert_eq!(Algorithm::zstd(Some(0)), Algorithm::Zstd { level: 3 });
        assert_eq!(Algorithm::zstd(Some(7)).level(), 7);
        assert_eq!(Algorithm::zstd(Some(200)).level(), 22);
        let both = (C::CLIENT_COMPRESS | C::CLIENT_ZSTD_COMPRESSION_ALGORITHM).bits();
        let zstd = C::CLIENT_ZSTD_COMPRESSION_ALGORITHM.bits();
        assert_eq!(
            Algorithm::negotiate(both, both, Some(5)),
            Some(Algorithm::Zlib)
        );
        assert_eq!(
            Algorithm::negotiate(zstd, both, Some(5)),
            Some(Algorithm::Zstd { level: 5 })
        );
        assert_eq!(Algorithm::negotiate(zstd, 0, Some(5)), None);
        assert_eq!(Algorithm::negotiate(0, both, None), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn encode_then_decode_is_identity(
            zstd in any::<bool>(),
            packets in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..120),
                    prop::collection::vec(0u8..4, 0..200_000),
                ],
                0..12,
            ),
            flush_every in 1usize..5,
        ) {
            let algorithm = if zstd { Algorithm::zstd(Some(1)) } else { Algorithm::Zlib };
            let mut writer = codec(algorithm);
            let mut reader = codec(algorithm);
            let mut wire = BytesMut::new();
            let mut got = Vec::new();
            for (i, packet) in packets.iter().enumerate() {
                writer.encode(packet, &mut wire).expect("encode");
                if i % flush_every == 0 {
                    writer.flush(&mut wire).expect("flush");
                }
                while let Some(p) = reader.decode(&mut wire).expect("decode") {
                    got.push(p);
                }
            }
            writer.flush(&mut wire).expect("flush");
            while let Some(p) = reader.decode(&mut wire).expect("decode") {
                got.push(p);
            }
            prop_assert_eq!(got, packets);
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            for algorithm in algorithms() {
                let mut c = CompressedCodec::new(algorithm, 1 << 20).expect("codec");
                let mut wire = BytesMut::from(&bytes[..]);
                while let Ok(Some(_)) = c.decode(&mut wire) {}
            }
        }
    }
}
