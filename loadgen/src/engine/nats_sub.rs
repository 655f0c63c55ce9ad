//! What a fleet client does as a NATS peer's subscriber: the handshake
//! (core: `SUB` the subject; JetStream: `SUB` its own deliver subject and
//! create its consumer through the JetStream API on the same connection) and
//! each read batch's messages, answering the server's `PING`s and
//! JetStream's flow control. The consumer is what NATS's ordered consumers
//! are: ephemeral, push, no acks, flow control with idle heartbeats, state in
//! memory, delivering the whole stream in order — so every subscriber gets
//! every message (loadgen/README.md, "The NATS peers").

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::wire::nats::{self, NatsOp};

/// The delivery subscription's sid.
const DELIVER_SID: u64 = 1;
/// The sid of the reply inbox of the consumer-create request.
const API_SID: u64 = 2;
/// JetStream's idle heartbeat (ordered consumers' default).
const IDLE_HEARTBEAT: Duration = Duration::from_secs(5);
/// An idle consumer is removed after this; bring-up of 10k clients and a
/// phase fit well inside it.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(600);

/// Reads ops until `want` returns an answer; answers `PING`s meanwhile.
/// Bytes after the op that answered stay in `buf`.
async fn read_until<T>(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    mut want: impl FnMut(&NatsOp<'_>) -> Option<Result<T, String>>,
) -> Result<T, String> {
    loop {
        let mut answer = None;
        let mut ping = false;
        let mut at = 0;
        while answer.is_none() {
            let Some((op, next)) = nats::next_op(buf, at).map_err(|e| e.to_string())? else {
                break;
            };
            at = next;
            match op {
                NatsOp::Err(e) => return Err(String::from_utf8_lossy(e).into_owned()),
                NatsOp::Ping => ping = true,
                op => answer = want(&op),
            }
        }
        buf.advance(at);
        if ping {
            writer
                .write_all(b"PONG\r\n")
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(a) = answer {
            return a;
        }
        if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
    }
}

/// NATS core: `SUB subject`, confirmed by a `PING`/`PONG` round trip (the
/// server handled the `SUB` before the `PONG`).
pub async fn subscribe_core(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    subject: &str,
) -> Result<(), String> {
    let mut out = Vec::new();
    nats::connect(&mut out);
    nats::sub(&mut out, subject, DELIVER_SID);
    out.extend_from_slice(b"PING\r\n");
    writer.write_all(&out).await.map_err(|e| e.to_string())?;
    read_until(reader, writer, buf, |op| {
        matches!(op, NatsOp::Pong).then_some(Ok(()))
    })
    .await
}

/// JetStream: subscribes to `deliver`, then creates this client's consumer
/// on `stream` delivering there, and waits for the API's answer.
pub async fn subscribe_jetstream(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    stream: &str,
    deliver: &str,
) -> Result<(), String> {
    let inbox = format!("{deliver}.api");
    let mut out = Vec::new();
    nats::connect(&mut out);
    nats::sub(&mut out, deliver, DELIVER_SID);
    nats::sub(&mut out, &inbox, API_SID);
    let create = format!("$JS.API.CONSUMER.CREATE.{stream}");
    let request = consumer_request(stream, deliver);
    nats::publish(
        &mut out,
        create.as_bytes(),
        Some(inbox.as_bytes()),
        &request,
    );
    writer.write_all(&out).await.map_err(|e| e.to_string())?;
    read_until(reader, writer, buf, |op| match op {
        NatsOp::Msg {
            sid: API_SID,
            payload,
            ..
        } => Some(api_answer(payload)),
        NatsOp::HMsg { sid: API_SID, .. } => Some(Err(
            "no JetStream answered the consumer request (no responders)".into(),
        )),
        _ => None,
    })
    .await
}

/// The consumer-create request (the JetStream API of nats-server 2.9):
/// an ordered consumer's configuration with an explicit deliver subject.
pub fn consumer_request(stream: &str, deliver: &str) -> Vec<u8> {
    serde_json::json!({
        "stream_name": stream,
        "config": {
            "deliver_subject": deliver,
            "deliver_policy": "all",
            "ack_policy": "none",
            "replay_policy": "instant",
            "flow_control": true,
            "idle_heartbeat": IDLE_HEARTBEAT.as_nanos() as u64,
            "mem_storage": true,
            "num_replicas": 1,
            "inactive_threshold": INACTIVE_THRESHOLD.as_nanos() as u64,
        }
    })
    .to_string()
    .into_bytes()
}

/// `Ok` for a created consumer, the API's error otherwise.
fn api_answer(payload: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| format!("consumer create: unreadable answer: {e}"))?;
    match v.get("error") {
        Some(e) => Err(format!("consumer create: {e}")),
        None => Ok(()),
    }
}

/// Calls `f` with the payload of each complete message in `buf`; writes the
/// answers the server expects (`PONG`, flow-control replies) into
/// `replies`. Returns the bytes used; `Err` when the stream is not NATS or
/// the server sent `-ERR` (it closes the connection after most).
pub(crate) fn take_messages(
    buf: &[u8],
    f: &mut impl FnMut(&[u8]),
    replies: &mut Vec<u8>,
) -> Result<usize, ()> {
    let mut at = 0;
    loop {
        match nats::next_op(buf, at) {
            Ok(Some((op, next))) => {
                at = next;
                match op {
                    NatsOp::Msg { payload, .. } => f(payload),
                    NatsOp::HMsg {
                        reply,
                        headers,
                        payload,
                        ..
                    } => {
                        if let Some(to) = nats::status_reply(headers, reply) {
                            nats::publish(replies, to, None, b"");
                        } else if !nats::is_status(headers) {
                            f(payload);
                        }
                    }
                    NatsOp::Ping => replies.extend_from_slice(b"PONG\r\n"),
                    NatsOp::Err(_) => return Err(()),
                    NatsOp::Pong | NatsOp::Ok | NatsOp::Info(_) => {}
                }
            }
            Ok(None) => return Ok(at),
            Err(_) => return Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_and_the_server_answered() {
        let buf = b"MSG d.1 1 $JS.ACK.S.C.1.1.1.1.0 3\r\nabc\r\nPING\r\n\
                    HMSG d.1 1 $JS.FC.S.x 36 36\r\nNATS/1.0 100 FlowControl Request\r\n\r\n\r\n\
                    HMSG d.1 1 31 31\r\nNATS/1.0 100 Idle Heartbeat\r\n\r\n\r\n\
                    MSG d.1 1 2\r\nde\r\nMSG d.1 1 5\r\nfg";
        let mut got = Vec::new();
        let mut replies = Vec::new();
        let used = take_messages(buf, &mut |p| got.push(p.to_vec()), &mut replies).unwrap();
        assert_eq!(got, [b"abc".to_vec(), b"de".to_vec()]);
        assert_eq!(
            &buf[used..],
            b"MSG d.1 1 5\r\nfg",
            "the incomplete message stays"
        );
        assert_eq!(replies, b"PONG\r\nPUB $JS.FC.S.x 0\r\n\r\n");
        assert_eq!(
            take_messages(b"-ERR 'x'\r\n", &mut |_| {}, &mut replies),
            Err(())
        );
    }

    #[test]
    fn the_consumer_is_an_ordered_push_consumer() {
        let v: serde_json::Value =
            serde_json::from_slice(&consumer_request("S", "lg.jsd.7")).unwrap();
        assert_eq!(v["stream_name"], "S");
        let c = &v["config"];
        assert_eq!(c["deliver_subject"], "lg.jsd.7");
        assert_eq!(c["deliver_policy"], "all");
        assert_eq!(c["ack_policy"], "none");
        assert_eq!(c["flow_control"], true);
        assert_eq!(c["idle_heartbeat"], 5_000_000_000u64);
        assert!(
            api_answer(br#"{"type":"x","error":{"code":400,"description":"bad"}}"#)
                .unwrap_err()
                .contains("bad")
        );
        assert!(api_answer(br#"{"type":"x","name":"c1"}"#).is_ok());
    }
}
