//! Every certificate of every bundle, parsed independently with x509-parser and checked field
//! by field against kubeadm's profiles (reference section 1).

use crate::support::{NOW, built, scenarios, text};
use etcdpack::keys::KeyAlgorithm;
use etcdpack::versions::ValidityRule;
use std::collections::BTreeSet;
use std::net::IpAddr;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

const PKI: &str = "rootfs/etc/kubernetes/pki";

struct Ext {
    ku: Option<(bool, u16)>,
    eku: Option<Vec<&'static str>>,
    bc: Option<(bool, bool, Option<u32>)>,
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    has_san: bool,
}

fn exts(c: &X509Certificate<'_>) -> Ext {
    let mut e =
        Ext { ku: None, eku: None, bc: None, ski: None, aki: None, dns: vec![], ips: vec![], has_san: false };
    for x in c.extensions() {
        match x.parsed_extension() {
            ParsedExtension::KeyUsage(k) => e.ku = Some((x.critical, k.flags)),
            ParsedExtension::ExtendedKeyUsage(_) => {
                // x509-parser keeps flags, not order: read the raw OIDs to see kubeadm's order.
                let (_, seq) = der_parser::der::parse_der(x.value).unwrap();
                let order = seq
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|item| match item.as_oid().unwrap().to_id_string().as_str() {
                        "1.3.6.1.5.5.7.3.1" => "serverAuth",
                        "1.3.6.1.5.5.7.3.2" => "clientAuth",
                        _ => "other",
                    })
                    .collect();
                e.eku = Some(order);
            }
            ParsedExtension::BasicConstraints(b) => e.bc = Some((x.critical, b.ca, b.path_len_constraint)),
            ParsedExtension::SubjectKeyIdentifier(k) => e.ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                e.aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            ParsedExtension::SubjectAlternativeName(s) => {
                e.has_san = true;
                for n in &s.general_names {
                    match n {
                        GeneralName::DNSName(d) => e.dns.push(d.to_string()),
                        GeneralName::IPAddress(b) if b.len() == 4 => {
                            e.ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
                        }
                        GeneralName::IPAddress(b) => {
                            e.ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()))
                        }
                        other => panic!("unexpected SAN {other:?}"),
                    }
                }
            }
            ParsedExtension::UnsupportedExtension { .. } => panic!("unexpected extension {}", x.oid),
            _ => {}
        }
    }
    e
}

fn der_of(pem_text: &str) -> Vec<u8> {
    let blocks = ::pem::parse_many(pem_text).unwrap();
    assert_eq!(blocks.len(), 1, "one block per file, as kubeadm writes");
    assert_eq!(blocks[0].tag(), "CERTIFICATE");
    blocks[0].contents().to_vec()
}

fn sig_oid(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::EcdsaP256 => "1.2.840.10045.4.3.2",
        KeyAlgorithm::EcdsaP384 => "1.2.840.10045.4.3.3",
        _ => "1.2.840.113549.1.1.11",
    }
}

fn key_check(pem_text: &str, alg: KeyAlgorithm, spki: &[u8]) {
    let blocks = ::pem::parse_many(pem_text).unwrap();
    assert_eq!(blocks.len(), 1);
    let want = if alg.is_rsa() { "RSA PRIVATE KEY" } else { "EC PRIVATE KEY" };
    assert_eq!(blocks[0].tag(), want);
    let key = etcdpack::keys::PrivateKey::from_pem(pem_text).unwrap();
    assert_eq!(key.algorithm(), alg);
    assert_eq!(key.public_key_der(), spki, "key belongs to its certificate");
}

/// Extension OIDs and criticality, in the order the certificate holds them.
fn order(c: &X509Certificate<'_>) -> Vec<(String, bool)> {
    c.extensions().iter().map(|x| (x.oid.to_id_string(), x.critical)).collect()
}

fn go_order(names: &[&str]) -> Vec<(String, bool)> {
    names
        .iter()
        .map(|n| match *n {
            "ku" => ("2.5.29.15", true),
            "eku" => ("2.5.29.37", false),
            "bc" => ("2.5.29.19", true),
            "ski" => ("2.5.29.14", false),
            "aki" => ("2.5.29.35", false),
            "san" => ("2.5.29.17", false),
            other => panic!("{other}"),
        })
        .map(|(o, c)| (o.to_string(), c))
        .collect()
}

