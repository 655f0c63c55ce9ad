//! One proxied connection: a client socket, the upstream socket dialled for
//! it, the two links between them, and how it ends.
//!
//! Each direction passes its close on as a half-close (the peer reads EOF and
//! may still send); the sockets are closed when both directions are done, or
//! at once when a toxic, the proxy or a reset ends the connection. A reset from
//! one side is passed on as a reset to the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::proxy::link::{self, Chain, Closer};
use crate::proxy::toxics::stage::CloseKind;

/// The connections a proxy accepted since it was last told to close them all.
#[derive(Debug)]
pub(crate) struct Generation {
    /// Cancelling it closes every connection of the generation.
    pub token: CancellationToken,
    /// Close them with a reset rather than a FIN.
    pub reset: AtomicBool,
}

impl Generation {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            reset: AtomicBool::new(false),
        }
    }

    /// Ends every connection of the generation.
    pub fn end(&self, reset: bool) {
        self.reset.store(reset, Ordering::Release);
        self.token.cancel();
    }
}

/// Proxies between `client` and `server` until the connection ends.
/// `chains` are the [upstream, downstream] chains; `seeds` seed each link's
/// randomness.
pub(crate) async fn serve(
    client: TcpStream,
    server: TcpStream,
    chains: [watch::Receiver<Arc<Chain>>; 2],
    generation: Arc<Generation>,
    seeds: [u64; 2],
) {
    // Go's sockets, hence Toxiproxy's, have Nagle off.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let client = Arc::new(client);
    let server = Arc::new(server);
    let token = generation.token.child_token();
    let closer = Closer {
        token: token.clone(),
        sockets: [client.clone(), server.clone()],
    };
    let [up_chain, down_chain] = chains;
    let upstream = link::pipe(
        client.clone(),
        server.clone(),
        up_chain,
        closer.clone(),
        seeds[0],
    );
    let downstream = link::pipe(server, client, down_chain, closer.clone(), seeds[1]);
    tokio::select! {
        () = token.cancelled() => {}
        _ = async { tokio::join!(upstream, downstream) } => {}
    }
    if generation.reset.load(Ordering::Acquire) {
        closer.close(CloseKind::Reset);
    }
}
