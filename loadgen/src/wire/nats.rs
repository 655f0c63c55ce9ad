//! The NATS client protocol, as much as the NATS peers' subscribers and core
//! publisher speak (design.md §7): the server's ops read out of a buffer
//! (`MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`, `INFO`) without copying,
//! and the client's ops written (`CONNECT`, `SUB`, `PUB`). Like `resp.rs` for
//! the Redis floor: the fleet reads raw bytes, so every peer is measured
//! with the same client engine.

/// Longest control line accepted (nats-server's default `max_control_line`).
const MAX_CONTROL_LINE: usize = 4096;

/// One server op, borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsOp<'a> {
    /// A message; `reply` is its reply subject (JetStream's ack subject).
    Msg {
        sid: u64,
        reply: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// A message with headers (JetStream's flow control and heartbeats).
    HMsg {
        sid: u64,
        reply: Option<&'a [u8]>,
        headers: &'a [u8],
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    /// `-ERR '<text>'`.
    Err(&'a [u8]),
    /// `INFO {json}`.
    Info(&'a [u8]),
}

/// Bytes that are not the NATS protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a NATS protocol line: {0:?}")]
pub struct NatsWireError(pub String);

fn bad(line: &[u8]) -> NatsWireError {
    NatsWireError(String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned())
}

// Over 60 lines: one match arm per NATS server op, each short; split, the parser reads worse.
/// The op starting at `buf[at..]` and where the next one starts; `None`
/// while it is incomplete.
pub fn next_op(buf: &[u8], at: usize) -> Result<Option<(NatsOp<'_>, usize)>, NatsWireError> {
    let rest = &buf[at..];
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        if rest.len() > MAX_CONTROL_LINE {
            return Err(bad(rest));
        }
        return Ok(None);
    };
    let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
    let body_at = at + nl + 1;
    let (verb, args) = match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &line[line.len()..]),
    };
    let simple = |op| Ok(Some((op, body_at)));
    match verb {
        b"MSG" => {
            let t = tokens(args);
            let (sid, reply, len) = match t.as_slice() {
                [_, sid, len] => (*sid, None, *len),
                [_, sid, reply, len] => (*sid, Some(*reply), *len),
                _ => return Err(bad(line)),
            };
            let (sid, len) = (number(sid, line)?, number(len, line)? as usize);
            Ok(payload(buf, body_at, len).map(|(p, next)| {
                let op = NatsOp::Msg {
                    sid,
                    reply,
                    payload: p,
                };
                (op, next)
            }))
        }
        b"HMSG" => {
            let t = tokens(args);
            let (sid, reply, hlen, len) = match t.as_slice() {
                [_, sid, hlen, len] => (*sid, None, *hlen, *len),
                [_, sid, reply, hlen, len] => (*sid, Some(*reply), *hlen, *len),
                _ => return Err(bad(line)),
            };
            let sid = number(sid, line)?;
            let (hlen, len) = (number(hlen, line)? as usize, number(len, line)? as usize);
            if hlen > len {
                return Err(bad(line));
            }
            Ok(payload(buf, body_at, len).map(|(p, next)| {
                let op = NatsOp::HMsg {
                    sid,
                    reply,
                    headers: &p[..hlen],
                    payload: &p[hlen..],
                };
                (op, next)
            }))
        }
        b"PING" => simple(NatsOp::Ping),
        b"PONG" => simple(NatsOp::Pong),
        b"+OK" => simple(NatsOp::Ok),
        b"-ERR" => simple(NatsOp::Err(args)),
        b"INFO" => simple(NatsOp::Info(args)),
        _ => Err(bad(line)),
    }
}

/// `len` payload bytes at `at` and the `\r\n` after them, if all there.
fn payload(buf: &[u8], at: usize, len: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(len)?;
    if buf.len() < end + 2 {
        return None;
    }
    Some((&buf[at..end], end + 2))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn tokens(s: &[u8]) -> Vec<&[u8]> {
    s.split(|&b| b == b' ' || b == b'\t')
        .filter(|t| !t.is_empty())
        .collect()
}

fn number(t: &[u8], line: &[u8]) -> Result<u64, NatsWireError> {
    std::str::from_utf8(t)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(line))
}

/// The subject a JetStream status message (`NATS/1.0 100 …`) must be
/// answered on: a flow-control request's reply subject, or the subject in a
/// heartbeat's `Nats-Consumer-Stalled` header. `None` for other messages.
pub fn status_reply<'a>(headers: &'a [u8], reply: Option<&'a [u8]>) -> Option<&'a [u8]> {
    if !headers.starts_with(b"NATS/1.0 100") {
        return None;
    }
    if let Some(r) = reply.filter(|r| !r.is_empty()) {
        return Some(r);
    }
    headers.split(|&b| b == b'\n').find_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let v = l.strip_prefix(b"Nats-Consumer-Stalled:")?;
        Some(trim(v)).filter(|v| !v.is_empty())
    })
}

/// Whether `headers` are a status message (no payload for the client).
pub fn is_status(headers: &[u8]) -> bool {
    headers
        .strip_prefix(b"NATS/1.0 ")
        .is_some_and(|s| s.first().is_some_and(u8::is_ascii_digit))
}

