//! install.sh as shipped in the bundles: shellcheck-clean, verifies before it touches
//! anything, lays out a root exactly as bundle.json says, and a second run changes nothing.

use crate::support::{built, scenarios};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn unpack_to(scenario: &str, member: &str, dir: &Path) -> std::path::PathBuf {
    untar(&built(scenario).build.dist, member, dir)
}

/// Unpacks `<member>.tar.gz` of `dist` into `dir` and returns the bundle folder.
fn untar(dist: &BTreeMap<String, Vec<u8>>, member: &str, dir: &Path) -> std::path::PathBuf {
    let bytes = &dist[&format!("{member}.tar.gz")];
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

/// What a root holds after installing `bundle`: every file bundle.json gives an install path,
/// with its mode and bytes, and bundle.json itself in `record_dir` (relative to the root).
fn expected_root(bundle: &Path, record_dir: &str) -> BTreeMap<String, (u32, Vec<u8>)> {
    let json = std::fs::read(bundle.join("bundle.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let mut expected = BTreeMap::new();
    for f in meta["files"].as_array().unwrap() {
        if let Some(dest) = f["installPath"].as_str() {
            let mode = u32::from_str_radix(f["mode"].as_str().unwrap(), 8).unwrap();
            let body = std::fs::read(bundle.join(f["path"].as_str().unwrap())).unwrap();
            expected.insert(dest.trim_start_matches('/').to_string(), (mode, body));
        }
    }
    expected.insert(format!("{record_dir}/bundle.json"), (0o644, json));
    // A first install pins the key that signed the bundle.
    expected.insert(
        "etc/etcdpack/signing-key.pub".into(),
        (0o644, std::fs::read(bundle.join("signing-key.pub")).unwrap()),
    );
    expected
}

/// The files of `tree` (a snapshot of `root`) outside install.sh's backups.
fn installed_files(root: &Path, tree: &BTreeMap<String, (u32, Vec<u8>)>) -> BTreeMap<String, (u32, Vec<u8>)> {
    tree.iter()
        .filter(|(p, _)| root.join(p).is_file() && !p.starts_with("var/lib/etcdpack/"))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

/// shellcheck's verdict on a bash script.
fn shellcheck(script: &[u8]) -> Output {
    let mut child = Command::new("shellcheck")
        .args(["-s", "bash", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("shellcheck is installed by the test command");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn shellcheck_passes_on_every_installer() {
    for scenario in scenarios() {
        let b = built(&scenario);
        for (member, u) in b.every_bundle() {
            let o = shellcheck(&u.files["install.sh"].bytes);
            assert!(o.status.success(), "{scenario}/{member}: {}", String::from_utf8_lossy(&o.stdout));
        }
    }
    // Join and leave bundles (their installers hold the membership steps), in both runtimes.
    for runtime in ["static-pod", "systemd"] {
        let dir = tempfile::tempdir().unwrap();
        let topology = |names: &[&str]| {
            let mut t = format!(
                "cluster: c\nkubernetesVersion: v1.33.6\npki: {{ keyAlgorithm: ECDSA-P256 }}\netcd: {{ runtime: {runtime} }}\nmembers:\n"
            );
            for (i, n) in names.iter().enumerate() {
                t.push_str(&format!("  - {{ name: {n}, address: 10.0.0.{} }}\n", 6 + i));
            }
            t
        };
        let mut last = None;
        for names in [&["a", "b", "c"][..], &["a", "b", "c", "d"], &["a", "b", "c"]] {
            let b =
                crate::support::build_in(dir.path(), &topology(names), 7, crate::support::NOW, None).unwrap();
            if let Some(bytes) = b.dist.get("d.tar.gz") {
                let u = etcdpack::unpack::unpack(bytes).unwrap();
                let o = shellcheck(&u.files["install.sh"].bytes);
                assert!(o.status.success(), "{runtime}/d: {}", String::from_utf8_lossy(&o.stdout));
            }
            last = Some(b);
        }
        let kinds: Vec<&str> =
            last.iter().flat_map(|b| b.plan.leaving.iter().map(|l| l.name.as_str())).collect();
        assert_eq!(kinds, ["d"], "the last build leaves d");
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
    assert!(out(&o).contains("verified 24 files against SHA256SUMS"), "{}", out(&o));

    let expected = expected_root(&bundle, "etc/etcdpack");
    let tree = snapshot(&root);
    let files = installed_files(&root, &tree);
    assert_eq!(tree["var/lib/etcdpack/backups"].0, 0o700);
    assert_same(&files, &expected, "installed files, modes and bytes are bundle.json's");
    assert_eq!(tree["data/etcd"].0, 0o700, "data dir from the topology, mode 0700");
    assert_eq!(tree["etc/kubernetes/manifests"].0, 0o700);
    assert_eq!(tree["etc/kubernetes/pki/etcd"].0, 0o755);

    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(out(&o).contains("nothing to change"), "{}", out(&o));
    assert_same(&snapshot(&root), &tree, "second run");
}

/// The control-plane bundle beside a member's on one root: its own record and backups, the
/// three files kube-apiserver needs, no restart; a changed client certificate is named with
/// the kube-apiserver restart it needs, and its rollback leaves the member's install alone.
#[test]
fn the_control_plane_bundle_installs_its_three_files_and_keeps_its_own_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = root.to_str().unwrap();
    let cp = unpack_to("guide-v1.34", "control-plane", &tmp.path().join("b"));
    let o = install(&cp, &["--root", r]);
    assert!(o.status.success(), "{}", out(&o));
    let said = out(&o);
    assert!(said.contains("verified 8 files against SHA256SUMS"), "{said}");
    assert!(
        said.contains("next: merge the etcd section of /etc/etcdpack/control-plane/etcd-external.yaml"),
        "{said}"
    );
    assert!(!said.contains("kubelet"), "{said}");
    let expected = expected_root(&cp, "etc/etcdpack/control-plane");
    let tree = snapshot(&root);
    let files = installed_files(&root, &tree);
    assert_same(&files, &expected, "the control plane's files, modes and bytes");
    assert_eq!(tree["var/lib/etcdpack/control-plane-backups"].0, 0o700);
    let o = install(&cp, &["--root", r]);
    assert!(
        out(&o).contains("nothing to change: the control-plane files are already installed"),
        "{}",
        out(&o)
    );

    // An etcd member on the same root, then another build's control-plane bundle (another
    // client certificate) over the first.
    let member = unpack_to("guide-v1.34", "infra0", &tmp.path().join("m"));
    assert!(install(&member, &["--root", r, "--no-restart", "--force"]).status.success());
    let with_member = snapshot(&root);
    let other = unpack_to("ecdsa-p384-v1.36", "control-plane", &tmp.path().join("o"));
    let o = install(&other, &["--root", r]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("restart kube-apiserver"), "{}", out(&o));
    let crt = "etc/kubernetes/pki/apiserver-etcd-client.crt";
    assert_eq!(std::fs::read(root.join(crt)).unwrap(), bundle_file(&other, &format!("rootfs/{crt}")));
    // Its rollback restores the first control-plane install and nothing of the member's.
    let o = install(&other, &["--root", r, "--rollback"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("restart kube-apiserver if it runs with the certificate that was rolled back"),
        "{}",
        out(&o)
    );
    let no_backups = |t: BTreeMap<String, (u32, Vec<u8>)>| -> BTreeMap<String, (u32, Vec<u8>)> {
        t.into_iter().filter(|(p, _)| !p.starts_with("var/lib/etcdpack")).collect()
    };
    assert_same(&no_backups(snapshot(&root)), &no_backups(with_member), "after rollback");
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
    assert_same(&snapshot(&root), &before, "dry run");
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
        assert_same(&snapshot(&root), &before, &format!("case {i}"));
    }
    let bundle = unpack_to("guide-v1.34", "infra2", &tmp.path().join("ok"));
    let o = install(&bundle, &["--bogus"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("unknown option '--bogus'"));
    let o = install(&bundle, &["--help"]);
    assert!(o.status.success() && out(&o).contains("--dry-run"));
}

// ---- On a simulated host (network + mount namespaces, see `host`) ----

use crate::host::{Host, out as host_out};

type Tree = BTreeMap<String, (u32, u32, u32, Vec<u8>)>;

/// Compares two trees and names only the paths that differ.
fn assert_same<V: PartialEq>(got: &BTreeMap<String, V>, want: &BTreeMap<String, V>, ctx: &str) {
    let keys: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    let diff: Vec<&String> = keys.into_iter().filter(|k| got.get(*k) != want.get(*k)).collect();
    assert!(diff.is_empty(), "{ctx}: these paths differ: {diff:?}");
}

/// The host's changes, without install.sh's own backup folder.
fn outside_backups(t: &Tree) -> Tree {
    t.iter()
        .filter(|(p, _)| !p.starts_with("/var/lib/etcdpack"))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

fn bundle_file(bundle: &Path, path: &str) -> Vec<u8> {
    std::fs::read(bundle.join(path)).unwrap()
}

/// A host on which `bundle`'s member was installed and has run: its record and a data dir.
fn installed_before(h: &Host, bundle: &Path) {
    h.kubelet();
    h.put("/var/lib/etcd/member/snap/db", "data", 0o600);
    for record in ["bundle.json", "bundle.env"] {
        h.put(
            &format!("/etc/etcdpack/{record}"),
            &String::from_utf8(bundle_file(bundle, record)).unwrap(),
            0o644,
        );
    }
}

fn readable(path: &Path) {
    let mut p = Some(path);
    while let Some(dir) = p {
        if dir == Path::new("/tmp") || dir.as_os_str().is_empty() {
            break;
        }
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        p = dir.parent();
    }
}

#[test]
fn host_install_backs_up_records_restarts_and_is_idempotent() {
    crate::needs_root!();
    let host = Host::new("a", "10.0.0.6");
    host.kubelet();
    host.put("/etc/kubernetes/manifests/etcd.yaml", "old manifest\n", 0o644);
    // node_exporter's textfile folder, with the metric an earlier release wrote there as root.
    host.put("/var/lib/node_exporter/textfile_collector/etcdpack-expiry.prom", "# old\n", 0o644);
    let before = host.changes();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());

    // The old manifest would be replaced and no other member runs here: --force.
    let o = host.install(&bundle, &["--force"]);
    assert!(o.status.success(), "{}", host_out(&o));
    let text = host_out(&o);
    for step in [
        "verified 24 files",
        "preflight passed",
        "installed /etc/kubernetes/pki/etcd/ca.key (mode 0600)",
        "restarted the kubelet",
        "done: 22 file(s) changed",
    ] {
        assert!(text.contains(step), "missing `{step}` in:\n{text}");
    }
    assert_eq!(
        host.log(),
        "systemctl daemon-reload\nsystemctl restart kubelet\nsystemctl enable --now etcdpack-expiry.timer\nsystemctl enable --now etcdpack-snapshot.timer\n"
    );
    let t = host.changes();
    assert_eq!(t["/etc/etcdpack/bundle.json"], (0o644, 0, 0, bundle_file(&bundle, "bundle.json")));
    assert_eq!(t["/etc/etcdpack/kubeadmcfg.yaml"], (0o644, 0, 0, bundle_file(&bundle, "kubeadmcfg.yaml")));
    assert_eq!(t["/etc/kubernetes/manifests/etcd.yaml"].0, 0o600);
    assert_eq!(t["/usr/local/sbin/etcdpack-expiry"].0, 0o755, "the expiry check lands on the simulated host");
    // The unprivileged check's metric, under /run, is linked into node_exporter's folder.
    let link = host.upper("/var/lib/node_exporter/textfile_collector/etcdpack-expiry.prom");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/run/etcdpack-expiry/etcdpack-expiry.prom"));
    assert!(text.contains("linked /var/lib/node_exporter/textfile_collector/etcdpack-expiry.prom"), "{text}");
    assert_eq!(t["/var/lib/etcd"].0, 0o700);
    let backups: Vec<&String> = t.keys().filter(|p| p.ends_with("/changes")).collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = backups[0].trim_end_matches("/changes").to_string();
    assert_eq!(t[&backup].0, 0o700, "backups hold keys: root only");
    let changes = String::from_utf8(t[backups[0]].3.clone()).unwrap();
    assert!(changes.contains("replaced\t/etc/kubernetes/manifests/etcd.yaml\n"), "{changes}");
    assert!(changes.contains("added\t/etc/kubernetes/pki/etcd/ca.key\n"), "{changes}");
    assert_eq!(t[&format!("{backup}/files/etc/kubernetes/manifests/etcd.yaml")].3, b"old manifest\n");

    // Second run: nothing changes and nothing restarts.
    let o = host.install(&bundle, &[]);
    assert!(o.status.success());
    assert!(host_out(&o).contains("nothing to change"), "{}", host_out(&o));
    assert_same(&host.changes(), &t, "second run");
    assert_eq!(host.log().lines().count(), 4);

    // Rollback: the host is as it was before the install, the old manifest byte for byte.
    let o = host.install(&bundle, &["--rollback"]);
    assert!(o.status.success(), "{}", host_out(&o));
    assert_same(&outside_backups(&host.changes()), &outside_backups(&before), "after rollback");
    // The timers the install added are disabled before the kubelet restarts.
    assert!(
        host.log().ends_with("systemctl disable --now etcdpack-expiry.timer\nsystemctl disable --now etcdpack-snapshot.timer\nsystemctl daemon-reload\nsystemctl restart kubelet\n"),
        "{}",
        host.log()
    );
    let o = host.install(&bundle, &["--rollback"]);
    assert_eq!(o.status.code(), Some(1), "one backup, one rollback: {}", host_out(&o));
    assert!(host_out(&o).contains("nothing to roll back"), "{}", host_out(&o));
}

#[test]
fn rollback_restores_the_previous_install_byte_for_byte() {
    crate::needs_root!();
    let host = Host::new("b", "10.0.0.6");
    host.kubelet();
    let tmp = tempfile::tempdir().unwrap();
    let first = unpack_to("guide-v1.34", "infra0", &tmp.path().join("a"));
    let second = unpack_to("ecdsa-p384-v1.36", "infra0", &tmp.path().join("b"));
    assert!(host.install(&first, &["--no-restart"]).status.success());
    let after_first = outside_backups(&host.changes());
    // The second replaces the manifest, and no other member answers: the quorum guard
    // refuses, with the host untouched; --force installs it.
    let o = host.install(&second, &["--no-restart"]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(
        host_out(&o).contains("quorum guard: only 0 of the 2 other members answered healthy (not healthy: infra1 infra2); a cluster of 3 needs 2 up"),
        "{}",
        host_out(&o)
    );
    assert_same(&outside_backups(&host.changes()), &after_first, "after the guard's refusal");
    let o = host.install(&second, &["--no-restart", "--force"]);
    assert!(o.status.success(), "{}", host_out(&o));
    assert!(host_out(&o).contains("installed /etc/kubernetes/pki/etcd/server.key"));
    assert!(host_out(&o).contains("quorum guard skipped because of --force"), "{}", host_out(&o));
    assert_ne!(outside_backups(&host.changes()), after_first);
    let o = host.install(&second, &["--rollback", "--no-restart"]);
    assert!(o.status.success(), "{}", host_out(&o));
    assert_same(
        &outside_backups(&host.changes()),
        &after_first,
        "files, modes and owners of the first install",
    );
    assert_eq!(host.log(), "", "--no-restart restarts nothing");
}

#[test]
fn a_failure_while_installing_restores_the_backup() {
    crate::needs_root!();
    let host = Host::new("c", "10.0.0.6");
    host.kubelet();
    host.put("/etc/kubernetes/pki/etcd/server.key", "old key\n", 0o600);
    let before = host.changes();
    // chown fails on one file, midway through the install.
    host.fake("chown", "case \"$2\" in *peer.key*) echo 'chown: simulated failure' >&2; exit 1;; esac\nexec /bin/chown \"$@\"");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());
    let o = host.install(&bundle, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(host_out(&o).contains("failed and was undone"), "{}", host_out(&o));
    assert_same(&outside_backups(&host.changes()), &outside_backups(&before), "after a failed install");
    assert_eq!(host.log(), "", "no restart after a failed install");
}

#[test]
fn host_dry_run_changes_nothing() {
    crate::needs_root!();
    let host = Host::new("d", "10.0.0.6");
    host.kubelet();
    let before = host.changes();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());
    let o = host.install(&bundle, &["--dry-run"]);
    assert!(o.status.success(), "{}", host_out(&o));
    assert!(host_out(&o).contains("would run: systemctl restart kubelet"), "{}", host_out(&o));
    assert!(host_out(&o).contains("would install /etc/etcdpack/bundle.json"));
    assert_same(&host.changes(), &before, "dry run");
    assert_eq!(host.log(), "");
}

#[test]
fn host_preflight_refusals_leave_the_host_untouched() {
    crate::needs_root!();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", &tmp.path().join("b"));
    let other = unpack_to("ecdsa-p384-v1.36", "infra1", &tmp.path().join("o"));
    let sibling = unpack_to("guide-v1.34", "infra1", &tmp.path().join("s"));
    readable(&bundle);
    type Setup = Box<dyn Fn(&Host)>;
    let cases: Vec<(&str, &str, Setup, Option<u32>)> = vec![
        ("r1", "must run as root", Box::new(|h: &Host| h.kubelet()), Some(65534)),
        ("r2", "10.0.0.6 is not on any local interface", Box::new(|h: &Host| h.kubelet()), None),
        (
            "r3",
            "the kubelet binary /usr/bin/kubelet named in the drop-in is missing",
            Box::new(|_: &Host| {}),
            None,
        ),
        (
            "r4",
            "holds member infra1 of cluster p384 (another CA)",
            Box::new(move |h: &Host| installed_before(h, &other)),
            None,
        ),
        (
            "r5",
            "holds member infra1 of prod-etcd, not infra0",
            Box::new(move |h: &Host| installed_before(h, &sibling)),
            None,
        ),
        (
            "r6",
            "already holds an etcd member that etcdpack did not install",
            Box::new(|h: &Host| {
                h.kubelet();
                h.put("/var/lib/etcd/member/wal/0.wal", "data", 0o600);
            }),
            None,
        ),
    ];
    for (tag, reason, setup, user) in cases {
        let address = if tag == "r2" { "10.0.0.99" } else { "10.0.0.6" };
        let host = Host::new(tag, address);
        setup(&host);
        let before = host.changes();
        let o = host.install_as(&bundle, &[], user);
        assert_eq!(o.status.code(), Some(1), "{tag}: {}", host_out(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        // A host with no pinned key says once that its first install trusts the bundle's.
        let err: String = err
            .lines()
            .filter(|l| !l.contains("no signing key is pinned"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(err.contains(reason), "{tag}: expected `{reason}` in:\n{err}");
        if tag == "r1" {
            // Said before the bundle is read at all: its keys are root's.
            assert_eq!(err.lines().count(), 1, "{tag}: {err}");
        } else {
            assert_eq!(err.lines().count(), 2, "{tag}: one line for the reason, one to sum up: {err}");
            assert!(
                err.ends_with("refused (1 problem(s) above); nothing on the host changed\n"),
                "{tag}: {err}"
            );
        }
        assert_same(&host.changes(), &before, tag);
        assert_eq!(host.log(), "", "{tag}");
        if tag == "r2" {
            let o = host.install(&bundle, &["--force", "--no-restart"]);
            assert!(o.status.success(), "--force goes past the address check: {}", host_out(&o));
        }
    }
}

#[test]
fn a_port_held_by_something_else_is_refused() {
    crate::needs_root!();
    let host = Host::new("p", "10.0.0.6");
    host.kubelet();
    let data = tempfile::tempdir().unwrap();
    // Another etcd (a different member) holds the client port.
    let mut intruder = Command::new("ip")
        .args(["netns", "exec", &host.ns, "etcd", "--name", "intruder"])
        .arg(format!("--data-dir={}", data.path().join("d").display()))
        .args([
            "--listen-client-urls=http://10.0.0.6:2379",
            "--advertise-client-urls=http://10.0.0.6:2379",
            "--listen-peer-urls=http://127.0.0.1:22380",
            "--initial-advertise-peer-urls=http://127.0.0.1:22380",
            "--initial-cluster=intruder=http://127.0.0.1:22380",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let listening = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let o = Command::new("ip")
            .args(["netns", "exec", &host.ns, "ss", "-Hltn", "sport = :2379"])
            .output()
            .unwrap();
        !o.stdout.is_empty()
    });
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());
    let before = host.changes();
    let o = host.install(&bundle, &[]);
    let _ = intruder.kill();
    let _ = intruder.wait();
    assert!(listening, "the intruder never listened");
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("port 2379 is taken by etcd (pid"),
        "{}",
        host_out(&o)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not by etcd member infra0"), "{}", host_out(&o));
    assert_same(&host.changes(), &before, "port refusal");
}

#[test]
fn the_image_archive_is_imported_once() {
    crate::needs_root!();
    let host = Host::new("i", "10.0.0.6");
    host.kubelet();
    host.fake(
        "ctr",
        "echo \"ctr $*\" >> \"$FAKE_LOG\"\n\
         if [ \"$3 $4\" = 'images ls' ]; then [ -f \"$FAKE_LOG.imported\" ] && echo registry.airgap.example:5000/k8s/etcd:3.6.5-0; exit 0; fi\n\
         if [ \"$3 $4\" = 'images import' ]; then [ -f \"$5\" ] && touch \"$FAKE_LOG.imported\"; fi",
    );
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("image-archive-v1.34", "infra0", tmp.path());
    let o = host.install(&bundle, &["--no-restart"]);
    assert!(o.status.success(), "{}", host_out(&o));
    assert!(
        host_out(&o).contains("imported registry.airgap.example:5000/k8s/etcd:3.6.5-0 with ctr"),
        "{}",
        host_out(&o)
    );
    assert!(host.log().contains("ctr -n k8s.io images import images/etcd-3.6.5-0.tar\n"), "{}", host.log());
    let o = host.install(&bundle, &["--no-restart"]);
    assert!(host_out(&o).contains("nothing to change"), "{}", host_out(&o));
    assert_eq!(host.log().matches("images import").count(), 1);
}

#[test]
fn without_ctr_the_image_goes_through_nerdctl_or_is_refused() {
    crate::needs_root!();
    let on_machine = |t: &str| {
        Command::new("sh").args(["-c", &format!("command -v {t}")]).output().unwrap().status.success()
    };
    assert!(
        !on_machine("ctr") && !on_machine("nerdctl"),
        "this test simulates hosts without ctr and nerdctl; the test machine must not have them"
    );
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("image-archive-v1.34", "infra0", tmp.path());
    let host = Host::new("n", "10.0.0.6");
    host.kubelet();
    let before = host.changes();
    let o = host.install(&bundle, &["--no-restart"]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no ctr or nerdctl to import images/etcd-3.6.5-0.tar")
    );
    assert_same(&host.changes(), &before, "no import tool");
    host.fake("nerdctl", "echo \"nerdctl $*\" >> \"$FAKE_LOG\"; [ \"$3\" = load ] || exit 1");
    let o = host.install(&bundle, &["--no-restart"]);
    assert!(o.status.success(), "{}", host_out(&o));
    assert!(host.log().contains("nerdctl -n k8s.io load -i images/etcd-3.6.5-0.tar\n"), "{}", host.log());
}

#[test]
fn an_interrupted_install_restores_the_backup() {
    crate::needs_root!();
    let host = Host::new("t", "10.0.0.6");
    host.kubelet();
    host.put("/etc/kubernetes/pki/etcd/server.key", "old key\n", 0o600);
    let before = host.changes();
    // The operator's Ctrl-C (here a TERM) arrives while the files are being replaced.
    host.fake(
        "chown",
        "case \"$2\" in *peer.key*) kill -TERM \"$PPID\"; sleep 1;; esac\nexec /bin/chown \"$@\"",
    );
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());
    let o = host.install(&bundle, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(host_out(&o).contains("failed and was undone"), "{}", host_out(&o));
    assert_same(&outside_backups(&host.changes()), &outside_backups(&before), "after an interruption");
    assert_eq!(host.log(), "");
}

#[test]
fn every_preflight_refusal_is_reported_at_once() {
    crate::needs_root!();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());
    // Wrong address and no kubelet: both said in one run.
    let host = Host::new("m", "10.0.0.99");
    let before = host.changes();
    let o = host.install(&bundle, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("10.0.0.6 is not on any local interface"), "{err}");
    assert!(err.contains("the kubelet binary /usr/bin/kubelet named in the drop-in is missing"), "{err}");
    assert!(err.contains("refused (2 problem(s) above)"), "{err}");
    assert_same(&host.changes(), &before, "two refusals");
}

#[test]
fn a_failed_kubelet_restart_is_said_and_finished_by_the_next_run() {
    crate::needs_root!();
    let host = Host::new("k", "10.0.0.6");
    host.kubelet();
    host.fake("systemctl", "echo \"systemctl $*\" >> \"$FAKE_LOG\"; [ \"$1\" != restart ]");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());
    let o = host.install(&bundle, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", host_out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the files are installed, but restarting the kubelet failed"), "{err}");
    assert!(err.contains("run install.sh again"), "{err}");
    let changed = host.changes();
    assert!(changed.contains_key("/etc/kubernetes/manifests/etcd.yaml"));
    assert!(changed.contains_key("/etc/etcdpack/restart-pending"));
    // The kubelet is fixed; the next run has no file to change but still restarts it.
    host.fake("systemctl", "echo \"systemctl $*\" >> \"$FAKE_LOG\"");
    let o = host.install(&bundle, &[]);
    assert!(o.status.success(), "{}", host_out(&o));
    assert!(
        host_out(&o).contains("nothing to change")
            && host_out(&o).contains("restart of the kubelet is pending")
    );
    assert!(
        host.log().ends_with("systemctl daemon-reload\nsystemctl restart kubelet\nsystemctl enable --now etcdpack-expiry.timer\nsystemctl enable --now etcdpack-snapshot.timer\n"),
        "{}",
        host.log()
    );
    assert!(!host.changes().contains_key("/etc/etcdpack/restart-pending"));
    // And a third run has nothing left to do: no restart.
    let restarts = host.log().lines().count();
    let o = host.install(&bundle, &[]);
    assert!(o.status.success());
    assert_eq!(host.log().lines().count(), restarts);
}

#[test]
fn rollback_on_a_host_never_installed_says_so() {
    crate::needs_root!();
    let host = Host::new("z", "10.0.0.6");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", tmp.path());
    let before = host.changes();
    let o = host.install(&bundle, &["--rollback"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        host_out(&o).contains("nothing to roll back: no install by etcdpack is recorded"),
        "{}",
        host_out(&o)
    );
    assert_same(&host.changes(), &before, "rollback of nothing");
}

#[test]
fn dry_run_needs_no_root_and_shows_each_folder_once_with_the_mode_it_gets() {
    crate::needs_root!();
    let host = Host::new("y", "10.0.0.6");
    host.kubelet();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", &tmp.path().join("b"));
    readable(&bundle);
    // A user who unpacked the bundle owns its files.
    let o = Command::new("chown").args(["-R", "65534:65534"]).arg(&bundle).output().unwrap();
    assert!(o.status.success());
    let before = host.changes();
    let o = host.install_as(&bundle, &["--dry-run"], Some(65534));
    assert!(o.status.success(), "{}", host_out(&o));
    assert_same(&host.changes(), &before, "dry run as nobody");
    let text = host_out(&o);
    let folders: Vec<&str> = text.lines().filter(|l| l.contains("would create folder")).collect();
    let mut unique = folders.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(folders.len(), unique.len(), "{text}");
    assert!(text.contains("would create folder /etc/kubernetes (mode 0755)"), "{text}");
    assert!(text.contains("would create folder /etc/kubernetes/manifests (mode 0700)"), "{text}");
    assert!(text.contains("would create folder /var/lib/etcd (mode 0700)"), "{text}");
    // The real run creates exactly those modes.
    let o = host.install(&bundle, &["--no-restart"]);
    assert!(o.status.success(), "{}", host_out(&o));
    let t = host.changes();
    for line in folders {
        let (path, mode) = line.split_once("would create folder ").unwrap().1.split_once(" (mode ").unwrap();
        let mode = u32::from_str_radix(mode.trim_end_matches(')'), 8).unwrap();
        assert_eq!(t[path].0, mode, "{path}");
    }
    // A dry run into a root that does not exist creates nothing.
    let missing = tmp.path().join("no/such/root");
    let o = install(&bundle, &["--dry-run", "--root", missing.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(!tmp.path().join("no").exists());
}

#[test]
fn a_root_with_a_symlink_that_leaves_it_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", &tmp.path().join("b"));
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for (link, target) in [("etc/kubernetes", "etc/kubernetes"), ("var/lib", "var/lib")] {
        let root = tmp.path().join(format!("root-{}", link.replace('/', "-")));
        std::fs::create_dir_all(root.join(link).parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(outside.join(target), root.join(link)).unwrap();
        std::fs::create_dir_all(outside.join(target)).unwrap();
        let o = install(&bundle, &["--root", root.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", out(&o));
        assert!(out(&o).contains(&format!("the symlink /{link} -> ")), "{}", out(&o));
        assert!(out(&o).contains("outside --root"), "{}", out(&o));
        let written: Vec<_> = walkdir::WalkDir::new(&outside)
            .min_depth(1)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .collect();
        assert!(written.is_empty(), "written outside the root: {written:?}");
    }
    // A link that stays inside the root is fine.
    let root = tmp.path().join("root-inside");
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("../data", root.join("etc/kubernetes")).unwrap();
    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(root.join("data/manifests/etcd.yaml").is_file());
}

#[test]
fn a_second_install_sh_waits_for_none_and_stops_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", &tmp.path().join("b"));
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // Another run holds the lock on the root.
    let mut holder = Command::new("bash")
        .args(["-c", "exec 9<\"$1\"; flock 9; exec sleep 30", "holder"])
        .arg(&root)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = snapshot(&root);
    let started = std::time::Instant::now();
    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("another install.sh is running"), "{}", out(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_same(&snapshot(&root), &before, "locked out");
    // Once it is gone, the install goes ahead.
    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
}

#[test]
fn a_record_of_an_older_release_without_bundle_env_is_still_read() {
    crate::needs_root!();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", &tmp.path().join("b"));
    let sibling = unpack_to("guide-v1.34", "infra1", &tmp.path().join("s"));
    let host = Host::new("o", "10.0.0.6");
    installed_before(&host, &sibling);
    // Releases before bundle.env recorded only bundle.json.
    std::fs::remove_file(host.upper("/etc/etcdpack/bundle.env")).unwrap();
    let o = host.install(&bundle, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(host_out(&o).contains("holds member infra1 of prod-etcd, not infra0"), "{}", host_out(&o));
}

#[test]
fn hostile_roots_and_bundles_are_refused_before_anything_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra0", &tmp.path().join("b"));
    // A folder where a file belongs, and a symlink where a file belongs.
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    std::fs::create_dir_all(root.join("etc/kubernetes/pki/etcd")).unwrap();
    std::fs::write(tmp.path().join("victim"), "keep me").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("victim"), root.join("etc/kubernetes/pki/etcd/peer.key"))
        .unwrap();
    let before = snapshot(&root);
    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("/etc/kubernetes/manifests/etcd.yaml is a folder where a file belongs"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("/etc/kubernetes/pki/etcd/peer.key is a symlink"), "{}", out(&o));
    assert_same(&snapshot(&root), &before, "hostile root");
    assert_eq!(std::fs::read_to_string(tmp.path().join("victim")).unwrap(), "keep me");

    // Temporary names are not predictable: a link planted at the old name is never followed.
    let root = tmp.path().join("root2");
    std::fs::create_dir_all(root.join("etc/kubernetes/manifests")).unwrap();
    std::os::unix::fs::symlink(
        tmp.path().join("victim"),
        root.join("etc/kubernetes/manifests/etcd.yaml.etcdpack-new"),
    )
    .unwrap();
    let o = install(&bundle, &["--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(std::fs::read_to_string(tmp.path().join("victim")).unwrap(), "keep me");

    // A bundle holding something that is not a regular file (here a fifo).
    let odd = unpack_to("guide-v1.34", "infra1", &tmp.path().join("odd"));
    let o = Command::new("mkfifo").arg(odd.join("rootfs/etc/pipe")).output().unwrap();
    assert!(o.status.success());
    let root = tmp.path().join("root3");
    std::fs::create_dir(&root).unwrap();
    let o = install(&odd, &["--root", root.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("entries that are not regular files: rootfs/etc/pipe"), "{}", out(&o));
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

#[test]
fn a_rollback_restores_what_it_can_and_names_what_it_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let first = unpack_to("guide-v1.34", "infra0", &tmp.path().join("a"));
    let second = unpack_to("ecdsa-p384-v1.36", "infra0", &tmp.path().join("b"));
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = root.to_str().unwrap();
    assert!(install(&first, &["--root", r]).status.success());
    let installed = snapshot(&root);
    // No cluster runs here: --force skips the quorum guard (and its network).
    assert!(install(&second, &["--root", r, "--force"]).status.success());
    // One file of the backup is gone: the rollback puts back every other one and names it.
    let backups = root.join("var/lib/etcdpack/backups");
    // The second install's backup: the newest (the first install made one of added files).
    let mut all: Vec<_> = std::fs::read_dir(&backups).unwrap().map(|e| e.unwrap().path()).collect();
    all.sort();
    let backup = all.pop().unwrap();
    std::fs::remove_file(backup.join("files/etc/kubernetes/pki/etcd/server.key")).unwrap();
    let o = install(&second, &["--root", r, "--rollback"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("could not restore: /etc/kubernetes/pki/etcd/server.key"), "{}", out(&o));
    let after = snapshot(&root);
    for (path, v) in &installed {
        if path.starts_with("var/lib/etcdpack") || path.ends_with("etcd/server.key") {
            continue;
        }
        assert_eq!(after.get(path), Some(v), "{path} was restored");
    }
}

/// The uid and gid of a user of this machine (`getent passwd`).
pub fn ids_of(user: &str) -> (u32, u32) {
    let o = Command::new("getent").args(["passwd", user]).output().unwrap();
    assert!(
        o.status.success(),
        "user {user} is missing: run the README test command, which installs etcd-server (it adds the user etcd)"
    );
    let line = String::from_utf8(o.stdout).unwrap();
    let f: Vec<&str> = line.trim().split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

#[test]
fn the_systemd_runtime_installs_etcd_service_its_binaries_and_gives_etcd_its_files() {
    crate::needs_root!();
    if !crate::support::have_tool("systemd-analyze") {
        return;
    }
    let (uid, gid) = ids_of("etcd");
    let host = Host::new("sd", "10.0.0.6");
    let before = host.changes();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("systemd-v1.33", "infra0", tmp.path());

    // The first member of a new cluster: --wait cannot wait for a quorum nobody else runs yet
    // (as when Ansible installs one host after the other), and says so.
    let o = host.install(&bundle, &["--wait", "30"]);
    let text = host_out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("a new cluster: no other member answers yet"), "{text}");
    for step in [
        "installed /etc/systemd/system/etcd.service (mode 0644)",
        "installed /usr/local/bin/etcd (mode 0755)",
        "installed /etc/kubernetes/pki/etcd/server.key (mode 0600, owner etcd)",
        "installed /etc/kubernetes/pki/etcd/ca.key (mode 0600)\n",
        "data dir /var/lib/etcd (mode 0700) belongs to etcd",
        "restarted etcd.service",
    ] {
        assert!(text.contains(step), "missing `{step}` in:\n{text}");
    }
    // No kubelet: etcd.service is enabled and restarted without waiting for it (a member of
    // a new cluster is ready only once a quorum runs).
    assert_eq!(
        host.log(),
        "systemctl daemon-reload\nsystemctl enable --quiet etcd.service\nsystemctl restart --no-block etcd.service\nsystemctl enable --now etcdpack-expiry.timer\nsystemctl enable --now etcdpack-snapshot.timer\n"
    );
    let t = host.changes();
    assert!(!t.keys().any(|p| p.contains("kubelet") || p.contains("manifests")), "{:?}", t.keys());
    assert_eq!(t["/etc/systemd/system/etcd.service"].0, 0o644);
    assert_eq!(t["/usr/local/bin/etcd"], (0o755, 0, 0, bundle_file(&bundle, "rootfs/usr/local/bin/etcd")));
    assert_eq!(t["/usr/local/bin/etcdutl"].0, 0o755);
    // etcd reads its server and peer pairs and writes its data dir as the user etcd; the
    // CA key and the client pairs stay root's.
    for (path, mode) in [("etcd/server.key", 0o600), ("etcd/server.crt", 0o644), ("etcd/peer.key", 0o600)] {
        let f = &t[&format!("/etc/kubernetes/pki/{path}")];
        assert_eq!((f.0, f.1, f.2), (mode, uid, gid), "{path}");
    }
    for path in ["etcd/ca.key", "etcd/healthcheck-client.key", "apiserver-etcd-client.key"] {
        let f = &t[&format!("/etc/kubernetes/pki/{path}")];
        assert_eq!((f.0, f.1, f.2), (0o600, 0, 0), "{path}");
    }
    assert_eq!((t["/var/lib/etcd"].0, t["/var/lib/etcd"].1), (0o700, uid));

    // systemd accepts the units as installed (the binaries they run present).
    let units = [
        "etcd.service",
        "etcdpack-expiry.service",
        "etcdpack-expiry.timer",
        "etcdpack-snapshot.service",
        "etcdpack-snapshot.timer",
    ]
    .map(|u| format!("/etc/systemd/system/{u}"));
    let mut argv = vec!["systemd-analyze", "verify"];
    argv.extend(units.iter().map(String::as_str));
    let o = host.run(&argv);
    assert!(
        o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
        "systemd-analyze: {}",
        host_out(&o)
    );

    // Second run: nothing changes (owners included) and nothing restarts.
    let o = host.install(&bundle, &[]);
    assert!(host_out(&o).contains("nothing to change"), "{}", host_out(&o));
    assert_same(&host.changes(), &t, "second run");
    assert_eq!(host.log().lines().count(), 5);

    // A key that lost its owner is given back, and that alone.
    std::os::unix::fs::chown(host.upper("/etc/kubernetes/pki/etcd/peer.key"), Some(0), Some(0)).unwrap();
    let o = host.install(&bundle, &["--no-restart"]);
    assert!(host_out(&o).contains("done: 1 file(s) changed"), "{}", host_out(&o));
    assert_eq!(host.changes()["/etc/kubernetes/pki/etcd/peer.key"].1, uid);

    // Rollback twice: the host is as before the first install.
    for _ in 0..2 {
        let o = host.install(&bundle, &["--rollback", "--no-restart"]);
        assert!(o.status.success(), "{}", host_out(&o));
    }
    assert_same(&outside_backups(&host.changes()), &outside_backups(&before), "after rollback");
}

#[test]
fn the_systemd_runtime_refuses_a_missing_user_and_a_running_static_pod() {
    crate::needs_root!();
    let host = Host::new("su", "10.0.0.6");
    // This host's users: root alone.
    host.put("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644);
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("systemd-v1.33", "infra1", tmp.path());
    let before = host.changes();
    let o = host.install(&bundle, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(host_out(&o).contains("user etcd (etcd.user) does not exist"), "{}", host_out(&o));
    assert!(host_out(&o).contains("useradd --system"), "{}", host_out(&o));
    assert_same(&host.changes(), &before, "refused");
    // A host where etcd runs as a static pod does not get a second etcd from etcd.service.
    host.put("/etc/kubernetes/manifests/etcd.yaml", "a static pod\n", 0o600);
    let before = host.changes();
    let o = host.install(&bundle, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(host_out(&o).contains("etcd runs as a static pod of the kubelet"), "{}", host_out(&o));
    assert_same(&host.changes(), &before, "refused");
}

/// Builds `text` in process against the state folder `state`, and unpacks `member`'s bundle
/// into `into`.
fn build_and_unpack(state: &Path, text: &str, member: &str, into: &Path) -> std::path::PathBuf {
    let b = crate::support::build_in(state, text, 11, crate::support::NOW, None).unwrap();
    untar(&b.dist, member, into)
}

#[test]
fn under_systemd_a_changed_unit_meets_the_quorum_guard_and_restarts_etcd_service() {
    crate::needs_root!();
    let host = Host::new("sq", "10.0.0.6");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let text = "cluster: c\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\netcd: { runtime: systemd, user: etcd }\nmembers:\n  - { name: a, address: 10.0.0.6 }\n  - { name: b, address: 10.0.0.7 }\n  - { name: c, address: 10.0.0.8 }\n";
    let first = build_and_unpack(&state, text, "a", &tmp.path().join("1"));
    let o = host.install(&first, &[]);
    assert!(o.status.success(), "{}", host_out(&o));
    let installed = host.changes();
    // A flag changes: the unit changes, so etcd would restart; no other member answers here.
    let flagged = text
        .replace("user: etcd }", "user: etcd, extraArgs: [ { name: snapshot-count, value: \"5000\" } ] }");
    let second = build_and_unpack(&state, &flagged, "a", &tmp.path().join("2"));
    let o = host.install(&second, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", host_out(&o));
    assert!(
        host_out(&o).contains("quorum guard: only 0 of the 2 other members answered healthy"),
        "{}",
        host_out(&o)
    );
    assert_same(&host.changes(), &installed, "after the guard's refusal");
    let o = host.install(&second, &["--force"]);
    assert!(o.status.success(), "{}", host_out(&o));
    let unit = String::from_utf8(host.changes()["/etc/systemd/system/etcd.service"].3.clone()).unwrap();
    assert!(unit.contains("  --snapshot-count=5000 \\\n"), "{unit}");
    // The first install and the forced one each restarted etcd.service.
    assert_eq!(
        host.log().matches("systemctl restart --no-block etcd.service\n").count(),
        2,
        "{}",
        host.log()
    );
}

#[test]
fn a_bundle_altered_and_signed_again_by_another_key_is_refused_by_install_sh() {
    // The attack: change the manifest's image, make SHA256SUMS match again, sign it with
    // one's own key and ship that key in the bundle. A host whose first install pinned the
    // build's key refuses it before reading any other file; so does --pubkey.
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack_to("guide-v1.34", "infra1", &tmp.path().join("b"));
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = root.to_str().unwrap();
    let o = install(&bundle, &["--root", r]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("pinned the signing key SHA256:"), "{}", out(&o));
    let before = snapshot(&root);

    let evil = tmp.path().join("evil");
    crate::support::copy_tree(&bundle, &evil);
    let manifest = evil.join("rootfs/etc/kubernetes/manifests/etcd.yaml");
    let text =
        std::fs::read_to_string(&manifest).unwrap().replace("registry.k8s.io/etcd", "evil.example/etcd");
    std::fs::write(&manifest, text).unwrap();
    let sh = |script: &str| {
        let o = Command::new("bash").args(["-c", script]).current_dir(&evil).output().unwrap();
        assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    };
    sh("openssl ecparam -name prime256v1 -genkey -noout -out ../attacker.pem");
    sh("openssl pkey -in ../attacker.pem -pubout -out signing-key.pub");
    sh("sha256sum $(sed -e 's/^[0-9a-f]*  //' SHA256SUMS) > ../sums && mv ../sums SHA256SUMS");
    sh("openssl dgst -sha256 -sign ../attacker.pem -out SHA256SUMS.sig SHA256SUMS");
    // Consistent in itself: its own key verifies it.
    sh("openssl dgst -sha256 -verify signing-key.pub -signature SHA256SUMS.sig SHA256SUMS");

    let o = install(&evil, &["--root", r]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("SHA256SUMS is not signed by the key pinned in /etc/etcdpack/signing-key.pub"),
        "{}",
        out(&o)
    );
    assert_same(&snapshot(&root), &before, "the root after the refused bundle");
    // A fresh root given the build's key refuses it too; the genuine bundle passes that way.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let key = tmp.path().join("build.pub");
    std::fs::copy(bundle.join("signing-key.pub"), &key).unwrap();
    let o = install(&evil, &["--root", fresh.to_str().unwrap(), "--pubkey", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("not signed by the key given with --pubkey"), "{}", out(&o));
    let o = install(&bundle, &["--root", fresh.to_str().unwrap(), "--pubkey", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
}

#[test]
fn a_member_that_no_longer_holds_the_ca_key_moves_it_into_the_backup() {
    // infra0 held the CA key; the topology hands it to infra2. infra0's new bundle does not
    // ship it, and its install takes the old one away, so the key is on one host only; a
    // rollback puts it back.
    let tmp = tempfile::tempdir().unwrap();
    let t = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n";
    let state = tmp.path().join("state");
    let first = crate::support::build_in(&state, t, 5, crate::support::NOW, None).unwrap();
    let moved = t.replace("pki: { ", "pki: { caKeyHolder: infra2, ");
    let second = crate::support::build_in(&state, &moved, 5, crate::support::NOW, None).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = root.to_str().unwrap();
    let o = install(&untar(&first.dist, "infra0", &tmp.path().join("b1")), &["--root", r]);
    assert!(o.status.success(), "{}", out(&o));
    let ca_key = root.join("etc/kubernetes/pki/etcd/ca.key");
    let key = std::fs::read(&ca_key).unwrap();

    let bundle = untar(&second.dist, "infra0", &tmp.path().join("b2"));
    assert!(!bundle.join("rootfs/etc/kubernetes/pki/etcd/ca.key").exists());
    let o = install(&bundle, &["--root", r, "--dry-run"]);
    assert!(out(&o).contains("would move /etc/kubernetes/pki/etcd/ca.key into the backup"), "{}", out(&o));
    assert!(ca_key.is_file(), "a dry run moves nothing");
    let o = install(&bundle, &["--root", r]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o)
            .contains("moved /etc/kubernetes/pki/etcd/ca.key into the backup: this bundle does not ship it"),
        "{}",
        out(&o)
    );
    assert!(!ca_key.exists());
    let o = install(&bundle, &["--root", r]);
    assert!(out(&o).contains("nothing to change"), "{}", out(&o));
    let o = install(&bundle, &["--root", r, "--rollback"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(std::fs::read(&ca_key).unwrap(), key, "the rollback puts the key back");
    assert_eq!(std::fs::metadata(&ca_key).unwrap().permissions().mode() & 0o7777, 0o600);
}

#[test]
fn an_older_bundle_is_refused_unless_allow_older_says_so() {
    // infra0's second build changes its bundle (the CA key moves away): generation 2. Once
    // that is installed, the first bundle (generation 1, validly signed) is a replay.
    let tmp = tempfile::tempdir().unwrap();
    let t = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n";
    let state = tmp.path().join("state");
    let first = crate::support::build_in(&state, t, 5, crate::support::NOW, None).unwrap();
    let moved = t.replace("pki: { ", "pki: { caKeyHolder: infra1, ");
    let second = crate::support::build_in(&state, &moved, 5, crate::support::NOW, None).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = root.to_str().unwrap();
    let old = untar(&first.dist, "infra0", &tmp.path().join("b1"));
    let new = untar(&second.dist, "infra0", &tmp.path().join("b2"));
    assert!(std::fs::read_to_string(new.join("bundle.env")).unwrap().contains("\nGENERATION=2\n"));
    let o = install(&new, &["--root", r]);
    assert!(o.status.success(), "{}", out(&o));

    let before = snapshot(&root);
    for args in [&["--root", r][..], &["--root", r, "--dry-run"][..]] {
        let o = install(&old, args);
        assert_eq!(o.status.code(), Some(1), "{}", out(&o));
        assert!(
            out(&o).contains("this bundle is generation 1, older than generation 2 installed here: install the newest bundle of infra0, or pass --allow-older"),
            "{}",
            out(&o)
        );
        assert_same(&snapshot(&root), &before, "a refused replay");
    }
    // On purpose: it goes back, says so, and the newest bundle installs over it again.
    let o = install(&old, &["--root", r, "--allow-older"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("going on because of --allow-older"), "{}", out(&o));
    assert!(root.join("etc/kubernetes/pki/etcd/ca.key").is_file());
    let o = install(&new, &["--root", r]);
    assert!(o.status.success(), "{}", out(&o));

    // The control-plane bundle likewise: renewed, it is generation 3; the first one is a replay.
    let renewal =
        etcdpack::pki::Renewal { members: vec!["control-plane".into()], within: None, ca_rotation: false };
    let third = crate::support::build_in(&state, &moved, 5, crate::support::NOW, Some(&renewal)).unwrap();
    let cp_old = untar(&first.dist, "control-plane", &tmp.path().join("c1"));
    let cp_new = untar(&third.dist, "control-plane", &tmp.path().join("c3"));
    assert!(std::fs::read_to_string(cp_new.join("bundle.env")).unwrap().contains("\nGENERATION=3\n"));
    assert!(install(&cp_new, &["--root", r]).status.success());
    let before = snapshot(&root);
    let o = install(&cp_old, &["--root", r]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("this bundle is generation 1, older than generation 3 installed here"),
        "{}",
        out(&o)
    );
    assert_same(&snapshot(&root), &before, "a refused control-plane replay");
    let o = install(&cp_old, &["--root", r, "--allow-older"]);
    assert!(o.status.success() && out(&o).contains("--allow-older"), "{}", out(&o));
}
