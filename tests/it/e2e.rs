//! A real etcd cluster from the bundles. Each member gets its own network namespace (so the
//! manifests' addresses and loopback listeners work unmodified), its own root laid out by its
//! bundle's `install.sh --root`, and an etcd started with the exact flags of its etcd.yaml,
//! with only host paths moved into that root. Needs root, iproute2, etcd and etcdctl: the
//! README's test command installs them. Every wait is bounded and everything is cleaned up.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Flags of etcd 3.6 manifests that Debian's etcd 3.4 does not know.
const ETCD36_ONLY: [&str; 2] = ["--feature-gates=", "--watch-progress-notify-interval="];

/// Whether this process can run the tests that need root (network and mount namespaces).
/// As root every tool must be there (CI must not skip silently); as another user the test
/// is skipped with a reason, so that `cargo test` works on a laptop.
pub fn live_env(test: &str) -> bool {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if !root {
        eprintln!("skipped {test}: it needs root (network namespaces); bash scripts/test runs it as root");
        return false;
    }
    require_tools();
    true
}

pub fn require_tools() {
    let missing: Vec<&str> = ["ip", "etcd", "etcdctl", "curl", "bash", "sha256sum", "setpriv"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success()
        })
        .collect();
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    assert!(
        missing.is_empty() && root,
        "the end-to-end test needs root and {missing:?}: run the README test command (bash scripts/test), which installs them"
    );
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Namespaces and processes of one test cluster; dropping it stops and removes everything.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    procs: Vec<Child>,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        Lab { prefix: format!("ep{}{tag}", std::process::id() % 100000), namespaces: vec![], procs: vec![] }
    }

    fn ns(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &full]);
        self.namespaces.push(full.clone());
        ip(&["-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// A switch namespace with a bridge, and one namespace per member wired to it.
    pub fn network(&mut self, addresses: &[IpAddr]) -> Vec<String> {
        let sw = self.ns("sw");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        let mut out = vec![];
        for (i, addr) in addresses.iter().enumerate() {
            let ns = self.ns(&format!("m{i}"));
            let (inner, outer) = (format!("{}i{i}", self.prefix), format!("{}o{i}", self.prefix));
            ip(&["link", "add", &inner, "netns", &ns, "type", "veth", "peer", "name", &outer, "netns", &sw]);
            ip(&["-n", &sw, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &outer, "up"]);
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            match addr {
                IpAddr::V4(_) => ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]),
                IpAddr::V6(_) => {
                    ip(&["-n", &ns, "addr", "add", &format!("{addr}/64"), "dev", "eth0", "nodad"])
                }
            }
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            out.push(ns);
        }
        out
    }

    pub fn stop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        self.procs.clear();
    }

    /// Kills the process `spawn` numbered `i`.
    pub fn kill(&mut self, i: usize) {
        let _ = self.procs[i].kill();
        let _ = self.procs[i].wait();
    }

    /// Stops process `i` as the kubelet or systemd stops etcd: SIGTERM (etcd hands over its
    /// leadership and closes its connections), SIGKILL if it has not ended within 10 s.
    pub fn terminate(&mut self, i: usize) {
        let pid = self.procs[i].id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.procs[i].try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill(i);
    }

    /// Starts `argv` in namespace `ns`, output appended to `log`; returns its number.
    pub fn spawn(&mut self, ns: &str, argv: &[String], log: &Path) -> usize {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push(child);
        self.procs.len() - 1
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub address: IpAddr,
    pub root: PathBuf,
    pub ns: String,
}

impl Member {
    pub fn pki(&self, file: &str) -> String {
        self.root.join("etc/kubernetes/pki").join(file).display().to_string()
    }
}

/// Keys under `/w/` (the writer's) as one member holds them: a serializable read through
/// `endpoint`, so its own copy.
pub fn keys_on(m: &Member, endpoint: &str) -> usize {
    let o = etcdctl(
        m,
        endpoint,
        "apiserver-etcd-client",
        &["get", "/w/", "--prefix", "--keys-only", "--consistency=s"],
    );
    assert!(o.status.success(), "{}", crate::host::out(&o));
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.is_empty()).count()
}

