//! `rtmc-stack`: brings up the whole stack — RabbitMQ, Redis and PostgreSQL
//! containers and every rtmc component — prints where to connect, and runs
//! until Ctrl-C, then removes the containers. With `--ha` the engines run as
//! clusters (every node listed, the leaders marked).

use std::time::Duration;

use clap::Parser;
use rtmc_testkit::{ClusterNode, HaStack, Pipeline, PipelineOptions, Services};

#[derive(Parser)]
#[command(about = "Run a complete local rtmc stack for manual use")]
struct Args {
    /// TCP address of the first server node.
    #[arg(long, default_value = "127.0.0.1:7000")]
    server: String,
    /// HTTP address of the gateway.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: String,
    /// Server nodes to run (extra nodes listen on free ports).
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Users created with password `--password`.
    #[arg(long, value_delimiter = ',', default_value = "alice,bob")]
    users: Vec<String>,
    /// Password of every user in `--users`.
    #[arg(long, default_value = "rtmc")]
    password: String,
    /// Run on the clusters: 3 RabbitMQ nodes (quorum queues), Redis primary,
    /// 2 replicas and 3 Sentinels, PostgreSQL primary and standby under
    /// pg_auto_failover.
    #[arg(long)]
    ha: bool,
    /// Exit after this many seconds (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    run_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rtmc::telemetry::init_logging();
    let args = Args::parse();
    let (server, gateway) = (args.server.clone(), args.gateway.clone());
    let opts = PipelineOptions::default()
        .servers(args.servers)
        .configure(move |c| {
            c.server.listen = server;
            c.gateway.listen = gateway;
        });
    if args.ha {
        eprintln!("starting the RabbitMQ, Redis and PostgreSQL clusters…");
        let stack = HaStack::start(opts).await?;
        add_users(&stack.pipeline, &args).await?;
        println!("rtmc stack is up (high availability)");
        print_components(&stack.pipeline, &args);
        print_cluster_nodes(&stack.nodes().await);
        print_commands(&stack.pipeline, &args);
        wait_for_stop(args.run_secs).await?;
        let HaStack { pipeline, .. } = stack;
        pipeline.shutdown().await;
        return Ok(());
    }
    eprintln!("starting RabbitMQ, Redis and PostgreSQL containers…");
    let services = Services::start().await?;
    let p = Pipeline::start(&services, opts).await?;
    add_users(&p, &args).await?;
    println!("rtmc stack is up");
    print_components(&p, &args);
    println!("  RabbitMQ      : {}", services.rabbitmq.url());
    println!(
        "  Redis         : {}   (key prefix {})",
        services.redis.url(),
        p.cfg.redis.key_prefix
    );
    println!("  PostgreSQL    : {}", p.cfg.postgres.url.expose_secret());
    print_commands(&p, &args);
    wait_for_stop(args.run_secs).await?;
    p.shutdown().await;
    drop(services);
    Ok(())
}

/// Creates `--users` (an existing user is kept as it is).
async fn add_users(p: &Pipeline, args: &Args) -> anyhow::Result<()> {
    for u in &args.users {
        match rtmc::db::add_user(&p.pg, u, &args.password, rtmc::db::HashCost::DEFAULT).await {
            Ok(()) | Err(rtmc::db::DbError::UserExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Where rtmc's own components listen, and the users.
fn print_components(p: &Pipeline, args: &Args) {
    for i in 0..p.servers.len() {
        println!("  TCP server {i}  : {}", p.server_addr(i));
    }
    println!(
        "  HTTP gateway  : {}   (X-Api-Key: {})",
        p.gateway_url(),
        p.api_key()
    );
    println!(
        "  users         : {} (password {:?})",
        args.users.join(", "),
        args.password
    );
}

/// Every cluster node: its address, whether it leads, its container.
fn print_cluster_nodes(nodes: &[ClusterNode]) {
    println!();
    println!("  cluster nodes (the leader marked *; kill one: docker kill <container>)");
    for n in nodes {
        let mark = if n.leads { "*" } else { " " };
        let container = &n.container_id[..n.container_id.len().min(12)];
        println!(
            "  {mark} {:<14} {}  {:<15}  container {container}",
            n.engine, n.index, n.address
        );
    }
}

/// How to chat on the stack and publish to it.
fn print_commands(p: &Pipeline, args: &Args) {
    println!();
    let rtmc = rtmc_testkit::process::rtmc_binary().ok();
    println!(
        "  chat:    {}",
        chat_command(
            rtmc.as_deref(),
            &p.server_addr(0),
            &args.users[0],
            &args.password
        )
    );
    println!(
        "  publish: curl -s -X POST {}/v1/service/messages -H 'X-Api-Key: {}' -H 'content-type: application/json' -d '{{\"sender\":\"curl\",\"body\":\"hello\"}}'",
        p.gateway_url(),
        p.api_key()
    );
    println!("Ctrl-C stops everything and removes the containers.");
}

/// Until Ctrl-C, or `run_secs` when it is not 0.
async fn wait_for_stop(run_secs: u64) -> anyhow::Result<()> {
    if run_secs > 0 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = tokio::time::sleep(Duration::from_secs(run_secs)) => {}
        }
    } else {
        tokio::signal::ctrl_c().await?;
    }
    eprintln!("stopping…");
    Ok(())
}

/// The command that opens a chat on this stack: the built `rtmc` binary
/// when there is one (shown relative to the current directory), else a
/// release `cargo run` (never a debug build: it compiles everything again).
fn chat_command(rtmc: Option<&std::path::Path>, addr: &str, user: &str, password: &str) -> String {
    let program = match rtmc {
        Some(path) => {
            let here = std::env::current_dir().unwrap_or_default();
            path.strip_prefix(&here)
                .unwrap_or(path)
                .display()
                .to_string()
        }
        None => "cargo run --release -p rtmc-system --".to_owned(),
    };
    format!("{program} client --addr {addr} --user {user} --password {password}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_chat_hint_names_the_built_binary_and_never_a_debug_build() {
        let here = std::env::current_dir().unwrap();
        let built = here.join("target/release/rtmc");
        assert_eq!(
            chat_command(Some(&built), "127.0.0.1:7000", "alice", "rtmc"),
            "target/release/rtmc client --addr 127.0.0.1:7000 --user alice --password rtmc"
        );
        let fallback = chat_command(None, "127.0.0.1:7000", "alice", "rtmc");
        assert!(
            fallback.starts_with("cargo run --release -p rtmc-system -- client"),
            "{fallback}"
        );
    }

    /// Every flag says what it is for and, unless it is required or a
    /// switch, what its default is (the rule `rtmc` and `loadgen` keep).
    #[test]
    fn every_argument_has_help_naming_its_default() {
        rtmc::cli_help::assert_documented(Args::command());
    }
}
