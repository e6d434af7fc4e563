//! Day 2 in process: `renew` (which leaves, what is retired, which bundles change and which
//! stay byte-identical), and what a new version means (restarts, their order, downgrades).

use crate::support::{FixedKeys, NOW, build_in as run, topology_of};
use etcdpack::error::Error;
use etcdpack::pki::{Action, Renewal};
use etcdpack::{Build, BuildEnv, fsio};

const THREE: &str = "cluster: c\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256, certValidity: 720h }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n";

const DAY: i64 = 86400;

fn renewal(members: &[&str], within: Option<i64>) -> Renewal {
    Renewal { members: members.iter().map(|m| m.to_string()).collect(), within, ca_rotation: false }
}

fn renewed(b: &Build) -> Vec<(String, &'static str)> {
    b.decisions
        .iter()
        .filter(|d| matches!(d.action, Action::Renew(_)))
        .map(|d| (d.member.clone(), d.leaf.kubeadm_name()))
        .collect()
}

fn to_install(b: &Build) -> Vec<(&str, bool)> {
    etcdpack::rollout::install_order(&b.changes).iter().map(|c| (c.member.as_str(), c.restart)).collect()
}

#[test]
fn renew_replaces_every_leaf_from_the_same_ca_and_retires_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), THREE, 1, NOW, None).unwrap();
    // A first build: every host installs, nothing restarts a running etcd; the control plane
    // comes last.
    assert_eq!(
        to_install(&first),
        [("infra0", false), ("infra1", false), ("infra2", false), ("control-plane", false)]
    );
    let again = run(dir.path(), THREE, 2, NOW + DAY, None).unwrap();
    assert!(to_install(&again).is_empty(), "{:?}", again.changes);

    let b = run(dir.path(), THREE, 3, NOW + 10 * DAY, Some(&Renewal::default())).unwrap();
    assert_eq!(renewed(&b).len(), 13);
    assert!(renewed(&b).contains(&("control-plane".to_string(), "apiserver-etcd-client")));
    assert_eq!(b.pki.ca.action, Action::Reuse);
    assert_eq!(b.pki.ca.cert_pem, first.pki.ca.cert_pem);
    for (member, leaves) in &b.pki.leaves {
        for (leaf, issued) in leaves {
            let old = &first.pki.leaves[member][leaf];
            assert_ne!(issued.key_pem, old.key_pem, "{member} {leaf:?}: a new key");
            assert_eq!(issued.info.not_after, NOW + 10 * DAY + 720 * 3600);
            // The old pair is retired under its serial, never deleted.
            for ext in ["crt", "key"] {
                let retired =
                    dir.path().join(etcdpack::state::retired_path(member, *leaf, &old.info.serial_hex, ext));
                assert!(retired.is_file(), "{}", retired.display());
            }
        }
    }
    assert_eq!(
        to_install(&b),
        [("infra0", false), ("infra1", false), ("infra2", false), ("control-plane", false)]
    );
    let (members, cp) = b.changes.split_at(3);
    assert!(
        members.iter().all(|c| c.reasons
            == ["new certificates: etcd-server, etcd-peer, etcd-healthcheck-client, apiserver-etcd-client"]),
        "{:?}",
        b.changes
    );
    assert_eq!(
        cp[0].reasons,
        [
            "new certificates: apiserver-etcd-client; restart kube-apiserver on each control-plane node after installing it"
        ]
    );
    // The next build reuses what renew issued.
    let after = run(dir.path(), THREE, 4, NOW + 11 * DAY, None).unwrap();
    assert!(after.decisions.iter().all(|d| d.action == Action::Reuse));
    assert_eq!(after.dist, b.dist);
}

