//! Loopback servers to put behind a proxy, and socket helpers with bounded
//! waits, shared by the suites.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest any single wait in these tests may take.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 that stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    /// What the server read, per read, from any connection.
    pub received: mpsc::UnboundedReceiver<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What an upstream does with each connection.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Echoes everything back.
    Echo,
    /// Sends this many bytes, then keeps reading until the client closes.
    Send(usize),
    /// Sends `bye` and closes.
    SayByeAndClose,
}

impl Upstream {
    pub async fn echo() -> Self {
        Self::start(Behaviour::Echo).await
    }

    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        Self::serve(listener, behaviour)
    }

    pub fn serve(listener: TcpListener, behaviour: Behaviour) -> Self {
        let addr = listener.local_addr().expect("upstream addr");
        let (tx, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                connections.spawn(handle(socket, behaviour, tx.clone()));
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// Everything received so far (waits briefly for stragglers).
    pub async fn received_within(&mut self, wait: Duration) -> Vec<u8> {
        let mut all = Vec::new();
        let until = Instant::now() + wait;
        while let Ok(Some(bytes)) =
            tokio::time::timeout_at(until.into(), self.received.recv()).await
        {
            all.extend(bytes);
        }
        all
    }
}

async fn handle(mut socket: TcpStream, behaviour: Behaviour, tx: mpsc::UnboundedSender<Vec<u8>>) {
    match behaviour {
        Behaviour::SayByeAndClose => {
            let _ = socket.write_all(b"bye").await;
            return;
        }
        Behaviour::Send(n) => {
            if socket.write_all(&vec![b'x'; n]).await.is_err() {
                return;
            }
        }
        Behaviour::Echo => {}
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let _ = tx.send(buf[..n].to_vec());
                if matches!(behaviour, Behaviour::Echo)
                    && socket.write_all(&buf[..n]).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// An address nothing listens on (bound once, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads exactly `n` bytes.
pub async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("read in time")
        .expect("read");
    buf
}

/// Writes `data` and reads back as many bytes (through an echo server).
pub async fn round_trip(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).await.expect("write");
    read_n(stream, data.len()).await
}

/// How a connection ended for the reader.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A clean close (read returned 0).
    Eof,
    /// ECONNRESET.
    Reset,
}

/// Reads until the connection ends; returns the bytes read and how it ended.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, End) {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the connection ends in time");
        match read {
            Ok(0) => return (all, End::Eof),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (all, End::Reset),
            Err(e) => panic!("unexpected read error: {e}"),
        }
    }
}

/// Whether nothing arrives on `stream` for `quiet` (and it stays open).
pub async fn stays_silent(stream: &mut TcpStream, quiet: Duration) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(quiet, stream.read(&mut buf))
        .await
        .is_err()
}

/// Polls `connect` until it fails with "connection refused".
pub async fn until_refused(addr: SocketAddr) {
    let until = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            _ if Instant::now() > until => panic!("{addr} still accepts connections"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
