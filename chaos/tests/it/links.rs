//! Network faults on one link of a whole stack (`ChaosStack` with a fault
//! proxy on that link only), under light load: 4–8 readers, 10 publishes/s
//! over the gateway. The faults: a black hole between the gateway and
//! RabbitMQ, latency between the consumer and Redis, and on the clients'
//! link a hold, half the readers dropped at once, and 1-byte slices. Each
//! suite asserts the history checker's verdict (no acknowledged message
//! lost at any reader or in PostgreSQL, nothing unexpected, no gap, no order
//! violation, PostgreSQL holding each acknowledged message once) and prints
//! how long recovery took.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use rtmc_chaos::history::{MessageIx, Outcome as PublishOutcome};
use rtmc_chaos::scenario::load::{LoadChoices, RecordedLoad};
use rtmc_chaos::History;
use rtmc_chaos::{ms, ChaosStack, Link, StackOptions};

use crate::recorded::{
    assert_valid, at, first_ack_after, invoked_between, light_load, logins, report_recovery,
    report_time, resumed_after, until_stopped,
};

const READERS: usize = 8;
const RATE_PER_SEC: u32 = 10;
/// Time allowed on top of a configured bound: a shared 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// A black-holed gateway ↔ RabbitMQ link (a `timeout` 0 toxic both ways:
/// bytes vanish, nothing is refused) must not hang publishers: each publish
/// is answered, a 503 `broker_unavailable` at the latest
/// `rabbitmq.publish_timeout_ms` (+ slack) after it was made. Once the
/// toxic is removed, publishing is accepted again and nothing acknowledged
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_broker_link_gives_bounded_503s_then_recovers() {
    let stack = ChaosStack::shared(StackOptions::default().link(Link::GatewayRabbitmq))
        .await
        .unwrap();
    let load = until_stopped(&stack, "bh", READERS, RATE_PER_SEC, LoadChoices::default()).await;
    let recording = load.recording();
    let (history, (fault_at_us, repaired_at_us)) = load
        .drive(&stack, async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let hole = stack.link(Link::GatewayRabbitmq).black_hole();
            let fault_at_us = recording.now_us();
            tokio::time::sleep(Duration::from_secs(5)).await;
            hole.remove();
            let repaired_at_us = recording.now_us();
            tokio::time::sleep(Duration::from_secs(4)).await;
            (fault_at_us, repaired_at_us)
        })
        .await;

    let publish_timeout = Duration::from_millis(stack.pipeline().cfg.rabbitmq.publish_timeout_ms);
    // A refusal comes within `publish_timeout_ms` (plus scheduling slack on
    // a loaded machine). It used to take up to twice that: after its timeout
    // a publish waited for the broker-link lock held by another publish's
    // hung connect (`Publisher::drop_link` now never waits).
    let bound = publish_timeout + SLACK;
    let during = invoked_between(&history, fault_at_us, repaired_at_us);
    let slowest = during.iter().filter_map(|p| p.took).max();
    let late = during
        .iter()
        .filter(|p| {
            p.took
                .is_none_or(|t| t > publish_timeout + Duration::from_millis(500))
        })
        .count();
    println!(
        "[black hole] {late} of {} answers during the fault came later than publish_timeout_ms + 0.5 s",
        during.len()
    );
    report_time("black hole", "slowest answer during the fault", slowest);
    report_recovery("black hole", &history, repaired_at_us);
    let verdict = assert_valid(&history, READERS);
    assert!(
        during.iter().any(|p| p.outcome == "broker_unavailable"),
        "no 503 broker_unavailable while the link was a black hole"
    );
    for p in &during {
        assert!(
            p.outcome == "ok" || p.outcome == "broker_unavailable",
            "{p:?}: neither accepted nor refused as broker_unavailable"
        );
        assert!(
            p.took.is_some_and(|t| t <= bound),
            "{p:?}: not answered within {bound:?}"
        );
    }
    assert!(
        first_ack_after(&history, repaired_at_us).is_some(),
        "publishing never recovered after the black hole was removed"
    );
    let acked = invoked_between(&history, 0, u64::MAX)
        .iter()
        .filter(|p| p.outcome == "ok")
        .count() as u64;
    assert!(verdict.stored.map_or(0, |s| s.rows) >= acked);
}

