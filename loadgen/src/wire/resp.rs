//! Just enough RESP (the Redis protocol) for the floor: subscribers read
//! `message` pushes and publishers pipeline `PUBLISH`, over raw TCP, because
//! a full client per subscriber costs more than the floor it measures.

/// One decoded RESP value at the top level of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum RespItem<'a> {
    /// A pub/sub `message` push: the payload bytes.
    Message(&'a [u8]),
    /// An integer reply (`PUBLISH` answers with the receiver count).
    Integer(i64),
    /// An error reply.
    Error(&'a [u8]),
    /// A `subscribe` confirmation: the channel.
    Subscribed(&'a [u8]),
    /// An `unsubscribe` confirmation: the channel.
    Unsubscribed(&'a [u8]),
    /// Anything else (subscribe confirmations, simple strings, other arrays).
    Other,
}

/// The stream is not RESP.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed RESP at byte {0}")]
pub struct RespError(pub usize);

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rel = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[at..at + rel], at + rel + 2))
}

fn int(s: &[u8], at: usize) -> Result<i64, RespError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError(at))
}

// Over 60 lines: one match arm per RESP type, each short; split, the parser reads worse.
/// Parses one value at `at`: `Ok(None)` when more bytes are needed, else the
/// item and the offset after it. Nested arrays are skipped as `Other`.
pub fn next_item(buf: &[u8], at: usize) -> Result<Option<(RespItem<'_>, usize)>, RespError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((head, mut pos)) = line(buf, at + 1) else {
        return Ok(None);
    };
    match kind {
        b':' => Ok(Some((RespItem::Integer(int(head, at)?), pos))),
        b'+' => Ok(Some((RespItem::Other, pos))),
        b'-' => Ok(Some((RespItem::Error(head), pos))),
        b'$' => {
            let n = int(head, at)?;
            if n < 0 {
                return Ok(Some((RespItem::Other, pos)));
            }
            let end = pos + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            Ok(Some((RespItem::Other, end)))
        }
        b'*' => {
            let n = int(head, at)?;
            let mut elems: [&[u8]; 3] = [&[], &[], &[]];
            #[allow(clippy::needless_range_loop)]
            for i in 0..n.max(0) as usize {
                let Some(&k) = buf.get(pos) else {
                    return Ok(None);
                };
                if k == b'$' {
                    let Some((len, p)) = line(buf, pos + 1) else {
                        return Ok(None);
                    };
                    let len = int(len, pos)?;
                    if len < 0 {
                        pos = p;
                        continue;
                    }
                    let end = p + len as usize;
                    if buf.len() < end + 2 {
                        return Ok(None);
                    }
                    if i < 3 {
                        elems[i] = &buf[p..end];
                    }
                    pos = end + 2;
                } else {
                    match next_item(buf, pos)? {
                        None => return Ok(None),
                        Some((_, p)) => pos = p,
                    }
                }
            }
            let item = match (n, elems[0]) {
                (3, b"message") => RespItem::Message(elems[2]),
                (3, b"subscribe") => RespItem::Subscribed(elems[1]),
                (3, b"unsubscribe") => RespItem::Unsubscribed(elems[1]),
                _ => RespItem::Other,
            };
            Ok(Some((item, pos)))
        }
        _ => Err(RespError(at)),
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pushes_and_replies() {
        let mut buf = Vec::new();
        buf.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
        buf.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n");
        buf.extend_from_slice(b":42\r\n-ERR no\r\n*3\r\n$7\r\nmess");
        let (a, p) = next_item(&buf, 0).unwrap().unwrap();
        assert_eq!(a, RespItem::Subscribed(b"ch"));
        let (b, p) = next_item(&buf, p).unwrap().unwrap();
        assert_eq!(b, RespItem::Message(b"hello"));
        let (c, p) = next_item(&buf, p).unwrap().unwrap();
        assert_eq!(c, RespItem::Integer(42));
        let (d, p) = next_item(&buf, p).unwrap().unwrap();
        assert_eq!(d, RespItem::Error(b"ERR no"));
        assert_eq!(next_item(&buf, p).unwrap(), None);
        assert!(next_item(b"?x\r\n", 0).is_err());
        let un = b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n";
        assert_eq!(
            next_item(un, 0).unwrap().unwrap().0,
            RespItem::Unsubscribed(b"ch")
        );
        let other = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
        assert_eq!(next_item(other, 0).unwrap().unwrap().0, RespItem::Other);
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"ch", b"hi"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    }
}
