//! The proxy-level faults: down/up, refusal while the upstream is down,
//! hold/release, one-way partitions, resets — through the Rust verbs.

use std::time::Instant;

use rtmc_chaos::{ms, Direction, FaultProxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{
    connect, dead_addr, read_n, read_to_end, round_trip, stays_silent, until_refused, Behaviour,
    End, Upstream, PATIENCE,
};

#[tokio::test]
async fn down_refuses_and_closes_then_up_serves_the_same_address() {
    let upstream = Upstream::echo().await;
    let proxy = FaultProxy::start("db", upstream.addr.to_string())
        .await
        .expect("start");
    let addr = proxy.addr();
    let mut client = connect(addr).await;
    round_trip(&mut client, b"hi").await;

    proxy.down().await;
    assert!(!proxy.is_enabled());
    let (_, end) = read_to_end(&mut client).await;
    assert_eq!(end, End::Eof);
    let refused = TcpStream::connect(addr)
        .await
        .expect_err("refused while down");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    proxy.up().await.expect("up");
    assert_eq!(proxy.addr(), addr);
    let mut again = connect(addr).await;
    assert_eq!(round_trip(&mut again, b"back").await, b"back");
}

#[tokio::test]
async fn a_dead_upstream_is_accepted_then_closed_like_toxiproxy() {
    let proxy = FaultProxy::start("dead", dead_addr().await.to_string())
        .await
        .expect("start");
    let mut client = connect(proxy.addr()).await;
    let (bytes, _) = read_to_end(&mut client).await;
    assert!(bytes.is_empty());
}

#[tokio::test]
async fn refuse_when_upstream_down_refuses_until_it_is_back() {
    let upstream_addr = dead_addr().await;
    let cfg = ProxyConfig::new("refusing").refuse_when_upstream_down(true);
    let proxy = FaultProxy::start_with(cfg, upstream_addr.to_string())
        .await
        .expect("start");
    until_refused(proxy.addr()).await;
    assert!(proxy.is_enabled(), "refusing is not disabled");

    // The upstream comes up on its address: the proxy listens again.
    let listener = TcpListener::bind(upstream_addr)
        .await
        .expect("rebind upstream");
    let _upstream = Upstream::serve(listener, Behaviour::Echo);
    let until = Instant::now() + PATIENCE;
    let mut client = loop {
        if let Ok(mut c) = TcpStream::connect(proxy.addr()).await {
            let mut echo = [0u8; 1];
            let echoed = async {
                c.write_all(b"x").await?;
                c.read(&mut echo).await
            };
            if let Ok(Ok(1)) = tokio::time::timeout(ms(500), echoed).await {
                break c;
            }
        }
        assert!(Instant::now() < until, "the proxy never served again");
        tokio::time::sleep(ms(50)).await;
    };
    assert_eq!(round_trip(&mut client, b"up").await, b"up");
}

#[tokio::test]
async fn refusal_follows_an_upstream_that_goes_away() {
    let upstream = Upstream::echo().await;
    let upstream_addr = upstream.addr;
    let cfg = ProxyConfig::new("follows").refuse_when_upstream_down(true);
    let proxy = FaultProxy::start_with(cfg, upstream_addr.to_string())
        .await
        .expect("start");
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"ok").await;
    drop(upstream);
    until_refused(proxy.addr()).await;
}

#[tokio::test]
async fn hold_buffers_then_release_delivers_at_once() {
    let mut upstream = Upstream::echo().await;
    let proxy = FaultProxy::start("held", upstream.addr.to_string())
        .await
        .expect("start");
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"warm").await;
    upstream.received_within(ms(50)).await;

    proxy.hold();
    for part in [&b"a"[..], b"b", b"c"] {
        client.write_all(part).await.expect("write");
        tokio::time::sleep(ms(30)).await;
    }
    assert!(
        upstream.received_within(ms(200)).await.is_empty(),
        "held bytes leaked upstream"
    );
    assert!(stays_silent(&mut client, ms(100)).await);

    proxy.release();
    assert_eq!(
        upstream.received_within(ms(500)).await,
        b"abc",
        "released in one piece"
    );
    assert_eq!(read_n(&mut client, 3).await, b"abc");
}