/// 200 ms of latency each way on the consumer ↔ Redis link slows every
/// append, but everything is still delivered, in order, to every client,
/// and stored once. The end-to-end delay during the fault shows the
/// consumer really went through the proxy (and the others did not need to).
/// The load is `chaos run`'s driver (loadgen's clients, recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_between_consumer_and_redis_delays_but_delivers_in_order() {
    let stack = ChaosStack::shared(StackOptions::default().link(Link::ConsumerRedis))
        .await
        .unwrap();
    let load = light_load(READERS, RATE_PER_SEC, Duration::from_secs(8));
    let mut driver = RecordedLoad::connect(&stack, "lat", &load, true)
        .await
        .expect("every client logs in");
    let recording = driver.recording().clone();
    let slow_for_5_s = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let link = stack.link(Link::ConsumerRedis);
        let slow = [
            link.upstream().latency(ms(200)),
            link.downstream().latency(ms(200)),
        ];
        let fault_at_us = recording.now_us();
        tokio::time::sleep(Duration::from_secs(5)).await;
        slow.into_iter().for_each(|t| t.remove());
        (fault_at_us, recording.now_us())
    };
    let (phase, (fault_at_us, repaired_at_us)) =
        tokio::join!(driver.publish(Instant::now()), slow_for_5_s);
    let history = driver
        .finish(&stack, phase.report.head_after)
        .await
        .expect("every log handed back");

    // Publish → first delivery for messages published well inside the
    // fault (removing a toxic lets what it delayed go at once: the last
    // second before the repair is not inside).
    let inside = fault_at_us + 500_000..repaired_at_us.saturating_sub(1_000_000);
    let delays = delays_to_first_delivery(&history, inside);
    let fastest = delays.iter().min().copied();
    match fastest {
        Some(d) => println!(
            "[consumer-redis latency] fastest publish → delivery during the fault: {:.2} s",
            d.as_secs_f64()
        ),
        None => println!("[consumer-redis latency] nothing delivered during the fault"),
    }
    report_recovery("consumer-redis latency", &history, repaired_at_us);
    assert_valid(&history, READERS);
    assert!(!delays.is_empty(), "nothing acknowledged during the fault");
    assert!(
        fastest.is_some_and(|d| d >= ms(200)),
        "a delivery beat the 200 ms toxic ({fastest:?}): the consumer bypassed the proxy"
    );
}

/// For each acknowledged publish invoked within `invoked` (µs on the
/// recording's clock): from its invocation to its first delivery anywhere.
fn delays_to_first_delivery(history: &History, invoked: Range<u64>) -> Vec<Duration> {
    let mut first_ms: HashMap<MessageIx, u32> = HashMap::new();
    for d in history.clients().iter().flat_map(|c| &c.deliveries) {
        let at = first_ms.entry(d.message).or_insert(d.received_at_ms);
        *at = (*at).min(d.received_at_ms);
    }
    history
        .publishers()
        .iter()
        .flat_map(|p| &p.publishes)
        .filter(|p| p.outcome == PublishOutcome::Ok && invoked.contains(&p.invoked_at_us))
        .filter_map(|p| {
            let delivered_us = u64::from(*first_ms.get(&p.message)?) * 1000;
            Some(Duration::from_micros(
                delivered_us.saturating_sub(p.invoked_at_us),
            ))
        })
        .collect()
}

/// A client ↔ server link held for 2 s (turmoil's `hold`: bytes buffered,
/// nothing lost, nothing closed) and then released: clients behind it get
/// the whole backlog at once, in gap-free order, without reconnecting.
/// The load is `chaos run`'s driver (loadgen's clients, recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_client_link_delivers_the_backlog_in_order_on_release() {
    let stack = ChaosStack::shared(StackOptions::default().link(Link::ClientServer(0)))
        .await
        .unwrap();
    let load = light_load(4, RATE_PER_SEC, Duration::from_secs(4));
    let mut driver = RecordedLoad::connect(&stack, "hold", &load, true)
        .await
        .expect("every client logs in");
    let recording = driver.recording().clone();
    let hold_then_release = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack.link(Link::ClientServer(0)).hold();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stack.link(Link::ClientServer(0)).release();
        recording.now_us()
    };
    let (phase, released_at_us) = tokio::join!(driver.publish(Instant::now()), hold_then_release);
    let history = driver
        .finish(&stack, phase.report.head_after)
        .await
        .expect("every log handed back");
    report_recovery("client link hold", &history, released_at_us);
    assert_valid(&history, 4);
    for client in history.clients() {
        assert_eq!(
            logins(client),
            1,
            "a held link closed {}'s connection",
            client.name
        );
    }
}

