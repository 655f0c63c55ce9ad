//! Keeps the module layering of `testkit/src` true (a module uses only
//! modules of lower layers, so none depend on each other) and the test kit's
//! code map in ARCHITECTURE.md true.

use std::path::Path;

use rtmc_testkit::layers::{assert_code_map_section, assert_layers, layer_violations, Layering};

/// The kit's top-level modules by layer, leaves first.
const LAYERS: &[Layering] = &[Layering {
    scope: "",
    layers: &[
        &["docker", "layers"],
        &["services", "process", "watchdog", "raw"],
        &["cluster", "nats", "pipeline"],
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
fn the_layering_rejects_an_upward_use() {
    // The real tree with one upward import added must fail: the test above
    // could not catch anything otherwise.
    let dir = std::env::temp_dir().join(format!("rtmc-testkit-layers-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("temp dir");
    std::fs::write(src.join("raw.rs"), "use crate::pipeline::Pipeline;\n").expect("write");
    let v = layer_violations(&src, LAYERS);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(v.len(), 1, "{v:#?}");
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
