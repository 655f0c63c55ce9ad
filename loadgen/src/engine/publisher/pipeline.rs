//! Pipelined publishing over one TCP stream, shared by the rtmc, Redis and
//! NATS core publishers: writing each tick when it is due (overdue ticks
//! coalesced into one write) and reading answers that come in publish order.

use std::iter::Peekable;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::share::{ChannelShare, PublishError, PublishOutcome, Schedule, Stopping};
use crate::engine::live::LiveStats;

/// Messages coalesced into one write at most, when a publisher is behind.
pub(super) const MAX_BATCH_MESSAGES: u64 = 512;
/// Frames larger than this from the server are not expected on a publisher
/// connection; the bound only keeps a corrupt length from allocating.
pub(super) const PUBLISHER_MAX_FRAME_BYTES: usize = usize::MAX >> 1;

pub(super) async fn connect_nodelay(addr: SocketAddr) -> Result<TcpStream, PublishError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| PublishError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Writes every tick when it is due, open loop: ticks already due go out
/// together, up to [`MAX_BATCH_MESSAGES`] a write. Stops at the end of the
/// ticks, at a failed write or when `stopping`'s signal fires (its count of
/// written publishes kept up to date); returns how many were written, and
/// the writer, still open.
pub(super) async fn write_open_loop(
    mut writer: OwnedWriteHalf,
    mut ticks: Peekable<impl Iterator<Item = u64>>,
    schedule: Schedule,
    live: Arc<LiveStats>,
    stopping: Option<Stopping>,
    mut encode: impl FnMut(&mut Vec<u8>, u64),
) -> (u64, OwnedWriteHalf) {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut written = 0u64;
    while let Some(&next) = ticks.peek() {
        let due = schedule.due(next);
        match &stopping {
            None => tokio::time::sleep_until(due).await,
            Some(s) => tokio::select! {
                biased;
                _ = s.token.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            },
        }
        let now = tokio::time::Instant::now();
        out.clear();
        let mut n = 0;
        while let Some(&i) = ticks.peek() {
            if schedule.due(i) > now || n >= MAX_BATCH_MESSAGES {
                break;
            }
            ticks.next();
            encode(&mut out, i);
            n += 1;
        }
        if writer.write_all(&out).await.is_err() {
            break;
        }
        written += n;
        live.published.fetch_add(n, Ordering::Relaxed);
        if let Some(s) = &stopping {
            s.written.store(written, Ordering::Release);
        }
    }
    (written, writer)
}

/// Reads more bytes into `buf`; false at `deadline`, at the end of the
/// stream, or on an error.
pub(super) async fn read_more(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, reader.read_buf(buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// One answer to a pipelined publish; answers come in publish order.
pub(super) enum Reply<'a> {
    Ack,
    Refused(&'a [u8]),
    /// Not an answer (a push, a greeting).
    Other,
}

/// Reads the answer at an offset of the buffer: the answer and where the
/// next starts, `None` while incomplete.
pub(super) type NextReply = for<'a> fn(&'a [u8], usize) -> Option<(Reply<'a>, usize)>;

/// Reads the answers to pipelined publishes until one came for every tick
/// or the answers deadline passes; answer `k` belongs to tick `k`. Returns
/// the outcome so far and how many answers came.
pub(super) async fn read_replies(
    reader: &mut OwnedReadHalf,
    share: &ChannelShare,
    next_reply: NextReply,
) -> (PublishOutcome, u64) {
    let schedule = share.schedule;
    let live = &share.live;
    let mut outcome = PublishOutcome::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut k = 0u64;
    let end = share.answers_deadline();
    while k < schedule.total {
        if !read_more(reader, &mut buf, end).await {
            break;
        }
        let now = live.run_clock_us();
        let mut at = 0;
        while let Some((reply, next)) = next_reply(&buf, at) {
            at = next;
            match reply {
                Reply::Ack => {
                    let latency_us = now.saturating_sub(schedule.intended_us(k));
                    outcome.ack(live, latency_us, schedule.seq_base + k);
                }
                Reply::Refused(e) => outcome.fail(live, String::from_utf8_lossy(e).into_owned()),
                Reply::Other => continue,
            }
            k += 1;
        }
        buf.advance(at);
    }
    (outcome, k)
}
