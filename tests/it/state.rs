//! The state folder across builds: reuse, targeted re-issue, keys never lost, CA never
//! replaced, one build at a time.

use crate::support::FixedKeys;
use crate::support::{NOW, fixtures};
use etcdpack::error::Error;
use etcdpack::pki::Action;
use etcdpack::profile::Leaf;
use etcdpack::{BuildEnv, fsio, topology};
use std::path::Path;

fn parse(text: &str, base: &Path) -> etcdpack::topology::Topology {
    let (t, d) = topology::parse("t.yaml", text, &fsio::DirFiles(base.to_path_buf()));
    t.unwrap_or_else(|| panic!("{d}"))
}

const THREE: &str = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n";

/// Builds `text` against the state in `dir` and writes the state back.
fn build_into(dir: &Path, text: &str, seed: u64) -> Result<etcdpack::Build, Error> {
    build_at(dir, text, seed, NOW)
}

fn build_at(dir: &Path, text: &str, seed: u64, now: i64) -> Result<etcdpack::Build, Error> {
    let t = parse(text, &fixtures());
    let state = fsio::load_state(dir)?;
    let b = etcdpack::build(
        &t,
        &BuildEnv {
            state: &state,
            now,
            source_date_epoch: None,
            keys: &FixedKeys::new(seed),
            renewal: None,
            reset_members: false,
            emit: Default::default(),
            previous: None,
            sealer: &etcdpack::seal::Age,
            ca_step: None,
            restore: None,
        },
        &mut |_| {},
    )?;
    fsio::apply_state_update(dir, &b.state_update)?;
    Ok(b)
}

/// What `plan` reports for `text` against `dir` at `now`.
fn plan_at(dir: &Path, text: &str, now: i64) -> Result<etcdpack::pki::Preflight, Error> {
    let t = parse(text, &fixtures());
    let state = fsio::load_state(dir)?;
    etcdpack::preflight(&t, &etcdpack::plan::bootstrap(&t), &state, now, None)
}

