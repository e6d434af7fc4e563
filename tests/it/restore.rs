//! `etcdpack restore`: restore bundles pin the snapshot and travel with it (beside or inside),
//! the state records the restore and the next build is ordinary again; and, live in network
//! namespaces, a cluster that lost two of its three data dirs comes back from a snapshot on
//! all three members, with a new cluster ID, every key written before the snapshot and none
//! written after, once with Debian's etcdctl 3.4.23 and once with etcd 3.5.1's etcdutl. A
//! tampered snapshot and a healthy cluster are refused, the root untouched.

use crate::e2e::{Lab, Member, command_from_manifest, etcdctl, keys_on, run, url, wait_healthy};
use etcdpack::unpack::unpack;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/snapshot/etcd-3.5.1.db");

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn etcdpack(w: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(args).current_dir(w).output().unwrap()
}

/// A folder holding `topology` as t.yaml, built (its state and dist/ beside it).
fn built(topology: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("t.yaml"), topology).unwrap();
    let o = etcdpack(work.path(), &["build", "t.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    work
}

fn dist(w: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(w.join("dist"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

fn file(d: &BTreeMap<String, Vec<u8>>, bundle: &str, path: &str) -> String {
    let u = unpack(&d[&format!("{bundle}.tar.gz")]).unwrap();
    String::from_utf8(u.files.get(path).unwrap_or_else(|| panic!("{bundle}: {path}")).bytes.clone()).unwrap()
}

#[test]
fn restore_bundles_pin_the_snapshot_and_the_next_build_is_ordinary() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let topology = "cluster: r\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: a, address: 10.0.0.1 }\n  - { name: b, address: 10.0.0.2 }\n  - { name: c, address: 10.0.0.3 }\n";
    std::fs::write(w.join("t.yaml"), topology).unwrap();
    std::fs::write(w.join("not-a-snapshot.db"), vec![0u8; 8192]).unwrap();
    // Before any build: no PKI to restore with.
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nothing to restore"), "{}", text(&o));
    assert!(etcdpack(w, &["build", "t.yaml"]).status.success());
    let ordinary = dist(w);
    // A file that is not a snapshot, or a damaged one, is refused; dist/ stays as it was.
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", "not-a-snapshot.db"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not-a-snapshot.db: "), "{}", text(&o));
    let mut damaged = std::fs::read(SNAPSHOT).unwrap();
    damaged[5000] ^= 1;
    std::fs::write(w.join("damaged.db"), &damaged).unwrap();
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", "damaged.db"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("a damaged etcd snapshot"), "{}", text(&o));
    assert_eq!(dist(w), ordinary);
    // More than etcd's largest recommended backend quota (a sparse file): refused unread.
    std::fs::File::create(w.join("huge.db")).unwrap().set_len(9 << 30).unwrap();
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", "huge.db"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("huge.db: 9663676416 bytes or more, more than any etcd database"),
        "{}",
        text(&o)
    );
    assert_eq!(dist(w), ordinary);

    // It would travel where it should not: in user-data, or left behind by the playbook.
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT, "--emit", "cloud-init"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("does not belong in user-data"), "{}", text(&o));
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT, "--emit", "ansible"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("help: pass --embed"), "{}", text(&o));
    assert_eq!(dist(w), ordinary);
    // plan says what restore will do.
    let o = etcdpack(w, &["plan", "t.yaml", "--snapshot", SNAPSHOT]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3. dist/c.tar.gz on c (10.0.0.3) with snapshot.db beside it (its --wait waits for the whole cluster)"), "{}", text(&o));

    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT]);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("(revision 7, 20512 bytes), beside the bundles"), "{said}");
    assert!(
        said.find("1. dist/a.tar.gz").unwrap() < said.find("4. dist/control-plane.tar.gz").unwrap(),
        "{said}"
    );
    let d = dist(w);
    let snapshot = std::fs::read(SNAPSHOT).unwrap();
    assert_eq!(d["snapshot.db"], snapshot);
    let sha = etcdpack::snapshot::status(&snapshot).unwrap().sha256;
    let sums = String::from_utf8(d["SHA256SUMS"].clone()).unwrap();
    assert!(sums.contains(&format!("{sha}  snapshot.db\n")), "the signed list holds the snapshot: {sums}");
    for m in ["a", "b", "c"] {
        let env = file(&d, m, "bundle.env");
        let token = "r-restore-1-".to_string() + &sha[..12];
        assert!(
            env.ends_with(&format!(
                "RESTORE_TOKEN={token}\nSNAPSHOT_SHA256={sha}\nSNAPSHOT_SIZE=20512\nSNAPSHOT_REVISION=7\n"
            )),
            "{env}"
        );
        let install = file(&d, m, "install.sh");
        assert!(install.contains("readonly ROLE=restore\n"), "{m}");
        assert!(install.contains("readonly INITIAL_CLUSTER=a=https://10.0.0.1:2380,b=https://10.0.0.2:2380,c=https://10.0.0.3:2380\n"));
        let json: serde_json::Value = serde_json::from_str(&file(&d, m, "bundle.json")).unwrap();
        assert_eq!(json["role"], "restore");
        assert_eq!(json["restore"]["revision"], 7);
    }
    // The control-plane bundle does not change: same PKI.
    assert_eq!(d["control-plane.tar.gz"], ordinary["control-plane.tar.gz"]);
    // verify accepts restore bundles as member bundles.
    let o = etcdpack(
        w,
        &["verify", "--pubkey", "dist/signing-key.pub", "dist/a.tar.gz", "dist/b.tar.gz", "dist/c.tar.gz"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("t.state/state.json")).unwrap()).unwrap();
    assert_eq!(state["restored"]["number"], 1);
    assert_eq!(state["restored"]["revision"], 7);

    // --embed: each bundle carries it, and dist/ has no copy.
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT, "--embed"]);
    assert!(o.status.success(), "{}", text(&o));
    let d = dist(w);
    assert!(!d.contains_key("snapshot.db"));
    let u = unpack(&d["b.tar.gz"]).unwrap();
    assert_eq!(*u.files["snapshot/snapshot.db"].bytes, snapshot);
    assert!(file(&d, "b", "install.sh").contains("readonly SNAPSHOT_IN_BUNDLE=snapshot/snapshot.db\n"));
    // The second restore of this state: a new token, so a new cluster ID.
    assert!(file(&d, "b", "bundle.env").contains(&format!("RESTORE_TOKEN=r-restore-2-{}\n", &sha[..12])));
    let o = etcdpack(w, &["verify", "--pubkey", "dist/signing-key.pub", "dist/b.tar.gz"]);
    assert!(o.status.success(), "{}", text(&o));

    // The next build is ordinary again (bootstrap view), a newer generation, and stays so.
    let o = etcdpack(w, &["build", "t.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1. a <- dist/a.tar.gz: the restore is done: the member's ordinary bundle again (the same manifest: no restart)"),
        "{}",
        text(&o)
    );
    let after = dist(w);
    assert!(!after.contains_key("snapshot.db"));
    for m in ["a", "b", "c"] {
        assert!(file(&after, m, "install.sh").contains("readonly ROLE=member\n"));
        let json: serde_json::Value = serde_json::from_str(&file(&after, m, "bundle.json")).unwrap();
        assert_eq!(json["role"], "bootstrap");
        assert!(json.get("restore").is_none());
        let g = |d: &BTreeMap<String, Vec<u8>>| {
            file(d, m, "bundle.env").lines().find_map(|l| l.strip_prefix("GENERATION=").map(str::to_string))
        };
        assert!(g(&after).unwrap().parse::<u64>().unwrap() > g(&ordinary).unwrap().parse::<u64>().unwrap());
        // Its manifest is the one before the restore: installing it restarts nothing.
        assert_eq!(
            file(&after, m, "rootfs/etc/kubernetes/manifests/etcd.yaml"),
            file(&ordinary, m, "rootfs/etc/kubernetes/manifests/etcd.yaml")
        );
    }
    assert!(etcdpack(w, &["build", "t.yaml"]).status.success());
    assert_eq!(dist(w), after, "byte-identical across later builds");
}

