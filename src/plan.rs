//! The plan: every decision about every host, made once, before any key exists.
//!
//! `plan` turns a [`Topology`] into a [`Plan`] that later stages read and never second-guess:
//! the certificates each member needs (subject, SANs, usages), the kubeadm config arguments,
//! the exact etcd command kubeadm would write, the probes, and every file of every bundle with
//! its mode. `render` and `pack` never look at the topology.

use crate::command::{KUBEADM_CLIENT_PORT, Probe, etcd_command, probe_endpoint, url_host};
use crate::keys::KeyAlgorithm;
use crate::layout::{self, CONTROL_PLANE, DEFAULT_DATA_DIR, PlannedFile};
use crate::membership::{Leaving, Membership, Peer, Role, View};
use crate::profile::{CertRequest, Leaf, cert_requests, client_profile};
use crate::topology::{Arg, Topology};
use crate::versions::{self, Behaviour, ConfigApi};
use serde::Serialize;
use std::net::IpAddr;

/// kubeadm's default image repository.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "registry.k8s.io";
/// Everything about one member.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberPlan {
    /// How it enters the cluster.
    pub role: Role,
    /// Whether this build adds it to the cluster (a join the last build did not have).
    pub joins_now: bool,
    /// The members its bundle knows (its `initial-cluster`, its install.sh's member list).
    pub peers: Vec<Peer>,

    /// Name.
    pub name: String,
    /// Address.
    pub address: IpAddr,
    /// Position in the topology.
    pub index: usize,
    /// Whether this bundle carries ca.key.
    pub carries_ca_key: bool,
    /// Address as it goes into URLs (IPv6 bracketed).
    pub url_host: String,
    /// Loopback of the member's family.
    pub loopback: String,
    /// Its client URL.
    pub client_url: String,
    /// Its peer URL.
    pub peer_url: String,
    /// Extra SANs for the kubeadm config (`serverCertSANs` = `peerCertSANs`).
    pub cert_sans: Vec<String>,
    /// Whom its bundle is sealed to (`members[].recipients`); empty: a clear tarball.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// `etcd.local.extraArgs` of its kubeadmcfg.yaml, guide entries first.
    pub kubeadm_args: Vec<Arg>,
    /// The etcd command line of the manifest.
    pub command: Vec<String>,
    /// The value of the `etcd.advertise-client-urls` annotation.
    pub annotation_client_url: String,
    /// Probe endpoint.
    pub probe: Probe,
    /// Its four certificates.
    pub certs: Vec<CertRequest>,
    /// Every file of its bundle, sorted by path.
    pub files: Vec<PlannedFile>,
    /// Its bundle's generation (`GENERATION` in bundle.env): the number of the last build
    /// that changed this bundle, which a host never goes below. Set by the build, which
    /// alone knows what changed; 0 in a plan.
    #[serde(skip)]
    pub generation: u64,
}

/// What the control-plane nodes get: the etcd CA, their own apiserver-etcd-client
/// certificate and an `etcd.external` ClusterConfiguration pointing at every member.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlanePlan {
    /// [`CONTROL_PLANE`]: the bundle's top folder and its name in the state folder.
    pub name: String,
    /// Every member's client URL, in topology order (`etcd.external.endpoints`).
    pub endpoints: Vec<String>,
    /// Its one certificate: apiserver-etcd-client.
    pub certs: Vec<CertRequest>,
    /// Every file of its bundle, sorted by path.
    pub files: Vec<PlannedFile>,
    /// Its bundle's generation, as a member's ([`MemberPlan::generation`]).
    #[serde(skip)]
    pub generation: u64,
}

