//! install.sh is assembled from plain shell files, not templated: a few lines of data made
//! from a typed [`Data`] (what the bundle is, what it installs where, the members), then the
//! files of `installer/` that its role and etcd runtime need, each shellchecked and tested
//! with bats as itself, then the call of `main`.

use crate::layout::Runtime;
use crate::layout::{self, Content, PlannedFile};
use crate::plan::{MemberPlan, Plan};
use crate::quote::shell_quote;
use std::collections::BTreeMap;

/// Functions every installer shares: options, messages, the bundle folder, the lock,
/// verification against SHA256SUMS, health and quorum arithmetic.
pub const COMMON: &str = include_str!("../installer/common.sh");
/// Writing a file with its mode and owner, a command or its words with `--dry-run`,
/// restoring a backup (every role but a leave).
pub const FILES: &str = include_str!("../installer/files.sh");
/// The install steps with their backup: rollback, preflight, what changes, the change
/// (every role but a leave).
pub const APPLY: &str = include_str!("../installer/apply.sh");
/// A member's bundle (also a joining member's).
pub const MEMBER: &str = include_str!("../installer/member.sh");
/// A joining member's steps: learner, promotion.
pub const JOIN: &str = include_str!("../installer/join.sh");
/// A restore bundle's steps: the snapshot's checks, stopping etcd, the restore itself.
pub const RESTORE: &str = include_str!("../installer/restore.sh");
/// A leave bundle.
pub const LEAVE: &str = include_str!("../installer/leave.sh");
/// The control-plane bundle.
pub const CONTROL_PLANE: &str = include_str!("../installer/control-plane.sh");
/// The static pod runtime.
pub const STATIC_POD: &str = include_str!("../installer/static-pod.sh");
/// The systemd runtime.
pub const SYSTEMD: &str = include_str!("../installer/systemd.sh");
/// etcd's v3 JSON gateway, for the roles that change the members (join, leave).
pub const CLUSTER_API: &str = include_str!("../installer/cluster-api.sh");

/// The first line of the part every bundle of a role and runtime shares.
pub const SHARED_PART: &str = "# --- The installer itself: installer/*.sh of etcdpack, the same in every bundle of this role and runtime. ---";

/// What a bundle's installer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A member of the cluster the bundles start or keep (bootstrap view).
    Member,
    /// A member that joins a running cluster.
    Join,
    /// A member that leaves the cluster.
    Leave,
    /// The control-plane nodes' etcd client files.
    ControlPlane,
    /// A member of a cluster restored from a snapshot (`etcdpack restore`).
    Restore,
}

impl Role {
    /// Its name in the data (`ROLE=`) and in snapshot names.
    pub fn name(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Join => "join",
            Role::Leave => "leave",
            Role::ControlPlane => "control-plane",
            Role::Restore => "restore",
        }
    }
}

/// One file the installer installs: its path in the bundle, where it goes, its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallFile {
    /// Path inside the bundle.
    pub path: String,
    /// Install path on the host.
    pub install_path: String,
    /// Mode, as four octal digits.
    pub mode: String,
}

/// What a member's installer knows of etcd on its host (member and join roles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdHost {
    /// How etcd runs there.
    pub runtime: Runtime,
    /// The member's address.
    pub address: String,
    /// Its client URL.
    pub client_url: String,
    /// Client port.
    pub client_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// The metrics URL the probes use.
    pub metrics_url: String,
    /// Where the expiry timer unit installs.
    pub expiry_timer: String,
    /// The image archive's file name under `images/`, if one is shipped.
    pub image_archive: Option<String>,
    /// The kubelet binary (static pod runtime).
    pub kubelet: Option<String>,
    /// The etcd image (static pod runtime).
    pub image: Option<String>,
    /// etcd.user (systemd runtime).
    pub etcd_user: Option<String>,
    /// The etcd binary etcd.service runs (systemd runtime).
    pub etcd_binary: Option<String>,
    /// The peer URL of the member a join replaces.
    pub replaces: Option<String>,
    /// A restore bundle's snapshot.
    pub restore: Option<RestoreData>,
}

