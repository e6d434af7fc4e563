//! `verify` against bundles tampered in each way it must catch. Tampered bundles are
//! re-summed and re-signed with the real signing key, so each case isolates one check.

use crate::support::{NOW, built};
use etcdpack::keys::{KeyAlgorithm, KeySource, OsKeys, pem_encode};
use etcdpack::render::{BundleFile, FileSet};
use etcdpack::sign::Signer256;
use etcdpack::unpack::Unpacked;
use etcdpack::{pack, verify};
use sha2::{Digest, Sha256};

const PKI: &str = "rootfs/etc/kubernetes/pki";

fn signer(scenario: &str) -> Signer256 {
    Signer256::from_pem(&built(scenario).build.pki.signing_key_pem).unwrap()
}

fn public(scenario: &str) -> String {
    String::from_utf8(built(scenario).build.dist["signing-key.pub"].clone()).unwrap()
}

/// Packs `u` again with a fresh SHA256SUMS, signed inside and out with the real key.
fn repack(scenario: &str, u: &Unpacked) -> (Vec<u8>, Vec<u8>) {
    repack_inner_by(scenario, u, &signer(scenario))
}

/// `repack`, with SHA256SUMS inside the bundle signed by `inner` (the tarball by the real key).
fn repack_inner_by(scenario: &str, u: &Unpacked, inner: &Signer256) -> (Vec<u8>, Vec<u8>) {
    let mut files: std::collections::BTreeMap<String, BundleFile> = u
        .files
        .iter()
        .filter(|(p, _)| *p != "SHA256SUMS" && *p != "SHA256SUMS.sig")
        .map(|(p, e)| (p.clone(), BundleFile::new(e.mode, e.bytes.clone())))
        .collect();
    let sums: String = files
        .iter()
        .map(|(p, f)| format!("{}  {p}\n", hex::encode(Sha256::digest(f.bytes.as_slice()))))
        .collect();
    files.insert("SHA256SUMS.sig".into(), BundleFile::new(0o644, inner.sign(sums.as_bytes())));
    files.insert("SHA256SUMS".into(), BundleFile::new(0o644, sums.into_bytes()));
    let bytes = pack::pack(&FileSet { member: u.top.clone(), files }, 0);
    let sig = signer(scenario).sign(&bytes);
    (bytes, sig)
}

fn failures(r: &verify::Report) -> Vec<String> {
    r.failures().map(|c| format!("{}: {}", c.what, c.failure.as_deref().unwrap())).collect()
}

#[test]
fn a_good_bundle_passes() {
    let b = built("guide-v1.34");
    for m in ["infra0", "infra1", "infra2"] {
        let r = verify::verify(
            &b.build.dist[&format!("{m}.tar.gz")],
            Some(&b.build.dist[&format!("{m}.tar.gz.sig")]),
            &public("guide-v1.34"),
            NOW,
        );
        assert!(r.ok(), "{m}: {:?}", failures(&r));
    }
    // A repacked but unchanged bundle passes too, so the cases below test only their change.
    let (bytes, sig) = repack("guide-v1.34", &b.bundles["infra1"]);
    assert!(verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW).ok());
}

#[test]
fn any_changed_byte_fails() {
    let b = built("guide-v1.34");
    let good = &b.build.dist["infra1.tar.gz"];
    let sig = &b.build.dist["infra1.tar.gz.sig"];
    for i in (0..good.len()).step_by(97).chain([good.len() - 1]) {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let r = verify::verify(&bad, Some(sig), &public("guide-v1.34"), NOW);
        assert!(!r.ok(), "flipping byte {i} went unnoticed");
        assert!(failures(&r)[0].starts_with("signature"), "{:?}", failures(&r));
    }
}

