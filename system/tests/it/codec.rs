//! Property tests of the frame codec and command parsing: round trips,
//! arbitrary splits of the byte stream, and arbitrary bytes that never panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rtmc::protocol::{
    BroadcastFrame, ClientCommand, ErrorCode, FrameCodec, ProtocolError, ServerFrame, UserStatus,
};
use tokio_util::codec::{Decoder, Encoder};

const MAX: usize = 4096;

fn encode_all(payloads: &[Vec<u8>]) -> BytesMut {
    let mut codec = FrameCodec::new(MAX);
    let mut buf = BytesMut::new();
    for p in payloads {
        codec.encode(p.as_slice(), &mut buf).unwrap();
    }
    buf
}

/// Feeds `stream` to a decoder in chunks cut at `cuts`; returns decoded frames.
fn decode_in_chunks(stream: &[u8], cuts: &[usize]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut codec = FrameCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut at = 0;
    for p in points {
        buf.extend_from_slice(&stream[at..p]);
        at = p;
        while let Some(f) = codec.decode(&mut buf)? {
            out.push(f);
        }
    }
    Ok(out)
}

fn arb_command() -> impl Strategy<Value = ClientCommand> {
    let s = "\\PC{0,40}";
    prop_oneof![
        (s, s, proptest::option::of(any::<u64>()), any::<bool>()).prop_map(|(u, p, r, sub)| {
            ClientCommand::Login {
                protocol: None,
                resume_rooms: None,
                user_id: u,
                password: p,
                resume_from: r,
                subscribe: sub,
            }
        }),
        Just(ClientCommand::Heartbeat {}),
        (
            s,
            proptest::option::of(s),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(b, m, t)| {
                ClientCommand::Send {
                    room: None,
                    to: None,
                    body: b,
                    message_id: m,
                    sent_at_us: t,
                }
            }),
        any::<u64>().prop_map(|l| ClientCommand::Resume {
            last_seq: l,
            room: None
        }),
        prop_oneof![
            Just(UserStatus::Online),
            Just(UserStatus::Away),
            Just(UserStatus::Offline)
        ]
        .prop_map(|status| ClientCommand::Status { status }),
        s.prop_map(|u| ClientCommand::GetStatus { user_id: u }),
        Just(ClientCommand::Logout {}),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip_across_arbitrary_splits(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream = encode_all(&payloads);
        let decoded = decode_in_chunks(&stream, &cuts).unwrap();
        let expected: Vec<Bytes> = payloads.into_iter().map(Bytes::from).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn commands_round_trip_through_json_and_frames(cmds in proptest::collection::vec(arb_command(), 1..10), cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
        let payloads: Vec<Vec<u8>> = cmds.iter().map(|c| c.to_json()).collect();
        let stream = encode_all(&payloads);
        let decoded = decode_in_chunks(&stream, &cuts).unwrap();
        let parsed: Vec<ClientCommand> = decoded.iter().map(|f| ClientCommand::parse(f).unwrap()).collect();
        prop_assert_eq!(parsed, cmds);
    }

    #[test]
    fn broadcasts_round_trip(seq in any::<u64>(), id in "\\PC{0,20}", from in "\\PC{0,20}", body in "\\PC{0,200}", t in any::<u64>()) {
        let f = ServerFrame::Broadcast(BroadcastFrame { seq, message_id: id, from, body, received_at_us: t / 2, sent_at_us: t, room: None });
        prop_assert_eq!(ServerFrame::parse(&f.to_json()).unwrap(), f);
    }

    /// Arbitrary bytes: the decoder either yields frames, waits, or reports a
    /// clear error — it never panics, and every frame it yields is within the limit.
    #[test]
    fn arbitrary_bytes_never_panic(stream in proptest::collection::vec(any::<u8>(), 0..2000), cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
        match decode_in_chunks(&stream, &cuts) {
            Ok(frames) => for f in frames { prop_assert!(f.len() <= MAX) },
            Err(e) => {
                let is_too_large = matches!(e, ProtocolError::FrameTooLarge { max: MAX, .. });
                prop_assert!(is_too_large, "unexpected error {:?}", e);
                prop_assert_eq!(e.code(), ErrorCode::FrameTooLarge);
                prop_assert!(e.to_string().contains("exceeds"));
            }
        }
    }

    /// Arbitrary payloads: parsing never panics; failures carry a code and a message.
    #[test]
    fn arbitrary_payloads_parse_or_fail_clearly(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Err(e) = ClientCommand::parse(&payload) {
            prop_assert!(matches!(e.code(), ErrorCode::BadFrame | ErrorCode::UnknownCommand | ErrorCode::InvalidField));
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// JSON objects with a random command and random fields classify correctly.
    #[test]
    fn json_objects_with_random_fields_classify(command in "[a-z_]{0,12}", field in "[a-z_]{1,10}", value in any::<i64>()) {
        let payload = serde_json::json!({"command": command, field: value}).to_string();
        match ClientCommand::parse(payload.as_bytes()) {
            Ok(c) => prop_assert_eq!(c.name(), command.as_str()),
            Err(e) => prop_assert!(matches!(e.code(), ErrorCode::UnknownCommand | ErrorCode::InvalidField)),
        }
    }
}

#[test]
fn an_oversized_frame_is_refused_on_encode_too() {
    let mut codec = FrameCodec::new(8);
    let mut buf = BytesMut::new();
    assert!(matches!(
        codec.encode(&[0u8; 9][..], &mut buf),
        Err(ProtocolError::FrameTooLarge { len: 9, max: 8 })
    ));
    assert!(buf.is_empty());
}
