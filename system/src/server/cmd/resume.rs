//! `resume`: restarts live delivery at the current head, replaying
//! everything after the client's `last_seq` first. `login` with
//! `resume_from` subscribes through the same [`subscribe_from`].

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::protocol::{ErrorCode, ServerFrame};
use crate::server::node::MAX_REPLAY_MESSAGES;
use crate::server::outbound::{frame, Outbound, Subscription};
use crate::server::session::{Next, Session};
use crate::stream::Delivery;

pub(super) async fn apply(session: &mut Session, last_seq: u64) -> Next {
    let (rx, head) = session.ctx.fanout.subscribe();
    subscribe_from(session, rx, head, Some(last_seq)).await;
    Next::Continue
}

/// Hands the writer the subscription: with `after`, the replay of
/// `after+1..=head` and `resume_done` go first, in the same message, so no
/// live frame can overtake them. A replay that cannot be produced is a
/// `resume_unavailable` error (no `resume_done`): the client knows it has a gap.
pub(super) async fn subscribe_from(
    session: &Session,
    rx: broadcast::Receiver<Delivery>,
    head: u64,
    after: Option<u64>,
) {
    let (replay, done) = match after {
        Some(after) => replay(session, after, head).await,
        None => (Vec::new(), None),
    };
    let _ = session
        .out
        .send(Outbound::Subscribe(Box::new(Subscription {
            replay,
            done,
            rx,
            up_to: head,
        })))
        .await;
}

/// The frames after `after` up to `head` and the `resume_done` that follows
/// them; nothing (after an error frame) when the replay cannot be produced.
async fn replay(session: &Session, after: u64, head: u64) -> (Vec<Delivery>, Option<Bytes>) {
    let ctx = &session.ctx;
    let mut redis = ctx.redis.clone();
    let replayed = crate::replay::range(
        &mut redis,
        &ctx.pg,
        &ctx.keys,
        after,
        head,
        MAX_REPLAY_MESSAGES,
    )
    .await;
    match replayed {
        Ok(r) => {
            metrics::counter!("rtmc_resume_replayed_total").increment(r.len() as u64);
            let done = frame(&ServerFrame::ResumeDone {
                last_seq: head,
                room: None,
            });
            (r, Some(done))
        }
        Err(e) => {
            session
                .error(ErrorCode::ResumeUnavailable, e.to_string())
                .await;
            (Vec::new(), None)
        }
    }
}
