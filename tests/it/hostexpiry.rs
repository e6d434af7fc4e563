//! The host-side expiry check `etcdpack-expiry` as the daily timer runs it, against a built
//! bundle's certificates, with the clock set by faketime (so every figure is exact): the
//! lines it prints, the journal priority, the exit code and the node_exporter textfile; it
//! runs unprivileged, and writes through no link another user plants.

use crate::support::{NOW, built};
use std::path::Path;
use std::process::{Command, Output};

/// Runs the bundle's `etcdpack-expiry --root <unpacked rootfs>` at `at` (seconds since the
/// epoch); `journal` sets JOURNAL_STREAM as systemd does for a service.
fn run_at(rootfs: &Path, at: i64, journal: bool, args: &[&str]) -> Output {
    let stamp = etcdpack::x509::rfc3339(at).replace('T', " ").replace('Z', "");
    let mut cmd = Command::new("faketime");
    // A frozen clock at `at`, read in UTC.
    cmd.env("TZ", "UTC")
        .arg("-f")
        .arg(&stamp)
        .arg("sh")
        .arg(rootfs.join("usr/local/sbin/etcdpack-expiry"))
        .arg("--root")
        .arg(rootfs)
        .args(args)
        .env_remove("JOURNAL_STREAM");
    if journal {
        cmd.env("JOURNAL_STREAM", "8:12345");
    }
    cmd.output().unwrap()
}

/// Writes infra1's bundle's `rootfs/` files under `rootfs`.
fn unpack_rootfs(b: &crate::support::Built, rootfs: &Path) {
    for (path, e) in &b.bundles["infra1"].files {
        if let Some(rest) = path.strip_prefix("rootfs/") {
            let dest = rootfs.join(rest);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(&dest, &e.bytes).unwrap();
        }
    }
}