/// What a restore bundle's installer pins and passes to `snapshot restore`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreData {
    /// SHA-256 of the snapshot file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The revision of its newest key.
    pub revision: i64,
    /// The new cluster's token.
    pub token: String,
    /// `--initial-cluster` of the restored cluster.
    pub initial_cluster: String,
    /// Where the bundle carries it (`--embed`); empty when it travels beside the bundle.
    pub embedded: String,
    /// Whether it ends with the database's SHA-256 (else `--skip-hash-check`).
    pub hashed: bool,
}

/// The data of one bundle's installer: the only part of install.sh the build makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    /// What it does.
    pub role: Role,
    /// Cluster name.
    pub cluster: String,
    /// Member name (the control-plane bundle's name for that bundle).
    pub member: String,
    /// The kubeadm release the bundles imitate.
    pub kubernetes_version: String,
    /// Where the installer records what it installed.
    pub record_dir: String,
    /// Where it keeps its backups.
    pub backup_dir: String,
    /// The member's peer URL (members, join, leave).
    pub peer_url: Option<String>,
    /// The data dir (members, join, leave).
    pub data_dir: Option<String>,
    /// etcd on the host (member and join).
    pub etcd: Option<EtcdHost>,
    /// The install paths etcd.user owns (systemd runtime).
    pub etcd_owned: Vec<String>,
    /// Every member of the cluster as this bundle knows it: name, client URL.
    pub members: Vec<(String, String)>,
    /// The files it installs, in order.
    pub files: Vec<InstallFile>,
    /// A leave's: the generation of the member's last bundle when it left (0: unknown). A
    /// host that installed a newer one took the member back since: the leave is stale.
    pub left_at_generation: Option<u64>,
}

impl Data {
    /// Its runtime, for the roles that run etcd.
    pub fn runtime(&self) -> Option<Runtime> {
        self.etcd.as_ref().map(|e| e.runtime)
    }