#[test]
fn renewing_one_member_leaves_the_other_bundles_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), THREE, 1, NOW, None).unwrap();
    let b = run(dir.path(), THREE, 2, NOW + DAY, Some(&renewal(&["infra1"], None))).unwrap();
    assert_eq!(
        renewed(&b),
        [
            ("infra1".to_string(), "etcd-server"),
            ("infra1".to_string(), "etcd-peer"),
            ("infra1".to_string(), "etcd-healthcheck-client"),
            ("infra1".to_string(), "apiserver-etcd-client")
        ]
    );
    for m in ["infra0", "infra2", "control-plane"] {
        for f in [format!("{m}.tar.gz"), format!("{m}.tar.gz.sig")] {
            assert_eq!(b.dist[&f], first.dist[&f], "{f} must not change");
        }
    }
    assert_ne!(b.dist["infra1.tar.gz"], first.dist["infra1.tar.gz"]);
    assert_eq!(to_install(&b), [("infra1", false)]);
    // Generations: the changed bundle takes the next number, the others keep theirs (and
    // their bytes); a build that changes nothing raises nothing.
    assert_eq!(generations(&first), [("infra0", 1), ("infra1", 1), ("infra2", 1)]);
    assert_eq!(generations(&b), [("infra0", 1), ("infra1", 2), ("infra2", 1)]);
    let again = run(dir.path(), THREE, 3, NOW + DAY, None).unwrap();
    assert_eq!(generations(&again), [("infra0", 1), ("infra1", 2), ("infra2", 1)]);
    assert_eq!(again.dist["infra1.tar.gz"], b.dist["infra1.tar.gz"]);
    let c = run(dir.path(), THREE, 4, NOW + 2 * DAY, Some(&renewal(&["infra0"], None))).unwrap();
    assert_eq!(generations(&c), [("infra0", 3), ("infra1", 2), ("infra2", 1)]);
}

/// Each member's `GENERATION` as its bundle.env in `dist/` says.
fn generations(b: &etcdpack::Build) -> Vec<(&'static str, u64)> {
    ["infra0", "infra1", "infra2"]
        .into_iter()
        .map(|m| {
            let u = etcdpack::unpack::unpack(&b.dist[&format!("{m}.tar.gz")]).unwrap();
            let env = String::from_utf8(u.files["bundle.env"].bytes.clone()).unwrap();
            let g = env.lines().find_map(|l| l.strip_prefix("GENERATION=")).unwrap().parse().unwrap();
            (m, g)
        })
        .collect()
}

#[test]
fn renew_within_a_window_takes_only_what_expires_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), THREE, 1, NOW, None).unwrap();
    // 720h certificates, 20 days on: 10 days left. A 5-day window renews nothing.
    let none = run(dir.path(), THREE, 2, NOW + 20 * DAY, Some(&renewal(&[], Some(5 * DAY)))).unwrap();
    assert!(renewed(&none).is_empty());
    assert!(to_install(&none).is_empty());
    // Renew infra2 alone now; then a 20-day window takes the other two, not infra2's fresh ones.
    run(dir.path(), THREE, 3, NOW + 20 * DAY, Some(&renewal(&["infra2"], None))).unwrap();
    let b = run(dir.path(), THREE, 4, NOW + 21 * DAY, Some(&renewal(&[], Some(20 * DAY)))).unwrap();
    let members: std::collections::BTreeSet<String> = renewed(&b).into_iter().map(|(m, _)| m).collect();
    assert_eq!(members.into_iter().collect::<Vec<_>>(), ["control-plane", "infra0", "infra1"]);
}

#[test]
fn build_refuses_an_expiring_certificate_and_renew_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), THREE, 1, NOW, None).unwrap();
    let late = NOW + 720 * 3600 - 3600;
    let refused = run(dir.path(), THREE, 2, late, None).err().expect("refused");
    assert!(refused.to_string().contains("etcdpack renew"), "{refused}");
    // Renewing one member is not enough: the others still refuse, by name.
    let partly = run(dir.path(), THREE, 2, late, Some(&renewal(&["infra0"], None))).err().expect("refused");
    assert!(
        partly.to_string().contains("of infra1 expires on") && !partly.to_string().contains("of infra0"),
        "{partly}"
    );
    run(dir.path(), THREE, 3, late, Some(&Renewal::default())).unwrap();
    // A day later the build ships them (720h certificates stay inside the 30-day warning).
    let after = run(dir.path(), THREE, 4, late + DAY, None).unwrap();
    assert!(after.decisions.iter().all(|d| d.action == Action::Reuse));
    assert!(after.warnings.iter().all(|w| w.contains("(29 days)")), "{:?}", after.warnings);
}

#[test]
fn renew_names_an_unknown_member() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), THREE, 1, NOW, None).unwrap();
    let e = run(dir.path(), THREE, 2, NOW, Some(&renewal(&["infra9"], None))).err().unwrap();
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string().contains("--member infra9: not a member")
            && e.to_string().contains("infra0, infra1, infra2"),
        "{e}"
    );
}

