//! The rtmc TCP publisher: a logged-in connection pipelining `send`s, its
//! acks and refusals matched by message id.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rtmc::protocol::{ClientCommand, ErrorCode, ServerFrame};
use tokio::net::tcp::OwnedReadHalf;

use super::pipeline::{connect_nodelay, read_more, write_open_loop, PUBLISHER_MAX_FRAME_BYTES};
use super::share::{ChannelShare, PublishError, PublishOutcome, Stopping};
use crate::wire::rtmc_frames::{self};

pub(super) async fn publish_tcp(
    addr: SocketAddr,
    user: &str,
    password: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let stream = connect_nodelay(addr).await?;
    let mut conn = rtmc::client::Connection::from_stream(stream, PUBLISHER_MAX_FRAME_BYTES);
    // Publish-only: the publisher's acks never queue behind broadcasts.
    rtmc::client::login_publisher(&mut conn, user, password, Duration::from_secs(10))
        .await
        .map_err(|e| PublishError::Login(e.to_string()))?;
    let (mut reader, writer) = conn.into_inner().into_split();
    let mine = share.ticks().count() as u64;

    let (index, schedule, shape) = (share.index, share.schedule, share.shape.clone());
    let observer = share.observer.clone();
    let stopping = share.stop.clone().map(Stopping::new);
    let write = tokio::spawn(write_open_loop(
        writer,
        share.ticks().peekable(),
        schedule,
        share.live.clone(),
        stopping.clone(),
        move |out, i| {
            let cmd = shape.send_command(index, schedule.seq_base + i, schedule.intended_us(i));
            if let (
                Some(o),
                ClientCommand::Send {
                    room: None,
                    to: None,
                    message_id: Some(id),
                    ..
                },
            ) = (&observer, &cmd)
            {
                o.invoked(index, id);
            }
            rtmc_frames::put_frame(out, &cmd.to_json());
        },
    ));
    let (mut outcome, answered) = read_acks(&mut reader, &share, mine, stopping).await;
    // The write half was kept open until now: closing it earlier would end the session.
    let sent = match write.await {
        Ok((sent, writer)) => {
            drop(writer);
            sent
        }
        Err(_) => 0,
    };
    outcome.published = sent;
    outcome.unanswered = sent.saturating_sub(answered);
    Ok(outcome)
}

/// Reads acks and refusals, matched by message id, until all `mine` are
/// answered or the answers deadline passes; broadcasts are skipped. Once
/// `stopping`'s signal fires, only what was written is owed, for at most
/// the ack timeout. Returns the outcome so far and how many were answered.
pub(super) async fn read_acks(
    reader: &mut OwnedReadHalf,
    share: &ChannelShare,
    mut mine: u64,
    stopping: Option<Stopping>,
) -> (PublishOutcome, u64) {
    let mut outcome = PublishOutcome::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut answered = 0u64;
    let mut end = share.answers_deadline();
    let mut stopped = false;
    while answered < mine {
        let more = match &stopping {
            Some(s) if !stopped => tokio::select! {
                more = read_more(reader, &mut buf, end) => more,
                _ = s.token.cancelled() => {
                    stopped = true;
                    end = end.min(tokio::time::Instant::now() + share.ack_timeout);
                    true
                }
            },
            _ => read_more(reader, &mut buf, end).await,
        };
        if let (Some(s), true) = (&stopping, stopped) {
            // The writer stops at the signal; what it wrote is what is owed.
            mine = s.written();
        }
        if !more {
            break;
        }
        let now = share.live.run_clock_us();
        let used = rtmc_frames::for_each_frame(&buf, PUBLISHER_MAX_FRAME_BYTES, |p| {
            answered += count_answer(p, share, now, &mut outcome);
        })
        .unwrap_or(buf.len());
        buf.advance(used);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
    (outcome, answered)
}

/// Counts one frame read at `now` (µs) on a publisher connection: an ack or
/// a refusal matched by message id; broadcasts and other frames are
/// skipped. 1 when it answered a publish.
fn count_answer(p: &[u8], share: &ChannelShare, now: u64, outcome: &mut PublishOutcome) -> u64 {
    if rtmc_frames::is_broadcast(p) {
        return 0;
    }
    let (schedule, live) = (share.schedule, &share.live);
    match ServerFrame::parse(p) {
        Ok(ServerFrame::SendAck { message_id, .. }) => {
            if let Some(obs) = &share.observer {
                obs.acked(share.index, &message_id);
            }
            if let Some(o) = rtmc_frames::parse_message_id(message_id.as_bytes()) {
                let i = o.publisher_seq.saturating_sub(schedule.seq_base);
                let latency_us = now.saturating_sub(schedule.intended_us(i));
                outcome.ack(live, latency_us, o.publisher_seq);
                return 1;
            }
            0
        }
        Ok(ServerFrame::Error {
            code,
            message,
            message_id,
            ..
        }) => {
            let sample = format!("{code:?}: {message}");
            if let (Some(obs), Some(id)) = (&share.observer, &message_id) {
                obs.refused(share.index, id, code.as_str());
            }
            let origin = message_id
                .as_deref()
                .and_then(|id| rtmc_frames::parse_message_id(id.as_bytes()));
            if let Some(o) = origin {
                let i = o.publisher_seq.saturating_sub(schedule.seq_base);
                outcome.refuse(live, now.saturating_sub(schedule.intended_us(i)), sample);
                1
            } else if message_id.is_some() || code == ErrorCode::BrokerUnavailable {
                outcome.fail(live, sample);
                1
            } else {
                outcome.sample_error(sample);
                0
            }
        }
        _ => 0,
    }
}
