//! A component that cannot reach a dependency at start-up says which
//! service at which address failed (not a bare "Connection refused"), and
//! its log, written to a pipe or a file rather than a terminal, carries no
//! colour escape codes.

use std::process::Command;

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Runs `rtmc` with `args` to its end; (success, stderr).
fn run_rtmc(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtmc"))
        .args(args)
        .env_remove("RTMC_CONFIG")
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run rtmc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_server_without_postgres_names_it_and_logs_plain_text() {
    let port = closed_port();
    let url = format!("postgres.url=postgres://rtmc:pw@127.0.0.1:{port}/rtmc");
    let args = ["server", "--listen", "127.0.0.1:0", "--set", &url];
    let (ok, err) = run_rtmc(&[&args[..], &["--set", "server.ops_listen=127.0.0.1:0"]].concat());
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "could not connect to PostgreSQL at 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(err.contains("onnection refused"), "{err}");
    assert!(!err.contains("pw@"), "the password leaked: {err}");
    assert!(err.contains("INFO"), "no log line to check: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a log file: {err:?}"
    );
}

#[test]
fn a_consumer_without_redis_names_it() {
    let port = closed_port();
    let url = format!("redis.url=redis://127.0.0.1:{port}");
    let (ok, err) = run_rtmc(&[
        "consumer",
        "--set",
        &url,
        "--set",
        "consumer.ops_listen=127.0.0.1:0",
    ]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("could not connect to Redis at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a log file: {err:?}"
    );
}
