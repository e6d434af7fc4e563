//! Bad topologies: every file under tests/fixtures/invalid/ is validated and its report
//! snapshotted. Every error must carry a line and a fix; files named `warnings-*` must
//! pass with warnings only.

use crate::support::fixtures;
use etcdpack::diag::Severity;
use etcdpack::{fsio, topology};

fn check(name: &str) -> (bool, etcdpack::diag::Diagnostics) {
    let dir = fixtures().join("invalid");
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    let (t, d) = topology::parse(name, &text, &fsio::DirFiles(dir));
    (t.is_some(), d)
}

#[test]
fn every_invalid_topology_is_reported_in_full() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 20);
    for name in names {
        let (valid, d) = check(&name);
        let expect_valid = name.starts_with("warnings-");
        assert_eq!(valid, expect_valid, "{name}:\n{d}");
        assert!(!d.problems.is_empty(), "{name}: expected problems");
        for p in &d.problems {
            assert!(!p.help.is_empty(), "{name}: {} has no help", p.message);
            if name != "empty.yaml" {
                assert!(p.line.is_some(), "{name}: {} has no line", p.message);
            }
            if expect_valid {
                assert_eq!(p.severity, Severity::Warning, "{name}: {}", p.message);
            }
        }
        let mut s = insta::Settings::clone_current();
        s.set_snapshot_path("../snapshots");
        s.set_prepend_module_to_snapshot(false);
        s.bind(|| {
            insta::assert_snapshot!(format!("invalid__{}", name.trim_end_matches(".yaml")), d.to_string())
        });
    }
}

#[test]
fn all_problems_of_a_file_come_at_once() {
    let (_, d) = check("addresses.yaml");
    // six bad members (x, hostname, brackets, unspecified, duplicate, port) in one report
    assert_eq!(d.error_count(), 6, "{d}");
    let (_, d) = check("names.yaml");
    assert_eq!(d.error_count(), 5, "{d}");
    let paths: Vec<&str> = d.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"members[2].name") && paths.contains(&"cluster"), "{paths:?}");
    // `control-plane` names the control-plane bundle: no member may take it.
    let reserved = d.problems.iter().find(|p| p.path == "members[5].name").unwrap();
    assert!(reserved.message.contains("reserved for the control-plane bundle"), "{d}");
}

#[test]
fn locations_point_at_the_offending_node() {
    let (_, d) = check("unknown-keys.yaml");
    let adress = d.problems.iter().find(|p| p.path == "members[0].adress").unwrap();
    assert_eq!((adress.line, adress.column), (Some(7), Some(21)));
    assert!(adress.help.contains("did you mean `address`"), "{}", adress.help);
}
