//! `chaos`: the fault injector's command line. `chaos proxy` serves the
//! Toxiproxy-compatible API (default 127.0.0.1:8474, Toxiproxy's port),
//! optionally loading proxies from a JSON file first (the format of
//! toxiproxy-server's `-config`: a `/populate` body), until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rtmc_chaos::{api, request, ProxyCollection};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "chaos", version, about = "rtmc fault injector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Toxiproxy-compatible fault proxy API.
    Proxy(ProxyArgs),
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:8474")]
    api: String,
    /// JSON file of proxies to create at start (a /populate body).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed for the proxies' randomness (toxicity, jitter, slicing); random
    /// and logged when absent.
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Proxy(args) => proxy(args).await,
    }
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    tracing::info!(seed, "chaos proxy seed (replay with --seed)");
    let token = CancellationToken::new();
    let proxies = Arc::new(ProxyCollection::new(&token, Some(seed)));
    if let Some(path) = &args.config {
        let text = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
        let specs = request::parse_body(&text)
            .and_then(|v| request::proxy_list(&v))
            .with_context(|| format!("config {path:?}"))?;
        let (done, result) = proxies.populate(specs).await;
        result.with_context(|| format!("config {path:?}"))?;
        tracing::info!(proxies = done.len(), config = ?path, "populated proxies from config");
    }
    let listener = TcpListener::bind(&args.api)
        .await
        .with_context(|| format!("binding the API to {:?}", args.api))?;
    tracing::info!(addr = %listener.local_addr()?, "chaos proxy API listening");
    tokio::spawn(stop_on_signal(token.clone()));
    api::serve(listener, proxies.clone(), token.clone()).await?;
    proxies.shutdown().await;
    tracing::info!("chaos proxy stopped");
    Ok(())
}

/// Cancels `token` on Ctrl-C or SIGTERM.
async fn stop_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stopping");
    token.cancel();
}
