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