/// `CONNECT` without echo or verbose acks, with headers (JetStream's flow
/// control needs them).
pub fn connect(out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\
          \"echo\":false,\"protocol\":1,\"lang\":\"rust\",\"name\":\"rtmc-loadgen\",\
          \"version\":\"",
    );
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\"}\r\n");
}

/// `SUB <subject> <sid>`.
pub fn sub(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
}

/// `UNSUB <sid>`.
pub fn unsub(out: &mut Vec<u8>, sid: u64) {
    out.extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes());
}

/// `PUB <subject> [reply] <len>` and the payload.
pub fn publish(out: &mut Vec<u8>, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    if let Some(r) = reply {
        out.push(b' ');
        out.extend_from_slice(r);
    }
    out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8]) -> Vec<NatsOp<'_>> {
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((op, next)) = next_op(buf, at).unwrap() {
            out.push(op);
            at = next;
        }
        assert_eq!(at, buf.len(), "everything consumed");
        out
    }

    #[test]
    fn reads_every_server_op() {
        let buf = b"INFO {\"jetstream\":true}\r\n+OK\r\nPING\r\nPONG\r\n\
                    MSG a.b 1 5\r\nhello\r\n\
                    MSG a.b 12 $JS.ACK.S.C.1.1.1.0.0 2\r\nhi\r\n\
                    HMSG in 2 r.1 12 14\r\nNATS/1.0\r\n\r\nok\r\n\
                    -ERR 'Slow Consumer'\r\n";
        assert_eq!(
            all(buf),
            vec![
                NatsOp::Info(b"{\"jetstream\":true}"),
                NatsOp::Ok,
                NatsOp::Ping,
                NatsOp::Pong,
                NatsOp::Msg {
                    sid: 1,
                    reply: None,
                    payload: b"hello"
                },
                NatsOp::Msg {
                    sid: 12,
                    reply: Some(b"$JS.ACK.S.C.1.1.1.0.0"),
                    payload: b"hi"
                },
                NatsOp::HMsg {
                    sid: 2,
                    reply: Some(b"r.1"),
                    headers: b"NATS/1.0\r\n\r\n",
                    payload: b"ok"
                },
                NatsOp::Err(b"'Slow Consumer'"),
            ]
        );
    }

    #[test]
    fn a_payload_may_contain_line_ends_and_arrive_in_pieces() {
        let full = b"MSG s 1 7\r\nab\r\ncd\n\r\nPONG\r\n";
        for cut in 0..full.len() {
            // Every prefix is either incomplete or a whole first op.
            match next_op(&full[..cut], 0).unwrap() {
                None => assert!(cut < 20, "complete at {cut}"),
                Some((op, next)) => {
                    assert_eq!(next, 20);
                    assert_eq!(
                        op,
                        NatsOp::Msg {
                            sid: 1,
                            reply: None,
                            payload: b"ab\r\ncd\n"
                        }
                    );
                }
            }
        }
        assert_eq!(all(full).len(), 2);
    }

    #[test]
    fn rejects_what_is_not_the_protocol() {
        assert!(next_op(b"HELLO there\r\n", 0).is_err());
        assert!(next_op(b"MSG s x 3\r\nabc\r\n", 0).is_err());
        assert!(next_op(b"MSG s\r\n", 0).is_err());
        assert!(
            next_op(b"HMSG s 1 9 3\r\nabc\r\n", 0).is_err(),
            "headers longer than the message"
        );
        assert!(next_op(&vec![b'x'; MAX_CONTROL_LINE + 1], 0).is_err());
    }

    #[test]
    fn flow_control_and_stalled_heartbeats_name_their_reply_subject() {
        let fc = b"NATS/1.0 100 FlowControl Request\r\n\r\n";
        assert_eq!(
            status_reply(fc, Some(b"$JS.FC.S.x.1")),
            Some(&b"$JS.FC.S.x.1"[..])
        );
        let hb = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\n\r\n";
        assert_eq!(status_reply(hb, None), None);
        assert!(is_status(hb));
        let stalled = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Consumer-Stalled: $JS.FC.S.y.2\r\n\r\n";
        assert_eq!(status_reply(stalled, None), Some(&b"$JS.FC.S.y.2"[..]));
        let plain = b"NATS/1.0\r\nX: 1\r\n\r\n";
        assert_eq!(status_reply(plain, Some(b"r")), None);
        assert!(!is_status(plain));
    }

    #[test]
    fn writes_client_ops() {
        let mut out = Vec::new();
        sub(&mut out, "a.b", 3);
        publish(&mut out, b"s", Some(b"r"), b"xy");
        publish(&mut out, b"s", None, b"");
        assert_eq!(out, b"SUB a.b 3\r\nPUB s r 2\r\nxy\r\nPUB s 0\r\n\r\n");
        let mut c = Vec::new();
        connect(&mut c);
        let line = std::str::from_utf8(&c).unwrap();
        let json = line.strip_prefix("CONNECT ").unwrap().trim_end();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["headers"], true);
        assert_eq!(v["verbose"], false);
    }
}
