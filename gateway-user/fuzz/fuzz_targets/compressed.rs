//! The compressed protocol's decoder (zlib and zstd frames) on arbitrary bytes: must never
//! panic, and whatever packets it yields must survive an encode/decode round trip. The first
//! byte picks the algorithm (even: zlib; odd: zstd).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tollgate::protocol::compression::{Algorithm, CompressedCodec};

const MAX_PACKET: usize = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frames)) = data.split_first() else {
        return;
    };
    let algorithm = if selector % 2 == 0 {
        Algorithm::Zlib
    } else {
        Algorithm::zstd(Some(selector / 2 % 4))
    };
    let codec = || CompressedCodec::new(algorithm, MAX_PACKET).expect("codec");
    let mut reader = codec();
    let mut src = BytesMut::from(frames);
    let mut packets = Vec::new();
    while let Ok(Some(packet)) = reader.decode(&mut src) {
        packets.push(packet);
    }
    let (mut writer, mut again) = (codec(), codec());
    let mut wire = BytesMut::new();
    for packet in &packets {
        writer.encode(packet, &mut wire).expect("encode");
    }
    writer.flush(&mut wire).expect("flush");
    for packet in &packets {
        assert_eq!(
            again.decode(&mut wire).expect("decode").as_ref(),
            Some(packet)
        );
    }
});
