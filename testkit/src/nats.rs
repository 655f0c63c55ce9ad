//! nats-server in a container, for loadgen's NATS core and JetStream peers
//! (design.md §7): Debian's nats-server from the kit's `rtmc-nats` image,
//! host networking on a loopback port the kit picks, JetStream on with file
//! storage inside the container, removed on drop. Separate from
//! [`Services`](crate::Services): no stack needs it, only the measurement.

use std::net::SocketAddr;
use std::time::Duration;

use testcontainers::core::WaitFor;
use testcontainers::{Container, GenericImage, ImageExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::docker;
use crate::services::{ensure_docker, poll_ready, start_container, ProbeResult, ServiceError};

/// The service name in errors and container names.
const SERVICE: &str = "nats";

/// How long the server may take to answer after its container started.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// One running nats-server container.
pub struct Nats {
    /// Port clients connect to on 127.0.0.1.
    pub port: u16,
    /// `None` only while dropping.
    container: Option<Container<GenericImage>>,
}

impl Drop for Nats {
    /// The sync container blocks on its own runtime when dropped, which is
    /// not allowed inside an async context: drop it on a plain thread.
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            let _ = std::thread::spawn(move || drop(c)).join();
        }
    }
}

impl Nats {
    /// Starts nats-server from `rtmc-nats:<kit tag>` (built by
    /// `ci/setup.sh` when missing) and waits until JetStream answers.
    pub async fn start() -> Result<Nats, ServiceError> {
        ensure_docker().await?;
        Self::start_image(&format!("rtmc-{SERVICE}"), &docker::image_tag()).await
    }

    /// Starts the server from image `name:tag`, which must exist: no
    /// engine check, no image build (tests of the failure path use it).
    pub async fn start_image(name: &str, tag: &str) -> Result<Nats, ServiceError> {
        let port = docker::free_port();
        let request = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_cmd([port.to_string()])
            .with_network("host")
            .with_container_name(docker::container_name(SERVICE));
        let container = start_container(SERVICE, request).await?;
        let nats = Nats {
            port,
            container: Some(container),
        };
        let addr = nats.addr();
        poll_ready(SERVICE, READY_LIMIT, || probe(addr)).await?;
        Ok(nats)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    pub fn container_id(&self) -> String {
        self.container
            .as_ref()
            .map(|c| c.id().to_owned())
            .unwrap_or_default()
    }

    /// The host pid of nats-server (the entrypoint `exec`s it), for CPU
    /// accounting; `None` when Docker does not say.
    pub fn pid(&self) -> Option<u32> {
        let out = std::process::Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{.State.Pid}}",
                &self.container_id(),
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|&pid| pid > 0)
    }
}

/// One readiness check: the server greets with an `INFO` that says
/// JetStream is on, and answers a JetStream account-info request (so
/// JetStream has finished starting, not only the listener).
async fn probe(addr: SocketAddr) -> ProbeResult {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if !line.starts_with("INFO ") {
        return Err(format!("expected INFO, got {line:?}").into());
    }
    if !line.contains("\"jetstream\":true") {
        return Err("the server runs without JetStream".into());
    }
    writer
        .write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n\
              SUB _INBOX.rtmc-ready 1\r\n\
              PUB $JS.API.INFO _INBOX.rtmc-ready 0\r\n\r\n",
        )
        .await?;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err("connection closed".into());
        }
        if line.starts_with("-ERR") {
            return Err(line.trim().to_owned().into());
        }
        // MSG <subject> <sid> <bytes>
        let Some(len) = line.strip_prefix("MSG ") else {
            continue;
        };
        let len: usize = len.split_whitespace().last().unwrap_or("").parse()?;
        let mut payload = vec![0u8; len + 2];
        reader.read_exact(&mut payload).await?;
        let text = String::from_utf8_lossy(&payload[..len]);
        if text.contains("\"error\"") {
            return Err(format!("JetStream not ready: {text}").into());
        }
        return Ok(());
    }
}
