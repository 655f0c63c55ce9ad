//! Each toxic's effect, measured through a proxy in front of a real loopback
//! server. Timing checks are lower bounds only: the machine is noisy.

use std::time::{Duration, Instant};

use rtmc_chaos::{ms, Direction, FaultProxy, Latency, ProxyConfig, Toxic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    connect, read_n, read_to_end, round_trip, stays_silent, Behaviour, End, Upstream, PATIENCE,
};

/// Writes `data` and reads until the connection ends, which it must do
/// without a byte coming back, the way `expected` says.
async fn write_then_cut(client: &mut TcpStream, data: &[u8], expected: End) {
    client.write_all(data).await.expect("write");
    let (bytes, end) = read_to_end(client).await;
    assert!(bytes.is_empty(), "{bytes:?}");
    assert_eq!(end, expected);
}

async fn proxy_to(upstream: &Upstream) -> FaultProxy {
    FaultProxy::start("test", upstream.addr.to_string())
        .await
        .expect("start proxy")
}

#[tokio::test]
async fn without_toxics_bytes_pass_both_ways_unchanged() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    let mut client = connect(proxy.addr()).await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut client, &payload).await, payload);
}

#[tokio::test]
async fn latency_delays_replies_by_at_least_the_latency() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"warm").await;

    // Added while the connection is open: it applies to it at once.
    proxy.latency(ms(200));
    let start = Instant::now();
    assert_eq!(round_trip(&mut client, b"ping").await, b"ping");
    assert!(start.elapsed() >= ms(200), "{:?}", start.elapsed());

    // Both ways: the round trip pays it twice.
    proxy.upstream().latency(ms(150)).jitter(ms(50));
    let start = Instant::now();
    round_trip(&mut client, b"ping").await;
    assert!(start.elapsed() >= ms(200 + 100), "{:?}", start.elapsed());
}

#[tokio::test]
async fn latency_does_not_pile_up_on_back_to_back_chunks() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    proxy.latency(ms(300));
    let mut client = connect(proxy.addr()).await;
    let start = Instant::now();
    for _ in 0..5 {
        client.write_all(b"x").await.expect("write");
        tokio::time::sleep(ms(20)).await;
    }
    read_n(&mut client, 5).await;
    // Five chunks each 300 ms late, not 5 × 300 ms: the bound is loose
    // on purpose, it only rules out adding the delays up.
    assert!(start.elapsed() >= ms(300));
    assert!(start.elapsed() < ms(1500), "{:?}", start.elapsed());
}

#[tokio::test]
async fn removing_latency_releases_what_it_was_delaying() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    let slow = proxy.latency(Duration::from_secs(60));
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"ping").await.expect("write");
    assert!(stays_silent(&mut client, ms(200)).await);
    slow.remove();
    assert_eq!(read_n(&mut client, 4).await, b"ping");
}

#[tokio::test]
async fn updating_a_toxic_applies_to_open_connections() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    let slow = proxy.latency(Duration::from_secs(60));
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"ping").await.expect("write");
    assert!(stays_silent(&mut client, ms(200)).await);
    let name = slow.names()[0].clone();
    proxy
        .update_toxic(&name, |t| {
            t.kind = Latency::ms(0).into();
            Ok(())
        })
        .expect("update");
    assert_eq!(read_n(&mut client, 4).await, b"ping");
    assert_eq!(round_trip(&mut client, b"fast").await, b"fast");
    assert_eq!(
        proxy.toxic(&name).expect("still there").kind,
        Latency::ms(0).into()
    );
}

#[tokio::test]
async fn bandwidth_bounds_throughput() {
    let upstream = Upstream::start(Behaviour::Send(50_000)).await;
    let proxy = proxy_to(&upstream).await;
    proxy.bandwidth(100); // 100 KB/s: 50 kB take 0.5 s
    let mut client = connect(proxy.addr()).await;
    let start = Instant::now();
    read_n(&mut client, 50_000).await;
    assert!(start.elapsed() >= ms(450), "{:?}", start.elapsed());
}

#[tokio::test]
async fn slicer_splits_writes_into_delayed_pieces() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    proxy.slicer(10).size_variation(3).delay(ms(10));
    let mut client = connect(proxy.addr()).await;
    let start = Instant::now();
    client.write_all(&[7u8; 100]).await.expect("write");
    let mut reads = 0;
    let mut total = 0;
    let mut buf = [0u8; 1024];
    while total < 100 {
        let n = tokio::time::timeout(PATIENCE, client.read(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
        assert!(n > 0, "closed early");
        total += n;
        reads += 1;
    }
    assert_eq!(total, 100);
    assert!(reads >= 3, "the 100-byte write came in {reads} reads");
    // At least 8 pieces (at most 13 bytes each), 10 ms apart.
    assert!(start.elapsed() >= ms(70), "{:?}", start.elapsed());
}

#[tokio::test]
async fn limit_data_closes_after_n_bytes() {
    let upstream = Upstream::start(Behaviour::Send(1000)).await;
    let proxy = proxy_to(&upstream).await;
    proxy.limit_data(100);
    let mut client = connect(proxy.addr()).await;
    let (bytes, end) = read_to_end(&mut client).await;
    assert_eq!(bytes.len(), 100);
    assert_eq!(end, End::Eof);
}

#[tokio::test]
async fn limit_data_upstream_limits_what_the_server_receives() {
    let mut upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    proxy.upstream().limit_data(5);
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"0123456789").await.expect("write");
    // The connection is closed once the 5 bytes are through (the echo may
    // or may not make it back first).
    let (echoed, _) = read_to_end(&mut client).await;
    assert!(b"01234".starts_with(&echoed), "{echoed:?}");
    assert_eq!(upstream.received_within(ms(200)).await, b"01234");
}