#[test]
fn expiring_certificates_are_refused_by_build_and_plan_alike() {
    let dir = tempfile::tempdir().unwrap();
    let short =
        THREE.replace("{ keyAlgorithm: ECDSA-P256 }", "{ keyAlgorithm: ECDSA-P256, certValidity: 720h }");
    build_at(dir.path(), &short, 1, NOW).unwrap();
    // 20 days later: inside the 30-day window, a warning.
    let b = build_at(dir.path(), &short, 1, NOW + 20 * 86400).unwrap();
    assert!(b.decisions.iter().all(|d| d.action == Action::Reuse));
    assert_eq!(b.warnings.len(), 13, "{:?}", b.warnings);
    assert!(b.warnings[12].contains("apiserver-etcd-client of control-plane"), "{:?}", b.warnings);
    assert!(b.warnings[0].contains("expires on") && b.warnings[0].contains("renewal"), "{:?}", b.warnings);
    // 29.5 days later: within a day of the end, refused, and nothing is written.
    let late = NOW + 720 * 3600 - 12 * 3600;
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    let e = build_at(dir.path(), &short, 1, late).err().expect("refused");
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(msg.contains("etcd-server of infra0 expires on") && msg.contains("renewal"), "{msg}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
    // plan says the same, and so it does once expired.
    let p = plan_at(dir.path(), &short, late).expect_err("plan refuses too");
    assert_eq!(p.to_string(), msg);
    let expired = plan_at(dir.path(), &short, NOW + 800 * 3600).err().unwrap().to_string();
    assert!(expired.contains("expired on"), "{expired}");
}

#[test]
fn a_changed_validity_is_reported_by_plan() {
    let dir = tempfile::tempdir().unwrap();
    build_at(dir.path(), THREE, 1, NOW).unwrap();
    let longer = THREE.replace(
        "{ keyAlgorithm: ECDSA-P256 }",
        "{ keyAlgorithm: ECDSA-P256, certValidity: 17520h, caValidity: 43800h }",
    );
    let p = plan_at(dir.path(), &longer, NOW).unwrap();
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    assert!(
        p.notes[0].contains("pki.caValidity is 43800h but the state's CA was issued for 87600h"),
        "{:?}",
        p.notes
    );
    assert!(
        p.notes[1].contains("13 reused certificate(s) were issued for another validity"),
        "{:?}",
        p.notes
    );
    assert!(plan_at(dir.path(), THREE, NOW).unwrap().notes.is_empty());
}

#[test]
fn plan_refuses_what_build_refuses() {
    // A state of another CA than existingCA: build refuses, so plan must too.
    let dir = tempfile::tempdir().unwrap();
    build_into(dir.path(), THREE, 1).unwrap();
    let with_ca = THREE.replace(
        "pki: { keyAlgorithm: ECDSA-P256 }",
        "pki: { keyAlgorithm: ECDSA-P256, existingCA: { cert: existing-ca-v1.32/ca.crt, key: existing-ca-v1.32/ca.key } }",
    );
    let built = build_into(dir.path(), &with_ca, 1).err().expect("build refuses");
    let planned = plan_at(dir.path(), &with_ca, NOW).expect_err("plan refuses");
    assert_eq!(built.to_string(), planned.to_string());
    assert_eq!(planned.exit_code(), 1);
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
    for leaf in etcdpack::profile::LEAVES {
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

#[test]
fn state_folders_of_format_1_are_reused_whole() {
    for alg in ["rsa-2048", "ecdsa-p256"] {
        let fixture = fixtures().join("legacy-state").join(alg);
        let dir = tempfile::tempdir().unwrap();
        crate::support::copy_tree(&fixture.join("state-format1"), dir.path());
        let text = std::fs::read_to_string(fixture.join("topology.yaml")).unwrap();
        let b = build_into(dir.path(), &text, 1).unwrap();
        // Every member's leaf is reused; the state predates the control-plane bundle, whose
        // certificate is the only new one.
        let (members, cp): (Vec<_>, Vec<_>) = b.decisions.iter().partition(|d| d.member != "control-plane");
        assert!(members.iter().all(|d| d.action == Action::Reuse), "{alg}: {:?}", actions(&b));
        assert_eq!(members.len(), 12, "{alg}");
        assert_eq!(cp.iter().map(|d| &d.action).collect::<Vec<_>>(), [&Action::New], "{alg}");
        assert_eq!(b.pki.ca.action, Action::Reuse, "{alg}");
        assert!(!b.pki.signing_key_new, "{alg}");
        // Nothing is moved, nothing of a member issued; the record gains what this build
        // shipped and the control plane's certificate.
        let u = &b.state_update;
        let created: Vec<&str> = u.create.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            created,
            [
                "members/control-plane/apiserver-etcd-client.key",
                "members/control-plane/apiserver-etcd-client.crt"
            ],
            "{alg}"
        );
        assert!(u.retire.is_empty(), "{alg}: {u:?}");
        let old = etcdpack::state::parse_record(
            &std::fs::read_to_string(fixture.join("state-format1/state.json")).unwrap(),
        )
        .unwrap();
        let new = u.record.as_ref().expect("the first build records what it shipped");
        let mut members_issued = new.issued.clone();
        assert!(members_issued.remove("control-plane").is_some(), "{alg}");
        assert_eq!((&members_issued, new.epoch), (&old.issued, old.epoch), "{alg}");
        assert_eq!(new.built.as_ref().map(|b| b.members.len()), Some(3), "{alg}");
        assert_eq!(
            b.pki.ca.cert_pem,
            std::fs::read_to_string(fixture.join("state-format1/ca.crt")).unwrap(),
            "{alg}"
        );
    }
}

#[test]
fn a_state_of_a_newer_format_is_refused_and_left_alone() {
    let fixture = fixtures().join("legacy-state/ecdsa-p256/state-format1");
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_tree(&fixture, dir.path());
    let record = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    let newer = record.replacen("\"format\": 1", "\"format\": 7", 1);
    assert_ne!(newer, record);
    std::fs::write(dir.path().join("state.json"), &newer).unwrap();
    let text = std::fs::read_to_string(fixtures().join("legacy-state/ecdsa-p256/topology.yaml")).unwrap();
    let e = build_into(dir.path(), &text, 1).err().expect("refused");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("format 7, written by a newer etcdpack"), "{e}");
    assert_eq!(std::fs::read_to_string(dir.path().join("state.json")).unwrap(), newer);
}
