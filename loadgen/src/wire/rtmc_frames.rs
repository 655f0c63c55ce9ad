//! The few wire facts loadgen needs on its hot path: a byte-scanning parser
//! for broadcast payloads (full serde per delivery costs too much at a million
//! deliveries per second), the message-id scheme that carries a publisher id
//! and sequence, and the frame splitter over a read buffer.

use rtmc::protocol::FRAME_HEADER_BYTES;

/// The fields of a broadcast that loadgen measures with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastFacts {
    /// Global sequence number assigned by the consumer.
    pub seq: u64,
    /// The publisher's intended send time, microseconds since the Unix epoch.
    pub sent_at_us: u64,
    /// Publisher id and per-publisher sequence, when the message id is loadgen's.
    pub origin: Option<MessageOrigin>,
}

/// Who published a loadgen message and as which of its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageOrigin {
    /// Random id of the loadgen run, so runs never collide in the server's dedupe window.
    pub run_id: u32,
    /// Index of the publisher inside the run.
    pub publisher: u32,
    /// The publisher's own sequence number, from 0.
    pub publisher_seq: u64,
}

const BROADCAST_PREFIX: &[u8] = br#"{"command":"broadcast","seq":"#;

/// Builds the message id `lg<run_id hex>-<publisher>-<publisher_seq>`.
pub fn message_id(origin: MessageOrigin) -> String {
    format!(
        "lg{:08x}-{}-{}",
        origin.run_id, origin.publisher, origin.publisher_seq
    )
}

/// Parses a message id built by [`message_id`]; `None` for any other id.
pub fn parse_message_id(id: &[u8]) -> Option<MessageOrigin> {
    let rest = id.strip_prefix(b"lg")?;
    if rest.len() < 10 || rest[8] != b'-' {
        return None;
    }
    let run_id = u32::from_str_radix(std::str::from_utf8(&rest[..8]).ok()?, 16).ok()?;
    let rest = &rest[9..];
    let dash = rest.iter().position(|&b| b == b'-')?;
    let publisher = parse_u64(&rest[..dash])?;
    let publisher_seq = parse_u64(&rest[dash + 1..])?;
    Some(MessageOrigin {
        run_id,
        publisher: u32::try_from(publisher).ok()?,
        publisher_seq,
    })
}

/// Whether a payload is a broadcast (cheap prefix test).
pub fn is_broadcast(payload: &[u8]) -> bool {
    payload.starts_with(BROADCAST_PREFIX)
}

/// Reads the broadcast fields of a lobby (protocol v1) broadcast by scanning
/// bytes, relying on the fixed field order `command, seq, message_id, from,
/// body, sent_at_us` the consumer writes. Returns `None` when the payload is
/// not a broadcast of that exact shape (the caller then falls back to serde)
/// — a room's broadcast too: [`parse_room_broadcast`] reads those. Kept to
/// the lobby so the global workload's per-delivery cost (gated by
/// instruction count) does not pay for the room check.
pub fn parse_broadcast(payload: &[u8]) -> Option<BroadcastFacts> {
    scan_broadcast(payload, |tail| Some((tail, ()))).map(|(facts, ())| facts)
}

/// [`parse_broadcast`] for a protocol v2 session: also reads the room a
/// room broadcast names in its trailing `"room"` field (`None` for a lobby
/// broadcast). Room ids are of a charset without quotes or escapes
/// (docs/PROTOCOL.md §17.1), so the field is read from the end like
/// `sent_at_us`.
pub fn parse_room_broadcast(payload: &[u8]) -> Option<(BroadcastFacts, Option<&[u8]>)> {
    scan_broadcast(payload, split_trailing_room)
}