#[test]
fn an_upgrade_restarts_every_host_one_at_a_time_and_a_downgrade_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), THREE, 1, NOW, None).unwrap();
    let up = THREE.replace("v1.33.6", "v1.34.2");
    // 1.33.6 runs etcd 3.5.24, below the 3.5.26 etcd requires before 3.6: plan and build name
    // the intermediate step (a warning: the upgrade still goes).
    let t = topology_of(&up);
    let state = fsio::load_state(dir.path()).unwrap();
    let pre = etcdpack::preflight(&t, &etcdpack::plan::bootstrap(&t), &state, NOW, None).unwrap();
    assert!(
        pre.notes.iter().any(|n| n.contains("3.5.26 or later before an upgrade to 3.6")
            && n.contains("imageTag: 3.5.26-0")
            && n.contains("upgrade_3_6.md")),
        "{:?}",
        pre.notes
    );
    let b = run(dir.path(), &up, 2, NOW, None).unwrap();
    // The control plane's etcd-external.yaml names the new kubernetesVersion: it installs
    // last, restarting nothing.
    assert_eq!(
        to_install(&b),
        [("infra0", true), ("infra1", true), ("infra2", true), ("control-plane", false)]
    );
    assert_eq!(b.changes[3].reasons, ["kubernetesVersion v1.33.6 -> v1.34.2 in etcd-external.yaml"]);
    assert!(
        b.changes[0].reasons[0].contains(
            "manifest changed (kubernetesVersion v1.33.6 -> v1.34.2, etcd 3.5.24-0 -> 3.6.5-0): etcd restarts"
        ),
        "{:?}",
        b.changes
    );
    assert!(b.decisions.iter().all(|d| d.action == Action::Reuse), "certificates are kept");
    // Back to 1.33 would put etcd 3.5 on 3.6 data: refused, with nothing written.
    let e = run(dir.path(), THREE, 3, NOW, None).err().expect("refused");
    assert_eq!(e.exit_code(), 1);
    let Error::Refused(said) = &e else { panic!("not a refusal: {e:?}") };
    assert!(said.what.contains("downgrade from etcd 3.6 to 3.5"), "{said:?}");
    assert!(said.fix.as_deref().is_some_and(|f| f.contains("etcd 3.6 or later")), "{said:?}");
    // An etcd.imageTag that skips a minor version (3.6 -> 3.8) is refused, naming the step.
    let skip = up.replace("members:", "etcd: { imageTag: 3.8.0-0 }\nmembers:");
    let t = topology_of(&skip);
    let state = fsio::load_state(dir.path()).unwrap();
    let e = etcdpack::preflight(&t, &etcdpack::plan::bootstrap(&t), &state, NOW, None).expect_err("refused");
    let Error::Refused(said) = &e else { panic!("not a refusal: {e:?}") };
    assert!(said.what.contains("skipping etcd 3.7"), "{said:?}");
    assert!(said.fix.as_deref().is_some_and(|f| f.contains("etcd 3.7 first")), "{said:?}");
}

#[test]
fn a_changed_flag_restarts_only_through_the_manifest_and_certificates_do_not() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), THREE, 1, NOW, None).unwrap();
    let flagged = THREE.replace("members:", "etcd: { extraArgs: { snapshot-count: \"5000\" } }\nmembers:");
    let b = run(dir.path(), &flagged, 2, NOW, None).unwrap();
    let (members, cp) = b.changes.split_at(3);
    assert!(
        members.iter().all(|c| c.restart && c.reasons[0].contains("flags or settings")),
        "{:?}",
        b.changes
    );
    // etcd's flags are nothing to the control plane.
    assert!(!cp[0].install, "{:?}", cp);
    let r = run(dir.path(), &flagged, 3, NOW, Some(&Renewal::default())).unwrap();
    assert!(r.changes.iter().all(|c| c.install && !c.restart), "{:?}", r.changes);
}

const FIVE: &str = "cluster: c\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256, certValidity: 720h }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n  - { name: infra3, address: 10.0.0.9 }\n  - { name: infra4, address: 10.0.0.10 }\n";

fn steps(b: &Build) -> Vec<(etcdpack::membership::StepAction, &str)> {
    b.membership.steps.iter().map(|s| (s.action, s.member.as_str())).collect()
}

fn unpacked(b: &Build, name: &str) -> etcdpack::unpack::Unpacked {
    etcdpack::unpack::unpack(&b.dist[&format!("{name}.tar.gz")]).unwrap()
}