/// install.sh of `bundle` in the background, into the member's root; once it has installed
/// every file (the data dir comes last), the harness starts etcd with `argv_of(root)` (as the
/// kubelet or systemd would); returns install.sh's output and etcd's number in the lab.
pub fn install_then_start(
    lab: &mut Lab,
    w: &Path,
    m: &Member,
    bundle: &Path,
    args: &[&str],
    argv_of: impl Fn(&Path) -> Vec<String>,
) -> (Output, usize) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &m.ns, "bash"])
        .arg(bundle.join("install.sh"))
        .arg("--root")
        .arg(&m.root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = m.root.join("var/lib/etcd");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            panic!("{}: install.sh ended before it installed anything:\n{}", m.name, crate::host::out(&o));
        }
        assert!(Instant::now() < deadline, "{}: nothing installed in 60 s", m.name);
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = w.join(format!("{}.log", m.name));
    let proc = lab.spawn(&m.ns, &argv_of(&m.root), &log);
    let o = child.wait_with_output().unwrap();
    if !o.status.success() {
        let tail: String = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n");
        eprintln!("--- {} (last lines, newest first)\n{tail}", m.name);
    }
    (o, proc)
}

/// The words of a systemd command line (`ExecStart=` value), as systemd reads them: split at
/// blanks outside double quotes, `\\`, `\"`, `\n`, `\t` unescaped, `%%` and `$$` undoubled.
pub fn systemd_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.get_or_insert_with(String::new);
            }
            '\\' => {
                let e = chars.next().expect("an escape at the end of the line");
                cur.get_or_insert_with(String::new).push(match e {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            '%' | '$' if chars.peek() == Some(&c) => {
                chars.next();
                cur.get_or_insert_with(String::new).push(c);
            }
            '%' | '$' => panic!("an unescaped {c} in {line}: systemd would expand it"),
            ' ' | '\t' if !quoted => words.extend(cur.take()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "an unclosed quote in {line}");
    words.extend(cur);
    words
}

/// A member's etcd.service (systemd runtime): its `User=` and the words of its `ExecStart=`
/// (continuation lines joined).
pub fn unit_command(root: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(root.join("etc/systemd/system/etcd.service")).unwrap();
    let user = text.lines().find_map(|l| l.strip_prefix("User=")).expect("a User= line").to_string();
    let mut exec = String::new();
    let mut lines = text.lines().skip_while(|l| !l.starts_with("ExecStart="));
    let first = lines.next().expect("an ExecStart= line").trim_start_matches("ExecStart=");
    let mut line = first;
    loop {
        match line.strip_suffix('\\') {
            Some(rest) => {
                exec.push_str(rest);
                line = lines.next().expect("a continuation line");
            }
            None => {
                exec.push_str(line);
                break;
            }
        }
    }
    (user, systemd_words(&exec))
}

/// What systemd would run for a member's etcd.service, as the unit's `User`, host paths of
/// the PKI and the data dir moved into `root` (the binary stays the host's).
pub fn command_from_unit(root: &Path) -> Vec<String> {
    let (user, words) = unit_command(root);
    let moved = words.into_iter().map(|a| {
        let Some((flag, value)) = a.split_once('=') else { return a };
        if value.starts_with("/etc/kubernetes/") || value.starts_with("/var/lib/") {
            format!("{flag}={}{value}", root.display())
        } else {
            a
        }
    });
    ["setpriv".to_string(), format!("--reuid={user}"), format!("--regid={user}"), "--init-groups".to_string()]
        .into_iter()
        .chain(moved)
        .collect()
}

/// The etcd command of a member's manifest, host paths moved into `root`.
pub fn command_from_manifest(root: &Path, drop_36_flags: bool) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(root.join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    use saphyr::LoadableYamlNode;
    let pod = saphyr::YamlOwned::load_from_str(&text).unwrap().remove(0);
    let container = &pod["spec"]["containers"][0];
    // mountPath -> hostPath, through the volume names, as the kubelet would mount them.
    let host_paths: BTreeMap<&str, &str> = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["hostPath"]["path"].as_str().unwrap()))
        .collect();
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let host = host_paths[m["name"].as_str().unwrap()];
            (m["mountPath"].as_str().unwrap().to_string(), format!("{}{host}", root.display()))
        })
        .collect();
    let mut dropped = vec![];
    let argv = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .filter(|a| {
            let drop = drop_36_flags && ETCD36_ONLY.iter().any(|f| a.starts_with(f));
            if drop {
                dropped.push(a.clone());
            }
            !drop
        })
        .map(|a| {
            let Some((flag, value)) = a.split_once('=') else { return a };
            let value = mounts
                .iter()
                .find(|(mount, _)| value == mount || value.starts_with(&format!("{mount}/")))
                .map(|(mount, host)| value.replacen(mount.as_str(), host, 1))
                .unwrap_or_else(|| value.to_string());
            format!("{flag}={value}")
        })
        .collect();
    (argv, dropped)
}

