//! Keeps the gate's module layering true (a module uses only modules of
//! lower layers, so there is no cycle; the map is in ci/README.md, "Code
//! map") and the README's code map of `ci/src` true.

use std::path::{Path, PathBuf};

use rtmc_testkit::layers::{assert_code_map_section, assert_layers, layer_violations, Layering};

/// `ci/src`'s modules by layer, leaves first.
const LAYERS: &[Layering] = &[Layering {
    scope: "",
    layers: &[
        &["metric", "instructions", "pin"],
        &["round"],
        &["compare", "ab", "spectra"],
        &["verdict"],
        &["baseline"],
        &["lock", "report"],
        &["stored"],
        &["gate"],
        &["trend"],
    ],
}];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn ci_modules_use_only_lower_layers() {
    assert_layers(&crate_dir().join("src"), LAYERS);
}

#[test]
fn the_layering_rejects_an_upward_use() {
    // The real layering with one upward import (the cycle this crate once
    // had: the spectra reading the report's types) must fail.
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(src.join("spectra.rs"), "use crate::report::GateReport;\n").expect("write");
    let v = layer_violations(&src, LAYERS);
    assert_eq!(v.len(), 1, "{v:#?}");
}

#[test]
fn readme_code_map_of_ci_is_true() {
    let dir = crate_dir();
    let root = dir.parent().unwrap_or(Path::new(".."));
    assert_code_map_section(&dir.join("README.md"), "Code map", root, &dir.join("src"));
}