#[test]
fn a_changed_file_with_the_old_sums_fails_the_digest_check() {
    let b = built("guide-v1.34");
    let mut u = b.bundles["infra1"].clone();
    u.files.get_mut("kubeadmcfg.yaml").unwrap().bytes.extend_from_slice(b"# extra\n");
    let mut files: std::collections::BTreeMap<String, BundleFile> =
        u.files.iter().map(|(p, e)| (p.clone(), BundleFile::new(e.mode, e.bytes.clone()))).collect();
    files.insert("extra.txt".into(), BundleFile::new(0o644, b"x".to_vec()));
    let bytes = pack::pack(&FileSet { member: u.top.clone(), files }, 0);
    let sig = signer("guide-v1.34").sign(&bytes);
    let f = failures(&verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f[0].contains("kubeadmcfg.yaml does not match its digest")
            && f[0].contains("extra.txt is not listed"),
        "{f:?}"
    );
    assert!(f[1].contains("unexpected [\"extra.txt\"]"), "{f:?}");
}

#[test]
fn a_bundle_missing_a_file_fails_even_when_summed_and_signed() {
    let b = built("guide-v1.34");
    let mut u = b.bundles["infra2"].clone();
    u.files.remove("rootfs/etc/kubernetes/manifests/etcd.yaml");
    let (bytes, sig) = repack("guide-v1.34", &u);
    let f = failures(&verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("missing [\"rootfs/etc/kubernetes/manifests/etcd.yaml\"]"), "{f:?}");
}

#[test]
fn a_signature_from_another_key_fails() {
    let b = built("guide-v1.34");
    let other = OsKeys.key(KeyAlgorithm::EcdsaP256, "signing-key");
    let other = Signer256::from_pem(&pem_encode("PRIVATE KEY", &other.to_pkcs8_der())).unwrap();
    let bytes = &b.build.dist["infra0.tar.gz"];
    let r = verify::verify(bytes, Some(&other.sign(bytes)), &public("guide-v1.34"), NOW);
    assert_eq!(failures(&r), ["signature by the signing key: the signature does not match"]);
    let r = verify::verify(bytes, Some(&b.build.dist["infra0.tar.gz.sig"]), &other.public_pem(), NOW);
    assert!(!r.ok());
    let r = verify::verify(bytes, None, &public("guide-v1.34"), NOW);
    assert_eq!(failures(&r), ["signature by the signing key: no .sig file beside the bundle"]);
}

#[test]
fn a_cert_not_signed_by_the_bundles_ca_fails() {
    let b = built("guide-v1.34");
    let foreign = built("ecdsa-p384-v1.36");
    let mut u = b.bundles["infra0"].clone();
    for ext in ["crt", "key"] {
        let path = format!("{PKI}/etcd/peer.{ext}");
        u.files.get_mut(&path).unwrap().bytes = foreign.bundles["infra0"].files[&path].bytes.clone();
    }
    let (bytes, sig) = repack("guide-v1.34", &u);
    let f = failures(&verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW));
    assert_eq!(f, ["etcd/peer.crt is signed by the bundle's CA: not signed by etcd/ca.crt"]);
}

#[test]
fn a_server_cert_without_the_members_address_fails() {
    let b = built("guide-v1.34");
    let mut u = b.bundles["infra0"].clone();
    for ext in ["crt", "key"] {
        let path = format!("{PKI}/etcd/server.{ext}");
        u.files.get_mut(&path).unwrap().bytes = b.bundles["infra1"].files[&path].bytes.clone();
    }
    let (bytes, sig) = repack("guide-v1.34", &u);
    let f = failures(&verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].starts_with("etcd/server.crt names member infra0 at 10.0.0.6: no IP SAN 10.0.0.6"), "{f:?}");
}

#[test]
fn the_ca_key_outside_the_first_members_bundle_fails() {
    let b = built("guide-v1.34");
    let mut u = b.bundles["infra1"].clone();
    let path = format!("{PKI}/etcd/ca.key");
    u.files.insert(path.clone(), b.bundles["infra0"].files[&path].clone());
    let (bytes, sig) = repack("guide-v1.34", &u);
    let f = failures(&verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].starts_with("key placement: etcd/ca.key is in the bundle of infra1"), "{f:?}");
    // ...and a first member's bundle that lost its key is flagged too.
    let mut u = b.bundles["infra0"].clone();
    u.files.remove(&path);
    let (bytes, sig) = repack("guide-v1.34", &u);
    assert!(!verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW).ok());
}

