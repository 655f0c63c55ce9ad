//! Keeps the fixtures in `benches/src` layered (`frames` is the leaf the
//! others build on) and the code maps of `benches/` true: its README and
//! ARCHITECTURE.md's section.

use rtmc_testkit::layers::{assert_code_map, assert_code_map_section, assert_layers, Layering};
use std::path::Path;

const LAYERS: &[Layering] = &[Layering {
    scope: "",
    layers: &[&["frames"], &["sessions", "stack"]],
}];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn fixtures_use_only_lower_layers() {
    assert_layers(&crate_dir().join("src"), LAYERS);
}

#[test]
fn code_maps_of_benches_are_true() {
    let root = crate_dir().parent().expect("workspace root");
    let src = crate_dir().join("src");
    assert_code_map(&crate_dir().join("README.md"), crate_dir(), &src);
    assert_code_map_section(&root.join("ARCHITECTURE.md"), "### `benches/`", root, &src);
}