/// Half the readers dropped at once: the four behind the client link's
/// proxy lose their connections together (the proxy goes down, refusing
/// reconnects for 2 s), the four connected directly keep theirs. Once it
/// is back the dropped ones reconnect (told to: loadgen's clients) with
/// `resume_from` their last seq and get the backlog replayed. Guarantee: a disconnect storm costs no gap, no
/// duplicate and no loss, and does not disturb the readers that stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_readers_dropped_at_once_resume_without_a_gap() {
    let stack = ChaosStack::shared(StackOptions::default().link(Link::ClientServer(0)))
        .await
        .unwrap();
    let dropped = 4;
    // The first four behind the link's proxy, the last four on the node itself.
    let mut reader_addrs = at(&stack.server_addr(0), dropped);
    reader_addrs.extend(at(&stack.pipeline().server_addr(0), 4));
    let placed = LoadChoices {
        reader_addrs,
        ..LoadChoices::default()
    };
    let load = until_stopped(&stack, "half", 2 * dropped, RATE_PER_SEC, placed).await;
    let recording = load.recording();
    let faults = load.driver.client_faults();
    let (history, repaired_at_us) = load
        .drive(&stack, async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let proxy = stack.link(Link::ClientServer(0));
            proxy.down().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.up().await.unwrap();
            let repaired_at_us = recording.now_us();
            // loadgen's clients reconnect when told (a real client's
            // reconnect loop), each resuming from its last seq.
            let behind_proxy: Vec<usize> = (0..dropped).collect();
            faults.reconnect_flood(&behind_proxy, true);
            tokio::time::sleep(Duration::from_secs(4)).await;
            repaired_at_us
        })
        .await;
    let suite = "half the readers dropped";
    report_recovery(suite, &history, repaired_at_us);
    report_time(
        suite,
        "every reader receiving again after the proxy came back",
        resumed_after(&history, repaired_at_us),
    );
    let verdict = assert_valid(&history, 2 * dropped);
    // The fleet's clients log in as users `chaos-<i>`, in client order.
    let mut clients: Vec<_> = history.clients().iter().collect();
    clients.sort_by_key(|c| user_index(&c.name));
    for (i, c) in clients.iter().enumerate() {
        if i < dropped {
            assert!(
                logins(c) >= 2,
                "reader {i} behind the proxy never reconnected"
            );
        } else {
            assert_eq!(logins(c), 1, "reader {i} was connected directly");
        }
    }
    assert_eq!(verdict.totals.duplicated_after_dedupe, 0, "{verdict}");
}

/// The number at the end of a user name (`chaos-12` → 12).
fn user_index(name: &str) -> usize {
    let digits = name.rsplit(|c: char| !c.is_ascii_digit()).next();
    digits.and_then(|d| d.parse().ok()).unwrap_or(usize::MAX)
}

/// Every byte between clients and their server node in its own piece
/// (a `slicer` of 1-byte pieces both ways, from before the clients log in):
/// the framing on both sides reassembles logins, heartbeats and broadcasts
/// from any split. Guarantee: the protocol does not depend on how TCP
/// segments the stream — everything arrives, in order, with no reconnect.
/// The load is `chaos run`'s driver (loadgen's clients, recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_slices_between_clients_and_server_lose_nothing() {
    let stack = ChaosStack::shared(StackOptions::default().link(Link::ClientServer(0)))
        .await
        .unwrap();
    let proxy = stack.link(Link::ClientServer(0));
    let slices = [
        proxy.upstream().slicer(1).delay(Duration::from_micros(10)),
        proxy
            .downstream()
            .slicer(1)
            .delay(Duration::from_micros(10)),
    ];
    let load = light_load(READERS, RATE_PER_SEC, Duration::from_secs(6));
    let mut driver = RecordedLoad::connect(&stack, "slice", &load, true)
        .await
        .expect("every client logs in through the slicer");
    let phase = driver.publish(Instant::now()).await;
    slices.into_iter().for_each(|t| t.remove());
    let history = driver
        .finish(&stack, phase.report.head_after)
        .await
        .expect("every log handed back");
    let verdict = assert_valid(&history, READERS);
    for client in history.clients() {
        assert_eq!(
            logins(client),
            1,
            "slicing cost {} a connection",
            client.name
        );
    }
    assert!(
        verdict.clients.iter().all(|c| c.ok >= 50),
        "too little got through the slicer to show anything: {verdict}"
    );
}
