//! Membership changes on one live cluster in network namespaces, with a writer running
//! throughout: bootstrap 3 → add a 4th → add a 5th → replace one (new address) → remove two
//! (5 → 3). After each step the member list is the topology's (names, peer URLs, no learner),
//! every member is healthy, and every key written so far reads back from every member. Along
//! the way: a join whose first run stopped before the promotion resumes, a learner already
//! added is not added twice, and at the end a join without a quorum is refused with nothing
//! changed.

use crate::e2e::{
    Lab, Member, Writer, command_from_manifest, etcdctl, install_in as install, install_then_start, run,
    unpack_dist, url, wait_healthy,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const HEAD: &str = "cluster: grow\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n";

/// The namespaces' addresses: d0..d4, then the new address of d1, then a spare.
const ADDRESSES: [&str; 7] =
    ["10.0.0.30", "10.0.0.31", "10.0.0.32", "10.0.0.33", "10.0.0.34", "10.0.0.35", "10.0.0.36"];

/// Wall-clock time of day (UTC, `HH:MM:SS.mmm`), to set the steps against the writer's log.
fn clock() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let s = now.as_secs() % 86400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, now.subsec_millis())
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Writes the topology with `members` (name, address index) and builds it.
fn build(w: &Path, members: &[(&str, usize)]) -> String {
    let mut t = HEAD.to_string();
    for (name, i) in members {
        t.push_str(&format!("  - {{ name: {name}, address: {} }}\n", ADDRESSES[*i]));
    }
    std::fs::write(w.join("t.yaml"), t).unwrap();
    let o = run(Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(["build", "t.yaml"]).current_dir(w));
    text(&o)
}

/// Unpacks `dist/<name>.tar.gz` into a fresh folder for `step` and returns the bundle folder.
fn unpack(w: &Path, name: &str, step: &str) -> PathBuf {
    unpack_dist(w, name, &format!("b-{step}"))
}

/// install.sh of a join in the background; once it has installed the manifest, the harness
/// starts etcd from it (as the kubelet would); returns install.sh's output and etcd's number.
fn join(lab: &mut Lab, w: &Path, m: &Member, bundle: &Path, args: &[&str]) -> (Output, usize) {
    install_then_start(lab, w, m, bundle, args, |root| command_from_manifest(root, false).0)
}

