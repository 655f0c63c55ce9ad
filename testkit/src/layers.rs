//! Keeps a crate's module layering and its code map true: a layer test per
//! crate states which module may use which, and fails on an upward import or
//! a cycle; a code-map test fails when a README names a path that is gone or
//! leaves out a top-level module. It reads sources and markdown as text
//! (std only), so `system`'s tests include this file by path without
//! depending on the kit.
//!
//! ```no_run
//! use rtmc_testkit::layers::{assert_layers, Layering};
//! const LAYERS: &[Layering] = &[
//!     Layering { scope: "", layers: &[&["wire"], &["engine"], &["run"]] },
//!     Layering { scope: "report", layers: &[&["types"], &["text", "files"]] },
//! ];
//! assert_layers(std::path::Path::new("src"), LAYERS);
//! ```

use std::path::{Path, PathBuf};

/// The layers of the modules directly inside one module.
#[derive(Debug, Clone, Copy)]
pub struct Layering {
    /// The module whose children are layered: `""` for the crate root,
    /// `"server"` for `src/server/`, `"report::plots"` deeper down.
    pub scope: &'static str,
    /// Child module names by layer, leaves first: a module may use only
    /// modules of strictly lower layers of the same scope.
    pub layers: &'static [&'static [&'static str]],
}

/// A module path such as `["server", "cmd"]`.
type ModPath = Vec<String>;

fn scope_of<'a>(layerings: &'a [Layering], scope: &[String]) -> Option<&'a Layering> {
    let name = scope.join("::");
    layerings.iter().find(|l| l.scope == name)
}

fn layer_index(l: &Layering, child: &str) -> Option<usize> {
    l.layers.iter().position(|names| names.contains(&child))
}

/// The unit a module path belongs to: the longest prefix whose every step
/// is a child listed by its parent's layering (a file inside an unlayered
/// folder belongs to the folder).
fn unit_of(layerings: &[Layering], path: &[String]) -> ModPath {
    let mut unit: ModPath = Vec::new();
    for seg in path {
        if unit.is_empty() {
            // Every top-level module is a unit; one the root's layering
            // does not list is reported by `allowed`.
            unit.push(seg.clone());
            continue;
        }
        match scope_of(layerings, &unit) {
            Some(l) if layer_index(l, seg).is_some() => unit.push(seg.clone()),
            _ => break,
        }
    }
    unit
}

/// Whether unit `from` may use unit `to`, and if not, why.
fn allowed(layerings: &[Layering], from: &[String], to: &[String]) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() {
        // A folder module uses its own child.
        return Ok(());
    }
    if common == to.len() {
        return Err(format!(
            "a module inside `{}` uses its parent",
            to.join("::")
        ));
    }
    let scope = &from[..common];
    let where_ = if scope.is_empty() {
        "the crate root".to_owned()
    } else {
        format!("`{}`", scope.join("::"))
    };
    let l = scope_of(layerings, scope).ok_or_else(|| format!("{where_} has no layering"))?;
    let (a, b) = (&from[common], &to[common]);
    let la = layer_index(l, a).ok_or_else(|| format!("`{a}` is in no layer of {where_}"))?;
    let lb = layer_index(l, b).ok_or_else(|| format!("`{b}` is in no layer of {where_}"))?;
    if la > lb {
        Ok(())
    } else {
        Err(format!(
            "`{b}` is not in a lower layer of {where_} than `{a}`"
        ))
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
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
fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file
        .strip_prefix(src)
        .expect("under src/")
        .with_extension("");
    let mut path: ModPath = rel
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

/// The module paths written at `rest` (just after `crate::` or the last
/// `super::`): `a::b::C` → `[a, b, C]`; `a::{b, c::d}` → `[a, b]`, `[a, c, d]`.
fn paths_at(rest: &str) -> Vec<ModPath> {
    if let Some(group) = rest.strip_prefix('{') {
        let body = &group[..group.find('}').unwrap_or(group.len())];
        return body
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .flat_map(paths_at)
            .collect();
    }
    let first = ident_at(rest);
    if first.is_empty() {
        return Vec::new();
    }
    let after = &rest[first.len()..];
    match after.strip_prefix("::") {
        Some(next) => {
            let tails = paths_at(next);
            if tails.is_empty() {
                return vec![vec![first.to_owned()]];
            }
            tails
                .into_iter()
                .map(|mut t| {
                    t.insert(0, first.to_owned());
                    t
                })
                .collect()
        }
        None => vec![vec![first.to_owned()]],
    }
}

/// Every module path a source file refers to through `crate::` or `super::`
/// (lines that are comments skipped).
fn references(module: &[String], code: &str) -> Vec<ModPath> {
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            // `$crate::` in macros names the same crate.
            out.extend(paths_at(&line[i + "crate::".len()..]));
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
            // A file's own module is its last segment; `super` is its parent.
            let base = &module[..module.len().saturating_sub(up)];
            for tail in paths_at(rest) {
                let mut path = base.to_vec();
                path.extend(tail);
                out.push(path);
            }
            from = start + "super::".len() * up;
        }
    }
    out
}