/// The byte scan; `split_tail` takes the payload without its closing brace
/// and returns what ends in `sent_at_us`'s digits, plus whatever it read
/// after them. Inlined into each caller, so the lobby's is the scan alone.
#[inline(always)]
fn scan_broadcast<'a, R>(
    payload: &'a [u8],
    split_tail: impl FnOnce(&'a [u8]) -> Option<(&'a [u8], R)>,
) -> Option<(BroadcastFacts, R)> {
    let rest = payload.strip_prefix(BROADCAST_PREFIX)?;
    let (seq, used) = leading_u64(rest)?;
    let rest = rest[used..].strip_prefix(br#","message_id":""#)?;
    // Loadgen's ids never contain escapes; any other id is skipped over as a
    // JSON string, which may contain escaped quotes.
    let id_end = string_end(rest)?;
    let origin = parse_message_id(&rest[..id_end]);
    // `sent_at_us` is the last field (of the lobby's): read it from the end.
    let (tail, after) = split_tail(payload.strip_suffix(b"}")?)?;
    let key = br#","sent_at_us":"#;
    let start = tail
        .len()
        .checked_sub(tail.iter().rev().position(|&b| b == b':')?)?;
    if start < key.len() || &tail[start - key.len()..start] != key {
        return None;
    }
    let sent_at_us = parse_u64(&tail[start..])?;
    let facts = BroadcastFacts {
        seq,
        sent_at_us,
        origin,
    };
    Some((facts, after))
}

/// Splits a trailing `,"room":"<id>"` off a broadcast without its closing
/// brace: what is before it and the id. A tail that ends in a digit has no
/// room; `None` when the tail ends in a string that is not a plain room id.
fn split_trailing_room(tail: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let Some(inner) = tail.strip_suffix(b"\"") else {
        return Some((tail, None));
    };
    let open = inner.iter().rposition(|&b| b == b'"')?;
    let room = &inner[open + 1..];
    if room.is_empty() || room.contains(&b'\\') {
        return None;
    }
    let before = inner[..=open].strip_suffix(br#","room":""#)?;
    Some((before, Some(room)))
}

/// Index of the closing quote of a JSON string whose opening quote was just consumed.
fn string_end(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A decimal u64 at the start of `s`, and how many bytes it used.
fn leading_u64(s: &[u8]) -> Option<(u64, usize)> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    Some((parse_u64(&s[..digits])?, digits))
}

/// A whole slice as a decimal u64 (no sign, no leading zeros beyond "0").
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Why a byte stream cannot be split into frames any more.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("frame of {len_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
pub struct FrameTooLarge {
    pub len_bytes: usize,
    pub max_bytes: usize,
}

/// Calls `f` with each complete frame payload in `buf` and returns how many
/// bytes were consumed (the caller advances its buffer once per batch).
pub fn for_each_frame(
    buf: &[u8],
    max_frame_bytes: usize,
    mut f: impl FnMut(&[u8]),
) -> Result<usize, FrameTooLarge> {
    let mut at = 0;
    while buf.len() - at >= FRAME_HEADER_BYTES {
        let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len > max_frame_bytes {
            return Err(FrameTooLarge {
                len_bytes: len,
                max_bytes: max_frame_bytes,
            });
        }
        let end = at + FRAME_HEADER_BYTES + len;
        if buf.len() < end {
            break;
        }
        f(&buf[at + FRAME_HEADER_BYTES..end]);
        at = end;
    }
    Ok(at)
}

/// Appends `payload` as one frame to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rtmc::protocol::{BroadcastFrame, ServerFrame};

    fn broadcast(seq: u64, id: &str, from: &str, body: &str, sent_at_us: u64) -> Vec<u8> {
        room_broadcast(seq, id, from, body, sent_at_us, None)
    }

    fn room_broadcast(
        seq: u64,
        id: &str,
        from: &str,
        body: &str,
        sent_at_us: u64,
        room: Option<&str>,
    ) -> Vec<u8> {
        ServerFrame::Broadcast(BroadcastFrame {
            seq,
            message_id: id.into(),
            from: from.into(),
            body: body.into(),
            received_at_us: sent_at_us,
            sent_at_us,
            room: room.map(str::to_owned),
        })
        .to_json()
    }

    #[test]
    fn reads_a_room_broadcast_on_the_fast_path() {
        for room in ["team", "lg0000abcd-r17", "dm:lg-1:lg-2", "a.b_c-d"] {
            let p = room_broadcast(42, "m-9", "bob", "hi", 1_764_000_000_000_000, Some(room));
            let (facts, got) = parse_room_broadcast(&p).expect("a room broadcast parses");
            assert_eq!(facts.seq, 42);
            assert_eq!(facts.sent_at_us, 1_764_000_000_000_000);
            assert_eq!(got, Some(room.as_bytes()));
            // The lobby's scan leaves a room frame to serde.
            assert_eq!(parse_broadcast(&p), None);
        }
        let lobby = broadcast(7, "m-1", "bob", "hi", 5);
        assert_eq!(parse_room_broadcast(&lobby).map(|(_, r)| r), Some(None));
        assert_eq!(
            parse_room_broadcast(&lobby).map(|(f, _)| f),
            parse_broadcast(&lobby)
        );
        // A trailing string that is not `room` is not guessed at.
        let odd = br#"{"command":"broadcast","seq":1,"message_id":"m","from":"a","body":"b","sent_at_us":5,"other":"x"}"#;
        assert_eq!(parse_room_broadcast(odd), None);
    }

    #[test]
    fn reads_a_loadgen_broadcast() {
        let origin = MessageOrigin {
            run_id: 0xdead_beef,
            publisher: 3,
            publisher_seq: 41,
        };
        let p = broadcast(
            7,
            &message_id(origin),
            "lg-pub",
            "xx",
            1_700_000_000_000_000,
        );
        assert_eq!(
            parse_broadcast(&p),
            Some(BroadcastFacts {
                seq: 7,
                sent_at_us: 1_700_000_000_000_000,
                origin: Some(origin)
            })
        );
    }

    #[test]
    fn rejects_other_frames() {
        assert_eq!(parse_broadcast(br#"{"command":"heartbeat_ack"}"#), None);
        assert_eq!(
            parse_broadcast(b"{\"command\":\"broadcast\",\"seq\":"),
            None
        );
        assert_eq!(parse_message_id(b"lg-1-2"), None);
        assert_eq!(parse_message_id(b"lgzzzzzzzz-1-2"), None);
    }

    #[test]
    fn splits_frames_and_keeps_the_partial_tail() {
        let mut buf = Vec::new();
        put_frame(&mut buf, b"one");
        put_frame(&mut buf, b"two");
        buf.extend_from_slice(&[0, 0, 0, 5, b'x']);
        let mut seen = Vec::new();
        let used = for_each_frame(&buf, 16, |p| seen.push(p.to_vec())).unwrap();
        assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(used, 14);
        assert!(for_each_frame(&[0, 0, 1, 0], 16, |_| {}).is_err());
    }

    proptest! {
        /// The byte scan agrees with serde on any broadcast the consumer can build.
        #[test]
        fn agrees_with_serde(
            seq in any::<u64>(),
            sent in any::<u64>(),
            id in "[ -~]{1,40}",
            from in "\\PC{0,20}",
            body in "\\PC{0,60}",
            lg in any::<bool>(),
            run in any::<u32>(), publ in 0u32..1000, n in any::<u64>(),
            room in proptest::option::of("[a-z0-9][a-z0-9_.-]{0,63}|dm:[a-z0-9-]{1,12}:[a-z0-9-]{1,12}"),
        ) {
            let id = if lg { message_id(MessageOrigin { run_id: run, publisher: publ, publisher_seq: n }) } else { id };
            let p = room_broadcast(seq, &id, &from, &body, sent, room.as_deref());
            let (fast, fast_room) = parse_room_broadcast(&p).expect("a broadcast parses");
            let ServerFrame::Broadcast(b) = ServerFrame::parse(&p).unwrap() else { panic!() };
            prop_assert_eq!(fast.seq, b.seq);
            prop_assert_eq!(fast.sent_at_us, b.sent_at_us);
            prop_assert_eq!(fast.origin, parse_message_id(b.message_id.as_bytes()));
            prop_assert_eq!(fast_room, b.room.as_deref().map(str::as_bytes));
            prop_assert_eq!(parse_broadcast(&p), if room.is_none() { Some(fast) } else { None });
            if lg {
                prop_assert_eq!(fast.origin, Some(MessageOrigin { run_id: run, publisher: publ, publisher_seq: n }));
            }
        }

        /// Arbitrary bytes never panic the scanner.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_broadcast(&bytes);
            let mut with_prefix = BROADCAST_PREFIX.to_vec();
            with_prefix.extend_from_slice(&bytes);
            let _ = parse_broadcast(&with_prefix);
            let _ = parse_room_broadcast(&bytes);
            let _ = parse_room_broadcast(&with_prefix);
        }
    }
}