/// The whole build, decided.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Cluster name.
    pub cluster: String,
    /// Kubernetes version, as `v1.M.P`.
    pub kubernetes_version: String,
    /// Version-dependent behaviour.
    pub behaviour: Behaviour,
    /// Whether `etcd.extraArgsOrder` chose `behaviour.arg_order` (else the patch release's
    /// default); not part of plan.json.
    #[serde(skip)]
    pub arg_order_given: bool,
    /// The etcd image.
    pub image: String,
    /// The etcd image tag.
    pub image_tag: String,
    /// Data dir.
    pub data_dir: String,
    /// `backup`: each member's scheduled snapshots (`None` with `backup: false`).
    pub backup: Option<crate::topology::Backup>,
    /// Client port.
    pub client_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// Key algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// CA validity (seconds).
    pub ca_validity_secs: u64,
    /// Leaf validity (seconds).
    pub cert_validity_secs: u64,
    /// Whether the CA comes from `existingCA`.
    pub existing_ca: bool,
    /// `initial-cluster` value.
    pub initial_cluster: String,
    /// Image archive file name, if one is shipped.
    pub image_archive: Option<String>,
    /// The image archive's bytes (shared by every bundle; not part of plan.json).
    #[serde(skip)]
    pub image_archive_bytes: Option<std::sync::Arc<Vec<u8>>>,
    /// kubelet cgroup driver.
    pub cgroup_driver: String,
    /// CRI endpoint.
    pub container_runtime_endpoint: String,
    /// kubelet binary.
    pub kubelet_path: String,
    /// How etcd runs on the members.
    #[serde(serialize_with = "runtime_name")]
    pub runtime: layout::Runtime,
    /// The systemd runtime's settings (none with static pods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd: Option<SystemdPlan>,
    /// User extraArgs as written (for kubeadmcfg.yaml fidelity and plan output).
    pub user_extra_args: Vec<Arg>,
    /// What kubeadmcfg.yaml names beyond kubeadm's defaults.
    pub kubeadm: KubeadmConfig,
    /// Members in topology order.
    pub members: Vec<MemberPlan>,
    /// The control-plane bundle.
    pub control_plane: ControlPlanePlan,
    /// Members that leave the cluster (decided by `membership`).
    pub leaving: Vec<Leaving>,
    /// `etcdpack restore`: every member's bundle restores this snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestorePlan>,
}

/// A restore from a snapshot: what every member's bundle pins and restores.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlan {
    /// SHA-256 of the snapshot file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The revision of its newest key.
    pub revision: i64,
    /// The new cluster's `--initial-cluster-token`: a new cluster ID, so that a member of the
    /// old cluster cannot rejoin.
    pub token: String,
    /// Its number among the restores of the state.
    pub number: u32,
    /// Whether each bundle carries the snapshot (`--embed`), else it travels beside them.
    pub embedded: bool,
    /// Whether the file ends with the database's SHA-256 (`etcdctl snapshot save`'s), which
    /// `snapshot restore` checks; a database copied from a data dir has none.
    pub has_digest: bool,
    /// The snapshot's bytes (not part of plan.json).
    #[serde(skip)]
    pub bytes: std::sync::Arc<Vec<u8>>,
}

/// What kubeadmcfg.yaml names beyond kubeadm's defaults (the guide's config plus the
/// topology's choices), decided here so that the template only writes it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmConfig {
    /// `encryptionAlgorithm` (v1beta4, any key but RSA-2048).
    pub encryption_algorithm: Option<&'static str>,
    /// The `PublicKeysECDSA` feature gate (v1beta3 with ECDSA-P256).
    pub ecdsa_feature_gate: bool,
    /// `certificateValidityPeriod` when not kubeadm's default (v1beta4).
    pub cert_validity: Option<String>,
    /// `caCertificateValidityPeriod` when not kubeadm's default (v1beta4).
    pub ca_validity: Option<String>,
    /// `imageRepository` when not kubeadm's default.
    pub image_repository: Option<String>,
    /// `etcd.local.dataDir` when not kubeadm's default.
    pub data_dir: Option<String>,
}

/// How the systemd runtime runs etcd.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemdPlan {
    /// The etcd binary `ExecStart` runs.
    pub binary: String,
    /// The user etcd runs as (owner of its server and peer pairs and of the data dir).
    pub user: String,
    /// The binaries of `etcd.binaryArchive` (file name, bytes), installed in /usr/local/bin.
    #[serde(skip)]
    pub binaries: crate::topology::Binaries,
}

