//! Keeps the module layering of `system/` true (ARCHITECTURE.md, "Inside
//! `system`"): a module uses only modules of lower layers, so no two
//! modules depend on each other; and keeps ARCHITECTURE.md's code map of
//! `system/` true. The checker is the test kit's (`testkit/src/layers.rs`),
//! included by path: `system` depends on nothing of the harness, not even
//! in its tests.

#[path = "../../../testkit/src/layers.rs"]
#[allow(dead_code)]
mod checker;

use checker::{assert_code_map_section, assert_layers, planted_violations, Layering};
use std::path::Path;

/// The crate's top-level modules by layer, leaves first; then the modules
/// inside `server/` (`server/mod.rs` sits above them).
const LAYERS: &[Layering] = &[
    Layering {
        scope: "",
        layers: &[
            &[
                "backoff",
                "secret",
                "telemetry",
                "tls",
                "identity",
                "display",
                "cli_help",
                "relay",
            ],
            &["room"],
            &["protocol"],
            &["config", "client"],
            &["db", "stream", "broker", "room_db", "redis_ha", "pg_ha"],
            &["presence_feed"],
            &["presence", "replay", "error", "ops", "room_admin"],
            &["auth", "consumer", "sync"],
            &["server", "gateway", "terminal"],
        ],
    },
    Layering {
        scope: "server",
        layers: &[
            &["limits", "direct"],
            &["outbound", "fanout"],
            &["rooms"],
            &["node", "broadcast_delay", "fanout_cpu", "presence_watch"],
            &["session"],
            &["cmd"],
            &["connection"],
        ],
    },
];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn modules_use_only_lower_layers() {
    assert_layers(&crate_dir().join("src"), LAYERS);
}

#[test]
fn the_layering_rejects_an_upward_use() {
    // The real tree with one upward import added must fail: the test
    // above could not catch anything if this did not.
    let v = planted_violations(
        &[
            ("replay.rs", "use crate::server::fanout::Delivery;\n"),
            ("server/session.rs", "use super::cmd::dispatch;\n"),
        ],
        LAYERS,
    );
    assert_eq!(v.len(), 2, "{v:#?}");
}

#[test]
fn architecture_code_map_of_system_is_true() {
    let root = crate_dir().parent().expect("workspace root");
    assert_code_map_section(
        &root.join("ARCHITECTURE.md"),
        "### `system/`",
        root,
        &crate_dir().join("src"),
    );
}
