//! The state folder across builds: reuse, targeted re-issue, keys never lost, CA never
//! replaced, one build at a time.

use crate::support::{NOW, fixtures};
use etcdpack::error::Error;
use etcdpack::keys::SeededKeys;
use etcdpack::pki::Action;
use etcdpack::plan::Leaf;
use etcdpack::{BuildEnv, fsio, topology};
use std::path::Path;

fn parse(text: &str, base: &Path) -> etcdpack::topology::Topology {
    let (t, d) = topology::parse("t.yaml", text, &fsio::DirFiles(base.to_path_buf()));
    t.unwrap_or_else(|| panic!("{d}"))
}

const THREE: &str = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n";

/// Builds `text` against the state in `dir` and writes the state back.
fn build_into(dir: &Path, text: &str, seed: u64) -> Result<etcdpack::Build, Error> {
    let t = parse(text, &fixtures());
    let state = fsio::load_state(dir)?;
    let b = etcdpack::build(
        &t,
        &BuildEnv { state: &state, now: NOW, source_date_epoch: None, keys: &SeededKeys(seed) },
        &mut |_| {},
    )?;
    fsio::apply_state_update(dir, &b.state_update)?;
    Ok(b)
}

fn actions(b: &etcdpack::Build) -> Vec<(String, Leaf, Action)> {
    b.decisions.iter().map(|d| (d.member.clone(), d.leaf, d.action.clone())).collect()
}

#[test]
fn a_rebuild_reuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let first = build_into(dir.path(), THREE, 1).unwrap();
    assert!(first.decisions.iter().all(|d| d.action == Action::New));
    let second = build_into(dir.path(), THREE, 2).unwrap();
    assert!(second.decisions.iter().all(|d| d.action == Action::Reuse));
    assert_eq!(second.pki.ca.action, Action::Reuse);
    assert!(second.state_update.is_empty());
    assert_eq!(first.dist, second.dist, "a different key seed changes nothing: nothing was generated");
}

#[test]
fn an_address_change_reissues_only_that_members_serving_certs() {
    let dir = tempfile::tempdir().unwrap();
    let first = build_into(dir.path(), THREE, 1).unwrap();
    let moved = THREE.replace("10.0.0.7", "10.0.0.17");
    let second = build_into(dir.path(), &moved, 1).unwrap();
    for (member, leaf, action) in actions(&second) {
        let expect_reissue = member == "infra1" && matches!(leaf, Leaf::EtcdServer | Leaf::EtcdPeer);
        match action {
            Action::Reissue(why) => {
                assert!(expect_reissue, "{member} {leaf:?} re-issued");
                assert_eq!(why, "address or SANs changed");
            }
            Action::Reuse => assert!(!expect_reissue, "{member} {leaf:?} not re-issued"),
            other => panic!("{other:?}"),
        }
    }
    // The old server and peer keys were moved aside, not deleted.
    let old_serial = &first.pki.leaves["infra1"][&Leaf::EtcdServer].info.serial_hex;
    let retired = dir.path().join(format!("retired/infra1/server-{old_serial}.key"));
    assert_eq!(
        std::fs::read_to_string(retired).unwrap(),
        first.pki.leaves["infra1"][&Leaf::EtcdServer].key_pem
    );
    // Other members keep their certificates byte for byte (their configs change: the
    // initial-cluster list names the new address).
    for leaf in etcdpack::plan::LEAVES {
        assert_eq!(first.pki.leaves["infra0"][&leaf].cert_pem, second.pki.leaves["infra0"][&leaf].cert_pem);
    }
    assert_eq!(second.pki.leaves["infra1"][&Leaf::EtcdServer].info.ip_addresses[0].to_string(), "10.0.0.17");
}

#[test]
fn an_algorithm_change_reissues_every_leaf_but_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = build_into(dir.path(), THREE, 1).unwrap();
    let p384 = THREE.replace("ECDSA-P256", "ECDSA-P384");
    let second = build_into(dir.path(), &p384, 1).unwrap();
    assert!(
        second
            .decisions
            .iter()
            .all(|d| d.action == Action::Reissue("key algorithm ECDSA-P256 -> ECDSA-P384".into()))
    );
    assert_eq!(first.pki.ca.cert_pem, second.pki.ca.cert_pem);
}