/// install.sh of `bundle` into the member's root, in its namespace, with `path` as PATH (which
/// decides the restore tool it finds).
fn install(m: &Member, bundle: &Path, path: &str, args: &[&str]) -> Output {
    crate::e2e::install_command(m, bundle, args).env("PATH", path).output().unwrap()
}

/// Every path under `root` but `except` with the SHA-256 of its bytes (a link's of its
/// target, a folder's of nothing): what "untouched" compares.
fn tree(root: &Path, except: &str) -> BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let except = root.join(except);
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let p = e.path();
            if p == except {
                continue;
            }
            let bytes = if t.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else if t.is_symlink() {
                std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(p, hex::encode(Sha256::digest(&bytes)));
        }
    }
    out
}

fn cluster_id(m: &Member, endpoint: &str) -> String {
    let o = etcdctl(m, endpoint, "apiserver-etcd-client", &["member", "list", "-w", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["header"]["cluster_id"].to_string()
}

fn put(m: &Member, endpoints: &str, key: &str) {
    let o = etcdctl(m, endpoints, "apiserver-etcd-client", &["put", key, "v"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// The etcd a restore runs with: PATH for install.sh (which decides the restore tool, named
/// `tool` in its messages) and the etcd binary that runs the members.
struct Etcd<'a> {
    path: &'a str,
    etcd: &'a str,
    tool: &'a str,
}

/// Installs the restore bundles of `w/dist` (unpacked under `w/into`) on every member, starting
/// each member's etcd from its manifest as the kubelet would once its install is done; returns
/// the seconds from the first install to a healthy cluster.
fn restore_all(
    lab: &mut Lab,
    w: &Path,
    members: &[Member],
    endpoints: &str,
    e: &Etcd<'_>,
    into: &str,
) -> (Vec<usize>, f64) {
    let (path, etcd, tool) = (e.path, e.etcd, e.tool);
    let start = Instant::now();
    let mut procs = vec![];
    for (i, m) in members.iter().enumerate() {
        let bundle = crate::e2e::unpack_dist(w, &m.name, into);
        std::fs::copy(w.join("dist/snapshot.db"), bundle.parent().unwrap().join("snapshot.db")).unwrap();
        let argv = |root: &Path| {
            let (mut argv, _) = command_from_manifest(root, false);
            argv[0] = etcd.to_string();
            argv
        };
        let last = i + 1 == members.len();
        let o = if last {
            // The last install waits (--wait) for the whole cluster: the harness starts its etcd,
            // as the kubelet would, once the restore has recorded its token.
            let mut child = crate::e2e::install_command(m, &bundle, &["--wait", "60"])
                .env("PATH", path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let record = m.root.join("etc/etcdpack/bundle.env");
            let token = std::fs::read_to_string(w.join(into).join(&m.name).join("bundle.env")).unwrap();
            let deadline = Instant::now() + std::time::Duration::from_secs(60);
            while std::fs::read_to_string(&record).ok().as_deref() != Some(token.as_str()) {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{}: install.sh ended before its restore",
                    m.name
                );
                assert!(Instant::now() < deadline, "{}: no restore within 60 s", m.name);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            procs.push(lab.spawn(&m.ns, &argv(&m.root), &w.join(format!("{}.log", m.name))));
            child.wait_with_output().unwrap()
        } else {
            install(m, &bundle, path, &[])
        };
        let said = text(&o);
        assert!(o.status.success(), "{}: {said}", m.name);
        assert!(said.contains("restored the snapshot (revision"), "{said}");
        assert!(said.contains(&format!("into /var/lib/etcd with {tool}")), "{said}");
        if last {
            assert!(said.contains(&format!("all {} members of dr are healthy", members.len())), "{said}");
            assert!(said.contains("serves the installed certificates"), "{said}");
        } else {
            procs.push(lab.spawn(&m.ns, &argv(&m.root), &w.join(format!("{}.log", m.name))));
        }
    }
    wait_healthy(members, endpoints, w);
    (procs, start.elapsed().as_secs_f64())
}

#[test]
fn a_cluster_that_lost_two_data_dirs_comes_back_from_a_snapshot() {
    crate::needs_root!();
    let etcd35 = crate::upgrade::etcd35()
        .expect("etcd 3.5.1 is missing: run the README test command (bash scripts/test), which installs it");
    let work = built(
        "cluster: dr\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: r0, address: 10.0.0.46 }\n  - { name: r1, address: 10.0.0.47 }\n  - { name: r2, address: 10.0.0.48 }\n",
    );
    let w = work.path();
    let addresses: Vec<IpAddr> = ["10.0.0.46", "10.0.0.47", "10.0.0.48"].map(|a| a.parse().unwrap()).to_vec();
    let mut lab = Lab::new("dr");
    let (members, mut procs) = crate::e2e::start_members(&mut lab, w, &["r0", "r1", "r2"], &addresses, "b0");
    let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();
    let all = endpoints.join(",");
    let before = cluster_id(&members[0], &all);

    // Keys A, the snapshot (etcdctl against one member's own client URL), keys B.
    for i in 0..40 {
        put(&members[i % 3], &all, &format!("/w/{i:06}"));
    }
    let snap = w.join("snap.db");
    let o = etcdctl(
        &members[0],
        &endpoints[0],
        "etcd/healthcheck-client",
        &["snapshot", "save", &snap.display().to_string()],
    );
    assert!(o.status.success(), "{}", text(&o));
    for i in 0..25 {
        put(&members[i % 3], &all, &format!("/after/{i:06}"));
    }
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", "snap.db"]);
    assert!(o.status.success(), "{}", text(&o));
    let debian = "/usr/sbin:/usr/bin:/sbin:/bin";

    // On a healthy cluster the restore bundle is refused, the root untouched.
    let r0 = &members[0];
    let bundle = crate::e2e::unpack_dist(w, "r0", "b1");
    std::fs::copy(w.join("dist/snapshot.db"), bundle.parent().unwrap().join("snapshot.db")).unwrap();
    // (etcd itself writes its data dir all along.)
    let untouched = tree(&r0.root, "var/lib/etcd");
    let o = install(r0, &bundle, debian, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("etcd member r0 answers healthy at https://10.0.0.46:2379"), "{}", text(&o));
    assert!(tree(&r0.root, "var/lib/etcd") == untouched);

    // Two data dirs lost, every member stopped.
    for p in &procs {
        lab.terminate(*p);
    }
    for m in &members[1..] {
        std::fs::remove_dir_all(m.root.join("var/lib/etcd")).unwrap();
    }
    // A running etcd is refused under --root (install.sh cannot stop it there): covered by
    // preflight; a tampered snapshot is refused, the root untouched.
    let mut tampered = std::fs::read(w.join("dist/snapshot.db")).unwrap();
    let n = tampered.len();
    tampered[n / 2] ^= 0x20;
    std::fs::write(w.join("tampered.db"), tampered).unwrap();
    let untouched = tree(&r0.root, "");
    let o = install(r0, &bundle, debian, &["--snapshot", &w.join("tampered.db").display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is not the one this bundle pins"), "{}", text(&o));
    assert!(tree(&r0.root, "") == untouched);
    // --dry-run changes nothing either.
    let o = install(r0, &bundle, debian, &["--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("would restore the snapshot into /var/lib/etcd with etcdctl"), "{}", text(&o));
    assert!(tree(&r0.root, "") == untouched);

    // The restore with Debian's etcdctl 3.4.23 (no etcdutl on PATH), etcd 3.4.23 running it.
    let (procs1, secs) =
        restore_all(&mut lab, w, &members, &all, &Etcd { path: debian, etcd: "etcd", tool: "etcdctl" }, "b2");
    eprintln!("restore with etcdctl 3.4.23: {secs:.1} s from the first install to a healthy cluster of 3");
    let after = cluster_id(&members[0], &all);
    assert_ne!(after, before, "a new cluster ID");
    for (m, e) in members.iter().zip(&endpoints) {
        assert_eq!(keys_on(m, e), 40, "{}: every key of A", m.name);
        let o = etcdctl(
            m,
            e,
            "apiserver-etcd-client",
            &["get", "/after/", "--prefix", "--keys-only", "--consistency=s"],
        );
        assert!(o.status.success() && o.stdout.is_empty(), "{}: none of B: {}", m.name, text(&o));
    }
    // The old data dirs are in the backups; a second run says so and changes nothing.
    assert!(
        std::fs::read_dir(r0.root.join("var/lib/etcdpack/backups")).unwrap().any(|e| e
            .unwrap()
            .path()
            .join("data-dir/member")
            .is_dir())
    );
    let rerun = crate::e2e::unpack_dist(w, "r0", "b3");
    std::fs::copy(w.join("dist/snapshot.db"), rerun.parent().unwrap().join("snapshot.db")).unwrap();
    let o = install(r0, &rerun, debian, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing to change: member r0 is already restored"), "{}", text(&o));

    // Writes go on; then the same loss again, restored with etcd 3.5.1's etcdutl (etcd 3.5.1
    // running the members).
    put(&members[1], &all, "/later/1");
    for p in &procs1 {
        lab.terminate(*p);
    }
    procs.clear();
    for m in &members[..2] {
        std::fs::remove_dir_all(m.root.join("var/lib/etcd")).unwrap();
    }
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", "snap.db"]);
    assert!(o.status.success(), "{}", text(&o));
    let with_35 = format!("{}:{debian}", etcd35.display());
    let etcd = etcd35.join("etcd").display().to_string();
    let (procs2, secs) = restore_all(
        &mut lab,
        w,
        &members,
        &all,
        &Etcd { path: &with_35, etcd: &etcd, tool: "etcdutl" },
        "b4",
    );
    eprintln!("restore with etcdutl 3.5.1: {secs:.1} s from the first install to a healthy cluster of 3");
    let again = cluster_id(&members[0], &all);
    assert_ne!(again, after, "each restore makes a new cluster");
    for (m, e) in members.iter().zip(&endpoints) {
        assert_eq!(keys_on(m, e), 40, "{}", m.name);
        let o = etcdctl(m, e, "apiserver-etcd-client", &["get", "/later/1", "--consistency=s"]);
        assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    }

    // --rollback on a stopped member puts the data dir from before this restore back.
    let r2 = &members[2];
    lab.terminate(procs2[2]);
    let bundle = crate::e2e::unpack_dist(w, "r2", "b5");
    let o = install(r2, &bundle, &with_35, &["--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("put back the data dir /var/lib/etcd from before the restore"), "{}", text(&o));
    let o = run(Command::new(etcd35.join("etcdutl"))
        .args(["snapshot", "status", "-w", "json"])
        .arg(r2.root.join("var/lib/etcd/member/snap/db")));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The first restore's data: its revision is past the snapshot's (the later put).
    assert!(
        status["revision"].as_i64().unwrap()
            > etcdpack::snapshot::status(&std::fs::read(&snap).unwrap()).unwrap().revision,
        "{status}"
    );
}

#[test]
fn a_sealed_member_takes_its_snapshot_sealed_inside() {
    let work = built(
        "cluster: s\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: a, address: 10.0.0.1, recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p] }\n  - { name: b, address: 10.0.0.2 }\n",
    );
    let w = work.path();
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the members with recipients (a) get sealed bundles"), "{}", text(&o));
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT, "--embed"]);
    assert!(o.status.success(), "{}", text(&o));
    let d = dist(w);
    assert!(d.contains_key("a.tar.gz.age") && !d.contains_key("a.tar.gz") && !d.contains_key("snapshot.db"));
    let u = unpack(&d["b.tar.gz"]).unwrap();
    assert_eq!(*u.files["snapshot/snapshot.db"].bytes, std::fs::read(SNAPSHOT).unwrap());
}

/// On a simulated host (systemd runtime, no `--root`): install.sh stops etcd.service itself,
/// gives the restored data dir to etcd.user, starts etcd.service again, and `--rollback` stops
/// it and puts the data dir from before back.
#[test]
fn on_a_systemd_host_the_restore_stops_etcd_and_gives_the_data_dir_to_its_user() {
    crate::needs_root!();
    let (uid, _) = crate::install::ids_of("etcd");
    let work = built(
        "cluster: h\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\netcd: { runtime: systemd, user: etcd }\nmembers:\n  - { name: m0, address: 10.0.0.6 }\n",
    );
    let w = work.path();
    let host = crate::host::Host::new("rs", "10.0.0.6");
    let first = crate::e2e::unpack_dist(w, "m0", "b0");
    let o = host.install(&first, &[]);
    assert!(o.status.success(), "{}", text(&o));
    // What etcd had written there before the quorum was lost.
    host.put("/var/lib/etcd/member/old", "before\n", 0o600);
    let o = etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT, "--embed"]);
    assert!(o.status.success(), "{}", text(&o));
    let bundle = crate::e2e::unpack_dist(w, "m0", "b1");
    // A restore killed (SIGKILL: no trap runs) while etcdctl restores: the data dir is in its
    // backup already, no half data dir is left where etcd would read it.
    host.fake("etcdctl", "kill -KILL $PPID; sleep 5");
    let o = install_on(&host, &bundle);
    assert!(
        !o.status.success() && text(&o).contains("moved the data dir /var/lib/etcd into the backup"),
        "{}",
        text(&o)
    );
    assert!(
        !host.changes().keys().any(|p| p.starts_with("/var/lib/etcd/") || p.starts_with("/var/lib/etcd.")),
        "{:?}",
        host.changes().keys()
    );
    std::fs::remove_file(host.dir.path().join("fakebin/etcdctl")).unwrap();
    let logged = host.log().len();
    let o = install_on(&host, &bundle);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("took over the data dir from before the interrupted restore"), "{said}");
    assert!(said.contains("with etcdctl: member m0 of a new cluster"), "{said}");
    assert!(said.contains("data dir /var/lib/etcd (mode 0700) belongs to etcd"), "{said}");
    assert_eq!(
        &host.log()[logged..],
        "systemctl stop etcd.service\nsystemctl daemon-reload\nsystemctl enable --quiet etcd.service\nsystemctl restart --no-block etcd.service\nsystemctl enable --now etcdpack-expiry.timer\nsystemctl enable --now etcdpack-snapshot.timer\n"
    );
    let t = host.changes();
    let db = &t["/var/lib/etcd/member/snap/db"];
    assert_eq!(db.1, uid, "etcd.user owns the restored data");
    assert_eq!((t["/var/lib/etcd"].0, t["/var/lib/etcd"].1), (0o700, uid));
    assert!(!t.contains_key("/var/lib/etcd/member/old"));
    assert!(t.keys().any(|p| p.ends_with("/data-dir/member/old")), "the old data dir is in the backup");
    // Again: nothing changes.
    let o = host.install(&bundle, &[]);
    assert!(text(&o).contains("already restored"), "{}", text(&o));
    // --rollback stops etcd.service first, then puts the old data dir back.
    let logged = host.log().len();
    let o = host.install(&bundle, &["--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(host.log()[logged..].starts_with("systemctl stop etcd.service\n"), "{}", host.log());
    assert_eq!(host.changes()["/var/lib/etcd/member/old"].3, b"before\n");
}

/// The same on a static pod host: the manifest moves out (the kubelet stops the pod), comes
/// back with the member's files once the data dir is restored, and the kubelet restarts.
#[test]
fn on_a_static_pod_host_the_manifest_moves_out_and_back() {
    crate::needs_root!();
    let work = built(
        "cluster: p\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: m0, address: 10.0.0.6 }\n",
    );
    let w = work.path();
    let host = crate::host::Host::new("rp", "10.0.0.6");
    host.kubelet();
    let o = host.install(&crate::e2e::unpack_dist(w, "m0", "b0"), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let manifest = host.changes()["/etc/kubernetes/manifests/etcd.yaml"].clone();
    assert!(etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT]).status.success());
    let bundle = crate::e2e::unpack_dist(w, "m0", "b1");
    std::fs::copy(w.join("dist/snapshot.db"), w.join("b1/snapshot.db")).unwrap();
    let o = host.install(&bundle, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("installed /etc/kubernetes/manifests/etcd.yaml (mode 0600)"), "{}", text(&o));
    let t = host.changes();
    assert_eq!(t["/etc/kubernetes/manifests/etcd.yaml"], manifest, "the same manifest, back in place");
    assert!(t.contains_key("/var/lib/etcd/member/snap/db"));
    let changes: Vec<String> = t
        .iter()
        .filter(|(p, _)| p.starts_with("/var/lib/etcdpack/backups/") && p.ends_with("/changes"))
        .map(|(_, f)| String::from_utf8(f.3.clone()).unwrap())
        .collect();
    assert!(
        changes
            .iter()
            .any(|c| c
                .starts_with("set-aside\t/etc/kubernetes/manifests/etcd.yaml\ndata-dir\t/var/lib/etcd\n")),
        "{changes:?}"
    );
    assert!(host.log().ends_with("systemctl daemon-reload\nsystemctl restart kubelet\nsystemctl enable --now etcdpack-expiry.timer\nsystemctl enable --now etcdpack-snapshot.timer\n"), "{}", host.log());
    // --rollback: the manifest is taken out while the data dir goes back, then returns.
    let o = host.install(&bundle, &["--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = host.changes();
    assert_eq!(t["/etc/kubernetes/manifests/etcd.yaml"], manifest);
    assert!(
        t["/var/lib/etcd"].0 == 0o700 && !t.contains_key("/var/lib/etcd/member/snap/db"),
        "{:?}",
        t.keys()
    );
}

/// install.sh of `bundle` run on `host` as root, its temporary folder on the host's own
/// /var/lib: a run killed there leaves nothing on the machine.
fn install_on(host: &crate::host::Host, bundle: &Path) -> Output {
    host.put("/var/lib/tmp/.keep", "", 0o600);
    let script = bundle.join("install.sh").display().to_string();
    host.run(&["env", "TMPDIR=/var/lib/tmp", "bash", &script])
}

/// Makes `host` one with neither etcdutl nor etcdctl, and a kubelet: Debian's etcdctl hidden
/// (an overlay whiteout) and kept for a fake `ctr`, whose `run` checks the bind mount at
/// /restore and runs the image's command on the host with that folder, through Debian's
/// etcdctl (its restore takes etcdutl's flags). `images` is the fake's answer to the `images`
/// commands, run before that.
fn image_only(host: &crate::host::Host, images: &str) {
    host.kubelet();
    let tools = host.dir.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::copy("/usr/bin/etcdctl", tools.join("etcdctl")).unwrap();
    let whiteout = host.upper("/usr/bin/etcdctl");
    run(Command::new("mknod").arg(&whiteout).args(["c", "0", "0"]));
    host.fake(
        "ctr",
        &format!(
            "echo \"ctr $*\" >> \"$FAKE_LOG\"\n\
             {images}\n\
             [ \"$3 $5 $7 $8\" = 'run --mount --env ETCDCTL_API=3' ] || exit 9\n\
             src=$(printf '%s' \"$6\" | sed -n 's/^type=bind,src=\\([^,]*\\),dst=\\/restore,options=rbind:rw$/\\1/p')\n\
             [ -n \"$src\" ] || exit 8\n\
             shift 11\n\
             args=(); for a in \"$@\"; do args+=(\"${{a//\\/restore/$src}}\"); done\n\
             ETCDCTL_API=3 exec {} \"${{args[@]}}\"",
            tools.join("etcdctl").display()
        ),
    );
}

/// A host with neither etcdutl nor etcdctl: the restore runs the etcd image's etcdutl through
/// ctr, with the snapshot's private folder mounted at /restore (here a fake ctr runs the
/// command on the host with that folder, through Debian's etcdctl, whose restore takes the
/// same flags).
#[test]
fn without_etcd_tools_the_restore_runs_the_images_etcdutl_through_ctr() {
    crate::needs_root!();
    let work = built(
        "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: m0, address: 10.0.0.6 }\n",
    );
    let w = work.path();
    assert!(etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT, "--embed"]).status.success());
    let host = crate::host::Host::new("rc", "10.0.0.6");
    image_only(&host, "");
    let o = install_on(&host, &crate::e2e::unpack_dist(w, "m0", "b1"));
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("with etcdutl of registry.k8s.io/etcd:3.6.5-0: member m0 of a new cluster"),
        "{said}"
    );
    let ran = host.log();
    assert!(ran.contains(" registry.k8s.io/etcd:3.6.5-0 etcdpack-restore-"), "{ran}");
    assert!(ran.contains(" etcdutl snapshot restore /restore/snapshot.db --name m0 --initial-cluster m0=https://10.0.0.6:2380 --initial-cluster-token c-restore-1-"), "{ran}");
    assert!(
        ran.contains(" --initial-advertise-peer-urls https://10.0.0.6:2380 --data-dir /restore/data\n"),
        "{ran}"
    );
    let t = host.changes();
    assert!(
        t.contains_key("/var/lib/etcd/member/snap/db") && t["/var/lib/etcd"].0 == 0o700,
        "{:?}",
        t.keys()
    );
}

/// Through the image, the bundle's image archive is imported before the restore runs the
/// image's etcdutl (the fake ctr refuses to run an image it has not imported).
#[test]
fn the_image_archive_is_imported_before_the_image_restores() {
    crate::needs_root!();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let archive = crate::support::fixtures().join("image-archive-v1.34/images/etcd-3.6.5-0.tar");
    std::fs::create_dir_all(w.join("images")).unwrap();
    std::fs::copy(archive, w.join("images/etcd-3.6.5-0.tar")).unwrap();
    let topology = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\netcd: { imageRepository: registry.airgap.example, imageArchive: images/etcd-3.6.5-0.tar }\nmembers:\n  - { name: m0, address: 10.0.0.6 }\n";
    std::fs::write(w.join("t.yaml"), topology).unwrap();
    assert!(etcdpack(w, &["build", "t.yaml"]).status.success());
    assert!(etcdpack(w, &["restore", "t.yaml", "--snapshot", SNAPSHOT, "--embed"]).status.success());
    let host = crate::host::Host::new("ri", "10.0.0.6");
    image_only(
        &host,
        "case \"$3 $4\" in\n\
           'images ls') [ -f \"$FAKE_LOG.imported\" ] && echo registry.airgap.example/etcd:3.6.5-0; exit 0 ;;\n\
           'images import') touch \"$FAKE_LOG.imported\"; exit 0 ;;\n\
         esac\n\
         [ -f \"$FAKE_LOG.imported\" ] || exit 7",
    );
    let o = install_on(&host, &crate::e2e::unpack_dist(w, "m0", "b1"));
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("imported registry.airgap.example/etcd:3.6.5-0 with ctr, for the restore"),
        "{said}"
    );
    assert!(said.contains("with etcdutl of registry.airgap.example/etcd:3.6.5-0: member m0"), "{said}");
    let ran = host.log();
    let import = ran.find("ctr -n k8s.io images import images/etcd-3.6.5-0.tar").expect(&ran);
    assert!(import < ran.find(" run --rm ").expect(&ran), "{ran}");
    assert_eq!(ran.matches("images import").count(), 1, "imported once: {ran}");
}

/// `--embed` refuses a snapshot bigger than a bundle may hold (verify reads no bigger bundle).
#[test]
fn embed_refuses_a_snapshot_bigger_than_a_bundle_may_hold() {
    let t = crate::support::topology_of(
        "cluster: e\nkubernetesVersion: v1.34.2\nmembers:\n  - { name: a, address: 10.0.0.1 }\n",
    );
    let mut status = etcdpack::snapshot::status(&std::fs::read(SNAPSHOT).unwrap()).unwrap();
    status.size = etcdpack::MAX_EMBEDDED_SNAPSHOT + 1;
    let big = etcdpack::Restore { bytes: Default::default(), status, embed: true };
    let mut plan = etcdpack::plan::bootstrap(&t);
    let e = etcdpack::with_restore(&mut plan, &Default::default(), &big, Default::default()).unwrap_err();
    assert!(e.to_string().contains("help: leave --embed out"), "{e}");
    assert!(plan.restore.is_none());
    let fits = etcdpack::Restore { embed: false, ..big };
    etcdpack::with_restore(&mut plan, &Default::default(), &fits, Default::default()).unwrap();
    assert!(plan.restore.is_some());
}
