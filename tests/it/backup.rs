//! The snapshot job on a live cluster in network namespaces: `etcdpack-snapshot --root` run in a
//! member's namespace against its client URL saves a snapshot that etcd 3.5.1's `etcdutl` reads
//! (and one with Debian's etcdctl 3.4 alone), keeps the newest N in a root-only folder, writes
//! its metrics, and a failed snapshot (its member down) exits 1 and leaves the others alone.

use crate::e2e::{Lab, Member, keys_on, run, url};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOPOLOGY: &str = "cluster: backup\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\nbackup: { schedule: hourly, keep: 2 }\nmembers:\n  - { name: k0, address: 10.0.0.36 }\n  - { name: k1, address: 10.0.0.37 }\n  - { name: k2, address: 10.0.0.38 }\n";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `etcdpack-snapshot --root` of member `m`, in its namespace, with `path` as PATH.
fn snapshot(m: &Member, path: &str, metrics: &Path) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &m.ns, "sh"])
        .arg(m.root.join("usr/local/sbin/etcdpack-snapshot"))
        .arg("--root")
        .arg(&m.root)
        .arg("--textfile-dir")
        .arg(metrics.strip_prefix(&m.root).map(|p| Path::new("/").join(p)).unwrap())
        .env("PATH", path)
        .output()
        .unwrap()
}

/// The snapshots in a member's folder, oldest first.
fn saved(m: &Member) -> Vec<PathBuf> {
    let dir = m.root.join("var/lib/etcdpack/snapshots");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn snapshots_are_taken_checked_kept_and_measured_on_a_live_cluster() {
    crate::needs_root!();
    let etcd35 = crate::upgrade::etcd35()
        .expect("etcd 3.5.1 is missing: run the README test command (bash scripts/test), which installs it");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("t.yaml"), TOPOLOGY).unwrap();
    let o = run(Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(["build", "t.yaml"]).current_dir(w));
    assert!(o.status.success(), "{}", text(&o));
    let addresses: Vec<IpAddr> = ["10.0.0.36", "10.0.0.37", "10.0.0.38"].map(|a| a.parse().unwrap()).to_vec();
    let mut lab = Lab::new("bk");
    let (members, procs) = crate::e2e::start_members(&mut lab, w, &["k0", "k1", "k2"], &addresses, "b0");
    let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();
    for i in 0..25 {
        let o = crate::e2e::etcdctl(
            &members[0],
            &endpoints[0],
            "apiserver-etcd-client",
            &["put", &format!("/w/{i:06}"), "x"],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(keys_on(&members[0], &endpoints[0]), 25);

    let k0 = &members[0];
    let metrics = k0.root.join("run/etcdpack-snapshot");
    std::fs::create_dir_all(&metrics).unwrap();
    let with_35 = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", etcd35.display());
    // Three snapshots with etcd 3.5.1's tools: the newest two stay.
    for _ in 0..3 {
        let o = snapshot(k0, &with_35, &metrics);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("etcdpack-snapshot: saved /var/lib/etcdpack/snapshots/k0-"),
            "{}",
            text(&o)
        );
    }
    let files = saved(k0);
    assert_eq!(files.len(), 2, "{files:?}");
    let dir_mode =
        std::fs::metadata(k0.root.join("var/lib/etcdpack/snapshots")).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("k0-") && name.ends_with("Z.db"), "{name}");
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{name}");
        // etcd 3.5.1's etcdutl reads it: the revision, and the 25 keys (and etcd's own).
        let o = run(Command::new(etcd35.join("etcdutl")).args(["snapshot", "status", "-w", "json"]).arg(f));
        let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(status["revision"].as_u64().unwrap() >= 26, "{status}");
        assert!(status["totalKey"].as_u64().unwrap() >= 25, "{status}");
    }
    let prom = std::fs::read_to_string(metrics.join("etcdpack-snapshot.prom")).unwrap();
    let size = std::fs::metadata(files.last().unwrap()).unwrap().len();
    assert!(prom.contains(&format!("etcdpack_snapshot_size_bytes{{member=\"k0\"}} {size}\n")), "{prom}");
    assert!(prom.contains("etcdpack_snapshot_timestamp_seconds{member=\"k0\"} "), "{prom}");
    assert_eq!(std::fs::read_dir(&metrics).unwrap().count(), 1, "no temporary file left");

    // Debian's etcdctl 3.4 alone takes and checks one too.
    let k1 = &members[1];
    let o = snapshot(k1, "/usr/sbin:/usr/bin:/sbin:/bin", &k1.root.join("run/none"));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(saved(k1).len(), 1);

    // Its member down: the snapshot fails, exit 1, the earlier one stays, nothing half-written.
    let mut lab = lab;
    lab.terminate(procs[1]);
    let o = snapshot(k1, "/usr/sbin:/usr/bin:/sbin:/bin", &k1.root.join("run/none"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("etcd member k1 at https://10.0.0.37:2379 is not healthy: no snapshot taken"),
        "{}",
        text(&o)
    );
    assert_eq!(saved(k1).len(), 1, "{:?}", saved(k1));
    // Bad options exit 2.
    let o = Command::new("sh")
        .arg(k0.root.join("usr/local/sbin/etcdpack-snapshot"))
        .args(["--keep", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
