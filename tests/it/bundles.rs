//! Properties of the bundles as archives and of dist/ as a whole.

use crate::support::FixedKeys;
use crate::support::{EPOCH, built, scenarios, text};
use etcdpack::state::State;
use etcdpack::{BuildEnv, sign};
use sha2::{Digest, Sha256};

#[test]
fn archives_have_fixed_headers_modes_and_order() {
    for scenario in scenarios() {
        let b = built(&scenario);
        for (name, _) in b.every_bundle() {
            let bytes = &b.build.dist[&format!("{name}.tar.gz")];
            assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "{scenario}: gzip header without a timestamp");
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw).unwrap();
            let mut ar = tar::Archive::new(&raw[..]);
            let mut paths = vec![];
            for e in ar.entries().unwrap() {
                let e = e.unwrap();
                let h = e.header();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{p}");
                assert_eq!(h.mtime().unwrap(), EPOCH, "{p}");
                assert!(p.starts_with(&format!("{name}/")) && !p.contains(".."), "{p}");
                let mode = h.mode().unwrap();
                let want = if p.ends_with('/') {
                    if p.ends_with("manifests/") { 0o700 } else { 0o755 }
                } else if p.ends_with(".key") || p.ends_with("etcd.yaml") {
                    0o600
                } else if p.ends_with("install.sh")
                    || p.ends_with("/etcdpack-expiry")
                    || p.ends_with("/etcdpack-snapshot")
                    || p.contains("/rootfs/usr/local/bin/")
                {
                    0o755
                } else {
                    0o644
                };
                assert_eq!(mode, want, "{scenario}: mode of {p}");
                paths.push(p);
            }
            let mut sorted = paths.clone();
            sorted.sort();
            assert_eq!(paths, sorted, "{scenario}: entries sorted");
        }
    }
}

#[test]
fn sums_and_bundle_json_cover_every_file() {
    for scenario in scenarios() {
        let b = built(&scenario);
        for (member, u) in b.every_bundle() {
            let sums = text(u, "SHA256SUMS");
            let listed: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
            let files: Vec<&str> =
                u.files.keys().map(String::as_str).filter(|p| !p.starts_with("SHA256SUMS")).collect();
            assert_eq!(listed, files, "{scenario}/{member}");
            for line in sums.lines() {
                let (digest, path) = line.split_once("  ").unwrap();
                assert_eq!(hex::encode(Sha256::digest(&u.files[path].bytes)), digest, "{path}");
            }
            let meta: serde_json::Value = serde_json::from_str(&text(u, "bundle.json")).unwrap();
            assert_eq!(meta["member"], member);
            for f in meta["files"].as_array().unwrap() {
                let path = f["path"].as_str().unwrap();
                assert_eq!(f["mode"].as_str().unwrap(), format!("{:04o}", u.files[path].mode));
                assert_eq!(f["sha256"].as_str().unwrap(), hex::encode(Sha256::digest(&u.files[path].bytes)));
            }
            // The CA and the four leaves of a member; the CA and one client certificate of
            // the control plane.
            let certs = if member == "control-plane" { 2 } else { 5 };
            assert_eq!(meta["certs"].as_array().unwrap().len(), certs, "{scenario}/{member}");
        }
    }
}

#[test]
fn dist_is_signed_and_summed() {
    let b = built("guide-v1.34");
    let public = String::from_utf8(b.build.dist["signing-key.pub"].clone()).unwrap();
    let sums = String::from_utf8(b.build.dist["SHA256SUMS"].clone()).unwrap();
    sign::verify(&public, sums.as_bytes(), &b.build.dist["SHA256SUMS.sig"]).unwrap();
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").unwrap();
        assert_eq!(hex::encode(Sha256::digest(&b.build.dist[name])), digest);
        sign::verify(&public, &b.build.dist[name], &b.build.dist[&format!("{name}.sig")]).unwrap();
    }
    let names: Vec<&String> = b.build.dist.keys().collect();
    assert_eq!(
        names,
        [
            "SHA256SUMS",
            "SHA256SUMS.sig",
            "control-plane.tar.gz",
            "control-plane.tar.gz.sig",
            "infra0.tar.gz",
            "infra0.tar.gz.sig",
            "infra1.tar.gz",
            "infra1.tar.gz.sig",
            "infra2.tar.gz",
            "infra2.tar.gz.sig",
            "plan.json",
            "signing-key.pub"
        ]
    );
    let plan: serde_json::Value = serde_json::from_slice(&b.build.dist["plan.json"]).unwrap();
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").unwrap();
        assert_eq!(plan["bundles"][name.trim_end_matches(".tar.gz")], digest);
    }
}