    /// The lines of the data, as bash assignments (values quoted for the shell).
    fn assignments(&self) -> String {
        let mut out = String::new();
        let mut scalar = |key: &str, value: &str| {
            out.push_str(&format!(
                "readonly {key}={}\n",
                if value.is_empty() { String::new() } else { shell_quote(value) }
            ));
        };
        scalar("ROLE", self.role.name());
        scalar("RUNTIME", self.runtime().map(|r| r.name()).unwrap_or_default());
        scalar("CLUSTER", &self.cluster);
        scalar("MEMBER", &self.member);
        scalar("PKI_DIR", crate::layout::PKI_DIR);
        scalar("RECORD_DIR", &self.record_dir);
        scalar("BACKUP_DIR", &self.backup_dir);
        scalar("SIGNING_KEY_PIN", layout::SIGNING_KEY_PIN);
        if let Some(url) = &self.peer_url {
            scalar("PEER_URL", url);
        }
        if let Some(dir) = &self.data_dir {
            scalar("DATA_DIR", dir);
        }
        if let Some(g) = self.left_at_generation {
            scalar("LEFT_AT_GENERATION", &g.to_string());
        }
        if self.role != Role::ControlPlane {
            // What may run etcd here: a static pod's manifest, or etcdpack's etcd.service.
            scalar("MANIFEST_DIR", crate::layout::MANIFEST_DIR);
            scalar("MANIFEST", Runtime::StaticPod.runner_path());
            scalar("UNIT", Runtime::Systemd.runner_path());
        }
        if let Some(e) = &self.etcd {
            scalar("ADDRESS", &e.address);
            scalar("CLIENT_URL", &e.client_url);
            scalar("CLIENT_PORT", &e.client_port.to_string());
            scalar("PEER_PORT", &e.peer_port.to_string());
            scalar("METRICS_URL", &e.metrics_url);
            scalar("RUNNER", e.runtime.runner_path());
            scalar("EXPIRY_TIMER", &e.expiry_timer);
            scalar(
                "EXPIRY_METRIC",
                &format!("{}/{}", crate::layout::EXPIRY_METRIC_DIR, crate::layout::EXPIRY_METRIC),
            );
            scalar("SNAPSHOT_TIMER", crate::layout::SNAPSHOT_TIMER_PATH);
            scalar(
                "SNAPSHOT_METRIC",
                &format!("{}/{}", crate::layout::SNAPSHOT_METRIC_DIR, crate::layout::SNAPSHOT_METRIC),
            );
            scalar("TEXTFILE_DIR", crate::layout::TEXTFILE_DIR);
            scalar("IMAGE_ARCHIVE", e.image_archive.as_deref().unwrap_or_default());
            for (key, value) in [
                ("KUBELET", &e.kubelet),
                ("IMAGE", &e.image),
                ("ETCD_USER", &e.etcd_user),
                ("ETCD_BINARY", &e.etcd_binary),
            ] {
                if let Some(v) = value {
                    scalar(key, v);
                }
            }
            if self.role == Role::Join {
                scalar("REPLACES", e.replaces.as_deref().unwrap_or_default());
            }
            if let Some(r) = &e.restore {
                scalar("RESTORE_TOKEN", &r.token);
                scalar("SNAPSHOT_SHA256", &r.sha256);
                scalar("SNAPSHOT_SIZE", &r.size.to_string());
                scalar("SNAPSHOT_REVISION", &r.revision.to_string());
                scalar("SNAPSHOT_NAME", crate::dist::SNAPSHOT);
                scalar("SNAPSHOT_IN_BUNDLE", &r.embedded);
                scalar("SNAPSHOT_HASHED", if r.hashed { "1" } else { "0" });
                scalar("INITIAL_CLUSTER", &r.initial_cluster);
            }
        }
        if self.role != Role::Leave {
            out.push_str("# The install paths etcd.user owns (the systemd runtime), as does the data dir.\n");
            out.push_str(&array("ETCD_OWNED", self.etcd_owned.iter().map(|p| vec![p.as_str()])));
        }
        out.push_str("# Every member of the cluster: name, client URL (this member's included).\n");
        out.push_str(&array("MEMBERS", self.members.iter().map(|(n, u)| vec![n.as_str(), u.as_str()])));
        if self.role != Role::Leave {
            out.push_str("# bundle path, install path, mode\n");
            out.push_str(&array(
                "FILES",
                self.files.iter().map(|f| vec![f.path.as_str(), f.install_path.as_str(), f.mode.as_str()]),
            ));
        }
        out
    }

    /// The comment that opens install.sh: what the bundle does.
    fn title(&self) -> String {
        match (&self.role, &self.etcd, &self.peer_url) {
            (Role::Member | Role::Join, Some(e), _) => {
                format!("# Installs etcd member {} ({}) of cluster {}.", self.member, e.address, self.cluster)
            }
            (Role::Restore, Some(e), _) => format!(
                "# Restores etcd member {} ({}) of cluster {} from a snapshot.",
                self.member, e.address, self.cluster
            ),
            (Role::Leave, _, Some(url)) => {
                format!("# Takes etcd member {} ({url}) out of cluster {}.", self.member, self.cluster)
            }
            _ => format!(
                "# Installs the etcd client files of a control-plane node of etcd cluster {}.",
                self.cluster
            ),
        }
    }
}

/// `readonly NAME=(` with one line per entry, each word quoted, then `)`.
fn array<'a>(name: &str, rows: impl Iterator<Item = Vec<&'a str>>) -> String {
    let mut out = format!("readonly {name}=(\n");
    for row in rows {
        let words: Vec<String> = row.iter().map(|w| shell_quote(w)).collect();
        out.push_str(&format!("  {}\n", words.join(" ")));
    }
    out.push_str(")\n");
    out
}