pub fn etcdctl(m: &Member, endpoints: &str, cert: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &m.ns, "etcdctl", "--dial-timeout=2s", "--command-timeout=5s"])
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", m.pki("etcd/ca.crt")))
        .arg(format!("--cert={}", m.pki(&format!("{cert}.crt"))))
        .arg(format!("--key={}", m.pki(&format!("{cert}.key"))))
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap()
}

pub fn url(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("https://{a}:{port}"),
        IpAddr::V6(a) => format!("https://[{a}]:{port}"),
    }
}

/// Waits (60 s at most) until etcdctl finds every member healthy; panics with their logs
/// (`<name>.log` in `w`) if not.
pub fn wait_healthy(members: &[Member], endpoints: &str, w: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = etcdctl(&members[0], endpoints, "etcd/healthcheck-client", &["endpoint", "health"]);
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        if o.status.success() && text.matches("is healthy").count() == members.len() {
            return;
        }
        if Instant::now() > deadline {
            let logs: String = members
                .iter()
                .map(|m| {
                    let log = std::fs::read_to_string(w.join(format!("{}.log", m.name))).unwrap_or_default();
                    format!("--- {}\n{log}", m.name)
                })
                .collect();
            panic!("cluster not healthy within 60s:\n{text}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Builds `topology` with the real binary, installs every bundle with `install.sh --root`,
/// starts the cluster and checks it from the outside.
fn cluster(tag: &str, topology: &str) {
    require_tools();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("t.yaml"), topology).unwrap();
    let o = run(Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(["build", "t.yaml"]).current_dir(w));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    let (t, _) = etcdpack::topology::parse("t.yaml", topology, &etcdpack::fsio::DirFiles(w.to_path_buf()));
    let t = t.unwrap();
    let plan = etcdpack::plan::bootstrap(&t);
    let drop_36 = plan.behaviour.etcd36_flags;

    let mut lab = Lab::new(tag);
    let addresses: Vec<IpAddr> = plan.members.iter().map(|m| m.address).collect();
    let namespaces = lab.network(&addresses);
    let mut members = vec![];
    for (m, ns) in plan.members.iter().zip(namespaces) {
        let unpacked = w.join("unpacked");
        std::fs::create_dir_all(&unpacked).unwrap();
        run(Command::new("tar")
            .arg("xzf")
            .arg(w.join(format!("dist/{}.tar.gz", m.name)))
            .arg("-C")
            .arg(&unpacked));
        let root = w.join(format!("root-{}", m.name));
        std::fs::create_dir_all(&root).unwrap();
        let o =
            run(Command::new("bash").arg(unpacked.join(&m.name).join("install.sh")).arg("--root").arg(&root));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("done:"),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        let (mut argv, dropped) = command_from_manifest(&root, drop_36);
        if !dropped.is_empty() {
            eprintln!("{}: etcd 3.4 does not know {dropped:?}; started without them", m.name);
        }
        assert_eq!(dropped.len(), if drop_36 { 2 } else { 0 });
        // A manifest for etcd 3.5 (kubeadm 1.29-1.33) runs unmodified on a real etcd 3.5.
        if !drop_36 {
            let etcd35 = crate::upgrade::etcd35().expect(
                "etcd 3.5.1 is missing: run the README test command (bash scripts/test), which installs it",
            );
            assert_eq!(argv[0], "etcd");
            argv[0] = etcd35.join("etcd").display().to_string();
        }
        lab.spawn(&ns, &argv, &w.join(format!("{}.log", m.name)));
        members.push(Member { name: m.name.clone(), address: m.address, root, ns });
    }

    let endpoints: Vec<String> = members.iter().map(|m| url(&m.address, plan.client_port)).collect();
    let all = endpoints.join(",");
    wait_healthy(&members, &all, w);
    if !drop_36 {
        for m in &members {
            let log = std::fs::read_to_string(w.join(format!("{}.log", m.name))).unwrap();
            assert!(log.contains("\"etcd-version\":\"3.5.1\""), "{} runs etcd 3.5.1", m.name);
        }
    }

    // The metrics listener of the manifest (loopback, plain HTTP) answers inside each namespace.
    for m in &members {
        let probe = &plan.members.iter().find(|p| p.name == m.name).unwrap().probe;
        let host = if probe.host.contains(':') { format!("[{}]", probe.host) } else { probe.host.clone() };
        let o = run(Command::new("ip")
            .args(["netns", "exec", &m.ns, "curl", "-sf", "--max-time", "5"])
            .arg(format!("http://{host}:{}/health", probe.port)));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("\"health\":\"true\""),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }

    // A write through the first member is read through the last, as the API server would.
    let (first, last) = (&members[0], &members[members.len() - 1]);
    let o = etcdctl(first, &endpoints[0], "apiserver-etcd-client", &["put", "/etcdpack/e2e", tag]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = etcdctl(
        last,
        &endpoints[endpoints.len() - 1],
        "apiserver-etcd-client",
        &["get", "/etcdpack/e2e", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), tag);
    let o = etcdctl(first, &all, "etcd/healthcheck-client", &["member", "list"]);
    let list = String::from_utf8_lossy(&o.stdout);
    for m in &members {
        assert!(list.contains(&format!(", started, {}, ", m.name)), "{list}");
    }

    // A client certificate from another CA is refused.
    let other = w.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("o.yaml"), "cluster: other\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers: [ { name: x, address: 192.0.2.1 } ]\n").unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(["build", "o.yaml"]).current_dir(&other));
    let foreign = other.join("o.state/members/x");
    let o = Command::new("ip")
        .args(["netns", "exec", &first.ns, "etcdctl", "--dial-timeout=2s", "--command-timeout=3s"])
        .arg(format!("--endpoints={}", endpoints[0]))
        .arg(format!("--cacert={}", first.pki("etcd/ca.crt")))
        .arg(format!("--cert={}", foreign.join("apiserver-etcd-client.crt").display()))
        .arg(format!("--key={}", foreign.join("apiserver-etcd-client.key").display()))
        .args(["get", "/etcdpack/e2e"])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a foreign client certificate was accepted: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains(tag));

    // install.sh on the first member's host: its ports are held by its own etcd, which is
    // allowed, and --wait finds it healthy on the metrics endpoint and the client URL.
    let host = crate::host::Host::in_namespace(first.ns.clone(), false);
    host.kubelet();
    let bundle = w.join("unpacked").join(&first.name);
    let o = host.install(&bundle, &["--no-restart", "--wait", "30"]);
    let text = crate::host::out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(&format!("etcd member {} is healthy", first.name)), "{text}");
    // Stopped, it is not: --wait gives up after its time, with exit code 3.
    lab.stop();
    let started = Instant::now();
    let o = host.install(&bundle, &["--no-restart", "--wait", "3"]);
    let text = crate::host::out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(text.contains("nothing to change") && text.contains("etcd is not healthy after 3s"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30), "the wait is bounded");
}

