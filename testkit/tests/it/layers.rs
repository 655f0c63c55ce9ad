//! Keeps the module layering of the test kit true (ARCHITECTURE.md,
//! "`testkit/`"): a module uses only modules of lower layers, so no two of
//! them depend on each other (the pipeline logs users in through `raw`, and
//! both take the users' password from the `credentials` leaf); and keeps
//! ARCHITECTURE.md's code map of `testkit/` true.

use std::path::Path;

use rtmc_testkit::layers::{assert_code_map_section, assert_layers, planted_violations, Layering};

/// The kit's modules by layer, leaves first.
const LAYERS: &[Layering] = &[Layering {
    scope: "",
    layers: &[
        &["docker", "credentials", "layers"],
        &["services", "process", "watchdog"],
        &["cluster", "nats", "raw", "redis_ha", "pg_ha"],
        &["pipeline"],
        &["ha_stack"],
    ],
}];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn modules_use_only_lower_layers() {
    assert_layers(&crate_dir().join("src"), LAYERS);
}

#[test]
fn the_layering_rejects_the_old_cycle_between_pipeline_and_raw() {
    // The password back in `pipeline`, which `raw` then used: the cycle this
    // layering was written to keep out must fail it.
    let v = planted_violations(
        &[
            ("raw.rs", "use crate::pipeline::TEST_PASSWORD;\n"),
            ("pipeline.rs", "use crate::raw;\n"),
        ],
        LAYERS,
    );
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(v[0].contains("raw") && v[0].contains("pipeline"), "{v:#?}");
}

#[test]
fn architecture_code_map_of_testkit_is_true() {
    let root = crate_dir().parent().expect("workspace root");
    assert_code_map_section(
        &root.join("ARCHITECTURE.md"),
        "### `testkit/`",
        root,
        &crate_dir().join("src"),
    );
}
