//! The layers of `src/`, as docs/architecture.md lists them: a module imports only modules of its
//! own layer or below, and no two modules reach each other through their imports. Read from the
//! code's own `crate::` paths, so a new import that runs back up fails here first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first, parsed from docs/architecture.md's "## Layers" list:
/// `N. name: module, module, ...`.
fn layers() -> Vec<(String, Vec<String>)> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let section = doc.split("\n## Layers\n").nth(1).expect("docs/architecture.md has a \"## Layers\" section");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let (head, modules) = l.strip_prefix(|c: char| c.is_ascii_digit())?.split_once(':')?;
            let name = head.trim_start_matches(['.', ' ']).trim().trim_matches('*').to_string();
            let mods = modules.split(',').map(|m| m.trim().trim_matches('`').trim_end_matches('.').to_string());
            Some((name, mods.filter(|m| !m.is_empty()).collect()))
        })
        .collect()
}

/// Every `.rs` file of `src/`, as (path relative to `src/`, text).
fn sources() -> Vec<(std::path::PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p.strip_prefix(&src).unwrap().to_path_buf(), text));
            }
        }
    }
    out
}

/// Each module of `src/` (a top-level file or folder) with the modules its files name as `crate::x`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in sources().into_iter().filter(|(rel, _)| rel != Path::new("lib.rs")) {
        let module = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        let used = out.entry(module.clone()).or_default();
        for part in text.split("crate::").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                used.insert(name);
            }
        }
    }
    out
}

#[test]
fn no_module_imports_one_above_it_and_none_import_each_other() {
    let layers = layers();
    assert!(layers.len() >= 4, "the layers of docs/architecture.md: {layers:?}");
    let floor: BTreeMap<&str, usize> =
        layers.iter().enumerate().flat_map(|(i, (_, mods))| mods.iter().map(move |m| (m.as_str(), i))).collect();
    let imports = imports();
    for module in imports.keys() {
        assert!(floor.contains_key(module.as_str()), "src/{module} is in no layer of docs/architecture.md");
    }
    let mut upward = Vec::new();
    for (module, used) in &imports {
        for u in used.iter().filter(|u| floor.contains_key(u.as_str())) {
            if floor[u.as_str()] > floor[module.as_str()] {
                upward.push(format!(
                    "{module} ({}) imports {u} ({})",
                    layers[floor[module.as_str()]].0,
                    layers[floor[u.as_str()]].0
                ));
            }
        }
    }
    assert!(upward.is_empty(), "imports that run back up:\n{}", upward.join("\n"));
    // No cycle: a depth-first walk never meets a module still on its path.
    fn visit<'a>(
        m: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            return Some(format!("{} -> {m}", path[i..].join(" -> ")));
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for next in g.get(m).into_iter().flatten() {
            if g.contains_key(next.as_str())
                && let Some(c) = visit(next, g, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in imports.keys() {
        if let Some(cycle) = visit(m, &imports, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {cycle}");
        }
    }
}

/// One place for each idea: every Postgres statement is made by `store::postgres` (unnamed, for
/// poolers), every comparison of a figure with a limit goes through `compare`.
#[test]
fn statements_and_limits_have_one_maker_each() {
    let mut offenders = Vec::new();
    for (rel, text) in sources() {
        let rel = rel.to_string_lossy().into_owned();
        let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        if rel != "store/postgres.rs" && (code.contains("sqlx::query") || code.contains(".persistent(")) {
            offenders.push(format!("{rel}: makes a statement itself (use store::postgres::statement)"));
        }
        if rel != "compare.rs" && code.contains("strip_suffix('%')") {
            offenders.push(format!("{rel}: parses a percentage itself (use compare::limit or compare::share)"));
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