#[test]
fn a_v1_33_cluster_runs_from_unmodified_manifests() {
    crate::needs_root!();
    cluster(
        "a",
        "cluster: e2e\nkubernetesVersion: v1.33.1\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n",
    );
}

#[test]
fn the_guides_v1_34_cluster_runs_without_the_two_etcd_3_6_flags() {
    crate::needs_root!();
    cluster(
        "b",
        "cluster: e2e\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n",
    );
}

#[test]
fn an_ipv6_cluster_with_custom_ports_runs() {
    crate::needs_root!();
    cluster(
        "c",
        "cluster: e2e6\nkubernetesVersion: v1.30.4\npki: { keyAlgorithm: ECDSA-P256 }\netcd: { clientPort: 12379, peerPort: 12380 }\nmembers:\n  - { name: etcd-a, address: \"fd00:10::6\" }\n  - { name: etcd-b, address: \"fd00:10::7\" }\n  - { name: etcd-c, address: \"fd00:10::8\" }\n",
    );
}

#[test]
fn a_v1_36_cluster_with_appended_extra_args_runs_without_the_two_etcd_3_6_flags() {
    crate::needs_root!();
    cluster(
        "d",
        "cluster: e2e36\nkubernetesVersion: v1.36.1\npki: { keyAlgorithm: ECDSA-P256 }\netcd:\n  extraArgs:\n    - { name: auto-compaction-retention, value: \"8\" }\n    - { name: snapshot-count, value: \"20000\" }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n",
    );
}

#[test]
fn a_v1_37_cluster_runs_without_the_two_etcd_3_6_flags() {
    crate::needs_root!();
    cluster(
        "e",
        "cluster: e2e37\nkubernetesVersion: v1.37.0\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n",
    );
}

/// A client that writes `/w/000000`, `/w/000001`, ... one put after another through
/// `endpoints` (from namespace `ns`, with the CA and client pair in `client`) until finished.
/// A put that fails is tried once more, starting at the next endpoint, as a client of etcd
/// would: etcd drops a proposal that a follower forwarded to a leader just as leadership moves
/// (a transfer, a removal, an election under load), and that put then times out although
/// nothing is wrong; a member that restarts closes the connections it had. Each retry
/// is kept with the error that caused it; a put whose retry fails too is a failure.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    handle: std::thread::JoinHandle<(Vec<String>, Vec<String>)>,
}

