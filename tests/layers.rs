//! The modules layer one way (docs/architecture.md): value types, the
//! workload, cluster context, rules, policy, decision, what the front ends
//! share, the front ends, serve. This test reads every file under src/ and
//! fails on an import of a module above the importer's layer, or of one
//! front end by another. Code after a file's `#[cfg(test)]` is not
//! checked: tests may reach for fixtures anywhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom to top. A module path is placed by its longest listed prefix.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "values",
        &[
            "duration",
            "error",
            "go_base64",
            "image",
            "log_format",
            "problems",
            "quantity",
            "release",
            "rule_list",
            "tasks",
            "yaml",
        ],
    ),
    ("workload", &["workload", "scaler", "ai"]),
    (
        "cluster context",
        &[
            "ai::merge",
            "catalog",
            "context",
            "exception",
            "gpu",
            "gpu_memory",
            "inference",
            "ownership",
            "placement",
            "prices",
            "provenance",
            "provenance::cosign",
            "provenance::keys",
        ],
    ),
    ("rules", &["rules", "rules::command_line", "rules::serving"]),
    ("policy", &["policy"]),
    ("decision", &["decision"]),
    (
        "shared by the front ends",
        &[
            "load",
            "log_writer",
            "metrics",
            "prices::fetch",
            "provenance::registry",
            "state",
        ],
    ),
    ("front ends", &["check", "cluster", "webhook"]),
    ("serve", &["serve"]),
];

/// Front ends never import one another.
const PEERS: &str = "front ends";

fn layer_of(module: &[String]) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, usize, &'static str)> = None;
    for (rank, (name, prefixes)) in LAYERS.iter().enumerate() {
        for prefix in *prefixes {
            let parts: Vec<&str> = prefix.split("::").collect();
            let matches = parts.len() <= module.len()
                && parts.iter().zip(module).all(|(a, b)| *a == b.as_str());
            if matches && best.is_none_or(|(len, _, _)| parts.len() > len) {
                best = Some((parts.len(), rank, name));
            }
        }
    }
    best.map(|(_, rank, name)| (rank, name))
}

/// `src/rules/zone_spread.rs` → `[rules, zone_spread]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    parts
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b` path the code names, in `use` trees (`use
/// crate::{a::x, b::{y, z}}`) and inline, as module paths.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    paths(code, &[], &[])
}

/// Every module path the code of `module` names, from the crate root:
/// `crate::…`, `super::…`, `self::…` and `child::…` for a module it
/// declares (`mod child;`), which may sit in a higher layer than its parent.
fn paths(code: &str, module: &[String], children: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let parent = &module[..module.len().saturating_sub(1)];
    let mut roots: Vec<(String, Vec<String>)> = vec![
        ("crate::".into(), Vec::new()),
        ("super::".into(), parent.to_vec()),
        ("self::".into(), module.to_vec()),
    ];
    for child in children {
        let mut path = module.to_vec();
        path.push(child.clone());
        roots.push((format!("{child}::"), path));
    }
    for (root, prefix) in &roots {
        let mut rest = code;
        while let Some(at) = rest.find(root.as_str()) {
            let before = rest[..at].chars().last();
            rest = &rest[at + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `waf_admission_crate::`, `a::super::`: not from here
            }
            let mut found = Vec::new();
            tree(rest, Vec::new(), &mut found);
            if found.is_empty() {
                found.push(Vec::new());
            }
            for path in found {
                let mut full = prefix.clone();
                full.extend(path);
                if !full.is_empty() {
                    out.push(full);
                }
            }
        }
    }
    out
}

/// The modules a file declares: `mod x;` and `pub mod x;`.
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// Reads one use tree at `s` under `prefix` (only the module parts matter:
/// lower-case segments).
fn tree(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    tree(&inner[start..i], prefix.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    tree(&inner[start..i], prefix.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let is_module = ident.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && ident != "self";
    if !is_module {
        if !prefix.is_empty() {
            out.push(prefix);
        }
        return;
    }
    let mut path = prefix;
    path.push(ident.clone());
    match s[ident.len()..].strip_prefix("::") {
        Some(next) => tree(next, path, out),
        None => out.push(path),
    }
}

/// Whether `module`'s parent declares it under `#[cfg(test)]`.
fn test_only(src: &Path, module: &[String]) -> bool {
    let Some((name, parent)) = module.split_last() else {
        return false;
    };
    let dir = parent.iter().fold(src.to_path_buf(), |p, m| p.join(m));
    let candidates = if parent.is_empty() {
        vec![src.join("lib.rs"), src.join("main.rs")]
    } else {
        vec![dir.with_extension("rs"), dir.join("mod.rs")]
    };
    let declaration = format!("mod {name};");
    candidates.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.split("#[cfg(test)]")
                .skip(1)
                .any(|after| after.trim_start().starts_with(&declaration))
        })
    })
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    all.sort();
    let mut problems = BTreeSet::new();
    let mut checked = 0;
    for file in &all {
        let module = module_of(&src, file);
        if module.is_empty() || module == ["lib"] || module == ["main"] {
            continue;
        }
        let Some((rank, layer)) = layer_of(&module) else {
            problems.insert(format!(
                "{}: module {} is in no layer; add it to LAYERS here and to docs/architecture.md",
                file.display(),
                module.join("::")
            ));
            continue;
        };
        // A module in its own file that its parent declares only for
        // tests (`#[cfg(test)] mod tests;`) is test code as a whole.
        if test_only(&src, &module) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for path in paths(code, &module, &declared_children(code)) {
            checked += 1;
            let Some((to_rank, to_layer)) = layer_of(&path) else {
                problems.insert(format!(
                    "{}: {} is in no layer",
                    file.display(),
                    path.join("::")
                ));
                continue;
            };
            let peer = layer == PEERS && to_layer == PEERS && path[0] != module[0];
            if to_rank > rank || peer {
                problems.insert(format!(
                    "{} ({layer}) imports {} ({to_layer})",
                    file.display(),
                    path.join("::")
                ));
            }
        }
    }
    assert!(
        checked > 200,
        "only {checked} imports found: is the reader broken?"
    );
    assert!(
        problems.is_empty(),
        "imports against the layers:\n{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_reader_finds_grouped_nested_and_inline_paths() {
    let code = "use crate::{context::{Context, ScalerRef}, policy::compiled::Policy, Error};\n\
                fn f() { crate::webhook::metrics::x(); let _ = my_crate::decision::y; }";
    let found: BTreeSet<String> = crate_paths(code).iter().map(|p| p.join("::")).collect();
    // A function's name stays on its module's path: the longest listed
    // prefix places it all the same.
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["context", "policy::compiled", "webhook::metrics::x"],
    );
    // Relative paths are read from the module that names them, and a
    // parent's own child may sit above it.
    let module = ["provenance".to_owned()];
    let found: BTreeSet<String> = paths(
        "pub use registry::{Auth, Registry};\nuse super::x; use self::keys::KeySet;",
        &module,
        &["registry".to_owned(), "keys".to_owned()],
    )
    .iter()
    .map(|p| p.join("::"))
    .collect();
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["provenance::keys", "provenance::registry", "x"],
    );
    // A rule importing the policy, or the controller the webhook, is caught.
    let rules = layer_of(&["rules".into(), "probes".into()]).unwrap();
    let policy = layer_of(&["policy".into(), "compiled".into()]).unwrap();
    assert!(policy.0 > rules.0);
    let registry = layer_of(&["provenance".into(), "registry".into()]).unwrap();
    let facts = layer_of(&["provenance".into()]).unwrap();
    assert!(registry.0 > facts.0, "the longest prefix places a module");
}