#[test]
fn an_expired_or_not_yet_valid_cert_fails() {
    let b = built("guide-v1.34");
    let (bytes, sig) = (&b.build.dist["infra2.tar.gz"], &b.build.dist["infra2.tar.gz.sig"]);
    let later = NOW + b.build.plan.cert_validity_secs as i64 + 1;
    let f = failures(&verify::verify(bytes, Some(sig), &public("guide-v1.34"), later));
    assert_eq!(f.len(), 4, "the four leaves expire, the CA does not: {f:?}");
    assert!(f.iter().all(|x| x.contains("expired on")), "{f:?}");
    let f = failures(&verify::verify(bytes, Some(sig), &public("guide-v1.34"), NOW - 3600));
    assert_eq!(f.len(), 5, "{f:?}");
}

#[test]
fn the_control_plane_bundle_verifies_and_may_hold_neither_the_ca_key_nor_member_files() {
    let b = built("guide-v1.34");
    let dist = &b.build.dist;
    let r = verify::verify(
        &dist["control-plane.tar.gz"],
        Some(&dist["control-plane.tar.gz.sig"]),
        &public("guide-v1.34"),
        NOW,
    );
    assert!(r.ok(), "{:?}", failures(&r));
    assert!(r.checks.iter().any(|c| c.what == "apiserver-etcd-client.crt is signed by the bundle's CA"));
    assert!(r.checks.iter().any(|c| c.what == "bundle holds the control plane's files and nothing else"));
    assert_eq!(r.summary.as_ref().unwrap().member, "control-plane");
    // The CA key, even re-summed and re-signed, is refused.
    let ca_key = format!("{PKI}/etcd/ca.key");
    let mut u = b.control_plane.clone();
    u.files.insert(ca_key.clone(), b.bundles["infra0"].files[&ca_key].clone());
    let (bytes, sig) = repack("guide-v1.34", &u);
    let f = failures(&verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW));
    assert!(
        f.iter().any(|x| x.starts_with("key placement: etcd/ca.key is in the control-plane bundle")),
        "{f:?}"
    );
    // So is a member's key, and a missing etcd-external.yaml.
    let mut u = b.control_plane.clone();
    let peer = format!("{PKI}/etcd/peer.key");
    u.files.insert(peer.clone(), b.bundles["infra0"].files[&peer].clone());
    u.files.remove("etcd-external.yaml");
    let (bytes, sig) = repack("guide-v1.34", &u);
    let f = failures(&verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("missing [\"etcd-external.yaml\"]")
            && f[0].contains("unexpected [\"rootfs/etc/kubernetes/pki/etcd/peer.key\"]"),
        "{f:?}"
    );
    // Its certificate expires with the members' leaves.
    let later = NOW + b.build.plan.cert_validity_secs as i64 + 1;
    let f = failures(&verify::verify(
        &dist["control-plane.tar.gz"],
        Some(&dist["control-plane.tar.gz.sig"]),
        &public("guide-v1.34"),
        later,
    ));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].starts_with("apiserver-etcd-client.crt is valid now"), "{f:?}");
}

#[test]
fn sums_signed_inside_by_another_key_fail_the_check_install_sh_makes() {
    // The tarball's own signature is the real key's; SHA256SUMS inside is another's.
    let key = OsKeys.key(KeyAlgorithm::EcdsaP256, "signing-key");
    let other = Signer256::from_pem(&pem_encode("PRIVATE KEY", &key.to_pkcs8_der())).unwrap();
    let (bytes, sig) = repack_inner_by("guide-v1.34", &built("guide-v1.34").bundles["infra1"], &other);
    let r = verify::verify(&bytes, Some(&sig), &public("guide-v1.34"), NOW);
    assert_eq!(
        failures(&r),
        ["SHA256SUMS signed by the signing key (what install.sh checks): the signature does not match"]
    );
}
