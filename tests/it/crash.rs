//! Builds killed at every rename, and at every fsync of the thread that stages the state's
//! new files (strace injects SIGKILL at the Nth call, counted per thread): each kill point
//! must leave a state folder and an output folder that the next build accepts, recovers and
//! reports, with no key lost and no partial file left behind.

use std::path::Path;
use std::process::Command;

const TOPOLOGY: &str = "cluster: crash\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n";

fn etcdpack(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(args).current_dir(dir).output().unwrap()
}

/// Renames: the commit of a state update, and of dist/.
const RENAMES: &str = "rename,renameat,renameat2";
/// Syncs. strace counts calls per thread, and the staging thread makes its syncs (one per
/// new file) before the main thread makes its first: the Nth sync kill point is the staging
/// thread's. The main thread's syncs (the record, the journal, dist/) come after the staged
/// files are complete, between the same renames the rename kill points stop at.
const SYNCS: &str = "fsync,fdatasync";

/// `etcdpack ARGS` killed at its `n`th call of `calls`; true when it was killed (false: it
/// finished).
fn killed_run(dir: &Path, args: &[&str], calls: &str, n: usize) -> bool {
    assert!(n < 500, "the build never finished under strace");
    let o = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={calls}"))
        .arg("-e")
        .arg(format!("inject={calls}:signal=SIGKILL:when={n}"))
        .arg(env!("CARGO_BIN_EXE_etcdpack"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    match (o.status.code(), o.status.signal()) {
        (Some(0), _) => false,
        (Some(137), _) | (_, Some(9)) => true,
        _ => panic!("strace or the build failed: {}", String::from_utf8_lossy(&o.stderr)),
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .filter(|p| {
            p.contains(".tmp-")
                || p.contains(".new-")
                || p.contains(".old-")
                || p.contains(".staging")
                || p.contains(".journal")
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    let o = Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).output().unwrap();
    assert!(o.status.success());
}

/// Kills `build` at every call of `calls`, starting each time from `base`, and checks the
/// recovery. Returns the number of kill points.
fn every_kill_point(base: &Path, topology: &str, calls: &str, check: impl Fn(&Path)) -> usize {
    every_kill_point_of(base, topology, &["build", "t.yaml"], calls, check)
}

/// [`every_kill_point`] of `etcdpack ARGS`.
fn every_kill_point_of(
    base: &Path,
    topology: &str,
    args: &[&str],
    calls: &str,
    check: impl Fn(&Path),
) -> usize {
    for n in 1.. {
        let w = tempfile::tempdir().unwrap();
        let d = w.path();
        copy_tree(base, d);
        std::fs::write(d.join("t.yaml"), topology).unwrap();
        if !killed_run(d, args, calls, n) {
            assert!(leftovers(d).is_empty(), "a finished build left {:?}", leftovers(d));
            return n - 1;
        }
        let o = etcdpack(d, &["build", "t.yaml"]);
        assert!(
            o.status.success(),
            "kill point {n}: the next build failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(leftovers(d).is_empty(), "kill point {n} left {:?}", leftovers(d));
        let o = etcdpack(d, &["verify", "dist/infra0.tar.gz", "dist/infra1.tar.gz", "dist/infra2.tar.gz"]);
        assert!(o.status.success(), "kill point {n}: {}", String::from_utf8_lossy(&o.stdout));
        check(d);
    }
    unreachable!()
}

#[test]
fn a_fresh_build_killed_at_any_rename_is_recovered_by_the_next() {
    crate::needs_root!();
    let base = tempfile::tempdir().unwrap();
    let points = every_kill_point(base.path(), TOPOLOGY, RENAMES, |_| {});
    assert!(points >= 30, "only {points} renames in a fresh build");
}

#[test]
fn a_fresh_build_killed_while_staging_the_state_is_recovered_by_the_next() {
    crate::needs_root!();
    let base = tempfile::tempdir().unwrap();
    let points = every_kill_point(base.path(), TOPOLOGY, SYNCS, |_| {});
    // The CA's pair, the signing key, four pairs per member and the control plane's pair.
    assert_eq!(points, 2 + 1 + 3 * 8 + 2, "syncs of the staging thread");
}

#[test]
fn a_reissue_killed_at_any_rename_loses_no_key() {
    crate::needs_root!();
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("t.yaml"), TOPOLOGY).unwrap();
    assert!(etcdpack(base.path(), &["build", "t.yaml"]).status.success());
    let old_key = std::fs::read(base.path().join("t.state/members/infra1/server.key")).unwrap();
    let ca = std::fs::read(base.path().join("t.state/ca.key")).unwrap();
    let moved = TOPOLOGY.replace("10.0.0.7", "10.0.0.17");
    let points = every_kill_point(base.path(), &moved, RENAMES, |d| {
        // The CA is the same, and the replaced server key is kept in retired/.
        assert_eq!(std::fs::read(d.join("t.state/ca.key")).unwrap(), ca);
        let retired: Vec<Vec<u8>> = std::fs::read_dir(d.join("t.state/retired/infra1"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("server-"))
            .filter(|e| e.file_name().to_string_lossy().ends_with(".key"))
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect();
        assert_eq!(retired, vec![old_key.clone()]);
    });
    assert!(points >= 10, "only {points} renames in a re-issuing build");
}

/// The step into a CA rotation's phase 2 moves the CA files in a chain (ca.* aside as
/// ca-previous.*, ca-next.* into their place) and issues every leaf again: killed at any
/// rename, the next build completes it or leaves phase 1 whole, and both CA keys are kept,
/// each once.
#[test]
fn a_ca_rotation_step_killed_at_any_rename_loses_no_ca_key() {
    crate::needs_root!();
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("t.yaml"), TOPOLOGY).unwrap();
    assert!(etcdpack(base.path(), &["build", "t.yaml"]).status.success());
    assert!(etcdpack(base.path(), &["rotate-ca", "t.yaml"]).status.success());
    let old = std::fs::read(base.path().join("t.state/ca.key")).unwrap();
    let new = std::fs::read(base.path().join("t.state/ca-next.key")).unwrap();
    let points = every_kill_point_of(base.path(), TOPOLOGY, &["rotate-ca", "t.yaml"], RENAMES, |d| {
        let state = d.join("t.state");
        let record = std::fs::read_to_string(state.join("state.json")).unwrap();
        let keys: Vec<Vec<u8>> = ["ca.key", "ca-next.key", "ca-previous.key"]
            .iter()
            .filter_map(|f| std::fs::read(state.join(f)).ok())
            .collect();
        if record.contains("\"caRotation\": 2") {
            assert_eq!(keys, [new.clone(), old.clone()], "phase 2: the new CA signs, the old one is kept");
        } else {
            assert!(record.contains("\"caRotation\": 1"), "{record}");
            assert_eq!(keys, [old.clone(), new.clone()], "phase 1 whole");
        }
    });
    assert!(points >= 10, "only {points} renames in the step into phase 2");
}
