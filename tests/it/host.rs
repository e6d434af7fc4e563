//! A simulated production host for install.sh: a network namespace that holds the member's
//! address, and a private mount namespace in which /etc, /var/lib, /usr/bin, /usr/local/bin
//! and /usr/local/sbin are overlays whose upper layers live in a temp folder. install.sh runs
//! unmodified, as root, without --root; everything it changes lands in the upper layers, where
//! the tests read it, and the real machine is never touched. Fake `systemctl`, `ctr` and friends go first in PATH.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OVERLAID: [&str; 5] = ["/etc", "/var/lib", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"];

pub struct Host {
    pub dir: tempfile::TempDir,
    pub ns: String,
    own_ns: bool,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

impl Host {
    /// A host whose only interface holds `address`.
    pub fn new(tag: &str, address: &str) -> Host {
        crate::e2e::require_tools();
        let ns = format!("eph{}{tag}", std::process::id() % 100000);
        ip(&["netns", "add", &ns]);
        // Constructed at once, so that a failure below still removes the namespace.
        let host = Host::in_namespace(ns.clone(), true);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]);
        let cidr = format!("{address}/{}", if address.contains(':') { 64 } else { 24 });
        let mut args = vec!["-n", &ns, "addr", "add", cidr.as_str(), "dev", "eth0"];
        if address.contains(':') {
            args.push("nodad");
        }
        ip(&args);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "eth1", "up"]);
        host
    }

    /// A host in an existing namespace (a member of the end-to-end cluster).
    pub fn in_namespace(ns: String, own_ns: bool) -> Host {
        let dir = tempfile::tempdir().unwrap();
        for d in OVERLAID {
            std::fs::create_dir_all(dir.path().join(format!("upper{d}"))).unwrap();
            std::fs::create_dir_all(dir.path().join(format!("work{d}"))).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("fakebin")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let host = Host { dir, ns, own_ns };
        host.fake("systemctl", "echo \"systemctl $*\" >> \"$FAKE_LOG\"");
        host
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fake.log")).unwrap_or_default()
    }

    /// Puts an executable script first in install.sh's PATH.
    pub fn fake(&self, name: &str, body: &str) {
        let p = self.dir.path().join("fakebin").join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Creates a file on the simulated host (in the upper layer), e.g. the kubelet binary.
    pub fn put(&self, path: &str, body: &str, mode: u32) {
        let p = self.upper(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn upper(&self, path: &str) -> PathBuf {
        let base = OVERLAID.iter().find(|d| path.starts_with(&format!("{d}/"))).expect("an overlaid path");
        self.dir.path().join(format!("upper{base}")).join(&path[base.len() + 1..])
    }

    pub fn kubelet(&self) {
        self.put("/usr/bin/kubelet", "#!/bin/sh\nexit 0\n", 0o755);
    }

    /// Runs `bundle/install.sh args` on the host, as `user` (root when None).
    pub fn install_as(&self, bundle: &Path, args: &[&str], user: Option<u32>) -> Output {
        let script = bundle.join("install.sh").display().to_string();
        let argv: Vec<&str> = ["bash", script.as_str()].into_iter().chain(args.iter().copied()).collect();
        self.run_as(&argv, user)
    }

    /// Runs a command on the host (its overlays mounted, its fakes first in PATH).
    pub fn run(&self, argv: &[&str]) -> Output {
        self.run_as(argv, None)
    }

    fn run_as(&self, argv: &[&str], user: Option<u32>) -> Output {
        let d = self.dir.path().display().to_string();
        // /var/lib starts empty, so that what the machine itself keeps there (an etcd
        // package's data dir, say) cannot leak into the simulated host.
        let mounts: String = OVERLAID
            .iter()
            .map(|m| {
                let lower = if *m == "/var/lib" { format!("{d}/empty") } else { m.to_string() };
                format!("mount -t overlay overlay -o lowerdir={lower},upperdir={d}/upper{m},workdir={d}/work{m} {m}; ")
            })
            .collect();
        let drop = match user {
            Some(uid) => format!("setpriv --reuid={uid} --regid={uid} --clear-groups "),
            None => String::new(),
        };
        // Each simulated host has its own /run/etcdpack (install.sh's lock), on a root-only tmpfs.
        let script = format!(
            "set -e; {mounts} mkdir -p /run/etcdpack; mount -t tmpfs -o mode=0700 tmpfs /run/etcdpack; export PATH={d}/fakebin:$PATH FAKE_LOG={d}/fake.log; {drop}\"$@\""
        );
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "bash",
                "-c",
                &script,
                "host",
            ])
            .args(argv)
            .output()
            .unwrap()
    }

    pub fn install(&self, bundle: &Path, args: &[&str]) -> Output {
        self.install_as(bundle, args, None)
    }

    /// Everything install.sh changed on the host: path -> (mode, uid, gid, bytes).
    pub fn changes(&self) -> BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        for d in OVERLAID {
            let upper = self.dir.path().join(format!("upper{d}"));
            for e in walkdir::WalkDir::new(&upper).min_depth(1) {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                let body = if m.is_file() { std::fs::read(e.path()).unwrap() } else { vec![] };
                let rel = format!("{d}/{}", e.path().strip_prefix(&upper).unwrap().display());
                // A folder the overlay copied up unchanged (a file below it came and went)
                // is no change to the host.
                let lower = std::fs::metadata(&rel).ok().filter(|_| m.is_dir() && d != "/var/lib");
                if lower.is_some_and(|l| {
                    l.is_dir() && (l.mode(), l.uid(), l.gid()) == (m.mode(), m.uid(), m.gid())
                }) {
                    continue;
                }
                out.insert(rel, (m.mode() & 0o7777, m.uid(), m.gid(), body));
            }
        }
        out
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.own_ns {
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
    }
}

pub fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