#[test]
fn an_added_member_joins_and_the_others_bundles_stay_byte_identical() {
    use etcdpack::membership::StepAction;
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), THREE, 1, NOW, None).unwrap();
    assert!(first.membership.steps.is_empty(), "a first build bootstraps");
    let four = THREE.to_string() + "  - { name: infra3, address: 10.0.0.9 }\n";
    let b = run(dir.path(), &four, 2, NOW, None).unwrap();
    assert_eq!(steps(&b), [(StepAction::Add, "infra3")]);
    for m in ["infra0", "infra1", "infra2"] {
        assert_eq!(b.dist[&format!("{m}.tar.gz")], first.dist[&format!("{m}.tar.gz")], "{m}");
    }
    assert_eq!(to_install(&b), [("infra3", false), ("control-plane", false)]);
    let u = unpacked(&b, "infra3");
    let cfg = String::from_utf8(u.files["kubeadmcfg.yaml"].bytes.clone()).unwrap();
    assert!(
        cfg.contains("value: infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380,infra2=https://10.0.0.8:2380,infra3=https://10.0.0.9:2380")
            && cfg.contains("name: initial-cluster-state\n          value: existing"),
        "{cfg}"
    );
    let manifest =
        String::from_utf8(u.files["rootfs/etc/kubernetes/manifests/etcd.yaml"].bytes.clone()).unwrap();
    assert!(manifest.contains("--initial-cluster-state=existing"), "{manifest}");
    let meta: serde_json::Value = serde_json::from_slice(&u.files["bundle.json"].bytes).unwrap();
    assert_eq!((meta["role"].as_str(), meta["replaces"].as_str()), (Some("join"), None));
    // The record keeps infra3 as joined: the next build is the same, byte for byte.
    let again = run(dir.path(), &four, 3, NOW, None).unwrap();
    assert!(again.membership.steps.is_empty() && to_install(&again).is_empty(), "{:?}", again.changes);
    // Every bundle is the same, byte for byte (plan.json says infra3 no longer joins now).
    let bundles = |b: &Build| -> Vec<Vec<u8>> {
        b.dist.iter().filter(|(n, _)| n.ends_with(".tar.gz")).map(|(_, v)| v.clone()).collect()
    };
    assert!(bundles(&again) == bundles(&b), "a rebuild changed a bundle");
}

#[test]
fn a_moved_member_replaces_its_old_address_and_a_removed_one_gets_a_keyless_leave() {
    use etcdpack::membership::StepAction;
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), FIVE, 1, NOW, None).unwrap();
    let moved = FIVE.replace("10.0.0.7 }", "10.0.0.17 }");
    let b = run(dir.path(), &moved, 2, NOW, None).unwrap();
    assert_eq!(steps(&b), [(StepAction::Replace, "infra1")]);
    let generation_of = |b: &etcdpack::Build, m: &str| {
        let env = String::from_utf8(unpacked(b, m).files["bundle.env"].bytes.clone()).unwrap();
        env.lines().find_map(|l| l.strip_prefix("GENERATION=")).unwrap().to_string()
    };
    let infra3_last = generation_of(&b, "infra3");
    assert_ne!(infra3_last, "0");
    let meta: serde_json::Value =
        serde_json::from_slice(&unpacked(&b, "infra1").files["bundle.json"].bytes).unwrap();
    assert_eq!(meta["replaces"], "https://10.0.0.7:2380");
    // The moved member's serving certificates follow its address.
    assert!(b.decisions.iter().any(|d| d.member == "infra1" && matches!(d.action, Action::Reissue(_))));
    // 5 -> 3: two leave bundles, no key in either; they are shipped again until reset.
    let three = moved
        .replace("  - { name: infra3, address: 10.0.0.9 }\n  - { name: infra4, address: 10.0.0.10 }\n", "");
    let b = run(dir.path(), &three, 3, NOW, None).unwrap();
    assert_eq!(steps(&b), [(StepAction::Remove, "infra3"), (StepAction::Remove, "infra4")]);
    assert!(b.membership.steps[0].dead_host.as_deref().unwrap().contains("member remove"));
    for m in ["infra3", "infra4"] {
        let u = unpacked(&b, m);
        assert_eq!(
            u.files.keys().collect::<Vec<_>>(),
            ["SHA256SUMS", "SHA256SUMS.sig", "bundle.json", "install.sh", "signing-key.pub"],
            "{m}"
        );
    }
    // Each leave knows its member's last generation: a host that runs a newer bundle of that
    // name took the member back, and the leave refuses it.
    let left_at = |b: &etcdpack::Build| {
        let script = String::from_utf8(unpacked(b, "infra3").files["install.sh"].bytes.clone()).unwrap();
        script.lines().find_map(|l| l.strip_prefix("readonly LEFT_AT_GENERATION=")).unwrap().to_string()
    };
    assert_eq!(left_at(&b), infra3_last);
    let again = run(dir.path(), &three, 4, NOW, None).unwrap();
    assert_eq!(left_at(&again), infra3_last, "shipped again, the same");
    assert_eq!(again.dist["infra3.tar.gz"], b.dist["infra3.tar.gz"]);
    assert!(again.membership.steps.is_empty());
    assert_eq!(again.membership.notes.len(), 2, "{:?}", again.membership.notes);
    assert!(again.dist.contains_key("infra3.tar.gz"));
    let t = topology_of(&three);
    let state = fsio::load_state(dir.path()).unwrap();
    let env = BuildEnv {
        state: &state,
        now: NOW,
        source_date_epoch: Some(1),
        keys: &FixedKeys::new(5),
        renewal: None,
        reset_members: true,
        emit: Default::default(),
        previous: None,
        sealer: &etcdpack::seal::Age,
        ca_step: None,
        restore: None,
    };
    let reset = etcdpack::build(&t, &env, &mut |_| {}).unwrap();
    assert!(!reset.dist.contains_key("infra3.tar.gz"));
    assert!(
        reset.membership.notes[0].contains("--reset-members: the recorded members"),
        "{:?}",
        reset.membership.notes
    );
}

