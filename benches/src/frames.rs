//! Protocol inputs the benches share: broadcasts with a small and a large
//! body, one well-formed payload per client command, bad input of each kind
//! `ClientCommand::parse` tells apart, and messages as RabbitMQ carries them
//! to the consumer. Every input is fixed (no randomness, a fixed send time),
//! so an instruction count depends on the code alone.

use rtmc::broker::PublishedMessage;
use rtmc::protocol::{BroadcastFrame, ClientCommand, ServerFrame, UserStatus};
use rtmc::stream::StreamEntry;
use rtmc_loadgen::wire::rtmc_frames::{message_id, MessageOrigin};

/// Body of the small frames: the 64-byte payloads of the design's floor
/// measurements (design §7).
pub const SMALL_BODY_BYTES: usize = 64;
/// Body of the large frames: 16 KiB, the largest body the server accepts by
/// default (`server.max_body_bytes`).
pub const LARGE_BODY_BYTES: usize = 16 * 1024;
/// The two body sizes every frame bench runs with, by name.
pub const BODY_SIZES: [(&str, usize); 2] =
    [("small", SMALL_BODY_BYTES), ("large", LARGE_BODY_BYTES)];

/// A fixed send time (microseconds since the Unix epoch): 2023-11-14.
pub const SENT_AT_US: u64 = 1_700_000_000_000_000;

/// `len` bytes of printable ASCII that JSON carries unescaped.
pub fn body(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    (0..len)
        .map(|i| char::from(ALPHABET[i % ALPHABET.len()]))
        .collect()
}

/// Loadgen's message id for the `n`th message of publisher 3 of one run, the
/// shape loadgen's byte-scan parser recognises.
pub fn loadgen_message_id(n: u64) -> String {
    message_id(MessageOrigin {
        run_id: 0x0bad_cafe,
        publisher: 3,
        publisher_seq: n,
    })
}

/// A broadcast of `seq` with a `body_bytes` body and a loadgen message id.
pub fn broadcast(seq: u64, body_bytes: usize) -> BroadcastFrame {
    BroadcastFrame {
        seq,
        message_id: loadgen_message_id(seq),
        from: "bench-user-0".into(),
        body: body(body_bytes),
        received_at_us: SENT_AT_US,
        sent_at_us: SENT_AT_US,
        room: None,
    }
}

/// The `broadcast` JSON payload (no length prefix), as the consumer's append
/// script writes it and every client receives it.
pub fn broadcast_json(seq: u64, body_bytes: usize) -> Vec<u8> {
    ServerFrame::Broadcast(broadcast(seq, body_bytes)).to_json()
}

/// The same broadcast with a message id that is not loadgen's (a client's
/// own id, with an escaped quote): the byte scan must skip it as a JSON string.
pub fn foreign_broadcast_json(seq: u64, body_bytes: usize) -> Vec<u8> {
    let mut b = broadcast(seq, body_bytes);
    b.message_id = "client-\"7f3a\"-2c9e-4d1b-9a55".into();
    ServerFrame::Broadcast(b).to_json()
}

/// The stream entry the server node reads for that broadcast.
pub fn stream_entry(seq: u64, body_bytes: usize) -> StreamEntry {
    StreamEntry {
        seq,
        payload: broadcast_json(seq, body_bytes).into(),
    }
}

/// One well-formed payload per client command, by command name.
pub fn client_commands() -> Vec<(&'static str, Vec<u8>)> {
    let login = ClientCommand::Login {
        protocol: None,
        resume_rooms: None,
        user_id: "bench-user-0".into(),
        password: "correct horse battery staple".into(),
        resume_from: Some(41),
        subscribe: true,
    };
    let send = ClientCommand::Send {
        room: None,
        to: None,
        body: body(SMALL_BODY_BYTES),
        message_id: Some(loadgen_message_id(7)),
        sent_at_us: Some(SENT_AT_US),
    };
    let commands = [
        login,
        ClientCommand::Heartbeat {},
        send,
        ClientCommand::Resume {
            last_seq: 41,
            room: None,
        },
        ClientCommand::Status {
            status: UserStatus::Away,
        },
        ClientCommand::GetStatus {
            user_id: "bench-user-1".into(),
        },
        ClientCommand::Logout {},
    ];
    commands.iter().map(|c| (c.name(), c.to_json())).collect()
}

/// Bad input of every kind `ClientCommand::parse` tells apart, by kind.
pub fn bad_inputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("not_json", b"send hello".to_vec()),
        ("not_object", b"[1,2,3]".to_vec()),
        ("missing_command", br#"{"body":"hello"}"#.to_vec()),
        (
            "unknown_command",
            br#"{"command":"fly","to":"moon"}"#.to_vec(),
        ),
        ("invalid_field", br#"{"command":"send","body":5}"#.to_vec()),
    ]
}

/// A message as the server or gateway publishes it to RabbitMQ: the JSON
/// the consumer validates.
pub fn published_message(message_id: &str, body_bytes: usize) -> Vec<u8> {
    serde_json::to_vec(&PublishedMessage {
        message_id: message_id.to_owned(),
        from: "bench-user-0".into(),
        body: body(body_bytes),
        received_at_us: SENT_AT_US,
        sent_at_us: SENT_AT_US,
        room: None,
    })
    .expect("messages always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_every_bad_input_fails() {
        let commands = client_commands();
        assert_eq!(commands.len(), 7);
        for (name, payload) in &commands {
            assert_eq!(ClientCommand::parse(payload).unwrap().name(), *name);
        }
        for (kind, payload) in bad_inputs() {
            assert!(ClientCommand::parse(&payload).is_err(), "{kind}");
        }
    }

    #[test]
    fn broadcasts_have_the_sizes_they_claim() {
        for (_, len) in BODY_SIZES {
            let json = broadcast_json(1, len);
            assert!(json.len() > len && json.len() < len + 200);
            assert!(rtmc_loadgen::wire::rtmc_frames::parse_broadcast(&json)
                .unwrap()
                .origin
                .is_some());
            let foreign = foreign_broadcast_json(1, len);
            assert!(rtmc_loadgen::wire::rtmc_frames::parse_broadcast(&foreign)
                .unwrap()
                .origin
                .is_none());
        }
    }
}