fn runtime_name<S: serde::Serializer>(r: &layout::Runtime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

/// Every member's name and URLs, as kubeadm builds them (reference section 2.1): what
/// `membership` decides the roles and views from.
pub fn peers(t: &Topology) -> Vec<Peer> {
    t.members
        .iter()
        .map(|m| {
            let host = url_host(&m.address);
            Peer {
                name: m.name.clone(),
                peer_url: format!("https://{host}:{}", t.etcd.peer_port),
                client_url: format!("https://{host}:{}", t.etcd.client_port),
            }
        })
        .collect()
}

/// What kubeadmcfg.yaml names beyond kubeadm's defaults for `t`.
fn kubeadm_config(t: &Topology, behaviour: &Behaviour, repo: &str, data_dir: &str) -> KubeadmConfig {
    let v1beta3 = behaviour.config_api == ConfigApi::V1Beta3;
    let alg = t.pki.key_algorithm;
    // v1beta3 has no validity fields: kubeadm of such a config issues with its defaults.
    let non_default = |v: u64, d: u64| (!v1beta3 && v != d).then(|| crate::quote::go_duration(v));
    KubeadmConfig {
        encryption_algorithm: (!v1beta3 && alg != KeyAlgorithm::Rsa2048).then(|| alg.name()),
        ecdsa_feature_gate: v1beta3 && alg == KeyAlgorithm::EcdsaP256,
        cert_validity: non_default(t.pki.cert_validity_secs, crate::topology::DEFAULT_CERT_VALIDITY),
        ca_validity: non_default(t.pki.ca_validity_secs, crate::topology::DEFAULT_CA_VALIDITY),
        image_repository: (repo != DEFAULT_IMAGE_REPOSITORY).then(|| repo.to_string()),
        data_dir: (data_dir != DEFAULT_DATA_DIR).then(|| data_dir.to_string()),
    }
}

/// The plan of a new cluster: every member bootstraps it together.
pub fn bootstrap(t: &Topology) -> Plan {
    let mut membership = Membership::bootstrap(&peers(t));
    membership.ca_key_holder = match (t.pki.ca_key_on_first_member, &t.pki.ca_key_holder) {
        (false, _) => None,
        (true, Some(named)) => Some(named.clone()),
        (true, None) => membership.ca_key_holder,
    };
    plan(t, &membership)
}

/// Builds the plan, every member with the role and view `membership` decided for it (see
/// [`crate::membership::decide`]). Total: a validated topology always has one.
pub fn plan(t: &Topology, membership: &Membership) -> Plan {
    let tag = t
        .etcd
        .image_tag
        .clone()
        .unwrap_or_else(|| t.release.etcd_tag(t.kubernetes_version.patch).tag.to_string());
    let behaviour = versions::behaviour(t.release, &tag, t.config_api, t.etcd.arg_order);
    let repo = t.etcd.image_repository.as_deref().unwrap_or(DEFAULT_IMAGE_REPOSITORY);
    let data_dir = t.etcd.data_dir.clone().unwrap_or_else(|| DEFAULT_DATA_DIR.to_string());
    let kubeadm = kubeadm_config(t, &behaviour, repo, &data_dir);
    let (cport, pport) = (t.etcd.client_port, t.etcd.peer_port);
    let initial_cluster = t
        .members
        .iter()
        .map(|m| format!("{}=https://{}:{pport}", m.name, url_host(&m.address)))
        .collect::<Vec<_>>()
        .join(",");
    let image_archive = t.etcd.image_archive.as_ref().map(|a| a.file_name.clone());
    let binaries: Vec<(String, std::sync::Arc<Vec<u8>>)> =
        t.etcd.binary_archive.as_ref().map(|a| a.binaries.clone()).unwrap_or_default();
    let binary_names: Vec<String> = binaries.iter().map(|(n, _)| n.clone()).collect();
    let members: Vec<MemberPlan> = t
        .members
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let host = url_host(&m.address);
            let loopback = if m.address.is_ipv6() { "::1" } else { "127.0.0.1" }.to_string();
            let client_url = format!("https://{host}:{cport}");
            let peer_url = format!("https://{host}:{pport}");
            let carries_ca_key = membership.ca_key_holder.as_deref() == Some(m.name.as_str());
            let certs = cert_requests(&m.name, &m.address, &m.cert_sans, t.pki.key_algorithm);
            MemberPlan {
                generation: 0,
                role: Role::Bootstrap,
                joins_now: false,
                peers: Vec::new(),
                name: m.name.clone(),
                address: m.address,
                index,
                carries_ca_key,
                annotation_client_url: format!("https://{host}:{KUBEADM_CLIENT_PORT}"),
                url_host: host,
                loopback,
                client_url,
                peer_url,
                recipients: m.recipients.clone(),
                cert_sans: dedup_keep_order(
                    std::iter::once(m.address.to_string()).chain(m.cert_sans.iter().cloned()),
                ),
                kubeadm_args: Vec::new(),
                command: Vec::new(),
                probe: probe_endpoint(&[], "127.0.0.1"),
                certs,
                files: layout::member_files(&layout::MemberLayout {
                    runtime: t.etcd.runtime,
                    carries_ca_key,
                    expiry_timer: t.monitoring.expiry_timer,
                    backup: t.backup.is_some(),
                    image_archive: image_archive.as_deref(),
                    binaries: &binary_names,
                    snapshot: false,
                }),
            }
        })
        .collect();
    let mut plan = Plan {
        cluster: t.cluster.clone(),
        kubernetes_version: t.kubernetes_version.to_string(),
        image: format!("{repo}/etcd:{tag}"),
        image_tag: tag,
        behaviour,
        arg_order_given: t.etcd.arg_order_given,
        data_dir,
        backup: t.backup.clone(),
        client_port: cport,
        peer_port: pport,
        key_algorithm: t.pki.key_algorithm,
        ca_validity_secs: t.pki.ca_validity_secs,
        cert_validity_secs: t.pki.cert_validity_secs,
        existing_ca: t.pki.existing_ca.is_some(),
        initial_cluster,
        image_archive,
        image_archive_bytes: t.etcd.image_archive.as_ref().map(|a| a.bytes.clone()),
        cgroup_driver: t.kubelet.cgroup_driver.clone(),
        container_runtime_endpoint: t.kubelet.container_runtime_endpoint.clone(),
        kubelet_path: t.kubelet.path.clone(),
        runtime: t.etcd.runtime,
        systemd: (t.etcd.runtime == layout::Runtime::Systemd).then(|| SystemdPlan {
            binary: t.etcd.binary(),
            user: t.etcd.user.clone().unwrap_or_else(|| "root".to_string()),
            binaries,
        }),
        user_extra_args: t.etcd.extra_args.clone(),
        kubeadm,
        control_plane: ControlPlanePlan {
            name: CONTROL_PLANE.to_string(),
            endpoints: members.iter().map(|m| m.client_url.clone()).collect(),
            certs: vec![CertRequest {
                leaf: Leaf::ApiserverEtcdClient,
                profile: client_profile("kube-apiserver-etcd-client", t.pki.key_algorithm),
            }],
            files: layout::control_plane_files(),
            generation: 0,
        },
        members,
        leaving: membership.leaving.clone(),
        restore: None,
    };
    for (i, view) in membership.views.iter().enumerate().take(plan.members.len()) {
        plan.set_view(i, view);
    }
    plan
}