#[test]
fn a_change_that_loses_quorum_in_one_step_is_refused_with_the_safe_way() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), FIVE, 1, NOW, None).unwrap();
    let before = fsio::load_state(dir.path()).unwrap().record;
    // Three of five move at once: a majority.
    let moved = FIVE
        .replace("10.0.0.6 }", "10.0.1.6 }")
        .replace("10.0.0.7 }", "10.0.1.7 }")
        .replace("10.0.0.8 }", "10.0.1.8 }");
    let e = run(dir.path(), &moved, 2, NOW, None).err().expect("refused");
    assert_eq!(e.exit_code(), 1);
    // A refusal, as data: what is wrong, and the way that works.
    let Error::Refused(said) = &e else { panic!("not a refusal: {e:?}") };
    assert!(said.what.contains("3 of the 5 members move to a new address at once"), "{said:?}");
    assert_eq!(
        said.fix.as_deref(),
        Some("replace at most 2 member(s) per build; build and install those, then the next")
    );
    // 5 -> 2: fewer than the quorum of 5 left.
    let two = "cluster: c\nkubernetesVersion: v1.33.6\npki: { keyAlgorithm: ECDSA-P256, certValidity: 720h }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n";
    let e = run(dir.path(), two, 3, NOW, None).err().expect("refused");
    let Error::Refused(said) = &e else { panic!("not a refusal: {e:?}") };
    assert!(said.what.contains("from 5 to 2 member(s) in one step"), "{said:?}");
    assert!(
        said.fix.as_deref().is_some_and(|f| f.starts_with("remove at most 2 member(s) per build")),
        "{said:?}"
    );
    assert_eq!(fsio::load_state(dir.path()).unwrap().record, before, "a refusal writes nothing");
}

#[test]
fn under_systemd_an_upgrade_restarts_through_etcd_service() {
    let dir = tempfile::tempdir().unwrap();
    let plain = THREE.replace("members:", "etcd: { runtime: systemd, user: etcd }\nmembers:");
    run(dir.path(), &plain, 1, NOW, None).unwrap();
    let b = run(dir.path(), &plain.replace("v1.33.6", "v1.34.2"), 2, NOW, None).unwrap();
    assert_eq!(
        to_install(&b),
        [("infra0", true), ("infra1", true), ("infra2", true), ("control-plane", false)]
    );
    assert!(
        b.changes[0].reasons[0].contains(
            "etcd.service changed (kubernetesVersion v1.33.6 -> v1.34.2, etcd 3.5.24-0 -> 3.6.5-0): etcd restarts"
        ),
        "{:?}",
        b.changes
    );
    // A renewal touches no unit: nothing restarts.
    let r = run(dir.path(), &plain.replace("v1.33.6", "v1.34.2"), 3, NOW, Some(&Renewal::default())).unwrap();
    assert!(r.changes.iter().all(|c| c.install && !c.restart), "{:?}", r.changes);
}

