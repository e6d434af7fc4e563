//! The systemd runtime on a live cluster in network namespaces: three members started from
//! their etcd.service's `ExecStart`, as its `User`, a rolling renewal under a writer, a fourth
//! member added (learner, then promoted) and started the same way, then removed again.

use crate::e2e::{
    Lab, Member, Writer, command_from_unit, install_in as install, install_then_start, keys_on, run,
    unpack_dist as unpack, url, wait_healthy,
};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HEAD: &str = "cluster: plain\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\netcd: { runtime: systemd, user: etcd }\nmembers:\n";
const ADDRESSES: [&str; 4] = ["10.0.0.40", "10.0.0.41", "10.0.0.42", "10.0.0.43"];

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn etcdpack(w: &Path, args: &[&str]) -> String {
    text(&run(Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(args).current_dir(w)))
}

/// Writes the topology with the first `n` members and builds it.
fn build(w: &Path, n: usize) -> String {
    let mut t = HEAD.to_string();
    for (i, a) in ADDRESSES.iter().take(n).enumerate() {
        t.push_str(&format!("  - {{ name: s{i}, address: {a} }}\n"));
    }
    std::fs::write(w.join("t.yaml"), t).unwrap();
    etcdpack(w, &["build", "t.yaml"])
}

fn uid_of(user: &str) -> u32 {
    let o = run(Command::new("id").args(["-u", user]));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

#[test]
fn a_systemd_cluster_runs_as_its_user_renews_and_grows() {
    crate::needs_root!();
    let etcd_uid = uid_of("etcd");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // etcd runs as the user etcd: it must reach the roots below.
    std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o755)).unwrap();
    let addresses: Vec<IpAddr> = ADDRESSES.iter().map(|a| a.parse().unwrap()).collect();
    let mut lab = Lab::new("sd");
    let namespaces = lab.network(&addresses);
    let member = |i: usize| Member {
        name: format!("s{i}"),
        address: addresses[i],
        root: w.join(format!("root-s{i}")),
        ns: namespaces[i].clone(),
    };

    let started = Instant::now();
    let said = build(w, 3);
    assert!(said.contains("etcd.service runs /usr/bin/etcd as etcd"), "{said}");
    let members: Vec<Member> = (0..3).map(member).collect();
    for m in &members {
        std::fs::create_dir_all(&m.root).unwrap();
        let o = install(m, &unpack(w, &m.name, "b0"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        // The unit's user owns what etcd reads and writes; the CA key stays root's.
        for (path, uid) in [
            ("etc/kubernetes/pki/etcd/server.key", etcd_uid),
            ("etc/kubernetes/pki/etcd/peer.key", etcd_uid),
            ("var/lib/etcd", etcd_uid),
            ("etc/kubernetes/pki/etcd/healthcheck-client.key", 0),
        ] {
            assert_eq!(std::fs::metadata(m.root.join(path)).unwrap().uid(), uid, "{}: {path}", m.name);
        }
        // systemd accepts the unit as installed, with the binary it runs (Debian's etcd).
        let unit = m.root.join("etc/systemd/system/etcd.service");
        let o = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
        assert!(o.stderr.is_empty() && o.stdout.is_empty(), "{}: {}", m.name, text(&o));
        lab.spawn(&m.ns, &command_from_unit(&m.root), &w.join(format!("{}.log", m.name)));
    }
    let all: Vec<String> = members.iter().map(|m| url(&m.address, 2379)).collect();
    wait_healthy(&members, &all.join(","), w);
    let bootstrap = started.elapsed();
    // Every etcd runs as the user etcd.
    let o = run(Command::new("pgrep").args(["-u", "etcd", "-f", "--", "--name=s[0-2]"]));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3, "{}", text(&o));

    let client = w.join("client");
    std::fs::create_dir_all(&client).unwrap();
    for f in ["etcd/ca.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
        std::fs::copy(members[0].pki(f), client.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let writer = Writer::start(&members[0].ns, &all.join(","), &client);

    // A rolling renewal: each member gets its new pairs (still the user's) and serves them.
    let started = Instant::now();
    let said = etcdpack(w, &["renew", "t.yaml"]);
    assert!(said.contains("renewed 13 certificate(s)"), "{said}");
    for m in &members {
        let o = install(m, &unpack(w, &m.name, "b1"), &["--wait", "60"]);
        let said = text(&o);
        assert!(o.status.success() && said.contains("serves the installed certificates"), "{said}");
        assert!(!said.contains("etcd.service (mode"), "a renewal leaves the unit alone: {said}");
        assert_eq!(
            std::fs::metadata(m.root.join("etc/kubernetes/pki/etcd/server.key")).unwrap().uid(),
            etcd_uid,
            "{}",
            m.name
        );
    }
    let renewal = started.elapsed();

    // A fourth member: its join bundle adds it as a learner, etcd starts from its unit, and
    // install.sh promotes it once it has caught up.
    let started = Instant::now();
    let said = build(w, 4);
    assert!(said.contains("1. add s3 (https://10.0.0.43:2380) with dist/s3.tar.gz"), "{said}");
    let s3 = member(3);
    std::fs::create_dir_all(&s3.root).unwrap();
    let (o, s3_proc) =
        install_then_start(&mut lab, w, &s3, &unpack(w, "s3", "add"), &["--wait", "60"], command_from_unit);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("as a learner") && said.contains("promoted s3"), "{said}");
    let four: Vec<Member> = members.iter().cloned().chain([s3]).collect();
    let all4: Vec<String> = four.iter().map(|m| url(&m.address, 2379)).collect();
    wait_healthy(&four, &all4.join(","), w);
    let add = started.elapsed();

    // And back to three: s3's leave bundle removes it through the API, then moves its unit,
    // data dir and keys into the backup (systemd would stop it; here the harness does).
    let started = Instant::now();
    let said = build(w, 3);
    assert!(said.contains("remove s3 (https://10.0.0.43:2380)"), "{said}");
    let o = install(&four[3], &unpack(w, "s3", "leave"), &[]);
    let said = text(&o);
    assert!(o.status.success() && said.contains("removed s3"), "{said}");
    assert!(!four[3].root.join("etc/systemd/system/etcd.service").exists(), "{said}");
    lab.kill(s3_proc);
    wait_healthy(&members, &all.join(","), w);
    let leave = started.elapsed();

    std::thread::sleep(Duration::from_millis(300));
    let crate::e2e::Writes { written, retried, failed } = writer.finish();
    eprintln!(
        "systemd runtime: bootstrap 3 {:.1} s, rolling renewal {:.1} s, add s3 {:.1} s, remove s3 {:.1} s; writer {written} writes, {} retried, {} failed",
        bootstrap.as_secs_f64(),
        renewal.as_secs_f64(),
        add.as_secs_f64(),
        leave.as_secs_f64(),
        retried.len(),
        failed.len()
    );
    for r in &retried {
        eprintln!("retried after: {}", r.replace('\n', " "));
    }
    assert!(failed.is_empty(), "writes failed twice: {failed:?} (retried: {retried:?})");
    assert!(written > 10, "the writer wrote only {written} keys");
    for m in &members {
        assert!(keys_on(m, &url(&m.address, 2379)) >= written, "{} holds every key written", m.name);
    }
}
