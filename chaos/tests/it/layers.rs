//! Keeps chaos's module layering true (chaos/README.md, "Code map"): the
//! proxy sits below its HTTP API and the stack; the history and its checker
//! know nothing of the proxy; scenarios sit on top of everything. Also
//! keeps the README's code map naming files that exist and every module.

use std::path::{Path, PathBuf};

use rtmc_testkit::layers::{assert_code_map, assert_code_map_section, assert_layers, Layering};

/// Each scope's modules by layer, leaves first.
const LAYERINGS: &[Layering] = &[
    Layering {
        scope: "",
        layers: &[
            &["proxy", "history"],
            &["api", "stack", "checker"],
            &["scenario"],
        ],
    },
    Layering {
        scope: "proxy",
        layers: &[
            &["error"],
            &["toxics"],
            &["link"],
            &["connection"],
            &["fault_proxy"],
            &["faults"],
        ],
    },
    Layering {
        scope: "api",
        layers: &[&["request", "toxiproxy_client"], &["collection"]],
    },
    Layering {
        scope: "stack",
        layers: &[&["outage"]],
    },
    Layering {
        scope: "history",
        layers: &[
            &["ids"],
            &["room_record"],
            &["record"],
            &["recorder"],
            &["hooks"],
        ],
    },
    Layering {
        scope: "checker",
        layers: &[
            &["seq_table"],
            &["verdict", "coverage", "room_coverage"],
            &["messages"],
            &["room_facts"],
            &["judgement"],
            &["client", "stored", "room_client", "room_stored"],
        ],
    },
    Layering {
        scope: "scenario",
        layers: &[
            &["file"],
            &["load", "room_load", "timeline"],
            &["report"],
            &["runner"],
        ],
    },
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn chaos_modules_use_only_lower_layers() {
    assert_layers(&crate_dir().join("src"), LAYERINGS);
}

#[test]
fn the_readme_code_map_names_what_exists() {
    let dir = crate_dir();
    assert_code_map(&dir.join("README.md"), &dir, &dir.join("src"));
}

#[test]
fn the_architecture_code_map_of_chaos_names_what_exists() {
    let dir = crate_dir();
    let root = dir.parent().expect("workspace root");
    assert_code_map_section(
        &root.join("ARCHITECTURE.md"),
        "### `chaos/`",
        root,
        &dir.join("src"),
    );
}

#[test]
fn the_layer_table_names_every_module() {
    // A module left out of the table would escape the check above.
    let src = crate_dir().join("src");
    for layering in LAYERINGS {
        let dir = src.join(layering.scope.replace("::", "/"));
        for module in modules_in(&dir) {
            assert!(
                layering.layers.iter().any(|l| l.contains(&module.as_str())),
                "{module} (in {dir:?}) is in no layer of scope {:?}",
                layering.scope
            );
        }
    }
}

/// The modules in `dir`: its `.rs` files and folders, but `lib.rs`, `main.rs` (on top,
/// unchecked) and test modules.
fn modules_in(dir: &Path) -> Vec<String> {
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
        if is_module
            && !["lib", "main", "tests"].contains(&stem)
            && !modules.contains(&stem.to_owned())
        {
            modules.push(stem.to_owned());
        }
    }
    modules
}