#[test]
fn a_patch_release_that_appends_extra_args_restarts_etcd_and_says_why() {
    // v1.35.0 sorts every argument; v1.35.4 carries PR #135400's backport (from v1.35.1).
    let dir = tempfile::tempdir().unwrap();
    let old = THREE.replace("v1.33.6", "v1.35.0");
    run(dir.path(), &old, 1, NOW, None).unwrap();
    let b = run(dir.path(), &old.replace("v1.35.0", "v1.35.4"), 2, NOW, None).unwrap();
    let (members, cp) = b.changes.split_at(3);
    for c in members {
        assert!(c.restart, "{c:?}");
        assert_eq!(
            c.reasons[0],
            "manifest changed (kubernetesVersion v1.35.0 -> v1.35.4, argument order sorted -> appended: \
             kubeadm v1.35.4 appends the extraArgs after the sorted defaults): etcd restarts"
        );
    }
    assert!(!cp[0].restart, "{cp:?}");
    // Between two patch releases of the same order nothing is said of it.
    let c = run(dir.path(), &old.replace("v1.35.0", "v1.35.5"), 3, NOW, None).unwrap();
    assert!(
        c.changes.iter().all(|c| c.reasons.iter().all(|r| !r.contains("argument order"))),
        "{:?}",
        c.changes
    );
    // With the order written out, the topology keeps it across patch releases: the version
    // moves, the order does not.
    let dir = tempfile::tempdir().unwrap();
    let pinned = old.replace("members:", "etcd: { extraArgsOrder: sorted }\nmembers:");
    run(dir.path(), &pinned, 1, NOW, None).unwrap();
    let p = run(dir.path(), &pinned.replace("v1.35.0", "v1.35.4"), 2, NOW, None).unwrap();
    assert!(p.changes.iter().all(|c| !c.restart), "{:?}", p.changes);
}

#[test]
fn a_new_installer_alone_is_named_and_restarts_nothing() {
    // The last build's tarballs tell which install.sh each host has: a bundle whose recorded
    // tarball holds another install.sh is named, one whose tarball the state did not record
    // is not (nothing is known of it).
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), THREE, 1, NOW, None).unwrap();
    let mut state = fsio::load_state(dir.path()).unwrap();
    let t = topology_of(THREE);
    let (plan, _) = etcdpack::plan_for(&t, &state, false).unwrap();
    let previous = |file: &str| first.dist.get(file).cloned();
    assert!(etcdpack::installer_changes(&plan, &state, &previous).is_empty());
    // infra0's last bundle as an earlier release would have made it: another install.sh.
    let u = etcdpack::unpack::unpack(&first.dist["infra0.tar.gz"]).unwrap();
    let mut files: std::collections::BTreeMap<String, etcdpack::render::BundleFile> = u
        .files
        .iter()
        .map(|(p, e)| (p.clone(), etcdpack::render::BundleFile::new(e.mode, e.bytes.clone())))
        .collect();
    files.insert(
        "install.sh".into(),
        etcdpack::render::BundleFile::new(0o755, b"#!/bin/sh\n# older\n".to_vec()),
    );
    let older = etcdpack::pack::pack(&etcdpack::render::FileSet { member: "infra0".into(), files }, 1);
    let previous = |file: &str| {
        if file == "infra0.tar.gz" { Some(older.clone()) } else { first.dist.get(file).cloned() }
    };
    // Not recorded: not named.
    assert!(etcdpack::installer_changes(&plan, &state, &previous).is_empty());
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(&older));
    state.record.built.as_mut().unwrap().members.get_mut("infra0").unwrap().bundle_sha256 = digest;
    let named = etcdpack::installer_changes(&plan, &state, &previous);
    assert_eq!(named.into_iter().collect::<Vec<_>>(), ["infra0"]);
    // plan's view: infra0 gets its new installer, nothing restarts, nobody else changes.
    let runtime = etcdpack::runtime_digests(&plan, None).unwrap();
    let pre = etcdpack::preflight(&t, &plan, &state, NOW, None).unwrap();
    let named = etcdpack::installer_changes(&plan, &state, &previous);
    let changes = etcdpack::rollout::changes(
        &plan,
        state.record.built.as_ref(),
        &runtime,
        None,
        &pre.decisions,
        &named,
        None,
    );
    let install: Vec<(&str, bool, bool)> =
        changes.iter().map(|c| (c.member.as_str(), c.install, c.restart)).collect();
    assert_eq!(
        install,
        [
            ("infra0", true, false),
            ("infra1", false, false),
            ("infra2", false, false),
            ("control-plane", false, false)
        ]
    );
    assert_eq!(
        changes[0].reasons,
        ["install.sh changed (this etcdpack release's installer); etcd does not restart"]
    );
}

