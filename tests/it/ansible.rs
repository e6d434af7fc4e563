//! Delivery by Ansible: `build --emit ansible` writes a playbook that ansible-lint accepts;
//! ansible-core runs it against local connections, each member into its own root (one of them
//! sealed to its SSH host key and opened on the host by Debian's age), a real
//! cluster comes up from those roots, a second run changes nothing, restore bundles
//! (`restore --embed --emit ansible`) bring it back after a lost quorum, and a bundle altered
//! after the build stops the play on the controller before any host is touched.

use crate::e2e::{Lab, Member, command_from_manifest, url, wait_healthy};
use crate::support::have_tool;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

const TOPOLOGY: &str = "cluster: pushed\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: a0, address: 10.0.0.50 }\n  - { name: a1, address: 10.0.0.51 }\n  - { name: a2, address: 10.0.0.52 }\n";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Builds `topology` in `w` with the Ansible files.
fn build(w: &Path, topology: &str) {
    std::fs::write(w.join("t.yaml"), topology).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(["build", "t.yaml", "--emit", "ansible"])
        .current_dir(w)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// An Ansible tool with its state kept in `w` (nothing written to the home folder).
fn ansible(tool: &str, w: &Path) -> Command {
    let mut c = Command::new(tool);
    c.env("LC_ALL", "C.UTF-8")
        .env("ANSIBLE_HOME", w.join(".ansible"))
        .env("ANSIBLE_LOCAL_TEMP", w.join(".ansible/tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("NO_COLOR", "1");
    c
}

#[test]
fn the_playbook_passes_ansible_lint() {
    if !have_tool("ansible-lint") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    build(w, TOPOLOGY);
    let o = ansible("ansible-lint", w)
        .args(["--offline", "site.yml", "install-bundle.yml", "inventory.yml"])
        .current_dir(w.join("dist/ansible"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 failure(s), 0 warning(s)"), "{}", text(&o));
}

/// The recap line of each host: `host: ok=N changed=N ... failed=N`.
fn recap(o: &Output) -> Vec<(String, usize, usize)> {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .skip(1)
        .filter(|l| l.contains("changed="))
        .map(|l| {
            let field = |k: &str| -> usize {
                l.split_whitespace().find_map(|f| f.strip_prefix(k)).unwrap().parse().unwrap()
            };
            (l.split_whitespace().next().unwrap().to_string(), field("changed="), field("failed="))
        })
        .collect()
}

#[test]
fn the_playbook_installs_every_member_a_second_run_changes_nothing_and_it_delivers_a_restore() {
    crate::needs_root!();
    if !have_tool("ansible-playbook") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // a1's bundle is sealed to its SSH host key: the play opens it on the host with age.
    let host_key = w.join("a1_ssh_host_ed25519_key");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "a1", "-f"])
        .arg(&host_key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let host_pub = std::fs::read_to_string(w.join("a1_ssh_host_ed25519_key.pub")).unwrap();
    build(
        w,
        &TOPOLOGY.replace(
            "{ name: a1, address: 10.0.0.51 }",
            &format!("{{ name: a1, address: 10.0.0.51, recipients: [\"{}\"] }}", host_pub.trim()),
        ),
    );
    assert!(w.join("dist/a1.tar.gz.age").is_file() && !w.join("dist/a1.tar.gz").exists());
    let names = ["a0", "a1", "a2"];
    // The test's own inventory: local connections, one root (and bundle folder) per member,
    // no become (already root), no --wait (the harness starts etcd afterwards).
    let mut hosts = String::from("etcd:\n  hosts:\n");
    for n in names {
        hosts.push_str(&format!(
            "    {n}:\n      ansible_connection: local\n      etcdpack_root: {root}\n      etcdpack_dir: {dir}\n      etcdpack_age_identity: {key}\n",
            root = w.join(format!("root-{n}")).display(),
            dir = w.join(format!("incoming-{n}")).display(),
            key = host_key.display()
        ));
        std::fs::create_dir_all(w.join(format!("root-{n}"))).unwrap();
    }
    hosts.push_str("  vars:\n    etcdpack_become: false\n    etcdpack_wait: 0\n    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n");
    std::fs::write(w.join("hosts.yml"), hosts).unwrap();
    // The operator's pin: the fingerprint of the build's key, known from the first build.
    let pinned =
        etcdpack::sign::fingerprint_of(&std::fs::read_to_string(w.join("dist/signing-key.pub")).unwrap())
            .unwrap();
    let play_with = |pin: Option<&str>| {
        let mut c = ansible("ansible-playbook", w);
        c.args(["-i", "dist/ansible/inventory.yml", "-i", "hosts.yml", "dist/ansible/site.yml"]);
        if let Some(pin) = pin {
            c.args(["-e", &format!("etcdpack_pinned_fingerprint={pin}")]);
        }
        c.current_dir(w).output().unwrap()
    };
    let play = || play_with(Some(&pinned));

    // Without the operator's pin the play refuses to start.
    let o = play_with(None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("set etcdpack_pinned_fingerprint"), "{}", text(&o));
    assert_eq!(recap(&o), [("localhost".to_string(), 0, 1)], "{}", text(&o));

    let o = play();
    assert!(o.status.success(), "{}", text(&o));
    let first = recap(&o);
    for n in names {
        // install.sh, the one task that reports a change; the copies are gone afterwards.
        assert!(first.contains(&(n.to_string(), 1, 0)), "{n}: {first:?}\n{}", text(&o));
        assert!(!w.join(format!("incoming-{n}")).read_dir().is_ok_and(|mut d| d.next().is_some()), "{n}");
        // The key install.sh checked against is pinned on the host.
        assert!(w.join(format!("root-{n}/etc/etcdpack/signing-key.pub")).is_file(), "{n}");
    }
    assert!(first.contains(&("localhost".to_string(), 0, 0)), "{first:?}");

    // A real cluster from those roots.
    let addresses: Vec<IpAddr> = ["10.0.0.50", "10.0.0.51", "10.0.0.52"].map(|a| a.parse().unwrap()).to_vec();
    let mut lab = Lab::new("an");
    let namespaces = lab.network(&addresses);
    let members: Vec<Member> = names
        .iter()
        .zip(&addresses)
        .zip(namespaces)
        .map(|((n, a), ns)| Member {
            name: n.to_string(),
            address: *a,
            root: w.join(format!("root-{n}")),
            ns,
        })
        .collect();
    let start = |lab: &mut Lab| -> Vec<usize> {
        let procs = members
            .iter()
            .map(|m| {
                let (argv, _) = command_from_manifest(&m.root, false);
                lab.spawn(&m.ns, &argv, &w.join(format!("{}.log", m.name)))
            })
            .collect();
        let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();
        wait_healthy(&members, &endpoints.join(","), w);
        procs
    };
    let procs = start(&mut lab);
    let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();

    // The second run: every host ok, nothing changed.
    let o = play();
    assert!(o.status.success(), "{}", text(&o));
    let second = recap(&o);
    assert_eq!(second.len(), 4, "{second:?}");
    assert!(
        second.iter().all(|(_, changed, failed)| *changed == 0 && *failed == 0),
        "{second:?}\n{}",
        text(&o)
    );

    // A lost quorum, restored through the same play: keys, a snapshot, every member stopped and
    // two data dirs lost; `restore --embed --emit ansible` (a1's bundle is sealed, so the
    // snapshot travels inside), the play, the members started: a new cluster with the keys.
    let all = endpoints.join(",");
    for i in 0..10 {
        let o = crate::e2e::etcdctl(
            &members[0],
            &all,
            "apiserver-etcd-client",
            &["put", &format!("/w/{i:06}"), "v"],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let snap = w.join("snap.db").display().to_string();
    let o = crate::e2e::etcdctl(
        &members[0],
        &endpoints[0],
        "etcd/healthcheck-client",
        &["snapshot", "save", &snap],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cluster_id = || {
        let o = crate::e2e::etcdctl(
            &members[0],
            &all,
            "apiserver-etcd-client",
            &["member", "list", "-w", "json"],
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["header"]["cluster_id"].to_string()
    };
    let old_id = cluster_id();
    for p in procs {
        lab.terminate(p);
    }
    for n in ["a0", "a2"] {
        std::fs::remove_dir_all(w.join(format!("root-{n}/var/lib/etcd"))).unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(["restore", "t.yaml", "--snapshot", "snap.db", "--embed", "--emit", "ansible"])
        .current_dir(w)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = play();
    assert!(o.status.success(), "{}", text(&o));
    let restored = recap(&o);
    for n in names {
        assert!(restored.contains(&(n.to_string(), 1, 0)), "{n}: {restored:?}\n{}", text(&o));
    }
    start(&mut lab);
    assert_ne!(cluster_id(), old_id, "a new cluster");
    for (m, e) in members.iter().zip(&endpoints) {
        assert_eq!(crate::e2e::keys_on(m, e), 10, "{}", m.name);
    }

    // A bundle altered after the build: the controller's check stops the play, no host runs.
    let bundle = w.join("dist/a2.tar.gz");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    let o = play();
    assert!(!o.status.success(), "{}", text(&o));
    let third = recap(&o);
    assert_eq!(third, [("localhost".to_string(), 0, 1)], "{}", text(&o));
    assert!(text(&o).contains("Check each bundle's signature"), "{}", text(&o));

    // Every tarball signed again by an attacker's key, that key in dist/ and a patched
    // inventory: the fingerprint the operator pinned still stops the play on the controller.
    let sh = |script: &str| {
        let o = Command::new("bash").args(["-c", script]).current_dir(w.join("dist")).output().unwrap();
        assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    };
    sh(
        "openssl ecparam -name prime256v1 -genkey -noout -out ../attacker.pem && openssl pkey -in ../attacker.pem -pubout -out signing-key.pub",
    );
    sh("for t in *.tar.gz *.tar.gz.age; do openssl dgst -sha256 -sign ../attacker.pem -out $t.sig $t; done");
    let attacker =
        etcdpack::sign::fingerprint_of(&std::fs::read_to_string(w.join("dist/signing-key.pub")).unwrap())
            .unwrap();
    let inventory = w.join("dist/ansible/inventory.yml");
    let patched = std::fs::read_to_string(&inventory).unwrap().replace(
        "    etcdpack_cluster:",
        &format!("    etcdpack_pinned_fingerprint: \"{attacker}\"\n    etcdpack_cluster:"),
    );
    std::fs::write(&inventory, patched).unwrap();
    let o = play();
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(recap(&o), [("localhost".to_string(), 0, 1)], "{}", text(&o));
    assert!(text(&o).contains("Check that signing-key.pub is the pinned key"), "{}", text(&o));
}