#[test]
fn a_state_built_with_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    build_into(dir.path(), THREE, 1).unwrap();
    let with_ca = THREE.replace(
        "pki: { keyAlgorithm: ECDSA-P256 }",
        "pki: { keyAlgorithm: ECDSA-P256, existingCA: { cert: existing-ca-v1.32/ca.crt, key: existing-ca-v1.32/ca.key } }",
    );
    let before = std::fs::read(dir.path().join("ca.crt")).unwrap();
    match build_into(dir.path(), &with_ca, 1) {
        Err(e @ Error::StateCaMismatch(_)) => assert_eq!(e.exit_code(), 1),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a foreign CA was accepted"),
    }
    assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), before, "the CA is untouched");
}

#[test]
fn an_existing_ca_is_imported_once_and_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let with_ca = THREE.replace(
        "pki: { keyAlgorithm: ECDSA-P256 }",
        "pki: { existingCA: { cert: existing-ca-v1.32/ca.crt, key: existing-ca-v1.32/ca.key } }",
    );
    let first = build_into(dir.path(), &with_ca, 1).unwrap();
    assert_eq!(first.pki.ca.action, Action::Imported);
    let second = build_into(dir.path(), &with_ca, 1).unwrap();
    assert_eq!(second.pki.ca.action, Action::Reuse);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        std::fs::read_to_string(fixtures().join("existing-ca-v1.32/ca.crt")).unwrap()
    );
}

#[test]
fn keys_are_never_overwritten_and_state_modes_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("s");
    let _lock = fsio::lock_state(&state_dir).unwrap();
    let b = build_into(&state_dir, THREE, 1).unwrap();
    let mode = |p: &str| std::fs::metadata(state_dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("ca.key"), 0o600);
    assert_eq!(mode("signing-key.pem"), 0o600);
    assert_eq!(mode("members/infra0/server.key"), 0o600);
    assert_eq!(mode("members/infra0/server.crt"), 0o644);
    // Applying the same creations again must fail rather than overwrite.
    assert!(fsio::apply_state_update(&state_dir, &b.state_update).is_err());
    assert_eq!(std::fs::read_to_string(state_dir.join("ca.key")).unwrap(), b.pki.ca.key_pem);
}

#[test]
fn a_second_build_on_the_same_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _held = fsio::lock_state(dir.path()).unwrap();
    match fsio::lock_state(dir.path()) {
        Err(e @ Error::Locked(_)) => assert_eq!(e.exit_code(), 2),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_damaged_state_is_reported_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    build_into(dir.path(), THREE, 1).unwrap();
    std::fs::remove_file(dir.path().join("members/infra2/peer.key")).unwrap();
    match build_into(dir.path(), THREE, 1) {
        Err(e @ Error::StateCorrupt { .. }) => assert!(e.to_string().contains("members/infra2/peer.*")),
        other => panic!("expected StateCorrupt, got {:?}", other.map(|_| ())),
    }
    // A key swapped for another is caught too.
    std::fs::copy(dir.path().join("members/infra1/server.key"), dir.path().join("members/infra2/peer.key"))
        .unwrap();
    match build_into(dir.path(), THREE, 1) {
        Err(e @ Error::StateCorrupt { .. }) => {
            assert!(
                e.to_string().contains("members/infra2/peer.key does not belong to its certificate"),
                "{e}"
            )
        }
        other => panic!("expected StateCorrupt, got {:?}", other.map(|_| ())),
    }
    std::fs::remove_file(dir.path().join("members/infra2/peer.key")).unwrap();
    std::fs::remove_file(dir.path().join("members/infra2/peer.crt")).unwrap();
    // With both halves gone the leaf is simply missing again, and is issued anew.
    let b = build_into(dir.path(), THREE, 1).unwrap();
    assert_eq!(b.decisions.iter().filter(|d| d.action == Action::New).count(), 1);
}