#[test]
fn the_ca_key_stays_with_its_holder_until_the_topology_names_another() {
    let carrier = |b: &Build| -> Vec<String> {
        b.plan.members.iter().filter(|m| m.carries_ca_key).map(|m| m.name.clone()).collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), THREE, 1, NOW, None).unwrap();
    assert_eq!(carrier(&first), ["infra0"]);
    assert_eq!(fsio::load_state(dir.path()).unwrap().record.ca_key_holder.as_deref(), Some("infra0"));
    // The members reordered: the key does not follow the first place.
    let reordered = THREE.replace(
        "  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n",
        "  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra0, address: 10.0.0.6 }\n",
    );
    assert_ne!(reordered, THREE);
    let b = run(dir.path(), &reordered, 2, NOW, None).unwrap();
    assert_eq!(carrier(&b), ["infra0"]);
    let u = etcdpack::unpack::unpack(&b.dist["infra0.tar.gz"]).unwrap();
    assert!(u.files.contains_key("rootfs/etc/kubernetes/pki/etcd/ca.key"));
    // The holder leaves without a successor named: refused, with the way out.
    let without = THREE
        .replace("  - { name: infra0, address: 10.0.0.6 }\n", "  - { name: infra3, address: 10.0.0.9 }\n");
    let e = run(dir.path(), &without, 3, NOW, None).err().expect("refused");
    let Error::Refused(said) = &e else { panic!("{e:?}") };
    assert_eq!(
        said.what,
        "infra0 holds the etcd CA key and leaves the topology: the key does not move on its own"
    );
    assert!(said.fix.as_deref().is_some_and(|f| f.contains("caKeyHolder")), "{said:?}");
    // Named, it moves, and the build says in which order to install.
    let named = THREE.replace("pki: { ", "pki: { caKeyHolder: infra2, ");
    let b = run(dir.path(), &named, 4, NOW, None).unwrap();
    assert_eq!(carrier(&b), ["infra2"]);
    assert!(
        b.membership.notes.iter().any(|n| n.starts_with("the CA key moves from infra0 to infra2")),
        "{:?}",
        b.membership.notes
    );
    assert_eq!(fsio::load_state(dir.path()).unwrap().record.ca_key_holder.as_deref(), Some("infra2"));
}