#[test]
fn same_state_same_epoch_gives_identical_bytes() {
    // Build once from scratch, persist the state in memory, build again: every byte of dist/
    // must be the same, even with a different clock (nothing is re-issued).
    let t = crate::support::load_topology("ipv6-v1.30");
    let keys = FixedKeys::new(9);
    let empty = State::default();
    let first = etcdpack::build(
        &t,
        &BuildEnv {
            state: &empty,
            now: 1_800_000_000,
            source_date_epoch: None,
            keys: &keys,
            renewal: None,
            reset_members: false,
            emit: Default::default(),
            previous: None,
            sealer: &etcdpack::seal::Age,
            ca_step: None,
            restore: None,
        },
        &mut |_| {},
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    etcdpack::fsio::apply_state_update(dir.path(), &first.state_update).unwrap();
    let state = etcdpack::fsio::load_state(dir.path()).unwrap();
    let second = etcdpack::build(
        &t,
        &BuildEnv {
            state: &state,
            now: 1_800_009_999,
            source_date_epoch: None,
            keys: &keys,
            renewal: None,
            reset_members: false,
            emit: Default::default(),
            previous: None,
            sealer: &etcdpack::seal::Age,
            ca_step: None,
            restore: None,
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(second.state_update.is_empty(), "nothing new on a rebuild");
    assert_eq!(first.dist, second.dist);
}

/// etcd-external.yaml is the ClusterConfiguration of its kubeadm version (v1beta3 for 1.29
/// and 1.30, v1beta4 after unless the topology asks for v1beta3) and names every member's
/// client URL, in topology order.
#[test]
fn etcd_external_yaml_points_kubeadm_at_every_member() {
    for scenario in scenarios() {
        let b = built(&scenario);
        let ext = crate::support::parse_etcd_external(&text(&b.control_plane, "etcd-external.yaml"));
        let minor: u32 = b.build.plan.kubernetes_version.split('.').nth(1).unwrap().parse().unwrap();
        let want = match (minor, b.build.plan.behaviour.config_api) {
            (29 | 30, _) => "kubeadm.k8s.io/v1beta3",
            (_, etcdpack::versions::ConfigApi::V1Beta3) => "kubeadm.k8s.io/v1beta3",
            _ => "kubeadm.k8s.io/v1beta4",
        };
        assert_eq!(ext.api_version, want, "{scenario}");
        let kubeadmcfg = text(&b.bundles[&b.build.plan.members[0].name], "kubeadmcfg.yaml");
        assert!(
            kubeadmcfg.contains(&format!("apiVersion: \"{want}\"")),
            "{scenario}: the members' config API"
        );
        assert_eq!(ext.kubernetes_version, b.build.plan.kubernetes_version, "{scenario}");
        let urls: Vec<String> = b
            .topology
            .members
            .iter()
            .map(|m| {
                let host =
                    if m.address.is_ipv6() { format!("[{}]", m.address) } else { m.address.to_string() };
                format!("https://{host}:{}", b.topology.etcd.client_port)
            })
            .collect();
        assert_eq!(ext.endpoints, urls, "{scenario}");
    }
}

/// The systemd runtime's etcd.service runs etcd with exactly the flags of the static pod
/// manifest that the same topology with `runtime: static-pod` gets, in the same order.
#[test]
fn etcd_service_carries_exactly_the_manifest_flags() {
    let scenario = "systemd-v1.33";
    let b = built(scenario);
    let dir = crate::support::fixtures().join(scenario);
    let yaml = std::fs::read_to_string(dir.join("topology.yaml")).unwrap();
    let twin: String = yaml
        .lines()
        .filter(|l| !["runtime:", "user:", "binaryArchive:"].iter().any(|k| l.trim_start().starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(crate::support::topology_of(&twin).etcd.runtime, etcdpack::layout::Runtime::StaticPod);
    let state = tempfile::tempdir().unwrap();
    let pods = crate::support::build_in(state.path(), &twin, crate::support::SEED, crate::support::NOW, None)
        .unwrap();
    for m in &b.build.plan.members {
        let unit = text(&b.bundles[&m.name], "rootfs/etc/systemd/system/etcd.service");
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("etc/systemd/system/etcd.service");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &unit).unwrap();
        let (user, words) = crate::e2e::unit_command(root.path());
        assert_eq!(user, "etcd");
        assert_eq!(words[0], "/usr/local/bin/etcd", "{}: the archive's binary", m.name);

        let pod = etcdpack::unpack::unpack(&pods.dist[&format!("{}.tar.gz", m.name)]).unwrap();
        let manifest = text(&pod, "rootfs/etc/kubernetes/manifests/etcd.yaml");
        use saphyr::LoadableYamlNode;
        let doc = saphyr::YamlOwned::load_from_str(&manifest).unwrap().remove(0);
        let command: Vec<String> = doc["spec"]["containers"][0]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(command[0], "etcd");
        assert_eq!(words[1..], command[1..], "{}: ExecStart flags = manifest flags", m.name);
    }
}

#[test]
fn systemd_specifiers_in_a_path_stay_literal_in_the_units() {
    // `%h` in the kubelet's path would be the user's home to systemd, `$X` a variable: the
    // drop-in and etcd.service write them doubled, so systemd runs the path as written.
    let dir = tempfile::tempdir().unwrap();
    let t = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nkubelet: { path: /opt/kube%h/kubelet }\nmembers:\n  - { name: a, address: 10.0.0.6 }\n";
    let b = crate::support::build_in(dir.path(), t, 3, crate::support::NOW, None).unwrap();
    let u = etcdpack::unpack::unpack(&b.dist["a.tar.gz"]).unwrap();
    let dropin = text(&u, "rootfs/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf");
    assert!(dropin.contains("\nExecStart=/opt/kube%%h/kubelet --config="), "{dropin}");
    let dir = tempfile::tempdir().unwrap();
    let t = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\netcd: { runtime: systemd, binary: /opt/etcd%i/etcd }\nmembers:\n  - { name: a, address: 10.0.0.6 }\n";
    let b = crate::support::build_in(dir.path(), t, 3, crate::support::NOW, None).unwrap();
    let u = etcdpack::unpack::unpack(&b.dist["a.tar.gz"]).unwrap();
    let unit = text(&u, "rootfs/etc/systemd/system/etcd.service");
    assert!(unit.contains("\nExecStart=/opt/etcd%%i/etcd \\\n"), "{unit}");
}