#[test]
fn etcdpack_expiry_reports_warns_and_writes_the_textfile_metric() {
    if !crate::support::have_tool("faketime") {
        return;
    }
    let b = built("guide-v1.34");
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    unpack_rootfs(&b, &rootfs);
    let script = rootfs.join("usr/local/sbin/etcdpack-expiry");
    let sc = Command::new("shellcheck").arg("-s").arg("sh").arg(&script).output().unwrap();
    assert!(sc.status.success(), "{}", String::from_utf8_lossy(&sc.stdout));
    let leaf_end = b.build.pki.leaves["infra1"][&etcdpack::profile::Leaf::EtcdServer].info.not_after;
    let ca_end = b.build.pki.ca.info.not_after;

    // Far from expiry: one line per certificate, exit 0, no textfile folder, no file.
    let o = run_at(&rootfs, NOW, false, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.contains(&format!("etcd-server of infra1 expires in {} days", (leaf_end - NOW) / 86400)),
        "{out}"
    );
    assert!(o.stderr.is_empty());

    // Ten days before the leaves expire, under systemd, with its metric folder present.
    let textfiles = rootfs.join("run/etcdpack-expiry");
    std::fs::create_dir_all(&textfiles).unwrap();
    let at = leaf_end - 10 * 86400;
    let o = run_at(&rootfs, at, true, &[]);
    assert_eq!(o.status.code(), Some(1), "inside the window");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(err.lines().all(|l| l.starts_with("<4>etcdpack-expiry: warning: ")), "journal priority 4: {err}");
    assert!(err.contains("etcd-peer of infra1 expires in 10 days: renew it (etcdpack renew)"), "{err}");
    let prom = std::fs::read_to_string(textfiles.join("etcdpack-expiry.prom")).unwrap();
    let mut expected = String::from(
        "# HELP etcdpack_certificate_expiry_seconds Seconds until the certificate expires (negative once expired).\n# TYPE etcdpack_certificate_expiry_seconds gauge\n",
    );
    expected.push_str(&format!(
        "etcdpack_certificate_expiry_seconds{{member=\"infra1\",certificate=\"etcd-ca\"}} {}\n",
        ca_end - at
    ));
    for name in ["etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"] {
        expected.push_str(&format!(
            "etcdpack_certificate_expiry_seconds{{member=\"infra1\",certificate=\"{name}\"}} 864000\n"
        ));
    }
    assert_eq!(prom, expected);
    assert_eq!(std::fs::read_dir(&textfiles).unwrap().count(), 1, "no temporary file left");

    // Expired, outside systemd: plain warnings on stderr, a negative metric.
    let o = run_at(&rootfs, leaf_end + 3 * 86400, false, &["--within", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("etcdpack-expiry: warning: etcd-server of infra1 expired 3 days ago"), "{err}");
    assert!(std::fs::read_to_string(textfiles.join("etcdpack-expiry.prom")).unwrap().contains("} -259200\n"));

    // A missing certificate is a warning too; bad options exit 2.
    std::fs::remove_file(rootfs.join("etc/kubernetes/pki/etcd/peer.crt")).unwrap();
    let o = run_at(&rootfs, NOW, false, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("etcd-peer: "),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run_at(&rootfs, NOW, false, &["--within", "soon"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn monitoring_expiry_timer_false_leaves_the_check_out() {
    let text = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmonitoring: { expiryTimer: false }\nmembers: [ { name: a, address: 10.0.0.6 } ]\n";
    let (t, d) =
        etcdpack::topology::parse("t.yaml", text, &etcdpack::fsio::DirFiles(crate::support::fixtures()));
    let t = t.unwrap_or_else(|| panic!("{d}"));
    let plan = etcdpack::plan::bootstrap(&t);
    assert!(plan.members[0].files.iter().all(|f| !f.path.contains("etcdpack-expiry")));
    let with = etcdpack::plan::bootstrap(
        &etcdpack::topology::parse(
            "t.yaml",
            &text.replace("false", "true"),
            &etcdpack::fsio::DirFiles(crate::support::fixtures()),
        )
        .0
        .unwrap(),
    );
    assert_eq!(with.members[0].files.len(), plan.members[0].files.len() + 3);
}

/// The unit runs the check as a user of its own (`DynamicUser=`, no capability) writing
/// into its own runtime folder; certificates are world-readable, so an unprivileged user
/// (nobody here) gets every figure, and the metric is that user's file.
#[test]
fn the_check_runs_unprivileged_from_its_own_folder() {
    crate::needs_root!();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let b = built("guide-v1.34");
    let unit = String::from_utf8(
        b.bundles["infra1"].files["rootfs/etc/systemd/system/etcdpack-expiry.service"].bytes.clone(),
    )
    .unwrap();
    let lines: Vec<&str> = unit.lines().collect();
    for want in [
        "ExecStart=/usr/local/sbin/etcdpack-expiry --textfile-dir /run/etcdpack-expiry",
        "DynamicUser=yes",
        "RuntimeDirectory=etcdpack-expiry",
        "RuntimeDirectoryPreserve=yes",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "PrivateNetwork=yes",
    ] {
        assert!(lines.contains(&want), "{want}: {unit}");
    }
    assert!(!unit.contains("User=root") && !unit.contains("ReadWritePaths"), "{unit}");
    let timer = String::from_utf8(
        b.bundles["infra1"].files["rootfs/etc/systemd/system/etcdpack-expiry.timer"].bytes.clone(),
    )
    .unwrap();
    assert!(
        timer.lines().any(|l| l == "OnBootSec=5min"),
        "the metric under /run comes back after a boot: {timer}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    unpack_rootfs(&b, &rootfs);
    // The host's modes: folders 0755, certificates 0644, keys 0600 root.
    for e in walkdir::WalkDir::new(&rootfs) {
        let e = e.unwrap();
        let mode = match e.path().extension().and_then(|x| x.to_str()) {
            _ if e.file_type().is_dir() => 0o755,
            Some("key") => 0o600,
            _ => 0o644,
        };
        std::fs::set_permissions(e.path(), PermissionsExt::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let metrics = rootfs.join("run/etcdpack-expiry");
    std::fs::create_dir_all(&metrics).unwrap();
    std::os::unix::fs::chown(&metrics, Some(65534), Some(65534)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh"])
        .arg(rootfs.join("usr/local/sbin/etcdpack-expiry"))
        .arg("--root")
        .arg(&rootfs)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 5);
    let m = std::fs::symlink_metadata(metrics.join("etcdpack-expiry.prom")).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o644, 65534));
}

/// Run by hand as root with `--textfile-dir` naming a folder another user owns (such as
/// node_exporter's): that user, swapping every name it can see there for a link to a
/// root-only file (and the final name too) while root runs the check again and again, never
/// gets root to write, truncate or change the mode of anything but its own new file.
#[test]
fn the_textfile_write_follows_no_link_another_user_plants() {
    crate::needs_root!();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let b = built("guide-v1.34");
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    unpack_rootfs(&b, &rootfs);
    let textfiles = rootfs.join("var/lib/node_exporter/textfile_collector");
    std::fs::create_dir_all(&textfiles).unwrap();
    let mut p = Some(textfiles.as_path());
    while let Some(dir) = p.filter(|x| *x != Path::new("/tmp")) {
        std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).unwrap();
        p = dir.parent();
    }
    std::os::unix::fs::chown(&textfiles, Some(65534), Some(65534)).unwrap();
    let victim = tmp.path().join("root-only");
    std::fs::write(&victim, "root's own\n").unwrap();
    std::fs::set_permissions(&victim, PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, textfiles.join("etcdpack-expiry.prom")).unwrap();

    let attack = format!(
        "while :; do for f in '{dir}'/.etcdpack-expiry.prom.* '{dir}'/etcdpack-expiry.prom; do \
         [ -L \"$f\" ] || ln -sf '{victim}' \"$f\" 2>/dev/null; done; done",
        dir = textfiles.display(),
        victim = victim.display()
    );
    let mut attacker = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", &attack])
        .spawn()
        .unwrap();
    let script = rootfs.join("usr/local/sbin/etcdpack-expiry");
    let check = || {
        Command::new("sh")
            .arg(&script)
            .arg("--root")
            .arg(&rootfs)
            .args(["--textfile-dir", "/var/lib/node_exporter/textfile_collector"])
            .output()
            .unwrap()
    };
    for _ in 0..40 {
        check();
    }
    attacker.kill().unwrap();
    attacker.wait().unwrap();

    let m = std::fs::symlink_metadata(&victim).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's own\n");
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, 0));
    // Once nobody races, the metric lands as root's own regular file, mode 0644.
    let o = check();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("cannot write"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let m = std::fs::symlink_metadata(textfiles.join("etcdpack-expiry.prom")).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o644, 0));
    assert!(std::fs::read_to_string(textfiles.join("etcdpack-expiry.prom")).unwrap().contains("etcd-peer"));
}
