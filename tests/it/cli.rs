//! The binary as users run it: exit codes, messages, byte-identical rebuilds, openssl
//! checks of the signatures, atomic replacement of dist/, the state lock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn etcdpack(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp folder holding the example topology (ECDSA, to keep the suite quick).
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/etcd-topology.yaml")).unwrap();
    let fast = example.replace("members:  ", "pki: { keyAlgorithm: ECDSA-P256 }\nmembers:  ");
    assert_ne!(fast, example);
    std::fs::write(dir.path().join("etcd.yaml"), fast).unwrap();
    dir
}

fn read_dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn help_texts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    for args in [
        &["--help"][..],
        &["build", "--help"],
        &["renew", "--help"],
        &["verify", "--help"],
        &["rotate-ca", "--help"],
        &["restore", "--help"],
    ] {
        let o = etcdpack(dir.path(), args);
        assert_eq!(code(&o), 0);
        s.bind(|| insta::assert_snapshot!(format!("help__{}", args.join("_").replace("--", "")), stdout(&o)));
    }
}

#[test]
fn exit_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = etcdpack(d, &["init", "t.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = etcdpack(d, &["check", "t.yaml"]);
    assert_eq!((code(&o), stdout(&o).trim()), (0, "t.yaml: ok (3 members, kubeadm v1.34.2)"));
    let o = etcdpack(d, &["init", "t.yaml"]);
    assert_eq!(code(&o), 1, "init must not overwrite");
    assert!(stderr(&o).contains("t.yaml exists"));
    std::fs::write(
        d.join("bad.yaml"),
        "cluster: c\nkubernetesVersion: v1.34.2\nmembers:\n  - { name: a, address: nope }\n",
    )
    .unwrap();
    let o = etcdpack(d, &["check", "bad.yaml"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("bad.yaml:4:25: members[0].address: `nope` is not an IP address"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("help: "));
    let o = etcdpack(d, &["build", "bad.yaml"]);
    assert_eq!(code(&o), 1);
    assert!(!d.join("dist").exists() && !d.join("bad.state").exists(), "nothing written for bad input");
    let o = etcdpack(d, &["check", "missing.yaml"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("cannot read missing.yaml"));
    let o = etcdpack(d, &["frobnicate"]);
    assert_eq!(code(&o), 1);
}

#[test]
fn build_twice_is_byte_identical_and_signatures_pass_openssl() {
    let ws = workspace();
    let d = ws.path();
    let first = etcdpack(d, &["build", "etcd.yaml", "--timings"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    for phase in ["plan", "issue", "render", "pack", "sign", "write", "total"] {
        assert!(stderr(&first).contains(&format!("timing {phase}")), "{}", stderr(&first));
    }
    assert!(stdout(&first).contains("infra2           etcd-server              new"), "{}", stdout(&first));
    let one = read_dir_bytes(&d.join("dist"));
    let second = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&second), 0);
    assert!(stdout(&second).contains("infra2           etcd-server              reuse"));
    assert!(stdout(&second).contains("signing key SHA256:"));
    assert_eq!(one, read_dir_bytes(&d.join("dist")), "second build differs");

    let dist = d.join("dist");
    use std::os::unix::fs::PermissionsExt;
    let mode = |n: &str| std::fs::metadata(dist.join(n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("infra0.tar.gz"), 0o600, "bundles hold private keys");
    assert_eq!(
        (mode("infra0.tar.gz.sig"), mode("signing-key.pub"), mode("plan.json")),
        (0o644, 0o644, 0o644)
    );
    for name in ["infra0.tar.gz", "infra1.tar.gz", "infra2.tar.gz", "SHA256SUMS"] {
        let o = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify", "signing-key.pub", "-signature"])
            .arg(format!("{name}.sig"))
            .arg(name)
            .current_dir(&dist)
            .output()
            .expect("openssl is installed by the test command");
        assert!(o.status.success(), "openssl rejects {name}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&dist).output().unwrap();
    assert!(o.status.success());

    let o = etcdpack(d, &["verify", "dist/infra0.tar.gz", "dist/infra1.tar.gz", "dist/infra2.tar.gz"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("3 bundle(s) verified"));

    let o = etcdpack(d, &["inspect", "dist/infra0.tar.gz"]);
    assert_eq!(code(&o), 0);
    let tree = stdout(&o);
    assert!(tree.contains("\nbundle infra0 (cluster prod-etcd, address 10.0.0.6, "), "{tree}");
    assert!(tree.contains(", kubeadm v1.34.2, generation 1, 26 files)\n"), "{tree}");
    assert!(
        tree.contains(
            "/etc/kubernetes/pki\n├── apiserver-etcd-client.crt  [CN=kube-apiserver-etcd-client expires "
        ),
        "{tree}"
    );
    assert!(tree.contains("    ├── ca.key\n"), "{tree}");
    assert!(
        tree.contains(
            "server.crt  [CN=infra0 SANs=[DNS:infra0, DNS:localhost, IP:10.0.0.6, IP:127.0.0.1, IP:::1]"
        ),
        "{tree}"
    );

    // Flip one byte: verify fails with exit 1 and says which check.
    let mut bytes = std::fs::read(dist.join("infra1.tar.gz")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(dist.join("infra1.tar.gz"), bytes).unwrap();
    let o = etcdpack(d, &["verify", "dist/infra1.tar.gz"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("FAIL  signature by the signing key"), "{}", stdout(&o));
}

#[test]
fn a_rebuild_keeps_what_the_last_build_wrote() {
    use std::os::unix::fs::MetadataExt;
    let ws = workspace();
    let d = ws.path();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let dist = d.join("dist");
    let inode = |n: &str| std::fs::metadata(dist.join(n)).unwrap().ino();
    let before = read_dir_bytes(&dist);
    let (folder, bundle) = (std::fs::metadata(&dist).unwrap().ino(), inode("infra0.tar.gz"));

    // Nothing changed: dist/ is the same folder with the same files, and the build says so.
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("dist holds these 3 member bundles and the control-plane bundle already"),
        "{}",
        stdout(&o)
    );
    assert_eq!((std::fs::metadata(&dist).unwrap().ino(), inode("infra0.tar.gz")), (folder, bundle));
    assert_eq!(before, read_dir_bytes(&dist));

    // A file changed by hand is written again (the whole folder is replaced).
    std::fs::write(dist.join("infra0.tar.gz.sig"), b"forged").unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert!(stdout(&o).contains("wrote 3 member bundles"), "{}", stdout(&o));
    assert_eq!(before, read_dir_bytes(&dist));

    // A tarball the last build wrote with another compressor (an earlier etcdpack release)
    // holds the same tar: it is kept byte for byte, so no host has to install it again.
    let tar = |gz: &[u8]| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
        out
    };
    let old = std::fs::read(dist.join("infra0.tar.gz")).unwrap();
    let mut other = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    std::io::Write::write_all(&mut other, &tar(&old)).unwrap();
    let other = other.finish().unwrap();
    assert_ne!(other, old);
    let sha = |b: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    };
    let record = d.join("etcd.state/state.json");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains(&sha(&old)));
    std::fs::write(&record, text.replace(&sha(&old), &sha(&other))).unwrap();
    std::fs::write(dist.join("infra0.tar.gz"), &other).unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(dist.join("infra0.tar.gz")).unwrap(), other, "the tarball was made again");
    assert!(stdout(&o).contains("no host needs"), "{}", stdout(&o));
    let o = etcdpack(d, &["verify", "dist/infra0.tar.gz"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));

    // A tarball whose digest the state did not record is not kept, even with the same tar.
    std::fs::write(dist.join("infra1.tar.gz"), &{
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        std::io::Write::write_all(&mut e, &tar(&std::fs::read(dist.join("infra1.tar.gz")).unwrap())).unwrap();
        e.finish().unwrap()
    })
    .unwrap();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let again = read_dir_bytes(&dist);
    let infra1 =
        |files: &[(String, Vec<u8>)]| files.iter().find(|f| f.0 == "infra1.tar.gz").unwrap().1.clone();
    assert_eq!(infra1(&again), infra1(&before));
}

#[test]
fn a_build_that_cannot_write_its_output_changes_no_state() {
    let ws = workspace();
    let d = ws.path();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let state = |d: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(d.join("etcd.state"))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().display().to_string(), std::fs::read(e.path()).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = state(d);
    // A new address re-issues two certificates; the output folder's parent is a file.
    let text = std::fs::read_to_string(d.join("etcd.yaml")).unwrap();
    std::fs::write(d.join("etcd.yaml"), text.replace("10.0.0.7", "10.0.0.17")).unwrap();
    std::fs::write(d.join("blocker"), "a file").unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml", "--out", "blocker/dist"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("blocker"), "{}", stderr(&o));
    assert_eq!(before, state(d), "the state changed although no bundle was written");
    // The next build with a folder it can write issues them.
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("infra1           etcd-server              re-issue"), "{}", stdout(&o));
}

#[test]
fn dist_is_replaced_whole_or_not_at_all() {
    let ws = workspace();
    let d = ws.path();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let before = read_dir_bytes(&d.join("dist"));
    // A file etcdpack did not write makes the build refuse to replace the folder.
    std::fs::write(d.join("dist/notes.txt"), "mine").unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("notes.txt, which etcdpack did not write"), "{}", stderr(&o));
    std::fs::remove_file(d.join("dist/notes.txt")).unwrap();
    assert_eq!(before, read_dir_bytes(&d.join("dist")));
    // A member that disappears leaves the cluster: dist/ is replaced, not merged, and its
    // bundle...
    let text = std::fs::read_to_string(d.join("etcd.yaml")).unwrap();
    std::fs::write(d.join("etcd.yaml"), text.replace("  - { name: infra2, address: 10.0.0.8 }\n", ""))
        .unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("warning:") && stderr(&o).contains("even count"));
    // ...its bundle is now the leave bundle: no key, only the installer that takes it out.
    assert!(stdout(&o).contains("1. remove infra2 (https://10.0.0.8:2380)"), "{}", stdout(&o));
    let leave = etcdpack::unpack::unpack(&std::fs::read(d.join("dist/infra2.tar.gz")).unwrap()).unwrap();
    assert_eq!(
        leave.files.keys().collect::<Vec<_>>(),
        ["SHA256SUMS", "SHA256SUMS.sig", "bundle.json", "install.sh", "signing-key.pub"]
    );
    assert!(d.join("etcd.state/members/infra2/server.key").exists(), "state keeps the removed member's keys");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".dist."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_doomed_build_creates_no_keys() {
    let ws = workspace();
    let d = ws.path();
    std::fs::create_dir(d.join("dist")).unwrap();
    std::fs::write(d.join("dist/report.pdf"), "x").unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 1);
    assert!(!d.join("etcd.state").exists(), "no state folder for a build that could not finish");
}

#[test]
fn a_held_state_lock_stops_a_second_build() {
    let ws = workspace();
    let d = ws.path();
    let _held = etcdpack::fsio::lock_state(&d.join("etcd.state")).unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("another etcdpack build is using"), "{}", stderr(&o));
    assert!(!d.join("dist").exists());
}

#[test]
fn source_date_epoch_sets_the_tar_mtime() {
    let ws = workspace();
    let d = ws.path();
    let o = Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(["build", "etcd.yaml"])
        .current_dir(d)
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let bytes = std::fs::read(d.join("dist/infra0.tar.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw).unwrap();
    for e in tar::Archive::new(&raw[..]).entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1234567890);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .args(["build", "etcd.yaml"])
        .current_dir(d)
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
}

#[test]
fn plan_shows_decisions_before_and_after_a_build() {
    let ws = workspace();
    let d = ws.path();
    let o = etcdpack(d, &["plan", "etcd.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("etcd-ca new"), "{text}");
    assert!(text.contains("member infra0 10.0.0.6, carries ca.key"), "{text}");
    assert!(text.contains("  etcd-peer                new"), "{text}");
    assert!(text.contains("  0600 rootfs/etc/kubernetes/manifests/etcd.yaml"), "{text}");
    assert!(!d.join("etcd.state").exists(), "plan writes nothing");
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let moved = std::fs::read_to_string(d.join("etcd.yaml")).unwrap().replace("10.0.0.8", "10.0.0.18");
    std::fs::write(d.join("etcd.yaml"), moved).unwrap();
    let o = etcdpack(d, &["plan", "etcd.yaml", "--json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let certs = v["certificates"].as_array().unwrap();
    let reissued: Vec<String> = certs
        .iter()
        .filter(|c| c["action"] == "reissue")
        .map(|c| format!("{}/{}", c["member"].as_str().unwrap(), c["leaf"].as_str().unwrap()))
        .collect();
    assert_eq!(reissued, ["infra2/etcd-server", "infra2/etcd-peer"]);
    assert_eq!(v["plan"]["members"][2]["address"], "10.0.0.18");
}

/// Runs `etcdpack ARGS | head -1` in `dir` and returns etcdpack's exit code and stderr.
fn piped_to_head(dir: &Path, args: &str) -> (i32, String) {
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} {args} 2>err | head -1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            env!("CARGO_BIN_EXE_etcdpack")
        ))
        .current_dir(dir)
        .output()
        .unwrap();
    let code: i32 = stdout(&o).trim().parse().unwrap();
    (code, std::fs::read_to_string(dir.join("err")).unwrap_or_default())
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let w = workspace();
    let d = w.path();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    for args in [
        "verify dist/infra0.tar.gz dist/infra1.tar.gz dist/infra2.tar.gz",
        "plan etcd.yaml",
        "plan etcd.yaml --json",
        "inspect dist/infra0.tar.gz dist/infra1.tar.gz",
        "expiry etcd.yaml",
        "init",
        "--help",
    ] {
        let (code, err) = piped_to_head(d, args);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args}: {err}");
        assert!(code == 0 || code == 141, "{args}: exit {code}, {err}");
    }
}

#[test]
fn a_state_folder_inside_the_output_folder_is_refused_before_any_key_exists() {
    let w = workspace();
    let d = w.path();
    for (state, out) in
        [("dist/state", "dist"), ("dist", "dist"), ("./dist/../dist/s", "dist"), ("s", "s/out")]
    {
        let o = etcdpack(d, &["build", "etcd.yaml", "--state", state, "--out", out]);
        assert_eq!(code(&o), 1, "{state} {out}: {}", stderr(&o));
        assert!(stderr(&o).contains("inside"), "{}", stderr(&o));
        assert!(!d.join("dist").exists() && !d.join("s").exists(), "nothing is created");
    }
    // Two spellings of the same place through a symlink are the same place.
    std::fs::create_dir(d.join("real")).unwrap();
    std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml", "--state", "link/state", "--out", "real"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(!d.join("real/state").exists());
    // A later build with sane folders works.
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
}

#[test]
fn bad_paths_and_inputs_get_messages_with_the_fix() {
    let w = workspace();
    let d = w.path();
    std::fs::write(d.join("afile"), "x").unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml", "--out", "afile"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("--out afile is a file, not a folder") && stderr(&o).contains("help:"));

    std::fs::write(d.join("bin.yaml"), [0x7f, b'E', b'L', b'F', 0, 0xff, 0xfe, 0]).unwrap();
    let o = etcdpack(d, &["check", "bin.yaml"]);
    assert_eq!(code(&o), 1, "binary input is bad input, not an I/O error");
    assert!(stderr(&o).contains("is not a text file"), "{}", stderr(&o));

    std::fs::write(d.join("huge.yaml"), vec![b'#'; (1 << 20) + 10]).unwrap();
    let o = etcdpack(d, &["check", "huge.yaml"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("larger than 1 MiB"), "{}", stderr(&o));

    let o = etcdpack(d, &["check", "."]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is a folder"), "{}", stderr(&o));

    let dup = std::fs::read_to_string(d.join("etcd.yaml")).unwrap() + "cluster: again\n";
    std::fs::write(d.join("dup.yaml"), dup).unwrap();
    let o = etcdpack(d, &["check", "dup.yaml"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("`cluster` is given twice (first at line"), "{}", stderr(&o));

    let o = etcdpack(d, &["init", "new.yaml"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("wrote new.yaml"), "{}", stdout(&o));
    let o = etcdpack(d, &["init", "new.yaml"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("--force"));
}

#[test]
fn init_names_the_file_it_writes_and_never_writes_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = etcdpack(d, &["init", "my site.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("run `etcdpack check 'my site.yaml'`"), "{}", stdout(&o));
    let text = std::fs::read_to_string(d.join("my site.yaml")).unwrap();
    assert!(text.contains("# Build with: etcdpack build 'my site.yaml'  (bundles land in ./dist)"), "{text}");
    assert!(!text.contains("etcd-topology.yaml"), "{text}");
    // A name that would end the comment is refused, nothing written.
    let o = etcdpack(d, &["init", "a\nkubernetesVersion: v1.29.0\n.yaml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("without control characters"), "{}", stderr(&o));
    // A symlink in the file's place is not followed: refused, and with --force replaced.
    std::fs::write(d.join("target"), "keep").unwrap();
    std::os::unix::fs::symlink(d.join("target"), d.join("link.yaml")).unwrap();
    let o = etcdpack(d, &["init", "link.yaml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let o = etcdpack(d, &["init", "--force", "link.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(d.join("target")).unwrap(), "keep");
    assert!(std::fs::symlink_metadata(d.join("link.yaml")).unwrap().is_file());
    // Nothing but the files asked for: no temporary file is left behind.
    let mut names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["link.yaml", "my site.yaml", "target"]);
}

#[test]
fn verify_names_the_key_it_used_and_asks_for_one_when_missing() {
    let w = workspace();
    let d = w.path();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let o = etcdpack(d, &["verify", "dist/infra0.tar.gz"]);
    assert_eq!(code(&o), 0);
    assert!(!stdout(&o).contains("trusted"), "{}", stdout(&o));
    assert!(stdout(&o).contains("not pinned"), "{}", stdout(&o));
    let o = etcdpack(d, &["verify", "dist/infra0.tar.gz", "--pubkey", "dist/signing-key.pub"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("(pinned signing key SHA256:"), "{}", stdout(&o));

    std::fs::create_dir(d.join("usb")).unwrap();
    std::fs::copy(d.join("dist/infra1.tar.gz"), d.join("usb/infra1.tar.gz")).unwrap();
    std::fs::copy(d.join("dist/infra1.tar.gz.sig"), d.join("usb/infra1.tar.gz.sig")).unwrap();
    for cmd in ["verify", "inspect"] {
        let o = etcdpack(d, &[cmd, "usb/infra1.tar.gz"]);
        assert_eq!(code(&o), 1, "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("--pubkey"), "{cmd}: {}", stderr(&o));
        let o = etcdpack(d, &[cmd, "usb/infra1.tar.gz", "--pubkey", "dist/signing-key.pub"]);
        assert_eq!(code(&o), 0, "{cmd}: {}", stderr(&o));
    }
}

#[test]
fn bundles_verified_together_must_agree() {
    let w = workspace();
    let d = w.path();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    std::fs::create_dir(d.join("old")).unwrap();
    for f in ["infra0.tar.gz", "infra0.tar.gz.sig"] {
        std::fs::copy(d.join("dist").join(f), d.join("old").join(f)).unwrap();
    }
    // The cluster grows: the members' bundles keep the member list they started with, the
    // new ones know every member, and together they still agree.
    let text = std::fs::read_to_string(d.join("etcd.yaml")).unwrap();
    let grown = text.replace(
        "  - { name: infra2, address: 10.0.0.8 }",
        "  - { name: infra2, address: 10.0.0.8 }\n  - { name: infra3, address: 10.0.0.9 }\n  - { name: infra4, address: 10.0.0.10 }",
    );
    std::fs::write(d.join("etcd.yaml"), grown).unwrap();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let all = ["infra0", "infra1", "infra2", "infra3", "infra4"].map(|m| format!("dist/{m}.tar.gz"));
    let mut args = vec!["verify", "--pubkey", "dist/signing-key.pub"];
    args.extend(all.iter().map(String::as_str));
    let o = etcdpack(d, &args);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("role join: expects to find infra0, infra1, infra2 in the cluster"),
        "{}",
        stdout(&o)
    );
    // Started anew (`--reset-members`, nothing deployed) with infra1 at another address:
    // the old bundle of infra0 knows infra1 elsewhere.
    std::fs::write(d.join("etcd.yaml"), text.replace("10.0.0.7", "10.0.0.17")).unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml", "--reset-members"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "--reset-members: the recorded members (infra0, infra1, infra2, infra3, infra4) are forgotten"
        ),
        "{}",
        stdout(&o)
    );
    let o = etcdpack(
        d,
        &[
            "verify",
            "old/infra0.tar.gz",
            "dist/infra1.tar.gz",
            "dist/infra2.tar.gz",
            "--pubkey",
            "dist/signing-key.pub",
        ],
    );
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("FAIL  bundles agree:") && stdout(&o).contains("stale"), "{}", stdout(&o));
    let o = etcdpack(d, &["verify", "dist/infra1.tar.gz", "dist/infra1.tar.gz"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("are both bundles of member infra1"), "{}", stdout(&o));
    // Another cluster's bundle next to these ones.
    let other = workspace();
    let o2 = etcdpack(other.path(), &["build", "etcd.yaml"]);
    assert_eq!(code(&o2), 0);
    let foreign = other.path().join("dist/infra0.tar.gz");
    let o = etcdpack(d, &["verify", foreign.to_str().unwrap(), "dist/infra1.tar.gz"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("another etcd CA") && stdout(&o).contains("different keys"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn inspect_shows_several_bundles_and_refuses_an_unsigned_one() {
    let w = workspace();
    let d = w.path();
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let o = etcdpack(d, &["inspect", "dist/infra0.tar.gz", "dist/infra2.tar.gz"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("==> dist/infra0.tar.gz <==")
            && stdout(&o).contains("==> dist/infra2.tar.gz <==")
    );
    // A gzip of zeros with a made-up signature is never unpacked.
    let zeros = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 32 << 20]).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(d.join("dist/infra9.tar.gz"), zeros).unwrap();
    std::fs::write(d.join("dist/infra9.tar.gz.sig"), b"not a signature").unwrap();
    for cmd in ["inspect", "verify"] {
        let started = std::time::Instant::now();
        let o = etcdpack(d, &[cmd, "dist/infra9.tar.gz"]);
        assert_eq!(code(&o), 1, "{cmd}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{cmd} did not unpack it");
    }
}

#[test]
fn a_state_folder_the_user_cannot_write_is_named_with_the_fix() {
    crate::needs_root!();
    let w = workspace();
    let d = w.path();
    // The state belongs to root (0700); another user builds.
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let mut p = Some(d);
    while let Some(dir) = p.filter(|x| *x != Path::new("/tmp")) {
        let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        p = dir.parent();
    }
    std::fs::set_permissions(d.join("etcd.yaml"), std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_etcdpack")])
        .args(["build", "etcd.yaml", "--out", "/tmp/etcdpack-nobody-dist"])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("etcd.state") && stderr(&o).contains("help:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("it belongs to uid 0, not to this user (uid 65534)"), "{}", stderr(&o));
    assert!(!Path::new("/tmp/etcdpack-nobody-dist").exists());
    // renew and rotate-ca say they cannot read it, not that it holds nothing.
    for cmd in ["renew", "rotate-ca"] {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_etcdpack")])
            .args([cmd, "etcd.yaml", "--out", "/tmp/etcdpack-nobody-dist"])
            .current_dir(d)
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "{cmd}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot read etcd.state/ca.crt: Permission denied"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn folders_another_user_made_or_can_replace_are_refused_before_any_key_exists() {
    crate::needs_root!();
    let w = workspace();
    let d = w.path();
    // A state folder another user made first (holding, say, a CA key of theirs to be reused).
    let theirs = d.join("theirs.state");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml", "--state", "theirs.state"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("the state folder theirs.state: it belongs to uid 65534"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0, "nothing written into it");
    // Output and state under a folder everyone may write (no sticky bit): another user could
    // swap in the new dist/ before it is published, or the state before it is locked.
    let open = d.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    for args in [&["--out", "open/dist"][..], &["--state", "open/etcd.state"]] {
        let o = etcdpack(d, &[&["build", "etcd.yaml"][..], args].concat());
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("which other users may write (mode 0777)"), "{}", stderr(&o));
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0, "{args:?}: nothing created");
    }
    // A root-owned sticky folder, as /tmp is, is fine: nobody can rename what this user made.
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml", "--out", "open/dist", "--state", "open/etcd.state"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // dist/'s temporary folders carry names nobody can predict.
    assert!(!stderr(&o).contains(".dist.new-"));
}

#[test]
fn a_terminal_sees_key_generation_progress_and_a_pipe_does_not() {
    let w = workspace();
    let d = w.path();
    // `script` gives the build a terminal for its standard error.
    let o = Command::new("script")
        .args(["-qec"])
        .arg(format!("{} build etcd.yaml --out tty-dist --state tty.state", env!("CARGO_BIN_EXE_etcdpack")))
        .arg("/dev/null")
        .current_dir(d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("generating ECDSA-P256 keys on"), "{}", stdout(&o));
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 0);
    assert!(!stderr(&o).contains("generating"), "{}", stderr(&o));
}

#[test]
fn the_printed_fingerprint_is_what_openssl_computes_from_signing_key_pub() {
    let w = workspace();
    let d = w.path();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    let printed = stdout(&o).split("signing key SHA256:").nth(1).unwrap()[..64].to_string();
    let o = Command::new("bash")
        .args(["-c", "openssl pkey -pubin -in dist/signing-key.pub -outform DER | openssl dgst -sha256 -r"])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(stdout(&o)[..64], printed);
}

#[test]
fn expiry_lists_every_certificate_by_date_and_fails_inside_the_window() {
    let w = workspace();
    let d = w.path();
    let short = std::fs::read_to_string(d.join("etcd.yaml")).unwrap().replace(
        "pki: { keyAlgorithm: ECDSA-P256 }",
        "pki: { keyAlgorithm: ECDSA-P256, certValidity: 480h }",
    );
    std::fs::write(d.join("etcd.yaml"), short).unwrap();
    let o = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("expires on") && stderr(&o).contains("renewal"), "{}", stderr(&o));
    // Default window 30d: the 20-day leaves are inside it.
    let o = etcdpack(d, &["expiry", "etcd.yaml"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("MEMBER") && lines[0].contains("RESIDUAL TIME"));
    assert_eq!(lines.len(), 1 + 13 + 1, "a header, 12 member leaves, the control plane's and the CA");
    assert!(lines.iter().any(|l| l.starts_with("control-plane    apiserver-etcd-client")), "{table}");
    assert!(lines[1].contains("19d") || lines[1].contains("20d"), "{}", lines[1]);
    assert!(lines.last().unwrap().contains("etcd-ca") && lines.last().unwrap().contains("self"));
    assert!(stderr(&o).contains("13 certificate(s) expire within 30d"), "{}", stderr(&o));
    // A smaller window passes; the state folder and the bundles give the same rows.
    assert_eq!(code(&etcdpack(d, &["expiry", "etcd.yaml", "--within", "7d"])), 0);
    let from_state = etcdpack(d, &["expiry", "etcd.state", "--within", "7d", "--json"]);
    let from_bundles = etcdpack(
        d,
        &[
            "expiry",
            "dist/infra0.tar.gz",
            "dist/infra1.tar.gz",
            "dist/infra2.tar.gz",
            "dist/control-plane.tar.gz",
            "--within",
            "7d",
            "--json",
        ],
    );
    assert_eq!(code(&from_state), 0);
    let a: serde_json::Value = serde_json::from_str(&stdout(&from_state)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&stdout(&from_bundles)).unwrap();
    assert_eq!(a.as_array().unwrap().len(), 14);
    let rows = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["member"].clone(), r["certificate"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&a), rows(&b));
    assert_eq!(
        a.as_array().unwrap().iter().map(|r| r["notAfter"].clone()).collect::<Vec<_>>(),
        b.as_array().unwrap().iter().map(|r| r["notAfter"].clone()).collect::<Vec<_>>()
    );
    for key in ["member", "certificate", "notAfter", "residualSeconds", "ca"] {
        assert!(a[0].get(key).is_some(), "{key}");
    }
    assert_eq!(code(&etcdpack(d, &["expiry", "etcd.yaml", "--within", "soon"])), 1);
}

#[test]
fn renew_names_the_hosts_that_need_the_new_bundle() {
    let dir = workspace();
    let d = dir.path();
    let none = etcdpack(d, &["renew", "etcd.yaml"]);
    assert_eq!(code(&none), 1, "{}", stderr(&none));
    assert!(
        stderr(&none).contains("nothing to renew") && stderr(&none).contains("etcdpack build etcd.yaml"),
        "{}",
        stderr(&none)
    );
    assert!(!d.join("etcd.state").exists() && !d.join("dist").exists());
    assert_eq!(code(&etcdpack(d, &["build", "etcd.yaml"])), 0);
    let before = read_dir_bytes(&d.join("dist"));
    let unchanged = etcdpack(d, &["build", "etcd.yaml"]);
    assert!(stdout(&unchanged).contains("no host needs a new bundle"), "{}", stdout(&unchanged));

    let bad = etcdpack(d, &["renew", "etcd.yaml", "--within", "soon"]);
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("--within soon is not a duration"), "{}", stderr(&bad));

    let o = etcdpack(d, &["renew", "etcd.yaml", "--member", "infra1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("renewed 4 certificate(s)"), "{out}");
    assert!(out.contains("  1. infra1 <- dist/infra1.tar.gz: new certificates: etcd-server"), "{out}");
    assert!(
        out.contains("  infra0 unchanged")
            && out.contains("  infra2 unchanged")
            && out.contains("  control-plane unchanged"),
        "{out}"
    );
    let after = read_dir_bytes(&d.join("dist"));
    let changed: Vec<&str> =
        before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, _)| b.0.as_str()).collect();
    assert_eq!(changed, ["SHA256SUMS", "SHA256SUMS.sig", "infra1.tar.gz", "infra1.tar.gz.sig", "plan.json"]);
    assert_eq!(std::fs::read_dir(d.join("etcd.state/retired/infra1")).unwrap().count(), 8);
    // The renewed bundle verifies with the pinned key, and plan then has nothing to do.
    let v = etcdpack(d, &["verify", "--pubkey", "dist/signing-key.pub", "dist/infra1.tar.gz"]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let p = etcdpack(d, &["plan", "etcd.yaml"]);
    assert!(stdout(&p).contains("no host needs a new bundle"), "{}", stdout(&p));

    // The control plane's certificate alone: only its bundle changes, and kube-apiserver
    // must restart to use it.
    let o = etcdpack(d, &["renew", "etcd.yaml", "--member", "control-plane"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("renewed 1 certificate(s)"), "{out}");
    assert!(
        out.contains("  1. control-plane <- dist/control-plane.tar.gz: new certificates: apiserver-etcd-client; restart kube-apiserver on each control-plane node after installing it"),
        "{out}"
    );
    let last = read_dir_bytes(&d.join("dist"));
    let changed: Vec<&str> =
        after.iter().zip(&last).filter(|(b, a)| b != a).map(|(b, _)| b.0.as_str()).collect();
    assert_eq!(
        changed,
        ["SHA256SUMS", "SHA256SUMS.sig", "control-plane.tar.gz", "control-plane.tar.gz.sig", "plan.json"]
    );
    let v = etcdpack(d, &["verify", "--pubkey", "dist/signing-key.pub", "dist/control-plane.tar.gz"]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
}

/// Certificates issued 719 hours ago (faketime) with a 720h validity: an hour left.
#[test]
fn certificates_issued_near_their_end_are_reported_refused_and_renewed() {
    if !crate::support::have_tool("faketime") {
        return;
    }
    let dir = workspace();
    let d = dir.path();
    let text = std::fs::read_to_string(d.join("etcd.yaml")).unwrap();
    std::fs::write(
        d.join("etcd.yaml"),
        text.replace("keyAlgorithm: ECDSA-P256", "keyAlgorithm: ECDSA-P256, certValidity: 720h"),
    )
    .unwrap();
    let o = Command::new("faketime")
        .args(["-f", "-719h", env!("CARGO_BIN_EXE_etcdpack"), "build", "etcd.yaml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Now: expiry reports all thirteen leaves inside a day, build refuses and names renew.
    let e = etcdpack(d, &["expiry", "etcd.yaml", "--within", "1d", "--json"]);
    assert_eq!(code(&e), 1);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&e.stdout).unwrap();
    let soon = rows.iter().filter(|r| r["residualSeconds"].as_i64().unwrap() < 86400).count();
    assert_eq!(soon, 13, "{}", stdout(&e));
    let b = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&b), 1);
    assert!(
        stderr(&b).contains("refusing to ship") && stderr(&b).contains("etcdpack renew"),
        "{}",
        stderr(&b)
    );
    // renew --within 1d fixes both.
    let r = etcdpack(d, &["renew", "etcd.yaml", "--within", "1d"]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(stdout(&r).contains("renewed 13 certificate(s)"), "{}", stdout(&r));
    assert_eq!(code(&etcdpack(d, &["expiry", "etcd.yaml", "--within", "1d"])), 0);
    let b = etcdpack(d, &["build", "etcd.yaml"]);
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    assert!(stdout(&b).contains("no host needs a new bundle"), "{}", stdout(&b));
}