/// What a writer did.
pub struct Writes {
    /// Puts that succeeded (each key once).
    pub written: usize,
    /// The errors of first attempts that a retry then made good.
    pub retried: Vec<String>,
    /// Puts that failed twice.
    pub failed: Vec<String>,
}

impl Writer {
    /// `client` holds ca.crt, apiserver-etcd-client.crt and apiserver-etcd-client.key.
    pub fn start(ns: &str, endpoints: &str, client: &Path) -> Writer {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, n, ns, endpoints, client) =
            (stop.clone(), ok.clone(), ns.to_string(), endpoints.to_string(), client.to_path_buf());
        // The retry starts at the next endpoint, as a client fails over from a member that
        // went away under it (etcdctl tries the endpoints in their order).
        let failover = {
            let mut e: Vec<&str> = endpoints.split(',').collect();
            e.rotate_left(1);
            e.join(",")
        };
        let handle = std::thread::spawn(move || {
            let put_to = |endpoints: &str, i: usize| {
                Command::new("ip")
                    .args(["netns", "exec", &ns, "etcdctl", "--dial-timeout=2s", "--command-timeout=5s"])
                    .arg(format!("--endpoints={endpoints}"))
                    .arg(format!("--cacert={}", client.join("ca.crt").display()))
                    .arg(format!("--cert={}", client.join("apiserver-etcd-client.crt").display()))
                    .arg(format!("--key={}", client.join("apiserver-etcd-client.key").display()))
                    .args(["put", &format!("/w/{i:06}"), &format!("{i}")])
                    .env("ETCDCTL_API", "3")
                    .output()
                    .unwrap()
            };
            let (mut retried, mut failed) = (Vec::new(), Vec::new());
            while !s.load(Ordering::Relaxed) {
                let i = n.load(Ordering::Relaxed);
                let first = put_to(&endpoints, i);
                if first.status.success() {
                    n.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let second = put_to(&failover, i);
                if second.status.success() {
                    retried.push(crate::host::out(&first));
                    n.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.push(format!("{}; then {}", crate::host::out(&first), crate::host::out(&second)));
                }
            }
            (retried, failed)
        });
        Writer { stop, ok, handle }
    }

    /// How many puts succeeded so far.
    pub fn written(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the writer and says what it did.
    pub fn finish(self) -> Writes {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (retried, failed) = self.handle.join().unwrap();
        Writes { written: self.ok.load(std::sync::atomic::Ordering::Relaxed), retried, failed }
    }
}

/// The members `names` at `addresses` of the bundles in `<w>/dist`, each installed into
/// `<w>/root-<name>` (unpacked under `<w>/<into>`) and started from its manifest in the lab's
/// network; returns them with their process numbers once the cluster is healthy.
pub fn start_members(
    lab: &mut Lab,
    w: &Path,
    names: &[&str],
    addresses: &[IpAddr],
    into: &str,
) -> (Vec<Member>, Vec<usize>) {
    let namespaces = lab.network(addresses);
    let mut members = vec![];
    let mut procs = vec![];
    for ((name, address), ns) in names.iter().zip(addresses).zip(namespaces) {
        let root = w.join(format!("root-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        let m = Member { name: name.to_string(), address: *address, root, ns };
        let o = install_in(&m, &unpack_dist(w, name, into), &[]);
        assert!(o.status.success(), "{}", crate::host::out(&o));
        let (argv, _) = command_from_manifest(&m.root, false);
        procs.push(lab.spawn(&m.ns, &argv, &w.join(format!("{name}.log"))));
        members.push(m);
    }
    let endpoints: Vec<String> = addresses.iter().map(|a| url(a, 2379)).collect();
    wait_healthy(&members, &endpoints.join(","), w);
    (members, procs)
}

/// Unpacks `<w>/dist/<name>.tar.gz` into `<w>/<into>` and returns the bundle folder.
pub fn unpack_dist(w: &Path, name: &str, into: &str) -> PathBuf {
    let dir = w.join(into);
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new("tar").arg("xzf").arg(w.join(format!("dist/{name}.tar.gz"))).arg("-C").arg(&dir));
    dir.join(name)
}

/// install.sh of `bundle` into the member's root, run inside its namespace (so the cluster
/// steps reach the members as the host would).
pub fn install_in(m: &Member, bundle: &Path, args: &[&str]) -> std::process::Output {
    install_command(m, bundle, args).output().unwrap()
}

/// The command [`install_in`] runs, for a caller to add to (its PATH, say).
pub fn install_command(m: &Member, bundle: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &m.ns, "bash"])
        .arg(bundle.join("install.sh"))
        .arg("--root")
        .arg(&m.root)
        .args(args);
    c
}