/// The shell files of a role and runtime, in the order install.sh holds them.
pub fn parts(role: Role, runtime: Option<Runtime>) -> Vec<&'static str> {
    let mut parts = vec![COMMON];
    if role != Role::Leave {
        parts.extend([FILES, APPLY]);
    }
    match runtime {
        Some(Runtime::StaticPod) => parts.push(STATIC_POD),
        Some(Runtime::Systemd) => parts.push(SYSTEMD),
        None => {}
    }
    match role {
        Role::Member => parts.push(MEMBER),
        Role::Join => parts.extend([MEMBER, JOIN, CLUSTER_API]),
        Role::Leave => parts.extend([LEAVE, CLUSTER_API]),
        Role::ControlPlane => parts.push(CONTROL_PLANE),
        Role::Restore => parts.extend([MEMBER, RESTORE]),
    }
    parts
}

/// The part of install.sh every bundle of `role` and `runtime` shares: [`SHARED_PART`], the
/// shell files without their leading `# shellcheck` directives, then `main "$@"`.
pub fn shared_part(role: Role, runtime: Option<Runtime>) -> String {
    let mut out = format!("{SHARED_PART}\n");
    for text in parts(role, runtime) {
        out.push('\n');
        out.push_str(body(text));
    }
    out.push_str("\nmain \"$@\"\n");
    out
}

/// The whole install.sh of a bundle.
pub fn assemble(data: &Data) -> String {
    format!(
        "#!/usr/bin/env bash\n{}\n# Made by etcdpack {} for kubeadm {}.\n# Run as root from the unpacked bundle folder; --help lists the options.\nset -Eeuo pipefail\numask 022\n\n# This bundle: made by the build, read by the installer below (not every role reads every\n# value).\n# shellcheck disable=SC2034\n{{\n{}}}\n\n{}",
        data.title(),
        env!("CARGO_PKG_VERSION"),
        data.kubernetes_version,
        data.assignments(),
        shared_part(data.role, data.runtime())
    )
}

/// A shell file without its leading `# shellcheck` directive lines.
fn body(text: &str) -> &str {
    let mut rest = text;
    while let Some(line_end) = rest.find('\n') {
        if !rest.starts_with("# shellcheck ") {
            break;
        }
        rest = &rest[line_end + 1..];
    }
    rest
}

/// The files install.sh installs, in the order it installs them: what runs etcd (the static
/// pod manifest, the unit) last, so that a kubelet watching the folder never starts etcd
/// before its certificates are in place.
fn install_files(files: &[PlannedFile]) -> Vec<InstallFile> {
    let mut ordered: Vec<&PlannedFile> = files.iter().collect();
    ordered.sort_by_key(|f| {
        [layout::templates::ETCD_MANIFEST, layout::templates::ETCD_UNIT]
            .map(Content::Template)
            .contains(&f.content)
    });
    ordered
        .into_iter()
        .filter_map(|f| {
            Some(InstallFile {
                path: f.path.clone(),
                install_path: f.install_path.clone()?,
                mode: format!("{:04o}", f.mode),
            })
        })
        .collect()
}