/// The layering violations of the crate whose sources are in `src`: one
/// line per (file, used module), naming both and why. `lib.rs`, `main.rs`
/// and `src/bin/` sit on top and are not checked; test modules (from the
/// first `#[cfg(test)]` on) are not either.
pub fn layer_violations(src: &Path, layerings: &[Layering]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let module = module_path(src, &file);
        if module == ["lib"] || module == ["main"] || module.first().is_some_and(|m| m == "bin") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let from = unit_of(layerings, &module);
        for path in references(&module, code) {
            let to = unit_of(layerings, &path);
            if let Err(why) = allowed(layerings, &from, &to) {
                violations.push(format!(
                    "{}: `{}` uses `{}` ({why})",
                    file.display(),
                    from.join("::"),
                    to.join("::")
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    violations
}

/// The violations of a planted source tree under `layerings`: `files` are
/// `(path under src/, code)` pairs, written to a temporary folder that is
/// removed afterwards. A crate's layer test plants the use its layering
/// must reject, so that test could fail.
pub fn planted_violations(files: &[(&str, &str)], layerings: &[Layering]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!(
        "rtmc-layers-planted-{}-{}",
        std::process::id(),
        PLANTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let src = dir.join("src");
    for (path, code) in files {
        let file = src.join(path);
        std::fs::create_dir_all(file.parent().expect("a file in a folder")).expect("temp dir");
        std::fs::write(&file, code).expect("write a planted file");
    }
    let v = layer_violations(&src, layerings);
    let _ = std::fs::remove_dir_all(&dir);
    v
}

/// Numbers the planted trees of one process (tests run in parallel).
static PLANTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Panics listing every layering violation of the crate in `src`.
pub fn assert_layers(src: &Path, layerings: &[Layering]) {
    let v = layer_violations(src, layerings);
    assert!(
        v.is_empty(),
        "module layering broken (see ARCHITECTURE.md):\n{}",
        v.join("\n")
    );
}

/// The backticked spans of a markdown text (inline code), fenced blocks
/// skipped.
fn code_spans(doc: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            spans.push(inside);
        }
    }
    spans
}

/// Whether a code span names a file or folder of the tree: a single word
/// with a `/` or a `.rs` ending, not a URL, a command or a glob.
fn names_a_path(span: &str) -> bool {
    let s = span.trim();
    !s.is_empty()
        && !s.contains(char::is_whitespace)
        && !s.contains("://")
        && !s.contains(['*', '<', '>', '{', '$', '…', '(', '='])
        && !s.starts_with(['-', '/', '~', '.'])
        // Build and run outputs are not part of the tree.
        && !s.starts_with("target/")
        && !s.starts_with("reports/")
        && (s.ends_with(".rs") || s.contains('/'))
}

/// What is wrong with a code map: every path `doc` names in backticks
/// (relative to `root`, or to `src` when it is not found there) must exist,
/// and every top-level module of `src` (file or folder, `lib.rs`/`main.rs`
/// aside) must be named in `doc` by its file or folder name.
pub fn code_map_violations(doc: &Path, root: &Path, src: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("read {}: {e}", doc.display()));
    map_violations(doc, &text, root, src)
}

/// The same for one section of `doc`: from the heading line that contains
/// `heading` to the next heading of the same or a higher level (for
/// ARCHITECTURE.md's section of one crate).
pub fn code_map_section_violations(
    doc: &Path,
    heading: &str,
    root: &Path,
    src: &Path,
) -> Vec<String> {
    let text =
        std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("read {}: {e}", doc.display()));
    let mut lines = text
        .lines()
        .skip_while(|l| !(l.starts_with('#') && l.contains(heading)));
    let Some(first) = lines.next() else {
        return vec![format!(
            "{}: no heading contains `{heading}`",
            doc.display()
        )];
    };
    let level = first.chars().take_while(|c| *c == '#').count();
    let body: Vec<&str> = lines
        .take_while(|l| {
            !(l.starts_with('#') && l.chars().take_while(|c| *c == '#').count() <= level)
        })
        .collect();
    map_violations(doc, &body.join("\n"), root, src)
}

/// Panics listing what is wrong with one section's code map.
pub fn assert_code_map_section(doc: &Path, heading: &str, root: &Path, src: &Path) {
    let v = code_map_section_violations(doc, heading, root, src);
    assert!(v.is_empty(), "code map out of date:\n{}", v.join("\n"));
}

/// Checks the code spans of `text`; a path is looked up under `root`, `src`,
/// the crate folder above `src` and the folder above `root`.
fn map_violations(doc: &Path, text: &str, root: &Path, src: &Path) -> Vec<String> {
    let spans = code_spans(text);
    let bases: Vec<&Path> = [Some(root), Some(src), src.parent(), root.parent()]
        .into_iter()
        .flatten()
        .collect();
    let mut out = Vec::new();
    for span in spans.iter().map(|s| s.trim()).filter(|s| names_a_path(s)) {
        let rel = span.split(':').next().unwrap_or(span);
        // A bullet under `server/` may name `cmd/` or `node.rs` alone:
        // then any folder of the crate may hold it.
        let found = bases.iter().any(|base| base.join(rel).exists())
            || exists_below(src.parent().unwrap_or(src), rel);
        if !found {
            out.push(format!(
                "{}: names `{rel}`, which does not exist",
                doc.display()
            ));
        }
    }
    let entries = std::fs::read_dir(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs") || !n.contains('.'))
        .filter(|n| n != "lib.rs" && n != "main.rs")
        .collect();
    names.sort();
    for name in names {
        let is_dir = src.join(&name).is_dir();
        let stem = name.trim_end_matches(".rs");
        // A module `x.rs` beside a folder `x/` is one module; named once is enough.
        let mentioned = spans.iter().any(|s| {
            let s = s.trim().trim_end_matches('/');
            let last = s.rsplit('/').next().unwrap_or(s);
            last == name || last == stem || (is_dir && last.trim_end_matches(".rs") == stem)
        });
        if !mentioned {
            let shown = if is_dir {
                format!("{name}/")
            } else {
                name.clone()
            };
            out.push(format!(
                "{}: the module `{shown}` of {} is not in the code map",
                doc.display(),
                src.display()
            ));
        }
    }
    out
}

/// Whether `dir` or a folder below it holds `rel`.
fn exists_below(dir: &Path, rel: &str) -> bool {
    if dir.join(rel).exists() {
        return true;
    }
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .any(|p| p.is_dir() && exists_below(&p, rel))
}

/// Panics listing what is wrong with a code map (see [`code_map_violations`]).
pub fn assert_code_map(doc: &Path, root: &Path, src: &Path) {
    let v = code_map_violations(doc, root, src);
    assert!(v.is_empty(), "code map out of date:\n{}", v.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: &[Layering] = &[
        Layering {
            scope: "",
            layers: &[&["protocol"], &["client"], &["server"]],
        },
        Layering {
            scope: "server",
            layers: &[&["direct"], &["session"], &["cmd"]],
        },
    ];

    fn p(s: &str) -> ModPath {
        s.split("::").map(String::from).collect()
    }

    #[test]
    fn paths_open_groups_and_keep_nesting() {
        assert_eq!(paths_at("a::b::C;"), vec![p("a::b::C")]);
        assert_eq!(paths_at("a::{b, c::d};"), vec![p("a::b"), p("a::c::d")]);
        assert_eq!(paths_at("{x, y::z}"), vec![p("x"), p("y::z")]);
    }

    #[test]
    fn units_stop_where_the_layering_does() {
        assert_eq!(unit_of(L, &p("server::cmd::login")), p("server::cmd"));
        assert_eq!(unit_of(L, &p("server::Node")), p("server"));
        assert_eq!(unit_of(L, &p("client::Client")), p("client"));
    }

    #[test]
    fn upward_and_sideways_uses_are_violations() {
        let session = p("server::session");
        let refs = references(
            &session,
            "use super::cmd::dispatch;\nuse crate::server::Node;",
        );
        let verdicts: Vec<_> = refs
            .iter()
            .map(|r| allowed(L, &session, &unit_of(L, r)))
            .collect();
        assert!(verdicts.iter().all(Result::is_err), "{verdicts:?}");
        let client = p("client");
        assert!(allowed(L, &client, &unit_of(L, &p("server::direct"))).is_err());
        assert!(allowed(L, &client, &p("protocol")).is_ok());
        assert!(
            allowed(L, &p("server"), &p("server::cmd")).is_ok(),
            "a folder uses its children"
        );
        assert!(allowed(L, &p("server::cmd"), &p("server::direct")).is_ok());
        assert!(
            allowed(L, &p("nowhere"), &p("protocol")).is_err(),
            "unknown modules are named"
        );
    }

    #[test]
    fn a_cycle_in_a_tree_is_found() {
        let dir = std::env::temp_dir().join(format!("rtmc-layers-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("server")).unwrap();
        std::fs::write(dir.join("protocol.rs"), "use crate::client::X;\n").unwrap();
        std::fs::write(dir.join("client.rs"), "use crate::protocol::Y;\n").unwrap();
        std::fs::write(dir.join("server/mod.rs"), "mod cmd;\n").unwrap();
        std::fs::write(dir.join("server/cmd.rs"), "use super::session::S;\n").unwrap();
        std::fs::write(
            dir.join("server/session.rs"),
            "use super::cmd::C;\n#[cfg(test)]\nuse super::cmd::T;\n",
        )
        .unwrap();
        let v = layer_violations(&dir, L);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(v.len(), 2, "{v:#?}");
        assert!(v[0].contains("`protocol` uses `client`"), "{v:#?}");
        assert!(
            v[1].contains("`server::session` uses `server::cmd`"),
            "{v:#?}"
        );
    }

    #[test]
    fn a_code_map_with_a_gone_path_or_a_missing_module_fails() {
        let dir = std::env::temp_dir().join(format!("rtmc-codemap-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/report")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "").unwrap();
        std::fs::write(dir.join("src/wire.rs"), "").unwrap();
        std::fs::write(dir.join("src/report/mod.rs"), "").unwrap();
        let doc = dir.join("README.md");
        std::fs::write(
            &doc,
            "- `src/wire.rs` frames\n- `report/` files\n```\n`src/x.rs`\n```\n",
        )
        .unwrap();
        let ok = code_map_violations(&doc, &dir, &dir.join("src"));
        std::fs::write(&doc, "- `src/wire.rs` frames\n- `src/gone.rs` old\n").unwrap();
        let bad = code_map_violations(&doc, &dir, &dir.join("src"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(ok.is_empty(), "{ok:#?}");
        assert_eq!(bad.len(), 2, "{bad:#?}");
        assert!(bad[0].contains("`src/gone.rs`"), "{bad:#?}");
        assert!(bad[1].contains("`report/`"), "{bad:#?}");
    }
}