#[tokio::test]
async fn holding_one_stream_lets_the_other_flow() {
    let mut upstream = Upstream::echo().await;
    let proxy = FaultProxy::start("half-held", upstream.addr.to_string())
        .await
        .expect("start");
    let mut client = connect(proxy.addr()).await;
    proxy.downstream().hold();
    client.write_all(b"req").await.expect("write");
    assert_eq!(upstream.received_within(ms(300)).await, b"req");
    assert!(
        stays_silent(&mut client, ms(200)).await,
        "the reply was not held"
    );
    proxy.downstream().release();
    assert_eq!(read_n(&mut client, 3).await, b"req");
}

#[tokio::test]
async fn one_way_partition_drops_one_direction_and_heal_closes_what_lost_bytes() {
    let mut upstream = Upstream::echo().await;
    let proxy = FaultProxy::start("split", upstream.addr.to_string())
        .await
        .expect("start");
    let mut client = connect(proxy.addr()).await;
    proxy.partition(Direction::Downstream);
    client.write_all(b"ping").await.expect("write");
    // Requests still reach the server; its replies vanish.
    assert_eq!(upstream.received_within(ms(300)).await, b"ping");
    assert!(stays_silent(&mut client, ms(200)).await);

    proxy.heal();
    let (bytes, end) = read_to_end(&mut client).await;
    assert!(bytes.is_empty(), "dropped bytes came back: {bytes:?}");
    assert_eq!(end, End::Eof);
    let mut fresh = connect(proxy.addr()).await;
    assert_eq!(round_trip(&mut fresh, b"ok").await, b"ok");
}

#[tokio::test]
async fn a_partition_that_dropped_nothing_heals_without_closing() {
    let upstream = Upstream::echo().await;
    let proxy = FaultProxy::start("idle", upstream.addr.to_string())
        .await
        .expect("start");
    let mut client = connect(proxy.addr()).await;
    proxy.partition(Direction::Upstream);
    tokio::time::sleep(ms(50)).await;
    proxy.heal();
    assert_eq!(round_trip(&mut client, b"still").await, b"still");
}

#[tokio::test]
async fn reset_connections_resets_every_open_connection() {
    let upstream = Upstream::echo().await;
    let proxy = FaultProxy::start("rst", upstream.addr.to_string())
        .await
        .expect("start");
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"hi").await;
    proxy.reset_connections();
    let (_, end) = read_to_end(&mut client).await;
    assert_eq!(end, End::Reset);
    let mut fresh = connect(proxy.addr()).await;
    round_trip(&mut fresh, b"hi").await;
}

#[tokio::test]
async fn reset_cleans_a_proxy_back_to_pass_through() {
    let upstream = Upstream::echo().await;
    let proxy = FaultProxy::start("clean", upstream.addr.to_string())
        .await
        .expect("start");
    proxy.black_hole();
    proxy.hold();
    proxy.down().await;
    proxy.reset().await.expect("reset");
    assert!(proxy.toxics().is_empty());
    let mut client = connect(proxy.addr()).await;
    assert_eq!(round_trip(&mut client, b"clean").await, b"clean");
}

#[tokio::test]
async fn run_serves_a_bound_listener_until_cancelled() {
    let upstream = Upstream::echo().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let running = tokio::spawn(FaultProxy::run(
        ProxyConfig::new("run"),
        listener,
        upstream.addr.to_string(),
        token.clone(),
    ));
    let mut client = connect(addr).await;
    round_trip(&mut client, b"hi").await;
    token.cancel();
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("run returns")
        .expect("join")
        .expect("run ok");
    let (_, end) = read_to_end(&mut client).await;
    assert_eq!(end, End::Eof);
}
