//! The `rtmc` binary: thin subcommands over the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rtmc::client::ClientError;
use rtmc::config::Config;
use rtmc::display::visible;
use rtmc::room::{RoomKind, RoomRole};
use rtmc::room_admin::{parse_room, RoomAdmin};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "rtmc", version, about = "rtmc real-time chat backend")]
struct Cli {
    /// TOML configuration file (also RTMC_CONFIG) [default: none, built-in defaults + RTMC_… variables].
    #[arg(long, global = true, env = "RTMC_CONFIG")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. `--set server.max_connections=100` (repeatable) [default: none].
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a TCP chat server node.
    Server {
        /// Overrides server.listen [default: the configuration's, 127.0.0.1:7000].
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the HTTP gateway.
    Gateway {
        /// Overrides gateway.listen [default: the configuration's, 127.0.0.1:8080].
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
    /// Manage rooms: create them, add and remove members, list them (live sessions follow at once).
    Room {
        #[command(subcommand)]
        command: RoomCommand,
    },
    /// Interactive terminal client: type a line to send it; messages print as they arrive.
    Client {
        /// TCP server address HOST:PORT; repeat it to give failover nodes, tried in order.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: Vec<String>,
        /// Your user id.
        #[arg(long)]
        user: String,
        /// Password (also RTMC_PASSWORD; its value is never shown) [default: prompted without echo].
        #[arg(long, env = "RTMC_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Directory of the last-seen-seq files (one per user and deployment), so a restarted
        /// client resumes where it left off [default: $XDG_STATE_HOME/rtmc or ~/.local/state/rtmc].
        #[arg(long, env = "RTMC_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Keep no state file: start from new messages each time.
        #[arg(long)]
        no_state: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user with an argon2id password hash.
    Add {
        /// The new user's id: 1-128 bytes, without `:` or control characters.
        user_id: String,
        /// Password (also RTMC_PASSWORD; its value is never shown in help) [default: none, required].
        #[arg(long, env = "RTMC_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Create a public or private room with its owner.
    Create {
        /// The room id: 1-64 of a-z 0-9 _ . - starting with a letter or digit.
        room: String,
        /// `public` (anyone may join) or `private` (members invite).
        #[arg(long, default_value = "public")]
        kind: RoomKind,
        /// The user who owns the room (an existing user).
        #[arg(long)]
        owner: String,
    },
    /// Make a user a member of a room.
    Add {
        /// The room (an existing public or private one).
        room: String,
        /// The user to add (an existing user).
        user_id: String,
        /// `member` or `owner`.
        #[arg(long, default_value = "member")]
        role: RoomRole,
    },
    /// End a user's membership of a room.
    Remove {
        /// The room.
        room: String,
        /// The member to remove.
        user_id: String,
    },
    /// List every room with its kind and member count, or one user's rooms with `--user`.
    List {
        /// Only this user's rooms, with the user's role in each [default: every room].
        #[arg(long)]
        user: Option<String>,
    },
    /// List a room's members with their roles.
    Members {
        /// The room.
        room: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Client {
        addr,
        user,
        password,
        state_dir,
        no_state,
    } = cli.command
    {
        // No log lines (they would land in the chat) and no backtrace: a
        // failure is one sentence saying what to do.
        if let Err(e) = client(addr, user, password, state_dir, no_state).await {
            eprintln!("rtmc client: {e}");
            std::process::exit(1);
        }
        // Exit now: the runtime would wait for the blocked stdin read.
        std::process::exit(0);
    }
    rtmc::telemetry::init_logging();
    let cfg = Arc::new(load_config(&cli)?);
    let shutdown = cancelled_on_ctrl_c();
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
            // With `postgres.urls`, the node that takes writes.
            let (cfg, _relay) = rtmc::pg_ha::follow_primary(cfg).await?;
            rtmc::db::connect(&cfg.postgres).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::User {
            command: UserCommand::Add { user_id, password },
        } => user_add(cfg, &user_id, &password).await,
        Command::Room { command } => room(cfg, command).await,
        Command::Client { .. } => unreachable!("handled before the configuration is loaded"),
    }
}

/// The layered configuration, with a subcommand's `--listen` as one more
/// override on top of the `--set` ones.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut overrides = cli.overrides.clone();
    match &cli.command {
        Command::Server { listen: Some(l) } => overrides.push(format!("server.listen={l}")),
        Command::Gateway { listen: Some(l) } => overrides.push(format!("gateway.listen={l}")),
        _ => {}
    }
    Ok(Config::load(cli.config.as_deref(), &overrides)?)
}

/// A token cancelled when the process gets Ctrl-C (SIGINT): every component
/// drains and stops on it.
fn cancelled_on_ctrl_c() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    shutdown
}

/// `rtmc user add`: one user with an argon2id hash of `password`.
async fn user_add(cfg: Arc<Config>, user_id: &str, password: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        rtmc::auth::valid_user_id(user_id),
        "{}",
        rtmc::auth::USER_ID_RULE
    );
    // With `postgres.urls`, the node that takes writes.
    let (cfg, _relay) = rtmc::pg_ha::follow_primary(cfg).await?;
    let pool = rtmc::db::connect(&cfg.postgres).await?;
    rtmc::db::add_user(&pool, user_id, password, rtmc::db::HashCost::DEFAULT).await?;
    println!("user {user_id} created");
    Ok(())
}

/// `rtmc room …`: one listing or one administrative change. Names and ids
/// read from the database are shown through `display::visible`.
async fn room(cfg: Arc<Config>, command: RoomCommand) -> anyhow::Result<()> {
    // With `postgres.urls` / `redis.sentinels`, the nodes that take writes.
    let (cfg, _pg_relay) = rtmc::pg_ha::follow_primary(cfg).await?;
    let (cfg, _redis_relay) = rtmc::redis_ha::follow_master(cfg).await?;
    let pg = rtmc::db::connect(&cfg.postgres).await?;
    match command {
        RoomCommand::List { user } => room_list(&pg, user.as_deref()).await,
        RoomCommand::Members { room } => {
            let room = rtmc::room_admin::parse_room(&room)?;
            for m in rtmc::room_db::members(&pg, &room).await? {
                let status = m.status.map_or("unknown", |s| s.as_str());
                println!("{}\t{}\t{status}", visible(&m.user_id), m.role.as_str());
            }
            Ok(())
        }
        change => room_change(&cfg, &pg, change).await,
    }
}

/// `rtmc room list`: every room, or one user's rooms with their role.
async fn room_list(pg: &sqlx::PgPool, user: Option<&str>) -> anyhow::Result<()> {
    match user {
        Some(user) => {
            for r in rtmc::room_db::rooms_of(pg, user).await? {
                let (room, kind, role) = (visible(&r.room), r.kind.as_str(), r.role.as_str());
                println!("{room}\t{kind}\t{role}");
            }
        }
        None => {
            for (room, kind, members) in rtmc::room_admin::all_rooms(pg).await? {
                println!("{}\t{}\t{members} members", visible(&room), kind.as_str());
            }
        }
    }
    Ok(())
}

/// `rtmc room create|add|remove`: the change in PostgreSQL and in the room's
/// shard stream (so live sessions follow it).
async fn room_change(cfg: &Config, pg: &sqlx::PgPool, change: RoomCommand) -> anyhow::Result<()> {
    let redis_url = cfg.redis.url.expose_secret();
    let mut redis = rtmc::stream::managed_connection(redis_url)
        .await
        .map_err(|e| rtmc::error::StartError::connect("Redis", redis_url, e))?;
    let keys = rtmc::stream::RedisKeys::new(&cfg.redis.key_prefix);
    let mut admin = RoomAdmin {
        pg,
        redis: &mut redis,
        keys: &keys,
        shards: cfg.rooms.shards,
        max_members_per_room: cfg.rooms.max_members_per_room,
        max_rooms_per_user: cfg.rooms.max_rooms_per_user,
    };
    let done = match change {
        RoomCommand::Create { room, kind, owner } => {
            let room = parse_room(&room)?;
            admin.create(&room, kind, &owner).await?;
            let owner = visible(&owner);
            format!(
                "room {} created ({}), owner {owner}",
                room.as_str(),
                kind.as_str()
            )
        }
        RoomCommand::Add {
            room,
            user_id,
            role,
        } => {
            let room = parse_room(&room)?;
            admin.add(&room, &user_id, role).await?;
            let user = visible(&user_id);
            format!("{user} added to {} as {}", room.as_str(), role.as_str())
        }
        RoomCommand::Remove { room, user_id } => {
            let room = parse_room(&room)?;
            admin.remove(&room, &user_id).await?;
            format!("{} removed from {}", visible(&user_id), room.as_str())
        }
        RoomCommand::List { .. } | RoomCommand::Members { .. } => {
            unreachable!("listings change nothing and are answered by room()")
        }
    };
    println!("{done}");
    Ok(())
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

/// Passwords asked for at most, when the first one was wrong.
const PASSWORD_TRIES: u32 = 3;

/// The terminal client ([`rtmc::terminal`]); errors say what to do. A
/// wrong password asks again (when it was typed at the prompt, or stdin is
/// a terminal), up to [`PASSWORD_TRIES`] times.
async fn client(
    addrs: Vec<String>,
    user: String,
    password: Option<String>,
    state_dir: Option<PathBuf>,
    no_state: bool,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    for a in &addrs {
        check_addr(a)?;
    }
    let ask = || rtmc::terminal::prompt_password(&format!("password for {user}: "));
    let may_ask_again = password.is_none() || std::io::stdin().is_terminal();
    let mut password = match password {
        Some(p) => p,
        None => ask()?,
    };
    let state_dir = if no_state {
        None
    } else {
        state_dir.or_else(rtmc::terminal::SeqState::default_dir)
    };
    let first = addrs[0].clone();
    for attempt in 1.. {
        let opts = rtmc::terminal::TerminalOptions {
            addrs: addrs.clone(),
            user: user.clone(),
            password: password.clone(),
            state_dir: state_dir.clone(),
        };
        let e = match rtmc::terminal::run(opts).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let wrong = matches!(
            e,
            ClientError::Server {
                code: rtmc::protocol::ErrorCode::AuthFailed,
                ..
            }
        );
        if !(wrong && may_ask_again && attempt < PASSWORD_TRIES) {
            return Err(anyhow::anyhow!(explain(&e, &first)));
        }
        eprintln!("wrong user id or password; try again");
        password = ask()?;
    }
    unreachable!("the loop returns")
}

/// Refuses an address without a port before trying it.
fn check_addr(addr: &str) -> anyhow::Result<()> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => anyhow::bail!(
            "--addr {addr:?} is not HOST:PORT; the port is missing or not a number \
             (e.g. --addr {}:7000, the TCP server's server.listen)",
            addr.trim_end_matches(':')
        ),
    }
}