const DIGITAL_SIGNATURE: u16 = 1;
const KEY_ENCIPHERMENT: u16 = 1 << 2;
const KEY_CERT_SIGN: u16 = 1 << 5;

#[test]
fn every_certificate_matches_its_kubeadm_profile() {
    for scenario in scenarios() {
        let b = built(&scenario);
        let plan = &b.build.plan;
        let alg = plan.key_algorithm;
        let mut all_keys = BTreeSet::new();
        let first = &b.bundles[&plan.members[0].name];
        let ca_pem = text(first, &format!("{PKI}/etcd/ca.crt"));
        let ca_der = der_of(&ca_pem);
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        let ca_ext = exts(&ca);
        let ca_ski = ca_ext.ski.clone().expect("CA has a SubjectKeyId");
        let ca_alg;
        if let Some(existing) = &b.topology.pki.existing_ca {
            assert_eq!(ca_pem, existing.cert_pem, "{scenario}: the imported CA is shipped unchanged");
            ca_alg = KeyAlgorithm::EcdsaP256;
        } else {
            ca_alg = alg;
            let ctx = format!("{scenario}/etcd-ca");
            assert_eq!(ca.version(), X509Version::V3, "{ctx}");
            let cns: Vec<_> = ca.subject().iter_common_name().map(|a| a.as_str().unwrap()).collect();
            assert_eq!(cns, ["etcd-ca"], "{ctx}");
            assert_eq!(ca.subject().iter().count(), 1, "{ctx}: only CN in the subject");
            assert_eq!(ca.subject().as_raw(), ca.issuer().as_raw(), "{ctx}: self-signed");
            assert_eq!(ca_ext.dns, ["etcd-ca"], "{ctx}");
            assert!(ca_ext.ips.is_empty(), "{ctx}");
            assert_eq!(
                ca_ext.ku,
                Some((true, DIGITAL_SIGNATURE | KEY_ENCIPHERMENT | KEY_CERT_SIGN)),
                "{ctx}"
            );
            assert_eq!(ca_ext.bc, Some((true, true, None)), "{ctx}");
            assert_eq!(order(&ca), go_order(&["ku", "bc", "ski", "san"]), "{ctx}: Go's extension order");
            assert!(ca_ext.eku.is_none() && ca_ext.aki.is_none(), "{ctx}");
            assert_eq!(
                ca_ski,
                aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    &ca.public_key().subject_public_key.data
                )
                .as_ref()
                .to_vec(),
                "{ctx}: Go's SKI"
            );
            assert_eq!(ca.validity().not_before.timestamp(), NOW - 300, "{ctx}");
            assert_eq!(ca.validity().not_after.timestamp(), NOW + plan.ca_validity_secs as i64, "{ctx}");
            let serial = ca.serial.clone();
            assert!(serial.bits() <= 63 && serial > 0u32.into(), "{ctx}: serial in [1, 2^63)");
            assert_eq!(ca.signature_algorithm.algorithm.to_id_string(), sig_oid(alg), "{ctx}");
            ca.verify_signature(None).unwrap();
            if plan.members[0].carries_ca_key {
                key_check(&text(first, &format!("{PKI}/etcd/ca.key")), alg, ca.public_key().raw);
            }
        }
        // Every member, then the control plane (its own apiserver-etcd-client, no CA key).
        let bundles = b.every_bundle();
        for (name, certs) in plan.holders() {
            let u = bundles.iter().find(|(n, _)| *n == name).unwrap().1;
            let member = plan.members.iter().find(|m| m.name == name);
            assert_eq!(text(u, &format!("{PKI}/etcd/ca.crt")), ca_pem, "{scenario}: one CA for all");
            let carries = member.is_some_and(|m| m.carries_ca_key);
            assert_eq!(u.files.contains_key(&format!("{PKI}/etcd/ca.key")), carries, "{scenario}/{name}");
            let leaves: Vec<_> = certs.iter().map(|c| c.leaf).collect();
            if member.is_none() {
                assert_eq!(leaves, [etcdpack::profile::Leaf::ApiserverEtcdClient], "{scenario}/{name}");
            }
            for req in certs {
                let ctx = format!("{scenario}/{name}/{}", req.leaf.kubeadm_name());
                let der = der_of(&text(u, &format!("{PKI}/{}.crt", req.leaf.stem())));
                let (_, c) = X509Certificate::from_der(&der).unwrap();
                let e = exts(&c);
                assert_eq!(c.version(), X509Version::V3, "{ctx}");
                let cns: Vec<_> = c.subject().iter_common_name().map(|a| a.as_str().unwrap()).collect();
                let want_cn = match req.leaf {
                    etcdpack::profile::Leaf::EtcdServer | etcdpack::profile::Leaf::EtcdPeer => name,
                    etcdpack::profile::Leaf::EtcdHealthcheckClient => "kube-etcd-healthcheck-client",
                    etcdpack::profile::Leaf::ApiserverEtcdClient => "kube-apiserver-etcd-client",
                };
                assert_eq!(cns, [want_cn], "{ctx}");
                assert_eq!(c.subject().iter().count(), 1, "{ctx}: no O since 1.29");
                assert_eq!(c.issuer().as_raw(), ca.subject().as_raw(), "{ctx}: issuer is the CA's subject");
                c.verify_signature(Some(ca.public_key())).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(c.signature_algorithm.algorithm.to_id_string(), sig_oid(ca_alg), "{ctx}");
                assert_eq!(e.ku, Some((true, DIGITAL_SIGNATURE | KEY_ENCIPHERMENT)), "{ctx}");
                assert_eq!(e.bc, Some((true, false, None)), "{ctx}: critical CA:FALSE");
                let serving_order = matches!(
                    req.leaf,
                    etcdpack::profile::Leaf::EtcdServer | etcdpack::profile::Leaf::EtcdPeer
                );
                let want = if serving_order {
                    &["ku", "eku", "bc", "aki", "san"][..]
                } else {
                    &["ku", "eku", "bc", "aki"][..]
                };
                assert_eq!(order(&c), go_order(want), "{ctx}: Go's extension order");
                assert_eq!(e.ski, None, "{ctx}: Go writes no SKI on leaves");
                assert_eq!(e.aki.as_deref(), Some(ca_ski.as_slice()), "{ctx}: AKI is the CA's SKI");
                let serving = matches!(
                    req.leaf,
                    etcdpack::profile::Leaf::EtcdServer | etcdpack::profile::Leaf::EtcdPeer
                );
                if serving {
                    let m = member.unwrap();
                    assert_eq!(e.eku.as_deref(), Some(&["serverAuth", "clientAuth"][..]), "{ctx}");
                    let mut dns = vec![m.name.clone(), "localhost".to_string()];
                    let mut ips: Vec<IpAddr> =
                        vec![m.address, "127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
                    let member = b.topology.members.iter().find(|t| t.name == m.name).unwrap();
                    for s in &member.cert_sans {
                        match s.parse::<IpAddr>() {
                            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                            Ok(_) => {}
                            Err(_) => dns.push(s.clone()),
                        }
                    }
                    dns.sort();
                    dns.dedup();
                    assert_eq!(e.dns, dns, "{ctx}: DNS SANs sorted");
                    assert_eq!(e.ips, ips, "{ctx}: IP SANs in kubeadm's order");
                } else {
                    assert_eq!(e.eku.as_deref(), Some(&["clientAuth"][..]), "{ctx}");
                    assert!(!e.has_san, "{ctx}: client certs have no SANs");
                }
                let nb = match plan.behaviour.validity {
                    ValidityRule::Backdated => NOW - 300,
                    ValidityRule::LeafFromCa => ca.validity().not_before.timestamp(),
                };
                assert_eq!(c.validity().not_before.timestamp(), nb, "{ctx}");
                assert_eq!(c.validity().not_after.timestamp(), NOW + plan.cert_validity_secs as i64, "{ctx}");
                assert!(c.serial.bits() <= 63 && c.serial > 0u32.into(), "{ctx}");
                key_check(&text(u, &format!("{PKI}/{}.key", req.leaf.stem())), alg, c.public_key().raw);
                assert!(all_keys.insert(c.public_key().raw.to_vec()), "{ctx}: every leaf has its own key");
            }
        }
    }
}
