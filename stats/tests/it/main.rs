//! `rtmc-stats` is one module (`lib.rs`), so it has no layering to check;
//! this keeps ARCHITECTURE.md's section on it true. The checker is the test
//! kit's, included by path: the crate depends on `serde` alone.

#[path = "../../../testkit/src/layers.rs"]
#[allow(dead_code)]
mod checker;

use std::path::Path;

#[test]
fn architecture_code_map_of_stats_is_true() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = dir.parent().expect("workspace root");
    checker::assert_code_map_section(
        &root.join("ARCHITECTURE.md"),
        "### `stats/`",
        root,
        &dir.join("src"),
    );
}
