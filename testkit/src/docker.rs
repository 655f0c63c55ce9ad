//! The Docker engine and the images the kit runs: checks the engine is up
//! (failing with how to get one), builds missing images through
//! `ci/setup.sh`, removes containers left by test processes that died, and
//! picks free loopback ports for host-networked containers.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The kit's images, `rtmc-<name>:<tag>`, built by `ci/setup.sh`: the three
/// services of a stack, nats-server for loadgen's NATS peers, and PostgreSQL with
/// pg_auto_failover for the high-availability suites.
pub const IMAGES: [&str; 5] = ["redis", "rabbitmq", "postgres", "nats", "postgres-ha"];

/// Prefix of every container the kit names; the owning process id follows.
pub const CONTAINER_PREFIX: &str = "rtmc-kit-";

/// The repository's root (the kit runs its setup script from there).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_path_buf()
}

/// Tag of the service images, from `testkit/images/TAG`.
pub fn image_tag() -> String {
    std::fs::read_to_string(repo_root().join("testkit/images/TAG"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "1".into())
}

fn docker(args: &[&str]) -> Option<std::process::Output> {
    Command::new("docker").args(args).output().ok()
}

/// Panics with instructions when no engine answers or images cannot be built.
pub fn ensure_engine_and_images() {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return;
    }
    let up =
        docker(&["info", "--format", "{{.ServerVersion}}"]).is_some_and(|o| o.status.success());
    if !up {
        panic!(
            "rtmc testkit: no Docker engine is reachable. The end-to-end suites run real RabbitMQ, \
             Redis and PostgreSQL containers (and nats-server for loadgen's NATS peers). On Debian, as root, run `ci/setup.sh` (it installs \
             docker.io and debootstrap, starts dockerd and builds the images), or install Docker \
             yourself and start the daemon."
        );
    }
    let tag = image_tag();
    let missing = IMAGES.iter().any(|s| {
        !docker(&["image", "inspect", &format!("rtmc-{s}:{tag}")])
            .is_some_and(|o| o.status.success())
    });
    if missing {
        let script = repo_root().join("ci/setup.sh");
        let status = Command::new(&script).status();
        if !status.is_ok_and(|s| s.success()) {
            panic!(
                "rtmc testkit: the service images are missing and {} failed; run it by hand to see why",
                script.display()
            );
        }
    }
    remove_orphans();
    *ready = true;
}

/// Removes kit containers whose owning process is gone (a test binary never
/// drops its shared stack, so its containers outlive it).
pub fn remove_orphans() {
    let Some(out) = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("name={CONTAINER_PREFIX}"),
    ]) else {
        return;
    };
    let names = String::from_utf8_lossy(&out.stdout);
    let dead: Vec<&str> = names
        .lines()
        .filter(|n| {
            n.strip_prefix(CONTAINER_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    if !dead.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(dead);
        let _ = docker(&args);
    }
}

/// This process's kit containers, as `docker ps` shows them (name, status,
/// image), or why they could not be listed.
pub fn own_containers() -> String {
    match docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}\t{{.Status}}\t{{.Image}}",
        "--filter",
        &format!("name={CONTAINER_PREFIX}{}-", std::process::id()),
    ]) {
        Some(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Some(out) => format!("docker ps failed: {}", String::from_utf8_lossy(&out.stderr)),
        None => "docker could not be run".into(),
    }
}

/// Removes this process's kit containers (before it exits without dropping
/// them).
pub fn remove_own_containers() {
    let Some(out) = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("name={CONTAINER_PREFIX}{}-", std::process::id()),
    ]) else {
        return;
    };
    let ids = String::from_utf8_lossy(&out.stdout);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.lines().filter(|l| !l.is_empty()));
    if args.len() > 2 {
        let _ = docker(&args);
    }
}

/// A loopback port that was free a moment ago. Ports handed out by this
/// process are never handed out twice.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding 127.0.0.1:0");
        // Keep clear of the ephemeral range's reuse by also avoiding repeats.
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A unique container name owned by this process.
pub fn container_name(service: &str) -> String {
    format!(
        "{CONTAINER_PREFIX}{}-{service}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