/// What a failure means for someone at the terminal, and what to do.
fn explain(e: &ClientError, addr: &str) -> String {
    use rtmc::protocol::{ErrorCode, ProtocolError};
    const HTTP: usize = u32::from_be_bytes(*b"HTTP") as usize;
    match e {
        ClientError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            format!(
                "nothing is listening on {addr} (connection refused): is the server running? \
                 Start one with `rtmc server` (or `rtmc all`, or ci/stack.sh for a whole stack), \
                 or point --addr at a running one"
            )
        }
        ClientError::Protocol(ProtocolError::FrameTooLarge { len: HTTP, .. }) => format!(
            "{addr} answered in HTTP: this is the HTTP gateway port; the TCP port is the \
             server's server.listen (127.0.0.1:7000 by default)"
        ),
        ClientError::Server {
            code: ErrorCode::AuthFailed,
            ..
        } => "login refused: wrong user id or password".into(),
        other => rtmc::display::visible(&other.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag of every subcommand says what it is for and, unless it
    /// is required or a switch, what its default is.
    #[test]
    fn every_argument_has_help_naming_its_default() {
        rtmc::cli_help::assert_documented(Cli::command());
    }

    /// The help of `rtmc` and of every subcommand, as printed, names each
    /// default once.
    #[test]
    fn no_help_names_a_default_twice() {
        rtmc::cli_help::assert_no_default_twice(Cli::command());
    }

    #[test]
    fn an_address_needs_a_port() {
        let e = check_addr("localhost").unwrap_err().to_string();
        assert!(
            e.contains("port is missing") && e.contains("localhost:7000"),
            "{e}"
        );
        assert!(check_addr("localhost:7000").is_ok());
        assert!(check_addr("[::1]:7000").is_ok());
        assert!(check_addr("host:http").is_err());
    }
}
