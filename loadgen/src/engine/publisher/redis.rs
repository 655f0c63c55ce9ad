//! The floor's publisher: Redis `PUBLISH` pipelined; the integer reply
//! (subscribers reached) is the ack.

use std::net::SocketAddr;

use super::pipeline::{connect_nodelay, read_replies, write_open_loop, Reply};
use super::share::{ChannelShare, PublishError, PublishOutcome};
use crate::wire::resp::{self, RespItem};

pub(super) async fn publish_redis(
    addr: SocketAddr,
    channel: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let stream = connect_nodelay(addr).await?;
    let (mut reader, writer) = stream.into_split();
    let (schedule, shape, live) = (share.schedule, share.shape.clone(), share.live.clone());
    let channel = channel.to_owned();
    // The floor has one publisher: it sends every tick.
    let ticks = (0..schedule.total).peekable();
    let write = tokio::spawn(async move {
        let encode = move |out: &mut Vec<u8>, i: u64| {
            let payload = shape.floor_payload(schedule.seq_base + i, schedule.intended_us(i));
            resp::command(out, &[b"PUBLISH", channel.as_bytes(), &payload]);
        };
        // The write half closes when this task ends, once everything is written.
        write_open_loop(writer, ticks, schedule, live, None, encode)
            .await
            .0
    });
    let (mut outcome, replies) = read_replies(&mut reader, &share, resp_reply).await;
    outcome.published = write.await.unwrap_or(0);
    outcome.unanswered = outcome.published.saturating_sub(replies);
    Ok(outcome)
}

/// Redis: the integer reply to `PUBLISH` (subscribers reached) is the ack.
pub(super) fn resp_reply(buf: &[u8], at: usize) -> Option<(Reply<'_>, usize)> {
    let (item, next) = resp::next_item(buf, at).ok()??;
    let reply = match item {
        RespItem::Integer(_) => Reply::Ack,
        RespItem::Error(e) => Reply::Refused(e),
        _ => Reply::Other,
    };
    Some((reply, next))
}
