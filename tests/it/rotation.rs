//! CA rotation on a live cluster in network namespaces, under a writer from start to end:
//! `rotate-ca` three times, each phase's bundles installed one host at a time with
//! `install.sh --root --wait` (which, when the trusted CAs change, waits for etcd to restart:
//! the harness stops it with SIGTERM and starts it again, as the kubelet does once install.sh
//! stops its container), the
//! control plane's client moving to each phase's files as kube-apiserver would on its restart.
//! No write fails, every member holds every key, and at the end a client certificate of the
//! old CA is refused by every member while the new one is served and `verify` passes.

use crate::e2e::{
    Lab, Member, Writer, command_from_manifest, install_in as install, keys_on, run, unpack_dist as unpack,
    url,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TOPOLOGY: &str = "cluster: rotate\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: r0, address: 10.0.0.26 }\n  - { name: r1, address: 10.0.0.27 }\n  - { name: r2, address: 10.0.0.28 }\n";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn etcdpack(dir: &Path, args: &[&str]) -> String {
    let o = run(Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH"));
    assert!(o.status.success(), "etcdpack {args:?}: {}", text(&o));
    text(&o)
}

/// How many certificates a PEM file holds.
fn certs_in(path: &str) -> usize {
    std::fs::read_to_string(path).unwrap().matches("-----BEGIN CERTIFICATE-----").count()
}

/// The control plane's client: what kube-apiserver reads at its start, published by swapping
/// the `client` link to a folder holding the control-plane root's three files.
fn publish_client(w: &Path, cp_root: &Path, generation: usize) -> PathBuf {
    let dir = w.join(format!("client-{generation}"));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = cp_root.join("etc/kubernetes/pki");
    for f in ["etcd/ca.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
        std::fs::copy(pki.join(f), dir.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let link = w.join("client.new");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    std::fs::rename(&link, w.join("client")).unwrap();
    dir
}

/// A put with a client folder's files, from namespace `ns` against one endpoint.
fn put_with(ns: &str, endpoint: &str, client: &Path, key: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "etcdctl", "--dial-timeout=2s", "--command-timeout=3s"])
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", client.join("ca.crt").display()))
        .arg(format!("--cert={}", client.join("apiserver-etcd-client.crt").display()))
        .arg(format!("--key={}", client.join("apiserver-etcd-client.key").display()))
        .args(["put", key, "x"])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap()
}

#[test]
fn a_ca_rotation_in_three_phases_under_a_writer() {
    crate::needs_root!();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("t.yaml"), TOPOLOGY).unwrap();
    etcdpack(w, &["build", "t.yaml"]);
    let addresses: Vec<IpAddr> = ["10.0.0.26", "10.0.0.27", "10.0.0.28"].map(|a| a.parse().unwrap()).to_vec();
    let names = ["r0", "r1", "r2"];
    let mut lab = Lab::new("rot");
    let (members, mut procs) = crate::e2e::start_members(&mut lab, w, &names, &addresses, "p0");
    let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();
    let all = endpoints.join(",");

    // The control-plane node (in r0's namespace, a root of its own) and its client.
    let cp_root = w.join("root-control-plane");
    std::fs::create_dir_all(&cp_root).unwrap();
    let control_plane = |phase: &str| -> String {
        let bundle = unpack(w, "control-plane", phase);
        let o = Command::new("ip")
            .args(["netns", "exec", &members[0].ns, "bash"])
            .arg(bundle.join("install.sh"))
            .arg("--root")
            .arg(&cp_root)
            .args(["--wait", "30"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o)
                .contains("all 3 members of rotate answer the installed apiserver-etcd-client certificate")
        );
        text(&o)
    };
    control_plane("p0");
    let old_client = publish_client(w, &cp_root, 0);
    let writer = Writer::start(&members[0].ns, &all, &w.join("client"));

    let mut report = Vec::new();
    for (phase, restarts) in [(1, true), (2, false), (3, true)] {
        let began = Instant::now();
        let before = writer.written();
        let said = etcdpack(w, &["rotate-ca", "t.yaml"]);
        assert!(said.contains(&format!("CA rotation phase {phase} of 3")), "{said}");
        let dir = format!("p{phase}");
        let mut outages = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let bundle = unpack(w, &m.name, &dir);
            if !restarts {
                // New leaves only: etcd reads them on each connection.
                let o = install(m, &bundle, &["--wait", "60"]);
                assert!(o.status.success(), "{}", text(&o));
                assert!(
                    text(&o).contains("serves the installed certificates")
                        && !text(&o).contains("restart etcd"),
                    "{}",
                    text(&o)
                );
                continue;
            }
            // install.sh --wait in the background: it installs, says etcd must restart, and
            // waits for that; the harness restarts etcd once the new trust file is there.
            let want = if phase == 1 { 2 } else { 1 };
            let installing = {
                let (m, bundle) = (clone_member(m), bundle.clone());
                std::thread::spawn(move || install(&m, &bundle, &["--wait", "90"]))
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while certs_in(&m.pki("etcd/ca.crt")) != want {
                assert!(Instant::now() < deadline, "{}: the new trust file never arrived", m.name);
                std::thread::sleep(Duration::from_millis(100));
            }
            let down = Instant::now();
            lab.terminate(procs[i]);
            let (argv, _) = command_from_manifest(&m.root, false);
            procs[i] = lab.spawn(&m.ns, &argv, &w.join(format!("{}.log", m.name)));
            let o = installing.join().unwrap();
            outages.push(down.elapsed());
            let said = text(&o);
            assert!(o.status.success(), "{said}");
            for step in [
                "quorum guard: 2 of 2 other members are healthy",
                "etcd/ca.crt now trusts other CAs",
                "waiting up to 90s for etcd to restart and read the new trust file",
                "all 3 members of rotate are healthy",
                "serves the installed certificates",
            ] {
                assert!(said.contains(step), "{}: missing `{step}` in:\n{said}", m.name);
            }
        }
        let cp = control_plane(&dir);
        if restarts {
            assert!(cp.contains("etcd/ca.crt changed (the CAs kube-apiserver trusts for etcd"), "{cp}");
        }
        publish_client(w, &cp_root, phase);
        report.push(format!(
            "phase {phase}: {:.1} s, {} writes, member outages {:?}",
            began.elapsed().as_secs_f64(),
            writer.written() - before,
            outages.iter().map(|d| format!("{:.1} s", d.as_secs_f64())).collect::<Vec<_>>()
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    let crate::e2e::Writes { written, retried, failed } = writer.finish();
    for line in &report {
        eprintln!("CA rotation {line}");
    }
    eprintln!("writer: {written} writes, {} retried, {} failed", retried.len(), failed.len());
    for r in &retried {
        eprintln!("retried after: {}", r.replace('\n', " "));
    }
    assert!(failed.is_empty(), "writes failed twice during the rotation: {failed:?}");
    assert!(written > 10, "the writer wrote only {written} keys");
    for (m, e) in members.iter().zip(&endpoints) {
        assert_eq!(keys_on(m, e), written, "{} holds every key written", m.name);
    }

    // The old CA's client is refused by every member; the new one is taken.
    let new_client = w.join("client-3");
    for (m, e) in members.iter().zip(&endpoints) {
        let o = put_with(&m.ns, e, &old_client, "/old-ca");
        assert!(!o.status.success(), "{}: a client of the old CA was accepted", m.name);
        let o = put_with(&m.ns, e, &new_client, "/new-ca");
        assert!(o.status.success(), "{}: {}", m.name, text(&o));
        assert_eq!(certs_in(&m.pki("etcd/ca.crt")), 1, "{}", m.name);
    }
    // The state keeps both old CAs' files retired, and the final bundles verify.
    let retired: Vec<_> = std::fs::read_dir(w.join("t.state/retired/ca")).unwrap().collect();
    assert_eq!(retired.len(), 2, "the old CA's certificate and key");
    let mut args = vec!["verify".to_string(), "--pubkey".into(), "dist/signing-key.pub".into()];
    args.extend(["r0", "r1", "r2", "control-plane"].map(|n| format!("dist/{n}.tar.gz")));
    let said = etcdpack(w, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(said.contains("4 bundle(s) verified"), "{said}");
    let plan = etcdpack(w, &["plan", "t.yaml"]);
    assert!(!plan.contains("CA rotation"), "{plan}");
}

fn clone_member(m: &Member) -> Member {
    Member { name: m.name.clone(), address: m.address, root: m.root.clone(), ns: m.ns.clone() }
}
