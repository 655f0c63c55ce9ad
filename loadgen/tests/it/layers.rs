//! Keeps loadgen's layout honest: its folders are layers (README, "Where the
//! code is"; ARCHITECTURE.md's loadgen section), a module uses only modules
//! of lower layers of its folder, so no two modules depend on each other,
//! and the README's code map names every top-level module and no path that
//! is gone.

use std::path::PathBuf;

use rtmc_testkit::layers::{
    assert_code_map, assert_code_map_section, assert_layers, planted_violations, Layering,
};

/// loadgen's modules by folder and layer, leaves first.
const LAYERS: &[Layering] = &[
    Layering {
        scope: "",
        layers: &[
            &["wire", "workload"],
            &["profile", "measure"],
            &["stack", "engine"],
            &["report"],
            &["yardstick"],
            &["run"],
            &["agents"],
        ],
    },
    Layering {
        scope: "workload",
        layers: &[&["rng", "spec"], &["assign"], &["schedule"], &["plan"]],
    },
    Layering {
        scope: "wire",
        layers: &[&["nats", "resp", "rtmc_frames"]],
    },
    Layering {
        scope: "measure",
        layers: &[&["cpu", "histogram", "observe"], &["selfcheck"]],
    },
    Layering {
        scope: "engine",
        layers: &[
            &["accounting", "faults", "room_accounting"],
            &["live", "fleet_options"],
            &["dial", "inbox", "nats_sub", "publisher"],
            &["fleet_client"],
            &["fleet", "rooms"],
            &["phase"],
        ],
    },
    Layering {
        scope: "engine::rooms",
        layers: &[&["client", "summary", "peer_map"], &["driver"], &["peer"]],
    },
    Layering {
        scope: "engine::publisher",
        layers: &[
            &["share"],
            &["pipeline", "http", "jetstream"],
            &["tcp", "redis", "nats"],
        ],
    },
    Layering {
        scope: "report",
        layers: &[
            &["rounds"],
            &["types"],
            &["text"],
            &["verdict", "files", "plots"],
            &["merge"],
        ],
    },
    Layering {
        scope: "yardstick",
        layers: &[&["blaster", "floor", "nats_peer"]],
    },
    Layering {
        scope: "agents",
        layers: &[
            &["order", "clock", "split"],
            &["server", "client"],
            &["coordinator"],
        ],
    },
    Layering {
        scope: "run",
        layers: &[&["rounds", "ramp", "hops"]],
    },
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn modules_use_only_lower_layers() {
    assert_layers(&crate_dir().join("src"), LAYERS);
}

#[test]
fn the_layering_names_every_module_it_checks() {
    // A folder missing from LAYERS would let its files use anything inside it.
    let src = crate_dir().join("src");
    for l in LAYERS {
        let dir = l.scope.split("::").fold(src.clone(), |d, s| d.join(s));
        for name in l.layers.iter().flat_map(|names| names.iter()) {
            let (file, folder) = (dir.join(format!("{name}.rs")), dir.join(name));
            assert!(
                file.is_file() || folder.is_dir(),
                "{}: `{name}` is in the layering but not in src/",
                l.scope
            );
        }
    }
}

#[test]
fn an_upward_use_is_reported() {
    // The checker sees a leaf reaching up: wire using the engine.
    let violations = planted_violations(
        &[
            ("lib.rs", "pub mod wire;\npub mod engine;\n"),
            ("wire/mod.rs", "pub mod nats;\n"),
            ("wire/nats.rs", "use crate::engine::fleet::Fleet;\n"),
            ("engine.rs", ""),
        ],
        LAYERS,
    );
    assert!(
        violations
            .iter()
            .any(|v| v.contains("wire") && v.contains("engine")),
        "{violations:?}"
    );
}

#[test]
fn the_readme_code_map_is_true() {
    let dir = crate_dir();
    assert_code_map(&dir.join("README.md"), &dir, &dir.join("src"));
}

#[test]
fn the_architecture_code_map_of_loadgen_is_true() {
    let dir = crate_dir();
    let repo = dir.parent().expect("loadgen/ sits in the workspace");
    assert_code_map_section(
        &repo.join("ARCHITECTURE.md"),
        "`loadgen/`",
        &dir,
        &dir.join("src"),
    );
}