fn arg(name: &str, value: &str) -> Arg {
    Arg { name: name.to_string(), value: value.to_string() }
}

/// User extraArgs replace the guide's entry of the same name in place (first occurrence);
/// any further entry is appended, as v1beta4's list allows.
fn merge_user_args(args: &mut Vec<Arg>, user: &[Arg]) {
    let guide_len = args.len();
    let mut replaced = std::collections::BTreeSet::new();
    for u in user {
        let slot = args[..guide_len].iter().position(|a| a.name == u.name);
        match slot {
            Some(i) if replaced.insert(u.name.clone()) => args[i] = u.clone(),
            _ => args.push(u.clone()),
        }
    }
}

fn dedup_keep_order(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

impl MemberPlan {
    /// The member as the others' bundles know it.
    pub fn peer(&self) -> Peer {
        Peer { name: self.name.clone(), peer_url: self.peer_url.clone(), client_url: self.client_url.clone() }
    }
}

/// `name=peerURL,...`, the value of `initial-cluster`.
pub fn initial_cluster_of(peers: &[Peer]) -> String {
    peers.iter().map(|p| format!("{}={}", p.name, p.peer_url)).collect::<Vec<_>>().join(",")
}

impl Plan {
    /// Makes every member's bundle a restore bundle of `restore` (which must start all of
    /// the topology's members as one new cluster: the caller plans them as a bootstrap).
    pub fn set_restore(&mut self, restore: RestorePlan) {
        for m in &mut self.members {
            if restore.embedded {
                m.files.push(PlannedFile {
                    path: layout::SNAPSHOT_IN_BUNDLE.into(),
                    install_path: None,
                    mode: 0o600,
                    owner: layout::Owner::Root,
                    content: layout::Content::Snapshot,
                });
                m.files.sort_by(|a, b| a.path.cmp(&b.path));
            }
        }
        self.restore = Some(restore);
    }

    /// The file of dist/ bundle `name` ships as: `<member>.tar.gz.age` when the member names
    /// recipients, else `<name>.tar.gz`.
    pub fn shipped(&self, name: &str) -> String {
        match self.members.iter().any(|m| m.name == name && !m.recipients.is_empty()) {
            true => crate::dist::sealed(name),
            false => crate::dist::tarball(name),
        }
    }

    /// Sets how member `index` enters the cluster and what its bundle knows of it (its
    /// `initial-cluster`; `initial-cluster-state: existing` for a join), and derives its
    /// kubeadm config arguments, etcd command and probe from them. Only [`plan`] calls it,
    /// once per member, before the plan is returned.
    fn set_view(&mut self, index: usize, view: &View) {
        let (role, peers) = (view.role.clone(), view.peers.clone());
        let joined = matches!(role, Role::Join { .. });
        let behaviour = self.behaviour.clone();
        let user = self.user_extra_args.clone();
        let data_dir = self.data_dir.clone();
        let m = &mut self.members[index];
        let mut kubeadm_args = vec![
            arg("initial-cluster", &initial_cluster_of(&peers)),
            arg("initial-cluster-state", if joined { "existing" } else { "new" }),
            arg("name", &m.name),
            arg("listen-peer-urls", &m.peer_url),
            arg("listen-client-urls", &m.client_url),
            arg("advertise-client-urls", &m.client_url),
            arg("initial-advertise-peer-urls", &m.peer_url),
        ];
        merge_user_args(&mut kubeadm_args, &user);
        // A v1beta3 map reaches kubeadm as a list sorted by name (`convertToArgs`).
        let mut given = kubeadm_args.clone();
        if behaviour.config_api == ConfigApi::V1Beta3 {
            given.sort_by(|a, b| a.name.cmp(&b.name));
        }
        m.command =
            etcd_command(&m.name, &m.address, &data_dir, behaviour.etcd36_flags, behaviour.arg_order, &given);
        m.probe = probe_endpoint(&kubeadm_args, &m.loopback);
        m.kubeadm_args = kubeadm_args;
        m.role = role;
        m.peers = peers;
        m.joins_now = view.joins_now;
    }

    /// Everyone who holds certificates, by name: the members in topology order, then the
    /// control plane.
    pub fn holders(&self) -> impl Iterator<Item = (&str, &[CertRequest])> {
        self.members
            .iter()
            .map(|m| (m.name.as_str(), m.certs.as_slice()))
            .chain(std::iter::once((self.control_plane.name.as_str(), self.control_plane.certs.as_slice())))
    }

    /// Whether `name` is a member or the control plane.
    pub fn holds(&self, name: &str) -> bool {
        self.holders().any(|(n, _)| n == name)
    }

    /// Whether the kubeadm config is v1beta3.
    pub fn is_v1beta3(&self) -> bool {
        self.behaviour.config_api == ConfigApi::V1Beta3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: &str, v: &str) -> Arg {
        arg(n, v)
    }

    #[test]
    fn sans_are_sorted_and_deduplicated_like_kubeadm() {
        let ip: IpAddr = "10.0.0.6".parse().unwrap();
        let reqs = cert_requests(
            "infra0",
            &ip,
            &["zeta.example".into(), "10.0.0.6".into(), "alpha.example".into(), "::1".into()],
            KeyAlgorithm::Rsa2048,
        );
        let p = &reqs[0].profile;
        assert_eq!(p.dns_names, ["alpha.example", "infra0", "localhost", "zeta.example"]);
        let ips: Vec<String> = p.ip_addresses.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.0.0.6", "127.0.0.1", "::1"]);
        assert!(reqs[2].profile.dns_names.is_empty() && !reqs[2].profile.server_auth);
    }

    #[test]
    fn user_args_replace_guide_args_in_place() {
        let mut args = vec![a("name", "x"), a("listen-client-urls", "u")];
        merge_user_args(
            &mut args,
            &[a("listen-client-urls", "v"), a("snapshot-count", "1"), a("listen-client-urls", "w")],
        );
        assert_eq!(
            args,
            vec![
                a("name", "x"),
                a("listen-client-urls", "v"),
                a("snapshot-count", "1"),
                a("listen-client-urls", "w")
            ]
        );
    }
}
