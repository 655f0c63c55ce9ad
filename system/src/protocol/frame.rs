//! Framing: a 4-byte big-endian unsigned length N, then N bytes of payload.
//! The codec only splits the byte stream; it never interprets the payload,
//! so a bad payload costs one frame, not the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::ProtocolError;

/// Size of the length prefix in bytes.
pub const FRAME_HEADER_BYTES: usize = 4;
/// Default ceiling on a frame's payload: 64 KiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// Splits a byte stream into frame payloads and writes payloads as frames.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    /// Largest payload accepted or produced, in bytes.
    max_frame_bytes: usize,
}

impl FrameCodec {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        if src.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        if src.len() < FRAME_HEADER_BYTES + len {
            src.reserve(FRAME_HEADER_BYTES + len - src.len());
            return Ok(None);
        }
        src.advance(FRAME_HEADER_BYTES);
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), ProtocolError> {
        if payload.len() > self.max_frame_bytes {
            return Err(ProtocolError::FrameTooLarge {
                len: payload.len(),
                max: self.max_frame_bytes,
            });
        }
        dst.reserve(FRAME_HEADER_BYTES + payload.len());
        dst.put_u32(payload.len() as u32);
        dst.put_slice(payload);
        #[cfg(feature = "test-codec-overhead")]
        codec_overhead(payload.len());
        Ok(())
    }
}

/// Test-only (feature `test-codec-overhead`): about 3% more instructions
/// in `encode`, small or large, so the gate's instruction-count check can
/// be shown to catch a change of that size (ci/README.md).
#[cfg(feature = "test-codec-overhead")]
#[inline(never)]
fn codec_overhead(len: usize) {
    let rounds = CODEC_OVERHEAD_BASE_ROUNDS + len / CODEC_OVERHEAD_BYTES_PER_ROUND;
    for i in 0..rounds {
        std::hint::black_box(i);
    }
}
#[cfg(feature = "test-codec-overhead")]
const CODEC_OVERHEAD_BASE_ROUNDS: usize = 3;
#[cfg(feature = "test-codec-overhead")]
const CODEC_OVERHEAD_BYTES_PER_ROUND: usize = 128;

/// Returns `payload` as one complete frame (prefix included), ready to be
/// written as is. Used where a frame is built once and shared.
pub fn encode_frame(payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(FRAME_HEADER_BYTES + payload.len());
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_whole_frame() {
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, b'a'][..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"bc");
        assert_eq!(
            codec.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_an_oversized_header_before_the_body_arrives() {
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 17][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge { len: 17, max: 16 })
        ));
    }
}
