//! rtmc components as child processes (the `rtmc` binary), for runs that need
//! process isolation: loadgen at 10k clients (the fd limit is per process),
//! and chaos runs that SIGKILL, pause or restart a node. Each process gets a
//! generated config file and loopback ports the kit picks; a restart
//! ([`NodeProcess::spawn_at`]) keeps them, so clients find it where it was.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtmc::config::Config;

use crate::docker::free_port;

/// A running `rtmc` child process.
pub struct NodeProcess {
    child: Child,
    /// The component it runs.
    pub role: Role,
    /// The address clients use (server or gateway), if it serves one.
    pub addr: Option<String>,
    /// Its ops endpoint (health, metrics), if any.
    pub ops_addr: Option<String>,
    /// The configuration it runs with.
    pub cfg: Config,
    config_file: PathBuf,
}

/// Which component a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Gateway,
    Consumer,
    Sync,
}

impl Role {
    /// The `rtmc` subcommand that runs it (also its name in logs).
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Gateway => "gateway",
            Role::Consumer => "consumer",
            Role::Sync => "sync",
        }
    }
}

/// Runs `binary migrate` with `cfg` and waits for it: the binary under test
/// creates (or updates) the schema of the database `cfg.postgres` names.
pub async fn run_migrate(binary: &Path, cfg: &Config) -> anyhow::Result<()> {
    let out = run_command(binary, cfg, &["migrate"]).await?;
    anyhow::ensure!(
        out.status.success(),
        "{} migrate failed ({}): {}",
        binary.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Runs one `binary ARGS… --config FILE` command with `cfg` written to a
/// temporary file (an operator's command: `migrate`, `user add`, `room …`)
/// and returns its output, whatever its exit status.
pub async fn run_command(
    binary: &Path,
    cfg: &Config,
    args: &[&str],
) -> anyhow::Result<std::process::Output> {
    let config_file = std::env::temp_dir().join(format!(
        "rtmc-command-{}-{}.toml",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::write(&config_file, toml::to_string(cfg)?)?;
    let out = tokio::process::Command::new(binary)
        .args(args)
        .arg("--config")
        .arg(&config_file)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await;
    let _ = std::fs::remove_file(&config_file);
    out.map_err(|e| anyhow::anyhow!("running {} {}: {e}", binary.display(), args.join(" ")))
}

/// Finds the `rtmc` binary: `$RTMC_BIN`, else next to the running executable
/// (same cargo target directory, or its parent for test binaries in deps/).
pub fn rtmc_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("RTMC_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("rtmc");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "the rtmc binary was not found next to {} — build it (`cargo build --release -p rtmc-system`) or set RTMC_BIN",
        exe.display()
    )
}

impl NodeProcess {
    /// Starts `role` with `cfg` (its listen addresses are replaced by free
    /// loopback ports) and waits until it accepts connections.
    pub async fn spawn(role: Role, mut cfg: Config, binary: &Path) -> anyhow::Result<NodeProcess> {
        match role {
            Role::Server => {
                cfg.server.listen = format!("127.0.0.1:{}", free_port());
                cfg.server.ops_listen = format!("127.0.0.1:{}", free_port());
            }
            Role::Gateway => cfg.gateway.listen = format!("127.0.0.1:{}", free_port()),
            Role::Consumer => cfg.consumer.ops_listen = format!("127.0.0.1:{}", free_port()),
            Role::Sync => cfg.sync.ops_listen = format!("127.0.0.1:{}", free_port()),
        }
        Self::spawn_at(role, cfg, binary).await
    }

    /// Starts `role` with `cfg` exactly as given, listen addresses included,
    /// and waits until it accepts connections: a restart of a process on the
    /// addresses it had (`NodeProcess::spawn_at(p.role, p.cfg.clone(), …)`).
    pub async fn spawn_at(role: Role, cfg: Config, binary: &Path) -> anyhow::Result<NodeProcess> {
        let sub = role.name();
        let (addr, ops) = match role {
            Role::Server => (
                Some(cfg.server.listen.clone()),
                Some(cfg.server.ops_listen.clone()),
            ),
            Role::Gateway => (Some(cfg.gateway.listen.clone()), None),
            Role::Consumer => (None, Some(cfg.consumer.ops_listen.clone())),
            Role::Sync => (None, Some(cfg.sync.ops_listen.clone())),
        };
        let config_file = std::env::temp_dir().join(format!(
            "rtmc-{}-{}-{}.toml",
            sub,
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::write(&config_file, toml::to_string(&cfg)?)?;
        let child = Command::new(binary)
            .arg(sub)
            .arg("--config")
            .arg(&config_file)
            .env(
                "RUST_LOG",
                std::env::var("RTMC_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()?;
        let mut node = NodeProcess {
            child,
            role,
            addr,
            ops_addr: ops,
            cfg,
            config_file,
        };
        let probe = node.addr.clone().or_else(|| node.ops_addr.clone());
        if let Some(probe) = probe {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if tokio::net::TcpStream::connect(&probe).await.is_ok() {
                    break;
                }
                if let Some(status) = node.child.try_wait()? {
                    anyhow::bail!("rtmc {sub} exited during start-up: {status}");
                }
                if Instant::now() > deadline {
                    anyhow::bail!("rtmc {sub} did not listen on {probe} within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(node)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`INT`, `STOP`, …) to the process.
    fn signal(&self, signal: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -{signal} {} failed: {status}",
                self.pid()
            )))
        }
    }

    /// Freezes the process (SIGSTOP): its sockets stay open, nothing is
    /// read or answered. Returns once the kernel shows it stopped.
    pub async fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")?;
        self.until_state(|stopped| stopped).await
    }

    /// Lets a paused process run again (SIGCONT).
    pub async fn unpause(&self) -> anyhow::Result<()> {
        self.signal("CONT")?;
        self.until_state(|stopped| !stopped).await
    }

    /// Waits (up to 5 s) until `want(stopped)` holds, `stopped` being the
    /// `T` state in `/proc/<pid>/stat`.
    async fn until_state(&self, want: impl Fn(bool) -> bool) -> anyhow::Result<()> {
        let stat = format!("/proc/{}/stat", self.pid());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // The state follows the command name in parentheses.
            let text = std::fs::read_to_string(&stat)?;
            let state = text
                .rsplit(')')
                .next()
                .and_then(|t| t.trim().chars().next());
            if want(matches!(state, Some('T' | 't'))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("process {} still in state {state:?} after 5 s", self.pid());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Graceful stop: rtmc drains on Ctrl-C (SIGINT), so send that, then wait.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.signal("INT");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.wait();
        Ok(())
    }

    /// Abrupt stop: SIGKILL, as if the machine lost the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_file);
    }
}
