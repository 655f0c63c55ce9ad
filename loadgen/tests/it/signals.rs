//! `loadgen run` stopped by SIGTERM (what the gate's round timeout sends)
//! tears its embedded stack down — the rtmc child processes and the
//! containers — and exits non-zero promptly. Needs Docker.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::embedded_run::build_rtmc;

/// Names of the containers the kit started for process `pid`.
fn containers_of(pid: u32) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("name=rtmc-kit-{pid}-"))
        .output()
        .unwrap_or_else(|e| panic!("docker ps: {e} (is Docker installed and up?)"));
    assert!(out.status.success(), "docker ps failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("rtmc-kit-{pid}-")))
        .map(str::to_owned)
        .collect()
}

/// Child processes of `pid` named `rtmc`.
fn rtmc_children(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string(), "-x", "rtmc"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Polls `done` every 200 ms for at most `limit`.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

fn loadgen_run(out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            "--clients",
            "5",
            "--rate",
            "20",
            "--duration-secs",
            "300",
        ])
        .args(["--no-floor", "--quiet", "--out"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting loadgen")
}

#[test]
fn sigterm_tears_the_embedded_stack_down_and_exits_nonzero() {
    build_rtmc();
    let out = tempfile_dir();
    let mut child = loadgen_run(&out);
    let pid = child.id();
    // The stack is up when its rtmc processes run (after the containers).
    let up = wait_until(Duration::from_secs(180), || {
        rtmc_children(pid).len() >= 3 || child.try_wait().ok().flatten().is_some()
    });
    assert!(up, "loadgen's embedded stack did not come up within 180 s");
    assert!(
        child.try_wait().unwrap().is_none(),
        "loadgen ended before the signal"
    );
    let nodes = rtmc_children(pid);
    assert_eq!(containers_of(pid).len(), 3, "redis, rabbitmq, postgres");
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    let exited = wait_until(Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("loadgen did not exit within 60 s of SIGTERM");
    }
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
    let status = status.unwrap();
    eprintln!(
        "loadgen exited {status} {:.1} s after SIGTERM",
        sent.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert_eq!(
        containers_of(pid),
        Vec::<String>::new(),
        "containers left behind"
    );
    for node in nodes {
        assert!(
            !Path::new(&format!("/proc/{node}")).exists()
                || std::fs::read_to_string(format!("/proc/{node}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "rtmc process {node} still runs"
        );
    }
    let _ = std::fs::remove_dir_all(out);
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("loadgen-sigterm-{}", std::process::id()))
}
