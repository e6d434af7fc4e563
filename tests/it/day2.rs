//! Day 2 on a live cluster in network namespaces: a rolling renewal under a writer (no failed
//! write, every member serves its new certificates, nothing lost), the control-plane bundle's
//! certificate writing and reading through the endpoints of its etcd-external.yaml, then the
//! quorum guard refusing a manifest change while a member is down and allowing it once it is
//! back.

use crate::e2e::{
    Lab, Member, Writer, command_from_manifest, install_in as install, keys_on, run, unpack_dist as unpack,
    url, wait_healthy,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TOPOLOGY: &str = "cluster: day2\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: d0, address: 10.0.0.16 }\n  - { name: d1, address: 10.0.0.17 }\n  - { name: d2, address: 10.0.0.18 }\n";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn etcdpack(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH"))
}

/// The SHA-256 fingerprint of the certificate etcd serves at `addr:port`, seen from `m`'s
/// namespace with `cert` as the client certificate.
fn served(m: &Member, addr: &IpAddr, port: u16, cert: &str) -> String {
    let connect = url(addr, port).trim_start_matches("https://").to_string();
    let script = format!(
        "openssl s_client -connect {connect} -CAfile {} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        m.pki("etcd/ca.crt"),
        m.pki(&format!("{cert}.crt")),
        m.pki(&format!("{cert}.key"))
    );
    let o = run(Command::new("ip").args(["netns", "exec", &m.ns, "sh", "-c", &script]));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn fingerprint(pem_file: &Path) -> String {
    let o =
        run(Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in"]).arg(pem_file));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every file under `root` but the running member's data dir, with its digest and mode.
fn snapshot(root: &Path) -> Vec<(PathBuf, String, u32)> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let data = root.join("var/lib/etcd");
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.path() != data)
        .map(|e| e.unwrap())
        .map(|e| {
            let md = e.metadata().unwrap();
            let bytes = if md.is_file() { std::fs::read(e.path()).unwrap() } else { vec![] };
            (
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                hex::encode(Sha256::digest(bytes)),
                md.mode(),
            )
        })
        .collect()
}

#[test]
fn a_rolling_renewal_under_a_writer_and_the_quorum_guard() {
    crate::needs_root!();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("t.yaml"), TOPOLOGY).unwrap();
    etcdpack(w, &["build", "t.yaml"]);
    let addresses: Vec<IpAddr> = ["10.0.0.16", "10.0.0.17", "10.0.0.18"].map(|a| a.parse().unwrap()).to_vec();
    let names = ["d0", "d1", "d2"];

    let mut lab = Lab::new("d2");
    let (members, mut procs) = crate::e2e::start_members(&mut lab, w, &names, &addresses, "b0");
    let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();
    let all = endpoints.join(",");

    // The writer: one put after another through every endpoint, with its own copy of the
    // client certificate, until told to stop.
    let client = w.join("client");
    std::fs::create_dir_all(&client).unwrap();
    for f in ["etcd/ca.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
        std::fs::copy(members[0].pki(f), client.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let writer = Writer::start(&members[0].ns, &all, &client);

    // Renew every leaf; each host gets its new bundle in turn, and --wait proves it serves it.
    let old_server: Vec<String> =
        members.iter().map(|m| fingerprint(Path::new(&m.pki("etcd/server.crt")))).collect();
    let started = Instant::now();
    let renew = etcdpack(w, &["renew", "t.yaml"]);
    let renew_time = started.elapsed();
    let said = text(&renew);
    assert!(
        said.contains("renewed 13 certificate(s)")
            && said.contains("3. d2 <- dist/d2.tar.gz")
            && said.contains("4. control-plane <- dist/control-plane.tar.gz"),
        "{said}"
    );
    let rolling = Instant::now();
    for (i, m) in members.iter().enumerate() {
        let o = install(m, &unpack(w, &m.name, "b1"), &["--wait", "60"]);
        let said = text(&o);
        assert!(o.status.success(), "{said}");
        assert!(
            said.contains("serves the installed certificates") && !said.contains("quorum guard"),
            "{said}"
        );
        let server = fingerprint(Path::new(&m.pki("etcd/server.crt")));
        assert_ne!(server, old_server[i], "{}: a new server certificate", m.name);
        // Seen independently from another member's namespace.
        let other = &members[(i + 1) % members.len()];
        assert_eq!(
            served(other, &m.address, 2379, "etcd/healthcheck-client"),
            server,
            "{}: client port",
            m.name
        );
        assert_eq!(
            served(other, &m.address, 2380, "etcd/peer"),
            fingerprint(Path::new(&m.pki("etcd/peer.crt"))),
            "{}: peer port",
            m.name
        );
    }
    let rolling_time = rolling.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let crate::e2e::Writes { written, retried, failed } = writer.finish();
    eprintln!(
        "renew of 3 members: {:.0} ms; rolling install: {:.1} s; writer: {written} writes, {} retried, {} failed",
        renew_time.as_secs_f64() * 1000.0,
        rolling_time.as_secs_f64(),
        retried.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "writes failed twice during the renewal: {failed:?} (retried: {retried:?})");
    for r in &retried {
        eprintln!("retried after: {}", r.replace('\n', " "));
    }
    assert!(written > 10, "the writer wrote only {written} keys");
    for (m, e) in members.iter().zip(&endpoints) {
        assert_eq!(keys_on(m, e), written, "{} holds every key written", m.name);
    }

    control_plane(w, &members[0].ns, written);

    // A manifest change (a new flag) restarts etcd: plan says so, one host at a time.
    let guard_phase = Instant::now();
    let changed =
        TOPOLOGY.replace("members:", "etcd: { extraArgs: { snapshot-count: \"20000\" } }\nmembers:");
    std::fs::write(w.join("t.yaml"), changed).unwrap();
    let plan = text(&etcdpack(w, &["plan", "t.yaml"]));
    assert!(
        plan.contains("1. d0: manifest changed (flags or settings): etcd restarts")
            && plan.contains("3 host(s) restart etcd"),
        "{plan}"
    );
    etcdpack(w, &["build", "t.yaml"]);

    // d2 is down: replacing d1's manifest would leave one of three. Refused, root untouched.
    lab.kill(procs[2]);
    let d1 = unpack(w, "d1", "b2");
    let before = snapshot(&members[1].root);
    let o = install(&members[1], &d1, &["--wait", "60"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("quorum guard: only 1 of the 2 other members answered healthy (not healthy: d2)"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&members[1].root), before, "the refused install changed the root");

    // d2 back: the guard lets d1 through; the harness restarts d1 from its new manifest, as
    // the kubelet would, and --wait of a second run sees the whole cluster healthy.
    let (argv, _) = command_from_manifest(&members[2].root, false);
    procs[2] = lab.spawn(&members[2].ns, &argv, &w.join("d2.log"));
    wait_healthy(&members, &all, w);
    let o = install(&members[1], &d1, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("quorum guard: 2 of 2 other members are healthy"), "{}", text(&o));
    lab.kill(procs[1]);
    let (argv, _) = command_from_manifest(&members[1].root, false);
    assert!(argv.contains(&"--snapshot-count=20000".to_string()), "{argv:?}");
    procs[1] = lab.spawn(&members[1].ns, &argv, &w.join("d1.log"));
    let o = install(&members[1], &d1, &["--wait", "60"]);
    assert!(o.status.success() && text(&o).contains("all 3 members of day2 are healthy"), "{}", text(&o));
    for (m, e) in members.iter().zip(&endpoints) {
        assert_eq!(keys_on(m, e), written, "{} still holds every key", m.name);
    }
    eprintln!("quorum guard phase: {:.1} s", guard_phase.elapsed().as_secs_f64());
}

/// A control-plane node (in `ns`, another root) installs the renewed control-plane bundle:
/// `--wait` proves every member accepts its client certificate, and etcdctl with exactly the
/// endpoints and files its etcd-external.yaml names writes and reads back.
fn control_plane(w: &Path, ns: &str, written: usize) {
    let bundle = unpack(w, "control-plane", "b1");
    let root = w.join("root-control-plane");
    std::fs::create_dir_all(&root).unwrap();
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "bash"])
        .arg(bundle.join("install.sh"))
        .arg("--root")
        .arg(&root)
        .args(["--wait", "30"])
        .output()
        .unwrap();
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("all 3 members of day2 answer the installed apiserver-etcd-client certificate"),
        "{said}"
    );
    let yaml = std::fs::read_to_string(root.join("etc/etcdpack/control-plane/etcd-external.yaml")).unwrap();
    let ext = crate::support::parse_etcd_external(&yaml);
    assert_eq!(ext.api_version, "kubeadm.k8s.io/v1beta4");
    assert_eq!(ext.endpoints, ["https://10.0.0.16:2379", "https://10.0.0.17:2379", "https://10.0.0.18:2379"]);
    let pki = root.join("etc/kubernetes/pki");
    let ctl = |args: &[&str]| -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, "etcdctl", "--dial-timeout=3s", "--command-timeout=5s"])
            .arg(format!("--endpoints={}", ext.endpoints.join(",")))
            .arg(format!("--cacert={}", pki.join("etcd/ca.crt").display()))
            .arg(format!("--cert={}", pki.join("apiserver-etcd-client.crt").display()))
            .arg(format!("--key={}", pki.join("apiserver-etcd-client.key").display()))
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap()
    };
    let o = ctl(&["put", "/control-plane/hello", "from kube-apiserver's certificate"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ctl(&["get", "/control-plane/hello", "--print-value-only"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "from kube-apiserver's certificate",
        "{}",
        text(&o)
    );
    // Every key the writer wrote reads back through it too (a linearizable read).
    let o = ctl(&["get", "/w/", "--prefix", "--keys-only"]);
    let keys = String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.is_empty()).count();
    assert_eq!(keys, written, "{}", text(&o));
    // The certificate is the control plane's own, not a member's.
    let crt = fingerprint(&pki.join("apiserver-etcd-client.crt"));
    for m in ["d0", "d1", "d2"] {
        let member = w.join(format!("root-{m}/etc/kubernetes/pki/apiserver-etcd-client.crt"));
        assert_ne!(fingerprint(&member), crt, "{m}");
    }
}
