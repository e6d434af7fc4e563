//! install.sh as shipped in the bundles: shellcheck-clean, verifies before it touches
//! anything, lays out a root exactly as bundle.json says, and a second run changes nothing.

use crate::support::{built, scenarios};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn unpack_to(scenario: &str, member: &str, dir: &Path) -> std::path::PathBuf {
    let b = built(scenario);
    let bytes = &b.build.dist[&format!("{member}.tar.gz")];
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw).unwrap();
    tar::Archive::new(&raw[..]).unpack(dir).unwrap();
    dir.join(member)
}

fn install(bundle: &Path, args: &[&str]) -> Output {
    Command::new("bash").arg(bundle.join("install.sh")).args(args).output().unwrap()
}

/// Every file and folder under `root` with its mode and a digest of its contents.
fn snapshot(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            let body = if e.file_type().is_file() { std::fs::read(e.path()).unwrap() } else { vec![] };
            (e.path().strip_prefix(root).unwrap().display().to_string(), (mode, body))
        })
        .collect()
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn shellcheck_passes_on_every_installer() {
    for scenario in scenarios() {
        let b = built(&scenario);
        for (member, u) in &b.bundles {
            let mut child = Command::new("shellcheck")
                .args(["-s", "bash", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("shellcheck is installed by the test command");
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &u.files["install.sh"].bytes).unwrap();
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{scenario}/{member}: {}", String::from_utf8_lossy(&o.stdout));
        }
    }
}

#[test]
fn root_install_lays_out_exactly_the_bundle_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("five-members-custom-ports", "etcd0", &tmp.path().join("b"));
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("verified 16 files against SHA256SUMS"), "{}", out(&o));

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    let mut expected: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    for f in meta["files"].as_array().unwrap() {
        if let Some(dest) = f["installPath"].as_str() {
            let mode = u32::from_str_radix(f["mode"].as_str().unwrap(), 8).unwrap();
            expected.insert(
                dest.trim_start_matches('/').to_string(),
                (mode, std::fs::read(bundle.join(f["path"].as_str().unwrap())).unwrap()),
            );
        }
    }
    let tree = snapshot(&root);
    let files: BTreeMap<String, (u32, Vec<u8>)> =
        tree.iter().filter(|(p, _)| root.join(p).is_file()).map(|(p, v)| (p.clone(), v.clone())).collect();
    assert_eq!(files, expected, "installed files, modes and bytes are bundle.json's");
    assert_eq!(tree["data/etcd"].0, 0o700, "data dir from the topology, mode 0700");
    assert_eq!(tree["etc/kubernetes/manifests"].0, 0o700);
    assert_eq!(tree["etc/kubernetes/pki/etcd"].0, 0o755);

    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(out(&o).contains("nothing to change"), "{}", out(&o));
    assert_eq!(snapshot(&root), tree);
}

#[test]
fn dry_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", &tmp.path().join("b"));
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let before = snapshot(&root);
    let o = install(&bundle, &["--dry-run", "--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("would install /etc/kubernetes/pki/etcd/ca.key (mode 0600)"), "{}", out(&o));
    assert!(out(&o).contains("nothing changed"));
    assert_eq!(snapshot(&root), before);
}

#[test]
fn refusals_leave_the_root_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let before = snapshot(&root);
    type Spoil = fn(&Path);
    let cases: [(&str, Spoil); 3] = [
        ("does not match SHA256SUMS", |b| {
            let p = b.join("rootfs/etc/kubernetes/manifests/etcd.yaml");
            let mut text = std::fs::read(&p).unwrap();
            text.extend_from_slice(b"# changed\n");
            std::fs::write(p, text).unwrap();
        }),
        ("files not listed in SHA256SUMS: rootfs/etc/evil", |b| {
            std::fs::write(b.join("rootfs/etc/evil"), "x").unwrap()
        }),
        ("does not match SHA256SUMS", |b| {
            std::fs::remove_file(b.join("rootfs/etc/kubernetes/pki/etcd/peer.key")).unwrap()
        }),
    ];
    for (i, (reason, spoil)) in cases.into_iter().enumerate() {
        let bundle = unpack_to("guide-v1.34", "infra1", &tmp.path().join(format!("b{i}")));
        spoil(&bundle);
        let o = install(&bundle, &["--root", root.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", out(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(reason), "{}", out(&o));
        assert_eq!(snapshot(&root), before, "case {i} changed the root");
    }
    let bundle = unpack_to("guide-v1.34", "infra2", &tmp.path().join("ok"));
    let o = install(&bundle, &["--bogus"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("unknown option '--bogus'"));
    let o = install(&bundle, &["--help"]);
    assert!(o.status.success() && out(&o).contains("--dry-run"));
}
