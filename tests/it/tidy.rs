//! House rules checked by `cargo test`: every source file says why it exists, and the code
//! map in ARCHITECTURE.md names every module.

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let arch = std::fs::read_to_string(format!("{root}ARCHITECTURE.md")).unwrap();
    for dir in ["src", "tests/it"] {
        for e in walkdir::WalkDir::new(format!("{root}{dir}")) {
            let e = e.unwrap();
            if e.path().extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                assert!(text.starts_with("//! "), "{rel} must open with a `//!` line saying why it exists");
                if dir == "src" {
                    let module = rel.trim_end_matches(".rs").trim_end_matches("/mod");
                    let file = e.file_name().to_string_lossy().into_owned();
                    let named = arch.contains(&format!("`{module}"))
                        || arch.contains(&format!("`{rel}`"))
                        || (rel.contains("/topology/") && arch.contains(&format!("`{file}`")));
                    assert!(named, "ARCHITECTURE.md's code map does not name {rel}");
                }
            }
        }
    }
}

/// The source of each module of the library (`src/topology/` as one), without its unit tests
/// and comments.
fn modules() -> std::collections::BTreeMap<String, String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut out = std::collections::BTreeMap::<String, String>::new();
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        if e.path().extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(e.path()).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let code: String =
            code.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
        out.entry(module).or_default().push_str(&code);
    }
    out
}

#[test]
fn nothing_but_fsio_writes_files() {
    let writes = [
        "fs::write",
        "File::create",
        "OpenOptions",
        "create_dir",
        "fs::rename",
        "remove_file",
        "remove_dir",
        "set_permissions",
        "fs::copy",
        "hard_link",
        "os::unix::fs::symlink",
    ];
    for (module, code) in modules() {
        if module == "fsio" {
            continue;
        }
        for w in writes {
            assert!(!code.contains(w), "src/{module} uses {w}: only fsio writes to the file system");
        }
    }
}

#[test]
fn modules_import_each_other_without_a_circle() {
    let modules = modules();
    let names: Vec<String> = modules.keys().cloned().collect();
    let deps: std::collections::BTreeMap<&str, Vec<&str>> = modules
        .iter()
        .filter(|(m, _)| !["main", "lib", "cli"].contains(&m.as_str()))
        .map(|(m, code)| {
            let used: Vec<&str> = names
                .iter()
                .filter(|n| *n != m)
                .filter(|n| {
                    code.contains(&format!("crate::{n}::"))
                        || code.contains(&format!("crate::{n};"))
                        || code.contains(&format!("crate::{{{n}"))
                        || code.contains(&format!("crate::{{self, {n}"))
                        || code.contains(&format!(", {n}::"))
                        || code.contains(&format!("crate::{n}}}"))
                })
                .map(|n| n.as_str())
                .collect();
            (m.as_str(), used)
        })
        .collect();
    // Depth-first search; a module met again on the current path closes a circle.
    fn visit<'a>(
        m: &'a str,
        deps: &std::collections::BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!("modules import each other in a circle: {} -> {m}", path[i..].join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, path, done);
        }
        path.pop();
    }
    let mut done = std::collections::BTreeSet::new();
    for m in deps.keys() {
        visit(m, &deps, &mut Vec::new(), &mut done);
    }
    // The layering this protects: the layout knows no plan, the plan no renderer.
    assert!(!deps["layout"].contains(&"plan"));
    assert!(!deps["plan"].contains(&"render") && !deps["state"].contains(&"plan"));
}
