//! Getting one client onto the server: `connect(2)` from a loopback source
//! address (moving on when the ports run out), the rtmc `login` handshake and
//! the first reply of a Redis subscription.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::{Buf, BytesMut};
use rtmc::protocol::{ClientCommand, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::wire::resp::{self, RespItem};
use crate::wire::rtmc_frames::{self};

/// `connect(2)` refused for want of a free local port (`EADDRNOTAVAIL`).
pub(super) const EADDRNOTAVAIL: i32 = 99;

pub(super) async fn connect_from(
    target: SocketAddr,
    sources: &[IpAddr],
    index: usize,
) -> std::io::Result<TcpStream> {
    if sources.is_empty() {
        match TcpStream::connect(target).await {
            Err(e) if e.raw_os_error() == Some(EADDRNOTAVAIL) => {} // try other sources
            other => return other,
        }
    }
    let fallback: Vec<IpAddr> = if sources.is_empty() {
        (2..=16u8)
            .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
            .collect()
    } else {
        sources.to_vec()
    };
    let mut last = None;
    for k in 0..fallback.len() {
        let src = fallback[(index + k) % fallback.len()];
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(src, 0))?;
        match socket.connect(target).await {
            Ok(s) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(EADDRNOTAVAIL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no source address left")))
}

/// Reads until one complete frame is in `buf`; consumes it and returns its payload.
pub(super) async fn read_frame(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Vec<u8>, String> {
    loop {
        let mut first = None;
        rtmc_frames::for_each_frame(buf, max_frame_bytes, |p| {
            if first.is_none() {
                first = Some(p.to_vec());
            }
        })
        .map_err(|e| e.to_string())?;
        if let Some(p) = first {
            buf.advance(p.len() + rtmc::protocol::FRAME_HEADER_BYTES);
            return Ok(p);
        }
        if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
    }
}

/// Reads until one complete RESP item is in `buf` and consumes it; an error
/// reply comes back as `Err` with its text.
pub(super) async fn read_resp(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<(), String> {
    loop {
        match resp::next_item(buf, 0).map_err(|e| e.to_string())? {
            Some((RespItem::Error(e), _)) => return Err(String::from_utf8_lossy(e).into_owned()),
            Some((_, used)) => {
                buf.advance(used);
                return Ok(());
            }
            None => {
                if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed".into());
                }
            }
        }
    }
}

/// Sends `login` (subscribed; resuming after `resume_from` if given) and
/// waits for `login_ok`; returns the join point and the heartbeat interval.
pub(super) async fn login(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    user: &str,
    password: &str,
    max_frame_bytes: usize,
    resume_from: Option<u64>,
) -> Result<(u64, u64), String> {
    let mut out = Vec::new();
    let login = ClientCommand::Login {
        protocol: None,
        resume_rooms: None,
        user_id: user.to_owned(),
        password: password.to_owned(),
        resume_from,
        subscribe: true,
    };
    rtmc_frames::put_frame(&mut out, &login.to_json());
    writer.write_all(&out).await.map_err(|e| e.to_string())?;
    loop {
        let payload = read_frame(reader, buf, max_frame_bytes).await?;
        match ServerFrame::parse(&payload) {
            Ok(ServerFrame::LoginOk {
                last_seq,
                heartbeat_interval_ms,
                ..
            }) => return Ok((last_seq, heartbeat_interval_ms)),
            Ok(ServerFrame::Error { code, message, .. }) => {
                return Err(format!("{code:?}: {message}"))
            }
            // Broadcasts cannot precede login_ok; anything else is ignored.
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}