#[tokio::test]
async fn timeout_zero_black_holes_until_removed_then_new_connections_pass() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    let hole = proxy.timeout(Duration::ZERO);
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"ping").await.expect("write");
    assert!(
        stays_silent(&mut client, ms(300)).await,
        "data passed a black hole"
    );

    // Its data was dropped, so the connection cannot go on: it is closed.
    hole.remove();
    let (bytes, end) = read_to_end(&mut client).await;
    assert!(bytes.is_empty());
    assert_eq!(end, End::Eof);

    let mut fresh = connect(proxy.addr()).await;
    assert_eq!(round_trip(&mut fresh, b"pong").await, b"pong");
}

#[tokio::test]
async fn timeout_closes_after_the_timeout_without_data() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    proxy.timeout(ms(200));
    let start = Instant::now();
    let mut client = connect(proxy.addr()).await;
    write_then_cut(&mut client, b"ping", End::Eof).await;
    assert!(start.elapsed() >= ms(200), "{:?}", start.elapsed());
}

#[tokio::test]
async fn reset_peer_resets_the_connection() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    proxy.reset_peer().after(ms(100));
    let mut client = connect(proxy.addr()).await;
    let start = Instant::now();
    write_then_cut(&mut client, b"ping", End::Reset).await;
    assert!(start.elapsed() >= ms(100), "{:?}", start.elapsed());
}

#[tokio::test]
async fn slow_close_delays_the_close() {
    let upstream = Upstream::start(Behaviour::SayByeAndClose).await;
    let proxy = proxy_to(&upstream).await;
    proxy.slow_close(ms(300));
    let start = Instant::now();
    let mut client = connect(proxy.addr()).await;
    let (bytes, end) = read_to_end(&mut client).await;
    assert_eq!(bytes, b"bye");
    assert_eq!(end, End::Eof);
    assert!(start.elapsed() >= ms(300), "{:?}", start.elapsed());
}

#[tokio::test]
async fn toxicity_zero_affects_no_connection() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    proxy.black_hole().toxicity(0.0);
    proxy.latency(Duration::from_secs(3600)).toxicity(0.0);
    for _ in 0..5 {
        let mut client = connect(proxy.addr()).await;
        assert_eq!(round_trip(&mut client, b"ping").await, b"ping");
    }
}

#[tokio::test]
async fn toxicity_is_drawn_per_connection() {
    let upstream = Upstream::echo().await;
    let cfg = ProxyConfig::new("half")
        .toxic(Toxic::from(Latency::ms(3_600_000)).toxicity(0.5))
        .seed(1);
    let proxy = FaultProxy::start_with(cfg, upstream.addr.to_string())
        .await
        .expect("start");
    let mut passed = 0;
    let mut held = 0;
    for _ in 0..20 {
        let mut client = connect(proxy.addr()).await;
        client.write_all(b"p").await.expect("write");
        if stays_silent(&mut client, ms(150)).await {
            held += 1;
        } else {
            passed += 1;
        }
    }
    assert!(passed > 0 && held > 0, "passed {passed}, held {held}");
}

#[tokio::test]
async fn limit_time_cuts_a_busy_connection() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    proxy.limit_time(ms(300));
    let start = Instant::now();
    let mut client = connect(proxy.addr()).await;
    // Keep it busy: Toxiproxy-style timers that restart on traffic would
    // never fire here.
    let mut pings = 0;
    loop {
        if client.write_all(b"p").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1];
        match tokio::time::timeout(PATIENCE, client.read(&mut buf)).await {
            Ok(Ok(1)) => pings += 1,
            _ => break,
        }
        tokio::time::sleep(ms(20)).await;
        assert!(start.elapsed() < PATIENCE, "never cut");
    }
    assert!(pings > 0);
    assert!(start.elapsed() >= ms(300), "{:?}", start.elapsed());
}

#[tokio::test]
async fn toxics_in_the_config_catch_the_first_connection() {
    let upstream = Upstream::echo().await;
    let cfg =
        ProxyConfig::new("atomic").toxic(Toxic::from(Latency::ms(200)).on(Direction::Upstream));
    let proxy = FaultProxy::start_with(cfg, upstream.addr.to_string())
        .await
        .expect("start");
    let start = Instant::now();
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"first").await;
    assert!(start.elapsed() >= ms(200), "{:?}", start.elapsed());
}

#[tokio::test]
async fn half_close_passes_through() {
    let upstream = Upstream::echo().await;
    let proxy = proxy_to(&upstream).await;
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"last words").await.expect("write");
    client.shutdown().await.expect("shutdown write");
    // The echo server still answers after our FIN, then closes.
    let (bytes, end) = read_to_end(&mut client).await;
    assert_eq!(bytes, b"last words");
    assert_eq!(end, End::Eof);
}
