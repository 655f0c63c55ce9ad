//! The physical reference for server efficiency: a raw loopback blaster.
//! One OS thread writes the same broadcast frames rtmc delivers (4-byte
//! length prefix + the broadcast JSON) to the same number of plain TCP
//! sockets, as fast as the sockets take them, either one frame per
//! `write` or several frames coalesced per `write`. Its CPU-seconds per
//! million deliveries is what fan-out costs with nothing but the syscalls
//! (design.md §7: one loopback write ≈ 7 µs here); rtmc's figure and the
//! peers' stand beside it. Bounded by a message count and a time limit.

use std::io::Write;
use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtmc::protocol::now_us;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::engine::publisher::MessageShape;
use crate::measure::cpu::{per_million, thread_cpu_secs};
use crate::report::types::BlasterRun;

/// What to blast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlasterSpec {
    /// Receiving sockets (rtmc's clients).
    pub sockets: usize,
    /// Messages, each written to every socket.
    pub messages: u64,
    /// Frames per `write` (1 = one frame per write).
    pub frames_per_write: usize,
    /// The sender stops sending when this has passed.
    pub time_limit: Duration,
}

/// Failure setting up the sockets.
#[derive(Debug, thiserror::Error)]
pub enum BlasterError {
    #[error("blaster sockets: {0}")]
    Io(#[from] std::io::Error),
    #[error("blaster sender thread: {0}")]
    Sender(String),
    #[error("blaster needs at least one socket, one message and one frame per write")]
    Empty,
}

/// Connects `spec.sockets` loopback pairs, blasts, and counts what arrived.
pub async fn blast(
    spec: BlasterSpec,
    shape: Arc<MessageShape>,
) -> Result<BlasterRun, BlasterError> {
    if spec.sockets == 0 || spec.messages == 0 || spec.frames_per_write == 0 {
        return Err(BlasterError::Empty);
    }
    let (senders, mut receivers) = connect_pairs(spec.sockets).await?;
    let sender = tokio::task::spawn_blocking(move || send(&spec, &shape, senders));
    let sent = sender
        .await
        .map_err(|e| BlasterError::Sender(e.to_string()))??;
    let mut deliveries = 0;
    while let Some(r) = receivers.join_next().await {
        deliveries += r.map_err(|e| BlasterError::Sender(e.to_string()))??;
    }
    let secs = sent.started.elapsed().as_secs_f64().max(1e-6);
    Ok(BlasterRun {
        sockets: spec.sockets,
        frames_per_write: spec.frames_per_write,
        messages: sent.messages,
        frame_bytes: sent.bytes_per_socket as f64 / sent.messages.max(1) as f64,
        writes: sent.writes,
        deliveries,
        secs,
        deliveries_per_sec: deliveries as f64 / secs,
        sender_cpu_secs: sent.cpu_secs,
        cpu_secs_per_million_deliveries: per_million(sent.cpu_secs, deliveries),
    })
}

/// `n` connected pairs: the sending ends (blocking, for the sender thread)
/// and a receiving task per other end that counts frames until EOF.
async fn connect_pairs(
    n: usize,
) -> Result<(Vec<StdTcpStream>, JoinSet<std::io::Result<u64>>), BlasterError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut senders = Vec::with_capacity(n);
    let mut receivers = JoinSet::new();
    for _ in 0..n {
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (client, (server, _)) = (client?, accepted?);
        server.set_nodelay(true)?;
        let server = server.into_std()?;
        server.set_nonblocking(false)?;
        senders.push(server);
        receivers.spawn(count_frames(client));
    }
    Ok((senders, receivers))
}

/// Reads length-prefixed frames until EOF; returns how many arrived whole.
async fn count_frames(mut s: TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut frames, mut need, mut have) = (0u64, 0usize, 0usize);
    let mut header = [0u8; 4];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(frames);
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if need == 0 {
                // Reading the 4-byte prefix, possibly across reads.
                let take = (4 - have).min(chunk.len());
                header[have..have + take].copy_from_slice(&chunk[..take]);
                have += take;
                chunk = &chunk[take..];
                if have == 4 {
                    need = u32::from_be_bytes(header) as usize;
                    have = 0;
                    if need == 0 {
                        frames += 1;
                    }
                }
            } else {
                let take = need.min(chunk.len());
                need -= take;
                chunk = &chunk[take..];
                if need == 0 {
                    frames += 1;
                }
            }
        }
    }
}

/// What the sender did.
struct Sent {
    started: Instant,
    messages: u64,
    writes: u64,
    bytes_per_socket: u64,
    cpu_secs: f64,
}

/// The sender thread: batches of `frames_per_write` frames, each batch
/// written to every socket; the sockets close when it returns.
fn send(
    spec: &BlasterSpec,
    shape: &MessageShape,
    mut sockets: Vec<StdTcpStream>,
) -> Result<Sent, BlasterError> {
    let cpu_start = thread_cpu_secs().unwrap_or(0.0);
    let started = Instant::now();
    let (mut messages, mut writes, mut bytes) = (0u64, 0u64, 0u64);
    let mut batch = Vec::new();
    while messages < spec.messages && started.elapsed() < spec.time_limit {
        batch.clear();
        let k = (spec.frames_per_write as u64).min(spec.messages - messages);
        let sent_at_us = now_us();
        for i in 0..k {
            let payload = shape.floor_payload(messages + i, sent_at_us);
            batch.extend_from_slice(&rtmc::protocol::encode_frame(&payload));
        }
        for s in &mut sockets {
            s.write_all(&batch)?;
        }
        writes += sockets.len() as u64;
        messages += k;
        bytes += batch.len() as u64;
    }
    let cpu_secs = thread_cpu_secs().unwrap_or(0.0) - cpu_start;
    drop(sockets);
    Ok(Sent {
        started,
        messages,
        writes,
        bytes_per_socket: bytes,
        cpu_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_arrive_whole_and_are_counted_once_each() {
        let shape = Arc::new(MessageShape::new(1, 16));
        for frames_per_write in [1, 7] {
            let spec = BlasterSpec {
                sockets: 5,
                messages: 50,
                frames_per_write,
                time_limit: Duration::from_secs(30),
            };
            let r = blast(spec, shape.clone()).await.unwrap();
            assert_eq!(r.messages, 50, "{r:?}");
            assert_eq!(r.deliveries, 250, "{r:?}");
            // 50 messages in batches of 7 are 8 batches.
            let batches = 50u64.div_ceil(frames_per_write as u64);
            assert_eq!(r.writes, 5 * batches, "{r:?}");
            assert!(r.frame_bytes > 50.0, "{r:?}");
            assert!(r.cpu_secs_per_million_deliveries.is_some());
        }
    }

    #[tokio::test]
    async fn nothing_to_send_is_an_error() {
        let shape = Arc::new(MessageShape::new(1, 16));
        let spec = BlasterSpec {
            sockets: 0,
            messages: 10,
            frames_per_write: 1,
            time_limit: Duration::from_secs(1),
        };
        assert!(matches!(blast(spec, shape).await, Err(BlasterError::Empty)));
    }
}
