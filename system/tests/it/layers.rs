//! Keeps the module layering of `system/` true (ARCHITECTURE.md, "Inside
//! `system`"): a module uses only modules of lower layers, so no two
//! modules depend on each other. Reads the sources as text and checks every
//! `crate::…` and `super::…` path outside the test modules.

use std::path::{Path, PathBuf};

/// The crate's top-level modules by layer, leaves first.
const LAYERS: &[&[&str]] = &[
    &[
        "protocol",
        "backoff",
        "secret",
        "telemetry",
        "tls",
        "identity",
        "display",
        "cli_help",
    ],
    &["config", "client"],
    &["db", "stream", "broker", "ops"],
    &["presence", "replay", "error"],
    &["auth", "consumer", "sync"],
    &["server", "gateway", "terminal"],
];

/// The modules inside `server/`, by layer; `server/mod.rs` sits above them.
const SERVER_LAYERS: &[&[&str]] = &[
    &["limits", "direct"],
    &["outbound", "fanout"],
    &["node", "broadcast_delay", "fanout_cpu"],
    &["session"],
    &["cmd"],
    &["connection"],
];

/// A module of the layering: a top-level module, or one inside `server/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    top: String,
    server_child: Option<String>,
}

impl Unit {
    /// The unit a module path (`["server", "cmd", "login"]`) belongs to.
    fn of(path: &[String]) -> Unit {
        let server_child = match path {
            [top, child, ..] if top == "server" && layer(SERVER_LAYERS, child).is_some() => {
                Some(child.clone())
            }
            _ => None,
        };
        Unit {
            top: path[0].clone(),
            server_child,
        }
    }

    fn name(&self) -> String {
        match &self.server_child {
            Some(c) => format!("{}::{c}", self.top),
            None => self.top.clone(),
        }
    }
}

fn layer(layers: &[&[&str]], name: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&name))
}

/// Whether `from` may use `to`, and if not, why.
fn allowed(from: &Unit, to: &Unit) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    if from.top == to.top {
        // Only `server/` has modules inside the layering.
        return match (&from.server_child, &to.server_child) {
            (None, _) => Ok(()),
            (Some(_), None) => Err("a module inside server/ uses server/mod.rs".into()),
            (Some(a), Some(b)) => {
                let (la, lb) = (layer(SERVER_LAYERS, a), layer(SERVER_LAYERS, b));
                if la > lb {
                    Ok(())
                } else {
                    Err("not a lower layer of server/".into())
                }
            }
        };
    }
    let from_layer =
        layer(LAYERS, &from.top).ok_or_else(|| format!("`{}` is in no layer", from.top))?;
    let to_layer = layer(LAYERS, &to.top).ok_or_else(|| format!("`{}` is in no layer", to.top))?;
    if from_layer > to_layer {
        Ok(())
    } else {
        Err("not a lower layer".into())
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/server/cmd/login.rs` → `["server", "cmd", "login"]`; `mod.rs`
/// names its folder.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src/")
        .with_extension("");
    let mut path: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of each path after `prefix` (`crate::`, `super::`),
/// with `{a, b::c}` groups opened.
fn segments_after(rest: &str) -> Vec<String> {
    match rest.strip_prefix('{') {
        Some(group) => {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            group
                .split(',')
                .map(|item| ident_at(item.trim()).to_owned())
                .filter(|i| !i.is_empty())
                .collect()
        }
        None => vec![ident_at(rest).to_owned()],
    }
}

/// Every module path a source file refers to through `crate::` or `super::`.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            for first in segments_after(rest) {
                let mut path = vec![first.clone()];
                if first == "server" {
                    let after = &rest["server".len()..];
                    if let Some(next) = after.strip_prefix("::") {
                        path.extend(segments_after(next));
                    }
                }
                out.push(path);
            }
        }
        let mut from = 0;
        while let Some(i) = line[from..].find("super::") {
            let start = from + i;
            let mut rest = &line[start..];
            let mut up = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                rest = r;
                up += 1;
            }
            let base = &module[..module.len().saturating_sub(up)];
            for seg in segments_after(rest) {
                let mut path = base.to_vec();
                path.push(seg);
                out.push(path);
            }
            from = start + "super::".len() * up;
        }
    }
    out
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let module = module_path(&src, &file);
        if module == ["lib"] || module == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let from = Unit::of(&module);
        for path in references(&module, code) {
            let to = Unit::of(&path);
            if let Err(why) = allowed(&from, &to) {
                violations.push(format!(
                    "{}: `{}` uses `{}` ({why})",
                    file.display(),
                    from.name(),
                    to.name()
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "module layering broken (see ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    let session: Vec<String> = ["server", "session"].map(String::from).into();
    let refs = references(
        &session,
        "use super::NodeContext;\nuse crate::server::cmd::dispatch;",
    );
    let from = Unit::of(&session);
    let verdicts: Vec<_> = refs.iter().map(|p| allowed(&from, &Unit::of(p))).collect();
    assert!(verdicts.iter().all(Result::is_err), "{verdicts:?}");
    let replay: Vec<String> = vec!["replay".into()];
    let up = references(&replay, "use crate::server::fanout::Delivery;");
    assert!(allowed(&Unit::of(&replay), &Unit::of(&up[0])).is_err());
}
