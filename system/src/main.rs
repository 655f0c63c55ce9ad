//! The `rtmc` binary: thin subcommands over the library.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rtmc::client::{ChatClient, ClientError};
use rtmc::config::Config;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "rtmc", version, about = "rtmc real-time chat backend")]
struct Cli {
    /// TOML configuration file (also RTMC_CONFIG).
    #[arg(long, global = true, env = "RTMC_CONFIG")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. `--set server.max_connections=100` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a TCP chat server node.
    Server {
        /// Overrides server.listen.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the HTTP gateway.
    Gateway {
        /// Overrides gateway.listen.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run a consumer (RabbitMQ → Redis).
    Consumer,
    /// Run the sync worker (Redis → PostgreSQL).
    Sync,
    /// Run server, gateway, consumer and sync worker in one process.
    All,
    /// Apply database migrations.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Interactive terminal client: type a line to send it; broadcasts print as they arrive.
    Client {
        /// Server address; repeat it to give failover nodes, tried in order.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: Vec<String>,
        #[arg(long)]
        user: String,
        /// Password (also RTMC_PASSWORD).
        #[arg(long, env = "RTMC_PASSWORD")]
        password: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user with an argon2id password hash.
    Add {
        user_id: String,
        /// Password (also RTMC_PASSWORD).
        #[arg(long, env = "RTMC_PASSWORD")]
        password: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rtmc::telemetry::init_logging();
    let cli = Cli::parse();
    let mut overrides = cli.overrides.clone();
    match &cli.command {
        Command::Server { listen: Some(l) } => overrides.push(format!("server.listen={l}")),
        Command::Gateway { listen: Some(l) } => overrides.push(format!("gateway.listen={l}")),
        _ => {}
    }
    let cfg = Arc::new(Config::load(cli.config.as_deref(), &overrides)?);
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    match cli.command {
        Command::Server { .. } => server(cfg, shutdown).await,
        Command::Gateway { .. } => gateway(cfg, shutdown).await,
        Command::Consumer => consumer(cfg, shutdown).await,
        Command::Sync => sync(cfg, shutdown).await,
        Command::All => {
            let (a, b, c, d) = tokio::join!(
                server(cfg.clone(), shutdown.clone()),
                gateway(cfg.clone(), shutdown.clone()),
                consumer(cfg.clone(), shutdown.clone()),
                sync(cfg, shutdown)
            );
            a.and(b).and(c).and(d)
        }
        Command::Migrate => {
            rtmc::db::connect(&cfg.postgres).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::User {
            command: UserCommand::Add { user_id, password },
        } => {
            let pool = rtmc::db::connect(&cfg.postgres).await?;
            rtmc::db::add_user(&pool, &user_id, &password, rtmc::db::HashCost::DEFAULT).await?;
            println!("user {user_id} created");
            Ok(())
        }
        Command::Client {
            addr,
            user,
            password,
        } => client(&addr, &user, &password).await,
    }
}

async fn ops(
    listen: &str,
    ready: rtmc::ops::ReadinessCheck,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if listen.is_empty() {
        return Ok(());
    }
    let l = TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind ops {listen}"))?;
    tracing::info!(addr = %l.local_addr()?, "ops endpoint listening");
    tokio::spawn(rtmc::ops::serve(l, ready, shutdown));
    Ok(())
}

fn needs(redis: bool, postgres: bool, rabbitmq: bool) -> rtmc::ops::Needs {
    rtmc::ops::Needs {
        redis,
        postgres,
        rabbitmq,
    }
}

async fn server(cfg: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let l = TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("bind {}", cfg.server.listen))?;
    ops(
        &cfg.server.ops_listen,
        rtmc::ops::readiness(&cfg, needs(true, true, true)),
        shutdown.clone(),
    )
    .await?;
    rtmc::server::run(cfg, l, shutdown).await?;
    Ok(())
}

async fn gateway(cfg: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let l = TcpListener::bind(&cfg.gateway.listen)
        .await
        .with_context(|| format!("bind {}", cfg.gateway.listen))?;
    rtmc::gateway::run(cfg, l, shutdown).await?;
    Ok(())
}

async fn consumer(cfg: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    ops(
        &cfg.consumer.ops_listen,
        rtmc::ops::readiness(&cfg, needs(true, false, true)),
        shutdown.clone(),
    )
    .await?;
    rtmc::consumer::run(cfg, shutdown).await?;
    Ok(())
}

async fn sync(cfg: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    ops(
        &cfg.sync.ops_listen,
        rtmc::ops::readiness(&cfg, needs(true, true, false)),
        shutdown.clone(),
    )
    .await?;
    rtmc::sync::run(cfg, shutdown).await?;
    Ok(())
}

/// The terminal client: `ChatClient` does login, acks, dedupe by seq and
/// reconnect + resume (failing over along `addrs`); this loop only moves
/// lines between the terminal and it.
async fn client(addrs: &[String], user: &str, password: &str) -> anyhow::Result<()> {
    let (first, failover) = addrs.split_first().context("at least one --addr")?;
    let mut chat = ChatClient::connect(first, user, password)
        .await?
        .with_failover(failover.iter().cloned());
    eprintln!(
        "logged in as {} (head seq {}); type a line to send it, Ctrl-D to quit",
        chat.info.user_id, chat.info.last_seq
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let every = Duration::from_millis(chat.info.heartbeat_interval_ms.max(100));
    let mut heartbeat = tokio::time::interval(every);
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                None => break,
                Some(l) if l.trim().is_empty() => {}
                Some(l) => {
                    let id = chat.send(&l, None).await?;
                    eprintln!("(sent {id})");
                }
            },
            _ = heartbeat.tick() => chat.heartbeat().await?,
            b = chat.next_broadcast(every) => match b {
                Ok(b) => println!("[{}] {}: {}", b.seq, b.from, b.body),
                Err(ClientError::Timeout(_)) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    chat.logout().await?;
    Ok(())
}