/// `rotate-ca` through its phases, in process: what the state holds, what every bundle's
/// etcd/ca.crt trusts, which CA signs the leaves, which hosts restart, and the refusals.
#[test]
fn a_ca_rotation_moves_through_its_phases_in_the_state_and_the_bundles() {
    use crate::support::rotate_in as rotate;
    use etcdpack::pki::CaStep::{Abort, Advance};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pem = |path: &str| std::fs::read_to_string(d.join(path)).unwrap();
    let trust_of = |b: &Build, member: &str| {
        let u = etcdpack::unpack::unpack(&b.dist[&format!("{member}.tar.gz")]).unwrap();
        String::from_utf8(u.files["rootfs/etc/kubernetes/pki/etcd/ca.crt"].bytes.clone()).unwrap()
    };
    let restarts = |b: &Build| b.changes.iter().filter(|c| c.restart).count();
    let refused = |r: Result<Build, Error>| match r {
        Err(e @ Error::Refused(_)) => e.to_string(),
        Err(e) => panic!("not a refusal: {e}"),
        Ok(_) => panic!("not refused"),
    };
    let first = run(d, THREE, 1, NOW, None).unwrap();
    let old_ca = pem("ca.crt");
    assert!(refused(rotate(d, THREE, 2, Abort)).contains("no CA rotation is in progress"));

    // Phase 1: a new CA beside the old, which still signs; leaves kept; every member restarts.
    let p1 = rotate(d, THREE, 3, Advance).unwrap();
    assert_eq!(p1.ca_phase, Some(1));
    let new_ca = pem("ca-next.crt");
    assert_eq!(pem("ca.crt"), old_ca);
    assert_eq!(trust_of(&p1, "infra1"), format!("{old_ca}{new_ca}"));
    assert!(p1.decisions.iter().all(|x| x.action == Action::Reuse));
    assert_eq!(restarts(&p1), 3);
    assert!(p1.changes.iter().all(|c| c.reasons.iter().any(|r| r.contains("etcd/ca.crt changed"))));
    let env = String::from_utf8(
        etcdpack::unpack::unpack(&p1.dist["infra1.tar.gz"]).unwrap().files["bundle.env"].bytes.clone(),
    )
    .unwrap();
    assert!(env.lines().any(|l| l.starts_with("TRUSTED_CA_SHA256=") && l.matches(',').count() == 1), "{env}");
    // A build in phase 1 changes nothing; renew is refused in the middle of a rotation.
    let again = run(d, THREE, 4, NOW, None).unwrap();
    assert_eq!(again.dist, p1.dist);
    assert!(
        refused(run(d, THREE, 5, NOW, Some(&Renewal::default()))).contains("a CA rotation is in phase 1")
    );

    // Abort: the old CA alone again, the new one retired; every member restarts once more.
    let aborted = rotate(d, THREE, 6, Abort).unwrap();
    assert_eq!(aborted.ca_phase, None);
    assert_eq!(trust_of(&aborted, "infra0"), old_ca);
    assert!(!d.join("ca-next.crt").exists() && d.join("retired/ca").read_dir().unwrap().count() == 2);
    assert_eq!(restarts(&aborted), 3);
    assert_eq!(trust_of(&aborted, "infra2"), trust_of(&first, "infra2"));

    // Phase 1 again, then 2: the CAs swap, every leaf comes from the new CA, both trusted (the
    // new one first), the holder gets the new CA key; nothing restarts (same trusted set).
    rotate(d, THREE, 7, Advance).unwrap();
    let new_ca = pem("ca-next.crt");
    let p2 = rotate(d, THREE, 8, Advance).unwrap();
    assert_eq!(p2.ca_phase, Some(2));
    assert_eq!((pem("ca.crt"), pem("ca-previous.crt")), (new_ca.clone(), old_ca.clone()));
    assert_eq!(trust_of(&p2, "infra1"), format!("{new_ca}{old_ca}"));
    assert!(
        p2.decisions
            .iter()
            .all(|x| matches!(&x.action, Action::Renew(why) if why.starts_with("the CA rotation")))
    );
    assert_eq!(p2.decisions.len(), 13, "every member's leaves and the control plane's");
    let new_der = etcdpack::x509::parse_pem(&new_ca).unwrap().der;
    for leaves in p2.pki.leaves.values() {
        for issued in leaves.values() {
            assert!(etcdpack::x509::signed_by(&issued.info.der, &new_der));
        }
    }
    let holder = etcdpack::unpack::unpack(&p2.dist["infra0.tar.gz"]).unwrap();
    assert_eq!(holder.files["rootfs/etc/kubernetes/pki/etcd/ca.key"].bytes, pem("ca.key").into_bytes());
    assert_eq!(restarts(&p2), 0);
    assert!(refused(rotate(d, THREE, 9, Abort)).contains("the way out is forward"));

    // Phase 3: the new CA alone; the old one retired; every member restarts.
    let p3 = rotate(d, THREE, 10, Advance).unwrap();
    assert_eq!(p3.ca_phase, None);
    assert_eq!(trust_of(&p3, "infra1"), new_ca);
    assert!(!d.join("ca-previous.crt").exists() && d.join("retired/ca").read_dir().unwrap().count() == 4);
    assert_eq!(restarts(&p3), 3);
    assert!(p3.decisions.iter().all(|x| x.action == Action::Reuse));
    let after = run(d, THREE, 11, NOW, None).unwrap();
    assert_eq!(after.dist, p3.dist, "a build after the rotation changes nothing");
}

/// A member added in the middle of a CA rotation is folded into it, and the build says so:
/// its bundle trusts both CAs and its certificates come from the CA that signs in the phase.
#[test]
fn a_member_added_during_a_ca_rotation_joins_in_the_rotations_phase() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, THREE, 1, NOW, None).unwrap();
    crate::support::rotate_in(d, THREE, 2, etcdpack::pki::CaStep::Advance).unwrap();
    let four = THREE.replace(
        "  - { name: infra2, address: 10.0.0.8 }\n",
        "  - { name: infra2, address: 10.0.0.8 }\n  - { name: infra3, address: 10.0.0.9 }\n",
    );
    let b = run(d, &four, 3, NOW, None).unwrap();
    assert_eq!(b.ca_phase, Some(1));
    assert!(
        b.membership.notes.iter().any(|n| n.contains("a CA rotation is in phase 1 of 3")),
        "{:?}",
        b.membership.notes
    );
    let u = etcdpack::unpack::unpack(&b.dist["infra3.tar.gz"]).unwrap();
    let trust = String::from_utf8(u.files["rootfs/etc/kubernetes/pki/etcd/ca.crt"].bytes.clone()).unwrap();
    assert_eq!(trust.matches("BEGIN CERTIFICATE").count(), 2);
    let old = etcdpack::x509::parse_pem(&std::fs::read_to_string(d.join("ca.crt")).unwrap()).unwrap().der;
    for issued in b.pki.leaves["infra3"].values() {
        assert!(etcdpack::x509::signed_by(&issued.info.der, &old), "phase 1: the old CA signs");
    }
}