/// A member's installer data (member and join roles).
pub fn of_member(plan: &Plan, m: &MemberPlan) -> Data {
    let static_pod = plan.runtime == layout::Runtime::StaticPod;
    let (role, replaces) = match (&m.role, &plan.restore) {
        (_, Some(_)) => (Role::Restore, None),
        (crate::membership::Role::Bootstrap, None) => (Role::Member, None),
        (crate::membership::Role::Join { replaces }, None) => (Role::Join, replaces.clone()),
    };
    Data {
        role,
        cluster: plan.cluster.clone(),
        member: m.name.clone(),
        kubernetes_version: plan.kubernetes_version.clone(),
        record_dir: crate::layout::RECORD_DIR.into(),
        backup_dir: crate::layout::BACKUP_DIR.into(),
        peer_url: Some(m.peer_url.clone()),
        data_dir: Some(plan.data_dir.clone()),
        etcd: Some(EtcdHost {
            runtime: plan.runtime,
            address: m.address.to_string(),
            client_url: m.client_url.clone(),
            client_port: plan.client_port,
            peer_port: plan.peer_port,
            metrics_url: metrics_url(m),
            expiry_timer: layout::EXPIRY_TIMER_PATH.into(),
            image_archive: plan.image_archive.clone(),
            kubelet: static_pod.then(|| plan.kubelet_path.clone()),
            image: static_pod.then(|| plan.image.clone()),
            etcd_user: plan.systemd.as_ref().map(|s| s.user.clone()),
            etcd_binary: plan.systemd.as_ref().map(|s| s.binary.clone()),
            replaces,
            restore: plan.restore.as_ref().map(|r| RestoreData {
                sha256: r.sha256.clone(),
                size: r.size,
                revision: r.revision,
                token: r.token.clone(),
                initial_cluster: crate::plan::initial_cluster_of(&m.peers),
                embedded: if r.embedded { layout::SNAPSHOT_IN_BUNDLE.into() } else { String::new() },
                hashed: r.has_digest,
            }),
        }),
        etcd_owned: m
            .files
            .iter()
            .filter(|f| f.owner == layout::Owner::Etcd)
            .filter_map(|f| f.install_path.clone())
            .collect(),
        members: m.peers.iter().map(|o| (o.name.clone(), o.client_url.clone())).collect(),
        files: install_files(&m.files),
        left_at_generation: None,
    }
}

/// A leave bundle's installer data: the members it asks are the ones this build keeps.
pub fn of_leave(plan: &Plan, l: &crate::membership::Leaving) -> Data {
    Data {
        role: Role::Leave,
        cluster: plan.cluster.clone(),
        member: l.name.clone(),
        kubernetes_version: plan.kubernetes_version.clone(),
        record_dir: crate::layout::RECORD_DIR.into(),
        backup_dir: crate::layout::BACKUP_DIR.into(),
        peer_url: Some(l.peer_url.clone()),
        data_dir: Some(plan.data_dir.clone()),
        etcd: None,
        etcd_owned: Vec::new(),
        members: plan.members.iter().map(|o| (o.name.clone(), o.client_url.clone())).collect(),
        files: Vec::new(),
        left_at_generation: Some(l.generation),
    }
}

/// The control-plane bundle's installer data.
pub fn of_control_plane(plan: &Plan) -> Data {
    let cp = &plan.control_plane;
    Data {
        role: Role::ControlPlane,
        cluster: plan.cluster.clone(),
        member: cp.name.clone(),
        kubernetes_version: plan.kubernetes_version.clone(),
        record_dir: layout::CONTROL_PLANE_RECORD_DIR.into(),
        backup_dir: layout::CONTROL_PLANE_BACKUP_DIR.into(),
        peer_url: None,
        data_dir: None,
        etcd: None,
        etcd_owned: Vec::new(),
        members: plan.members.iter().map(|o| (o.name.clone(), o.client_url.clone())).collect(),
        files: install_files(&cp.files),
        left_at_generation: None,
    }
}

/// Every bundle's install.sh, by bundle name: it depends on the plan alone (no key), so
/// `plan` can tell which hosts get a new installer.
pub fn texts(plan: &Plan) -> BTreeMap<String, String> {
    let members = plan.members.iter().map(|m| (m.name.clone(), of_member(plan, m)));
    let leaves = plan.leaving.iter().map(|l| (l.name.clone(), of_leave(plan, l)));
    let cp = std::iter::once((plan.control_plane.name.clone(), of_control_plane(plan)));
    members.chain(leaves).chain(cp).map(|(name, data)| (name, assemble(&data))).collect()
}

