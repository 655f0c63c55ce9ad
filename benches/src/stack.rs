//! What the container benches (`consumer`, `replay`) run on: one tokio
//! runtime and the testkit's real RabbitMQ, Redis and PostgreSQL
//! containers, started on the first bench that needs them and removed when
//! the bench binary ends. With no Docker engine the testkit panics with how
//! to get one: a container bench fails loudly, it never skips.

use std::sync::OnceLock;

use rtmc::stream::{self, Appended, RedisKeys};
use rtmc_testkit::{Pipeline, PipelineOptions, Services};
use tokio::runtime::Runtime;

use crate::frames;

/// The runtime every async bench runs on: multi-threaded with one worker per
/// core, like the `rtmc` binary's.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A runtime and services started on first use. Declare it in `main` so it
/// drops (and the containers go) when the benches are done.
pub struct BenchStack {
    rt: Runtime,
    services: OnceLock<Services>,
}

impl Default for BenchStack {
    fn default() -> Self {
        Self {
            rt: runtime(),
            services: OnceLock::new(),
        }
    }
}

impl BenchStack {
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// The services, started now if this is the first call.
    ///
    /// # Panics
    /// When no Docker engine is reachable (with instructions) or a container
    /// does not start.
    pub fn services(&self) -> &Services {
        self.services.get_or_init(|| {
            self.rt.block_on(async {
                Services::start()
                    .await
                    .unwrap_or_else(|e| panic!("rtmc-benches: starting the testkit services: {e}"))
            })
        })
    }

    /// A deployment of its own (queue names, Redis prefix, PostgreSQL
    /// database, migrated) with no component running: the bench drives the
    /// pieces itself. `configure` adjusts its configuration.
    pub fn namespace(
        &self,
        configure: impl FnOnce(&mut rtmc::config::Config) + Send + 'static,
    ) -> Pipeline {
        let opts = PipelineOptions {
            servers: 0,
            gateway: false,
            consumer: false,
            sync: false,
            ..PipelineOptions::default()
        }
        .configure(configure);
        let services = self.services();
        self.rt
            .block_on(Pipeline::start(services, opts))
            .unwrap_or_else(|e| panic!("rtmc-benches: starting a namespace: {e:#}"))
    }
}

/// Appends `count` messages (message ids `<id_prefix>-<i>`, bodies of
/// `body_bytes`) to the stream under `keys`, through the consumer's own
/// append script, in batches of 256. Returns their sequence numbers.
pub async fn append_messages<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &RedisKeys,
    id_prefix: &str,
    count: usize,
    body_bytes: usize,
) -> redis::RedisResult<Vec<u64>> {
    const BATCH: usize = 256;
    let mut seqs = Vec::with_capacity(count);
    let ids: Vec<String> = (0..count).map(|i| format!("{id_prefix}-{i}")).collect();
    for chunk in ids.chunks(BATCH) {
        let items: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|id| {
                let raw = frames::published_message(id, body_bytes);
                let msg = rtmc::consumer::validate(&raw, usize::MAX, usize::MAX)
                    .expect("the fixture is a valid message");
                (id.clone(), rtmc::consumer::broadcast_tail(&msg))
            })
            .collect();
        for outcome in stream::append_batch(conn, keys, 3600, &items).await? {
            match outcome {
                Appended::New(seq) | Appended::Duplicate(seq) => seqs.push(seq),
            }
        }
    }
    Ok(seqs)
}