/// Makes member `to` the leader (MoveLeader, asked of the current leader, through `via`'s
/// namespace and certificates), unless it leads already.
fn make_leader(via: &Member, endpoints: &[String], to: &str) {
    let all = endpoints.join(",");
    let list = etcdctl(via, &all, "etcd/healthcheck-client", &["member", "list"]);
    assert!(list.status.success(), "{}", text(&list));
    let id = String::from_utf8_lossy(&list.stdout)
        .lines()
        .find(|l| l.contains(&format!(", {to}, ")))
        .map(|l| l.split(", ").next().unwrap().to_string())
        .unwrap_or_else(|| panic!("{to} is not a member: {}", text(&list)));
    let status = etcdctl(via, &all, "etcd/healthcheck-client", &["endpoint", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    // endpoint, ID, version, db size, is leader, ...
    let out = String::from_utf8_lossy(&status.stdout).to_string();
    let leader: Vec<&str> =
        out.lines().map(|l| l.split(", ").collect::<Vec<_>>()).find(|f| f.get(4) == Some(&"true")).unwrap();
    if leader[1] == id {
        return;
    }
    let o = etcdctl(via, leader[0], "etcd/healthcheck-client", &["move-leader", &id]);
    assert!(o.status.success(), "{}", text(&o));
}

/// `member list` as (name, peer URL, learner), sorted by name.
fn member_list(m: &Member, endpoints: &str) -> Vec<(String, String, bool)> {
    let o = etcdctl(m, endpoints, "etcd/healthcheck-client", &["member", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut out: Vec<(String, String, bool)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            (f[2].to_string(), f[3].to_string(), f[5].trim() == "true")
        })
        .collect();
    out.sort();
    out
}

/// After a step: the member list is `expected`, every member is healthy, and each one
/// answers (linearizable read through it alone) with at least every key written so far.
fn check(members: &[&Member], writer: &Writer, w: &Path, step: &str) {
    let endpoints: Vec<String> = members.iter().map(|m| url(&m.address, 2379)).collect();
    let all = endpoints.join(",");
    let owned: Vec<Member> = members.iter().map(|m| (*m).clone()).collect();
    wait_healthy(&owned, &all, w);
    let mut want: Vec<(String, String, bool)> =
        members.iter().map(|m| (m.name.clone(), url(&m.address, 2380), false)).collect();
    want.sort();
    assert_eq!(member_list(members[0], &all), want, "{step}: member list");
    let written = writer.written();
    for (m, e) in members.iter().zip(&endpoints) {
        let o = etcdctl(m, e, "apiserver-etcd-client", &["get", "/w/", "--prefix", "--keys-only"]);
        assert!(o.status.success(), "{step}: {}", text(&o));
        let keys = String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.is_empty()).count();
        assert!(keys >= written, "{step}: {} holds {keys} keys, {written} were written", m.name);
    }
}

#[test]
fn a_cluster_grows_moves_a_member_and_shrinks_under_a_writer() {
    crate::needs_root!();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let addresses: Vec<IpAddr> = ADDRESSES.iter().map(|a| a.parse().unwrap()).collect();
    let mut lab = Lab::new("mb");
    let namespaces = lab.network(&addresses);
    let member = |name: &str, i: usize| Member {
        name: name.to_string(),
        address: addresses[i],
        root: w.join(format!("root-{name}-{i}")),
        ns: namespaces[i].clone(),
    };
    let mut times = Vec::new();

    // Bootstrap d0..d2.
    let started = Instant::now();
    eprintln!("step at {}", clock());
    build(w, &[("d0", 0), ("d1", 1), ("d2", 2)]);
    let mut procs = std::collections::BTreeMap::new();
    let boot: Vec<Member> = (0..3).map(|i| member(&format!("d{i}"), i)).collect();
    for m in &boot {
        std::fs::create_dir_all(&m.root).unwrap();
        let o = install(m, &unpack(w, &m.name, "boot"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        let (argv, _) = command_from_manifest(&m.root, false);
        procs.insert(m.name.clone(), lab.spawn(&m.ns, &argv, &w.join(format!("{}.log", m.name))));
    }
    let steady: String = [0, 2].map(|i| url(&addresses[i], 2379)).join(",");
    let all3: Vec<String> = boot.iter().map(|m| url(&m.address, 2379)).collect();
    wait_healthy(&boot, &all3.join(","), w);
    let client = w.join("client");
    std::fs::create_dir_all(&client).unwrap();
    for f in ["etcd/ca.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
        std::fs::copy(boot[0].pki(f), client.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    // The writer goes through d0 and d2, which stay members throughout.
    let writer = Writer::start(&boot[0].ns, &steady, &client);
    check(&[&boot[0], &boot[1], &boot[2]], &writer, w, "bootstrap");
    times.push(("bootstrap 3", started.elapsed()));

    // Add d3. Its first run stops while it waits for the promotion (nothing runs etcd yet):
    // exit 3, the learner is in the cluster; the next run resumes and promotes it.
    let started = Instant::now();
    eprintln!("step at {}", clock());
    let said = build(w, &[("d0", 0), ("d1", 1), ("d2", 2), ("d3", 3)]);
    assert!(said.contains("1. add d3 (https://10.0.0.33:2380) with dist/d3.tar.gz"), "{said}");
    assert!(said.contains("d0 unchanged") && said.contains("d2 unchanged"), "{said}");
    let d3 = member("d3", 3);
    std::fs::create_dir_all(&d3.root).unwrap();
    let b3 = unpack(w, "d3", "add3");
    let o = install(&d3, &b3, &["--wait", "3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("added d3 (https://10.0.0.33:2380) to grow as a learner"), "{}", text(&o));
    let learners = member_list(&boot[0], &steady);
    assert!(
        learners.iter().any(|(_, url, learner)| url == "https://10.0.0.33:2380" && *learner),
        "{learners:?}"
    );
    let (o, p) = join(&mut lab, w, &d3, &b3, &["--wait", "60"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming the join") && text(&o).contains("promoted d3"), "{}", text(&o));
    procs.insert("d3".into(), p);
    check(&[&boot[0], &boot[1], &boot[2], &d3], &writer, w, "add d3");
    times.push(("add d3", started.elapsed()));

    // Add d4, whose learner an interrupted run already added: it is not added twice.
    let started = Instant::now();
    eprintln!("step at {}", clock());
    build(w, &[("d0", 0), ("d1", 1), ("d2", 2), ("d3", 3), ("d4", 4)]);
    let d4 = member("d4", 4);
    std::fs::create_dir_all(&d4.root).unwrap();
    // etcd refuses a change for a few seconds after the last one ("unhealthy cluster").
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = etcdctl(
            &boot[0],
            &steady,
            "etcd/healthcheck-client",
            &["member", "add", "d4", "--learner", "--peer-urls=https://10.0.0.34:2380"],
        );
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline && text(&o).contains("unhealthy cluster"), "{}", text(&o));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (o, p) = join(&mut lab, w, &d4, &unpack(w, "d4", "add4"), &["--wait", "60"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already in grow") && text(&o).contains("promoted d4"), "{}", text(&o));
    procs.insert("d4".into(), p);
    check(&[&boot[0], &boot[1], &boot[2], &d3, &d4], &writer, w, "add d4");
    times.push(("add d4", started.elapsed()));

    // d1's host dies; d1 comes back at a new address: its join removes the old one first.
    let started = Instant::now();
    eprintln!("step at {}", clock());
    // A write in flight on a leader that dies times out (etcd's doing, not etcdpack's): the
    // host that dies here is not the leader.
    let five: Vec<String> =
        [&boot[0], &boot[1], &boot[2], &d3, &d4].iter().map(|m| url(&m.address, 2379)).collect();
    make_leader(&boot[0], &five, "d0");
    eprintln!("d1 dies at {}", clock());
    lab.kill(procs["d1"]);
    let said = build(w, &[("d0", 0), ("d1", 5), ("d2", 2), ("d3", 3), ("d4", 4)]);
    assert!(said.contains("1. replace d1 (https://10.0.0.35:2380)"), "{said}");
    let d1 = member("d1", 5);
    std::fs::create_dir_all(&d1.root).unwrap();
    let (o, p) = join(&mut lab, w, &d1, &unpack(w, "d1", "replace"), &["--wait", "60"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removed the member at https://10.0.0.31:2380") && text(&o).contains("promoted d1"),
        "{}",
        text(&o)
    );
    procs.insert("d1".into(), p);
    check(&[&boot[0], &d1, &boot[2], &d3, &d4], &writer, w, "replace d1");
    times.push(("replace d1", started.elapsed()));

    // 5 → 3: the leave bundles of d3 and d4, one after the other.
    let started = Instant::now();
    eprintln!("step at {}", clock());
    let said = build(w, &[("d0", 0), ("d1", 5), ("d2", 2)]);
    assert!(said.contains("remove d3 (https://10.0.0.33:2380)") && said.contains("remove d4"), "{said}");
    // d3 leads when it leaves: its leave bundle hands leadership over first, so that no
    // write in flight is dropped with it.
    let four: Vec<String> =
        [&boot[0], &d1, &boot[2], &d3, &d4].iter().map(|m| url(&m.address, 2379)).collect();
    make_leader(&boot[0], &four, "d3");
    for (m, step) in [(&d3, "leave3"), (&d4, "leave4")] {
        let o = install(m, &unpack(w, &m.name, step), &[]);
        assert!(o.status.success(), "{}", text(&o));
        if m.name == "d3" {
            assert!(text(&o).contains("d3 led grow: handed leadership to member"), "{}", text(&o));
        }
        assert!(text(&o).contains(&format!("removed {} (ID", m.name)), "{}", text(&o));
        assert!(
            !m.root.join("etc/kubernetes/manifests/etcd.yaml").exists()
                && !m.root.join("var/lib/etcd").exists()
        );
        assert!(!m.root.join("etc/kubernetes/pki/etcd/peer.key").exists(), "keys moved into the backup");
        lab.kill(procs[&m.name]);
        // Run again: the member is gone, nothing is left to do; a rollback is refused.
        let again = install(m, &unpack(w, &m.name, step), &[]);
        assert!(again.status.success() && text(&again).contains("nothing to do"), "{}", text(&again));
        let back = install(m, &unpack(w, &m.name, step), &["--rollback"]);
        assert_eq!(back.status.code(), Some(1), "{}", text(&back));
    }
    check(&[&boot[0], &d1, &boot[2]], &writer, w, "remove d3 and d4");
    times.push(("remove d3, d4", started.elapsed()));
    let crate::e2e::Writes { written, retried, failed } = writer.finish();

    // A plan that would take 3 members to 1 at once is refused, naming the safe way.
    std::fs::write(w.join("t1.yaml"), format!("{HEAD}  - {{ name: d0, address: {} }}\n", ADDRESSES[0]))
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(["plan", "t1.yaml", "--state", "t.state"])
        .current_dir(w)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("from 3 to 1 member(s) in one step"), "{}", text(&o));

    // Without a quorum (d1 and d2 down) a new member's join is refused, its root untouched.
    lab.kill(procs["d1"]);
    lab.kill(procs["d2"]);
    build(w, &[("d0", 0), ("d1", 5), ("d2", 2), ("d5", 6)]);
    let d5 = member("d5", 6);
    std::fs::create_dir_all(&d5.root).unwrap();
    let o = install(&d5, &unpack(w, "d5", "noquorum"), &["--wait", "5"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cannot join grow: only 0 of its 3 other members answered healthy"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(&d5.root).unwrap().count(), 0, "nothing installed");

    for (step, t) in &times {
        eprintln!("{step}: {:.1} s", t.as_secs_f64());
    }
    eprintln!("writer: {written} writes, {} retried, {} failed", retried.len(), failed.len());
    for r in &retried {
        eprintln!("retried after: {}", r.replace('\n', " "));
    }
    assert!(failed.is_empty(), "writes failed twice: {failed:?} (retried: {retried:?})");
}