/// The URL of the member's metrics listener that its probes ask (kubeadm's probe endpoint).
fn metrics_url(m: &MemberPlan) -> String {
    let probe_host =
        if m.probe.host.contains(':') { format!("[{}]", m.probe.host) } else { m.probe.host.clone() };
    format!("{}://{probe_host}:{}", m.probe.scheme.to_ascii_lowercase(), m.probe.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 11] =
        [COMMON, FILES, APPLY, MEMBER, JOIN, RESTORE, LEAVE, CONTROL_PLANE, STATIC_POD, SYSTEMD, CLUSTER_API];

    #[test]
    fn shell_files_are_plain_shell() {
        for text in ALL {
            assert!(!text.contains("{{"), "no template syntax in a shell file");
            assert!(text.starts_with("# shellcheck shell=bash\n"));
            assert!(!body(text).starts_with("# shellcheck"));
        }
    }

    #[test]
    fn each_role_and_runtime_takes_its_files() {
        let sp = Some(Runtime::StaticPod);
        assert_eq!(parts(Role::Member, sp), [COMMON, FILES, APPLY, STATIC_POD, MEMBER]);
        assert_eq!(
            parts(Role::Join, Some(Runtime::Systemd)),
            [COMMON, FILES, APPLY, SYSTEMD, MEMBER, JOIN, CLUSTER_API]
        );
        // A leave installs nothing: no file writing, no rollback.
        assert_eq!(parts(Role::Leave, None), [COMMON, LEAVE, CLUSTER_API]);
        assert_eq!(parts(Role::ControlPlane, None), [COMMON, FILES, APPLY, CONTROL_PLANE]);
        // Every file is some role's.
        for text in ALL {
            let used = [Role::Member, Role::Join, Role::Leave, Role::ControlPlane, Role::Restore]
                .iter()
                .any(|r| [sp, Some(Runtime::Systemd), None].iter().any(|rt| parts(*r, *rt).contains(&text)));
            assert!(used);
        }
    }

    fn data(role: Role) -> Data {
        Data {
            role,
            cluster: "c".into(),
            member: "m0".into(),
            kubernetes_version: "v1.34.2".into(),
            record_dir: "/etc/etcdpack".into(),
            backup_dir: "/var/lib/etcdpack/backups".into(),
            peer_url: Some("https://10.0.0.6:2380".into()),
            data_dir: Some("/var/lib/etcd".into()),
            etcd: None,
            etcd_owned: vec![],
            members: vec![("m0".into(), "https://10.0.0.6:2379".into())],
            files: vec![InstallFile {
                path: "rootfs/etc/a b".into(),
                install_path: "/etc/a b".into(),
                mode: "0600".into(),
            }],
            left_at_generation: None,
        }
    }

    #[test]
    fn the_data_is_quoted_bash_before_the_shared_part() {
        let text = assemble(&data(Role::Leave));
        assert!(text.starts_with(
            "#!/usr/bin/env bash\n# Takes etcd member m0 (https://10.0.0.6:2380) out of cluster c.\n"
        ));
        assert!(text.contains("readonly ROLE=leave\nreadonly RUNTIME=\n"));
        assert!(text.contains("readonly MEMBERS=(\n  m0 https://10.0.0.6:2379\n)\n"));
        assert!(!text.contains("FILES=("), "a leave installs no files");
        assert!(text.ends_with(&shared_part(Role::Leave, None)));
        let cp = assemble(&data(Role::ControlPlane));
        assert!(cp.contains("readonly FILES=(\n  'rootfs/etc/a b' '/etc/a b' 0600\n)\n"), "{cp}");
        assert!(cp.contains("readonly ETCD_OWNED=(\n)\n"));
        assert_eq!(cp.matches("# shellcheck shell=").count(), 0);
        assert_eq!(cp.matches("\nmain \"$@\"\n").count(), 1);
    }
}
