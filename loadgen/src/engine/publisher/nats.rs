//! The NATS core peer's publisher: `PUB` + `PING` pipelined; core NATS
//! acknowledges nothing, so the `PONG` after each message is its ack.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use super::pipeline::{connect_nodelay, read_replies, write_open_loop, Reply};
use super::share::{ChannelShare, PublishError, PublishOutcome};
use crate::wire::nats::{self, NatsOp};

pub(super) async fn publish_nats(
    addr: SocketAddr,
    subject: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let stream = connect_nodelay(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let mut hello = Vec::new();
    nats::connect(&mut hello);
    writer
        .write_all(&hello)
        .await
        .map_err(|source| PublishError::Connect { addr, source })?;
    let (schedule, shape, live) = (share.schedule, share.shape.clone(), share.live.clone());
    let subject = subject.to_owned();
    // One publisher, like the floor's: it sends every tick.
    let ticks = (0..schedule.total).peekable();
    let encode = move |out: &mut Vec<u8>, i: u64| {
        let payload = shape.floor_payload(schedule.seq_base + i, schedule.intended_us(i));
        nats::publish(out, subject.as_bytes(), None, &payload);
        out.extend_from_slice(b"PING\r\n");
    };
    let write = tokio::spawn(write_open_loop(writer, ticks, schedule, live, None, encode));
    let (mut outcome, replies) = read_replies(&mut reader, &share, nats_reply).await;
    // The write half stays open until the answers are read: the server
    // closes a connection whose client closed its side.
    outcome.published = match write.await {
        Ok((sent, writer)) => {
            drop(writer);
            sent
        }
        Err(_) => 0,
    };
    outcome.unanswered = outcome.published.saturating_sub(replies);
    Ok(outcome)
}

/// NATS core: the `PONG` sent after each `PUB` is its ack.
pub(super) fn nats_reply(buf: &[u8], at: usize) -> Option<(Reply<'_>, usize)> {
    let (op, next) = nats::next_op(buf, at).ok()??;
    let reply = match op {
        NatsOp::Pong => Reply::Ack,
        NatsOp::Err(e) => Reply::Refused(e),
        _ => Reply::Other,
    };
    Some((reply, next))
}
