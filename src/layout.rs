//! The one home of the bundle layout: for each bundle kind and etcd runtime, which files a
//! bundle holds, where install.sh puts each one, with which mode, and where its bytes come
//! from. `plan` instantiates it per member; render, pack, verify, inspect and install.sh (its
//! file list is rendered from the plan) all follow it.

use crate::profile::{LEAVES, Leaf};
use serde::Serialize;

/// kubeadm's `certificatesDir`.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// kubeadm's static pod manifest folder.
pub const MANIFEST_DIR: &str = "/etc/kubernetes/manifests";
/// The kubelet drop-in folder of the guide.
pub const DROPIN_DIR: &str = "/etc/systemd/system/kubelet.service.d";
/// Where install.sh records what it installed (bundle.json, kubeadmcfg.yaml).
pub const RECORD_DIR: &str = "/etc/etcdpack";
/// Where install.sh keeps backups of the files it replaces.
pub const BACKUP_DIR: &str = "/var/lib/etcdpack/backups";
/// kubeadm's default etcd data dir.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/etcd";
/// Where the binaries of `etcd.binaryArchive` install, and so the default `etcd.binary` then.
pub const ARCHIVE_ETCD_BINARY: &str = "/usr/local/bin/etcd";
/// The default `etcd.binary`: Debian's and Ubuntu's etcd-server package.
pub const DEFAULT_ETCD_BINARY: &str = "/usr/bin/etcd";
/// The kubelet binary the drop-in runs unless `kubelet.path` says otherwise.
pub const DEFAULT_KUBELET: &str = "/usr/bin/kubelet";
/// Where cloud-init's user-data puts a member's bundle before it installs it.
pub const CLOUD_INIT_DIR: &str = "/var/lib/etcdpack/cloud-init";
/// Where a host keeps the build's public key it trusts (pinned at its first install).
pub const SIGNING_KEY_PIN: &str = "/etc/etcdpack/signing-key.pub";
/// Where a host looks for the key that opens its sealed bundle, in this order: an age
/// identity baked into the image, then its SSH host keys.
pub const AGE_IDENTITIES: [&str; 3] =
    ["/etc/etcdpack/age-identity", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"];
/// The name of the control-plane bundle, in dist/, the state folder and `expiry` (reserved:
/// no member may have it).
pub const CONTROL_PLANE: &str = "control-plane";

/// Where a bundle file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum Content {
    /// Rendered from `templates/<id>.hbs`.
    Template(&'static str),
    /// install.sh: its data, then the shell files of `installer/` for its role and runtime.
    Installer,
    /// The leaf's certificate.
    Cert(Leaf),
    /// The leaf's key.
    Key(Leaf),
    /// The CA certificate.
    CaCert,
    /// The CA key.
    CaKey,
    /// The image archive.
    ImageArchive,
    /// The binary at this index of `etcd.binaryArchive`.
    Binary(usize),
    /// The snapshot a restore bundle restores (`restore --embed`).
    Snapshot,
    /// `bundle.json`.
    BundleJson,
    /// `bundle.env`: what install.sh needs of bundle.json, as `KEY=value` lines.
    BundleEnv,
    /// `SHA256SUMS`.
    Sums,
    /// `SHA256SUMS.sig`: the build's signature of SHA256SUMS, which install.sh checks first.
    SumsSig,
    /// `signing-key.pub`: the build's public key (pinned on a host at its first install).
    SigningKey,
}

/// One file of a bundle.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedFile {
    /// Path inside the member's folder.
    pub path: String,
    /// Where install.sh puts it, if anywhere.
    pub install_path: Option<String>,
    /// Unix mode.
    pub mode: u32,
    /// Owner once installed.
    #[serde(skip_serializing_if = "crate::layout::Owner::is_root")]
    pub owner: crate::layout::Owner,
    /// Source of the bytes.
    pub content: Content,
}

/// How etcd runs on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// A static pod of a kubelet that only manages etcd (the kubeadm guide).
    StaticPod,
    /// A plain systemd service, `etcd.service`, running the etcd binary with the manifest's
    /// flags (no kubelet, no container runtime).
    Systemd,
}

impl Runtime {
    /// Its name in the topology (`etcd.runtime`) and in bundle.json (`runtime`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::StaticPod => "static-pod",
            Runtime::Systemd => "systemd",
        }
    }

    /// The runtime a name stands for; bundles of releases before the systemd runtime name
    /// none and run static pods.
    pub fn from_name(name: Option<&str>) -> Option<Runtime> {
        match name {
            None | Some("static-pod") => Some(Runtime::StaticPod),
            Some("systemd") => Some(Runtime::Systemd),
            Some(_) => None,
        }
    }

    /// Where the file that runs etcd installs: installing a changed one restarts etcd.
    pub fn runner_path(self) -> &'static str {
        match self {
            Runtime::StaticPod => "/etc/kubernetes/manifests/etcd.yaml",
            Runtime::Systemd => ETCD_UNIT_PATH,
        }
    }

    /// The template of that file.
    pub fn runner_template(self) -> &'static str {
        match self {
            Runtime::StaticPod => templates::ETCD_MANIFEST,
            Runtime::Systemd => templates::ETCD_UNIT,
        }
    }
}

/// Who owns an installed file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// root:root (every file of a static-pod bundle).
    #[default]
    Root,
    /// The user etcd runs as (`etcd.user`, systemd runtime): the keys etcd itself reads.
    Etcd,
}

impl Owner {
    /// Whether it is root (left out of plan.json).
    pub fn is_root(&self) -> bool {
        *self == Owner::Root
    }
}

/// Where the systemd runtime's unit installs (it overrides a distribution's `etcd.service`).
pub const ETCD_UNIT_PATH: &str = "/etc/systemd/system/etcd.service";
/// Where the binaries of `etcd.binaryArchive` install.
pub const LOCAL_BIN: &str = "/usr/local/bin";
/// The binaries of an etcd release archive a bundle may ship (`etcd` first).
pub const ETCD_BINARIES: [&str; 3] = ["etcd", "etcdctl", "etcdutl"];

/// Template ids (paths under `templates/` without `.hbs`).
pub mod templates {
    /// kubeadm config.
    pub const KUBEADMCFG: &str = "kubeadmcfg.yaml";
    /// Static pod manifest.
    pub const ETCD_MANIFEST: &str = "etcd.yaml";
    /// KubeletConfiguration.
    pub const KUBELET_CONF: &str = "kubelet.conf";
    /// systemd drop-in.
    pub const DROPIN: &str = "20-etcd-service-manager.conf";
    /// The host-side expiry check (POSIX sh + openssl).
    pub const EXPIRY_SCRIPT: &str = "etcdpack-expiry";
    /// Its systemd service.
    pub const EXPIRY_SERVICE: &str = "etcdpack-expiry.service";
    /// Its daily timer.
    pub const EXPIRY_TIMER: &str = "etcdpack-expiry.timer";
    /// The host-side snapshot job (POSIX sh + etcd's tools).
    pub const SNAPSHOT_SCRIPT: &str = "etcdpack-snapshot";
    /// Its systemd service.
    pub const SNAPSHOT_SERVICE: &str = "etcdpack-snapshot.service";
    /// Its timer (`backup.schedule`).
    pub const SNAPSHOT_TIMER: &str = "etcdpack-snapshot.timer";
    /// The control plane's `etcd.external` ClusterConfiguration.
    pub const ETCD_EXTERNAL: &str = "etcd-external.yaml";
    /// The systemd runtime's `etcd.service`.
    pub const ETCD_UNIT: &str = "etcd.service";
    /// cloud-init user-data carrying a member's bundle (`build --emit cloud-init`).
    pub const USER_DATA: &str = "user-data";
    /// The Ansible inventory (`build --emit ansible`).
    pub const ANSIBLE_INVENTORY: &str = "ansible-inventory.yml";
    /// Every id the planner can emit.
    pub const ALL: [&str; 14] = [
        KUBEADMCFG,
        ETCD_MANIFEST,
        KUBELET_CONF,
        DROPIN,
        EXPIRY_SCRIPT,
        EXPIRY_SERVICE,
        EXPIRY_TIMER,
        SNAPSHOT_SCRIPT,
        SNAPSHOT_SERVICE,
        SNAPSHOT_TIMER,
        ETCD_EXTERNAL,
        ETCD_UNIT,
        USER_DATA,
        ANSIBLE_INVENTORY,
    ];
}

/// When a row of the table is in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Always,
    /// Only in the bundle that carries the CA key.
    CaKey,
    /// Only with `monitoring.expiryTimer` (the default).
    ExpiryTimer,
    /// Only with `backup` (the default).
    Backup,
}

/// The folder of the host-side expiry check.
pub const LOCAL_SBIN: &str = "/usr/local/sbin";
/// Where the host-side expiry check installs.
pub const EXPIRY_SCRIPT_PATH: &str = "/usr/local/sbin/etcdpack-expiry";
/// systemd's folder for units the administrator installs.
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";
/// Where the expiry check's timer installs.
pub const EXPIRY_TIMER_PATH: &str = "/etc/systemd/system/etcdpack-expiry.timer";
/// Where the snapshot job installs.
pub const SNAPSHOT_SCRIPT_PATH: &str = "/usr/local/sbin/etcdpack-snapshot";
/// Where its timer installs.
pub const SNAPSHOT_TIMER_PATH: &str = "/etc/systemd/system/etcdpack-snapshot.timer";
/// Where the snapshot job writes its metrics (its unit's runtime folder, root's).
pub const SNAPSHOT_METRIC_DIR: &str = "/run/etcdpack-snapshot";
/// That folder as the unit's `RuntimeDirectory=`.
pub const SNAPSHOT_RUNTIME_DIR: &str = "etcdpack-snapshot";
/// The snapshot metrics' file name, there and as the link in node_exporter's folder.
pub const SNAPSHOT_METRIC: &str = "etcdpack-snapshot.prom";
/// Where the expiry check, run by the unit as an unprivileged dynamic user, writes its metric:
/// its own runtime folder, which no other user can write.
pub const EXPIRY_METRIC_DIR: &str = "/run/etcdpack-expiry";
/// That folder as the unit's `RuntimeDirectory=` names it (under /run).
pub const EXPIRY_RUNTIME_DIR: &str = "etcdpack-expiry";
/// The metric's file name, in that folder and as the link in node_exporter's.
pub const EXPIRY_METRIC: &str = "etcdpack-expiry.prom";
/// node_exporter's textfile collector folder, where install.sh links the metric.
pub const TEXTFILE_DIR: &str = "/var/lib/node_exporter/textfile_collector";

/// One row: bundle path (`rootfs/...` installs at the rest), mode, owner, content, presence.
struct Row {
    path: String,
    mode: u32,
    owner: Owner,
    content: Content,
    when: When,
}

fn row(path: impl Into<String>, mode: u32, content: Content) -> Row {
    Row { path: path.into(), mode, owner: Owner::Root, content, when: When::Always }
}

/// Where the control-plane bundle's install.sh records what it installed: apart from a
/// member's record, so that one host could hold both.
pub const CONTROL_PLANE_RECORD_DIR: &str = "/etc/etcdpack/control-plane";
/// Where the control-plane bundle's install.sh keeps its backups (apart from a member's, so
/// that `--rollback` of one never undoes the other).
pub const CONTROL_PLANE_BACKUP_DIR: &str = "/var/lib/etcdpack/control-plane-backups";

/// What a bundle is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One etcd member's host.
    Member,
    /// The control-plane nodes (kube-apiserver's side).
    ControlPlane,
    /// A member that leaves the cluster (no keys).
    Leave,
}

impl Kind {
    /// Its name in bundle.json (`kind`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Member => "member",
            Kind::ControlPlane => "control-plane",
            Kind::Leave => "leave",
        }
    }

    /// The kind bundle.json names; bundles of releases before the control-plane bundle
    /// name none and are member bundles.
    pub fn from_name(name: Option<&str>) -> Option<Kind> {
        match name {
            None | Some("member") => Some(Kind::Member),
            Some("control-plane") => Some(Kind::ControlPlane),
            Some("leave") => Some(Kind::Leave),
            Some(_) => None,
        }
    }

    /// The leaves a bundle of this kind carries.
    pub fn leaves(self) -> &'static [Leaf] {
        match self {
            Kind::Member => &LEAVES,
            Kind::ControlPlane => &[Leaf::ApiserverEtcdClient],
            Kind::Leave => &[],
        }
    }

    /// Where its install.sh records what it installed.
    pub fn record_dir(self) -> &'static str {
        match self {
            Kind::Member | Kind::Leave => RECORD_DIR,
            Kind::ControlPlane => CONTROL_PLANE_RECORD_DIR,
        }
    }
}

/// The folders install.sh writes into, shown as separate trees by `inspect`, in the guide's
/// order.
pub fn install_trees(kind: Kind, runtime: Runtime) -> &'static [&'static str] {
    match (kind, runtime) {
        (Kind::ControlPlane, _) => &[PKI_DIR],
        (Kind::Leave, _) => &[],
        (Kind::Member, Runtime::StaticPod) => &[PKI_DIR, MANIFEST_DIR, DROPIN_DIR, SYSTEMD_DIR, LOCAL_SBIN],
        (Kind::Member, Runtime::Systemd) => &[PKI_DIR, SYSTEMD_DIR, LOCAL_SBIN, LOCAL_BIN],
    }
}

/// What decides the files of one member's bundle.
#[derive(Clone, Copy, Debug)]
pub struct MemberLayout<'a> {
    /// How etcd runs.
    pub runtime: Runtime,
    /// Whether this bundle carries the CA key.
    pub carries_ca_key: bool,
    /// `monitoring.expiryTimer`.
    pub expiry_timer: bool,
    /// `backup` (not `false`).
    pub backup: bool,
    /// The image archive's file name (static pods).
    pub image_archive: Option<&'a str>,
    /// The binaries of `etcd.binaryArchive` (systemd), by file name.
    pub binaries: &'a [String],
    /// Whether it carries the snapshot it restores (`restore --embed`).
    pub snapshot: bool,
}

/// Where a restore bundle made with `--embed` carries its snapshot; it installs nowhere.
pub const SNAPSHOT_IN_BUNDLE: &str = "snapshot/snapshot.db";

/// The table of a member bundle.
fn member_rows(runtime: Runtime) -> Vec<Row> {
    let mut rows = vec![
        row("install.sh", 0o755, Content::Installer),
        row("SHA256SUMS", 0o644, Content::Sums),
        row("SHA256SUMS.sig", 0o644, Content::SumsSig),
        row("signing-key.pub", 0o644, Content::SigningKey),
        row("bundle.json", 0o644, Content::BundleJson),
        row("bundle.env", 0o644, Content::BundleEnv),
        row("kubeadmcfg.yaml", 0o644, Content::Template(templates::KUBEADMCFG)),
        row(format!("rootfs{PKI_DIR}/etcd/ca.crt"), 0o644, Content::CaCert),
        Row { when: When::CaKey, ..row(format!("rootfs{PKI_DIR}/etcd/ca.key"), 0o600, Content::CaKey) },
    ];
    for leaf in LEAVES {
        // etcd itself reads its server and peer pairs: under systemd, as `etcd.user`.
        let owner = match (runtime, leaf) {
            (Runtime::Systemd, Leaf::EtcdServer | Leaf::EtcdPeer) => Owner::Etcd,
            _ => Owner::Root,
        };
        rows.push(Row {
            owner,
            ..row(format!("rootfs{PKI_DIR}/{}.crt", leaf.stem()), 0o644, Content::Cert(leaf))
        });
        rows.push(Row {
            owner,
            ..row(format!("rootfs{PKI_DIR}/{}.key", leaf.stem()), 0o600, Content::Key(leaf))
        });
    }
    // The host-side jobs, each a script run by a service and its timer (their template ids
    // are their file names): the expiry check and the snapshot job.
    for (when, script, [script_id, service_id, timer_id]) in [
        (
            When::ExpiryTimer,
            EXPIRY_SCRIPT_PATH,
            [templates::EXPIRY_SCRIPT, templates::EXPIRY_SERVICE, templates::EXPIRY_TIMER],
        ),
        (
            When::Backup,
            SNAPSHOT_SCRIPT_PATH,
            [templates::SNAPSHOT_SCRIPT, templates::SNAPSHOT_SERVICE, templates::SNAPSHOT_TIMER],
        ),
    ] {
        let job = |path: String, mode, id| Row { when, ..row(path, mode, Content::Template(id)) };
        rows.push(job(format!("rootfs{script}"), 0o755, script_id));
        rows.push(job(format!("rootfs{SYSTEMD_DIR}/{service_id}"), 0o644, service_id));
        rows.push(job(format!("rootfs{SYSTEMD_DIR}/{timer_id}"), 0o644, timer_id));
    }
    match runtime {
        Runtime::StaticPod => {
            rows.push(row(
                format!("rootfs{MANIFEST_DIR}/etcd.yaml"),
                0o600,
                Content::Template(templates::ETCD_MANIFEST),
            ));
            rows.push(row(
                format!("rootfs{DROPIN_DIR}/kubelet.conf"),
                0o644,
                Content::Template(templates::KUBELET_CONF),
            ));
            rows.push(row(
                format!("rootfs{DROPIN_DIR}/20-etcd-service-manager.conf"),
                0o644,
                Content::Template(templates::DROPIN),
            ));
        }
        Runtime::Systemd => {
            rows.push(row(format!("rootfs{ETCD_UNIT_PATH}"), 0o644, Content::Template(templates::ETCD_UNIT)));
        }
    }
    rows
}

/// The table of the control-plane bundle: the files the guide copies to the control-plane
/// nodes, and the ClusterConfiguration that points kubeadm at the cluster.
fn control_plane_rows() -> Vec<Row> {
    let cert = Leaf::ApiserverEtcdClient;
    vec![
        row("install.sh", 0o755, Content::Installer),
        row("SHA256SUMS", 0o644, Content::Sums),
        row("SHA256SUMS.sig", 0o644, Content::SumsSig),
        row("signing-key.pub", 0o644, Content::SigningKey),
        row("bundle.json", 0o644, Content::BundleJson),
        row("bundle.env", 0o644, Content::BundleEnv),
        row("etcd-external.yaml", 0o644, Content::Template(templates::ETCD_EXTERNAL)),
        row(format!("rootfs{PKI_DIR}/etcd/ca.crt"), 0o644, Content::CaCert),
        row(format!("rootfs{PKI_DIR}/{}.crt", cert.stem()), 0o644, Content::Cert(cert)),
        row(format!("rootfs{PKI_DIR}/{}.key", cert.stem()), 0o600, Content::Key(cert)),
    ]
}

/// Where a bundle path installs: `rootfs/X` at `/X`; bundle.json, bundle.env and the kubeadm
/// config as the host's record of what was installed; install.sh and SHA256SUMS nowhere.
fn install_path(kind: Kind, path: &str) -> Option<String> {
    match path {
        "bundle.json" | "bundle.env" | "kubeadmcfg.yaml" | "etcd-external.yaml" => {
            Some(format!("{}/{path}", kind.record_dir()))
        }
        _ => path.strip_prefix("rootfs").map(str::to_string),
    }
}

fn planned(kind: Kind, rows: impl Iterator<Item = Row>) -> Vec<PlannedFile> {
    let mut files: Vec<PlannedFile> = rows
        .map(|r| PlannedFile {
            install_path: install_path(kind, &r.path),
            path: r.path,
            mode: r.mode,
            owner: r.owner,
            content: r.content,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Every file of a leave bundle, sorted by path: its installer and what it says about itself;
/// it installs nothing (it takes away).
pub fn leave_files() -> Vec<PlannedFile> {
    let rows = [
        row("install.sh", 0o755, Content::Installer),
        row("SHA256SUMS", 0o644, Content::Sums),
        row("SHA256SUMS.sig", 0o644, Content::SumsSig),
        row("signing-key.pub", 0o644, Content::SigningKey),
        row("bundle.json", 0o644, Content::BundleJson),
    ];
    let mut files = planned(Kind::Leave, rows.into_iter());
    for f in &mut files {
        f.install_path = None;
    }
    files
}

/// Every file of the control-plane bundle, sorted by path.
pub fn control_plane_files() -> Vec<PlannedFile> {
    planned(Kind::ControlPlane, control_plane_rows().into_iter())
}

/// Every file of one member's bundle, sorted by path.
pub fn member_files(l: &MemberLayout<'_>) -> Vec<PlannedFile> {
    let rows = member_rows(l.runtime).into_iter().filter(|r| match r.when {
        When::Always => true,
        When::CaKey => l.carries_ca_key,
        When::ExpiryTimer => l.expiry_timer,
        When::Backup => l.backup,
    });
    // The image archive installs nowhere: install.sh imports it.
    let image = l.image_archive.map(|name| row(format!("images/{name}"), 0o644, Content::ImageArchive));
    // The binaries of an etcd release archive install as ordinary files.
    let binaries = l
        .binaries
        .iter()
        .enumerate()
        .map(|(i, name)| row(format!("rootfs{LOCAL_BIN}/{name}"), 0o755, Content::Binary(i)));
    let snapshot = l.snapshot.then(|| row(SNAPSHOT_IN_BUNDLE, 0o600, Content::Snapshot));
    planned(Kind::Member, rows.chain(image).chain(binaries).chain(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_metric_folder_is_the_units_runtime_folder() {
        assert_eq!(EXPIRY_METRIC_DIR, format!("/run/{EXPIRY_RUNTIME_DIR}"));
        assert_eq!(SNAPSHOT_METRIC_DIR, format!("/run/{SNAPSHOT_RUNTIME_DIR}"));
    }

    #[test]
    fn the_first_member_alone_carries_the_ca_key() {
        assert!(EXPIRY_SCRIPT_PATH.starts_with(&format!("{LOCAL_SBIN}/")));
        assert_eq!(EXPIRY_TIMER_PATH, format!("{SYSTEMD_DIR}/{}", templates::EXPIRY_TIMER));
        assert_eq!(SNAPSHOT_TIMER_PATH, format!("{SYSTEMD_DIR}/{}", templates::SNAPSHOT_TIMER));
        assert_eq!(SNAPSHOT_SCRIPT_PATH, format!("{LOCAL_SBIN}/{}", templates::SNAPSHOT_SCRIPT));
        let layout = |carries_ca_key, image_archive| MemberLayout {
            runtime: Runtime::StaticPod,
            carries_ca_key,
            expiry_timer: carries_ca_key,
            backup: carries_ca_key,
            image_archive,
            binaries: &[],
            snapshot: false,
        };
        let with = member_files(&layout(true, None));
        let without = member_files(&layout(false, Some("etcd.tar")));
        assert_eq!(with.len(), 26);
        assert_eq!(without.len(), 20);
        assert!(with.iter().any(|f| f.content == Content::CaKey));
        assert!(!without.iter().any(|f| f.content == Content::CaKey));
        assert!(without.iter().any(|f| f.path == "images/etcd.tar" && f.install_path.is_none()));
        let manifest =
            with.iter().find(|f| f.content == Content::Template(templates::ETCD_MANIFEST)).unwrap();
        assert_eq!(
            (manifest.install_path.as_deref(), manifest.mode),
            (Some("/etc/kubernetes/manifests/etcd.yaml"), 0o600)
        );
        assert!(with.windows(2).all(|w| w[0].path < w[1].path));
    }

    #[test]
    fn the_systemd_runtime_swaps_the_kubelet_files_for_etcd_service_and_gives_etcd_its_pairs() {
        let binaries = ["etcd".to_string(), "etcdctl".to_string()];
        let files = member_files(&MemberLayout {
            runtime: Runtime::Systemd,
            carries_ca_key: true,
            expiry_timer: true,
            backup: true,
            image_archive: None,
            binaries: &binaries,
            snapshot: false,
        });
        let installed = |p: &str| files.iter().find(|f| f.install_path.as_deref() == Some(p));
        let unit = installed(ETCD_UNIT_PATH).unwrap();
        assert_eq!((unit.mode, unit.content.clone()), (0o644, Content::Template(templates::ETCD_UNIT)));
        assert!(installed("/etc/kubernetes/manifests/etcd.yaml").is_none());
        assert!(!files.iter().any(|f| f.path.contains("kubelet.service.d")));
        let etcd = installed("/usr/local/bin/etcd").unwrap();
        assert_eq!((etcd.mode, etcd.content.clone()), (0o755, Content::Binary(0)));
        assert_eq!(installed("/usr/local/bin/etcdctl").unwrap().content, Content::Binary(1));
        let owned: Vec<&str> = files
            .iter()
            .filter(|f| f.owner == Owner::Etcd)
            .filter_map(|f| f.install_path.as_deref())
            .collect();
        assert_eq!(
            owned,
            [
                "/etc/kubernetes/pki/etcd/peer.crt",
                "/etc/kubernetes/pki/etcd/peer.key",
                "/etc/kubernetes/pki/etcd/server.crt",
                "/etc/kubernetes/pki/etcd/server.key"
            ]
        );
        assert_eq!(Runtime::Systemd.runner_path(), ETCD_UNIT_PATH);
        assert_eq!(Runtime::from_name(None), Some(Runtime::StaticPod));
        assert_eq!(Runtime::from_name(Some(Runtime::Systemd.name())), Some(Runtime::Systemd));
        assert_eq!(install_trees(Kind::Member, Runtime::Systemd).last(), Some(&LOCAL_BIN));
    }

    #[test]
    fn the_control_plane_gets_the_ca_certificate_and_its_own_client_pair() {
        let files = control_plane_files();
        let installed: Vec<(&str, Option<&str>, u32)> =
            files.iter().map(|f| (f.path.as_str(), f.install_path.as_deref(), f.mode)).collect();
        assert_eq!(
            installed,
            [
                ("SHA256SUMS", None, 0o644),
                ("SHA256SUMS.sig", None, 0o644),
                ("bundle.env", Some("/etc/etcdpack/control-plane/bundle.env"), 0o644),
                ("bundle.json", Some("/etc/etcdpack/control-plane/bundle.json"), 0o644),
                ("etcd-external.yaml", Some("/etc/etcdpack/control-plane/etcd-external.yaml"), 0o644),
                ("install.sh", None, 0o755),
                (
                    "rootfs/etc/kubernetes/pki/apiserver-etcd-client.crt",
                    Some("/etc/kubernetes/pki/apiserver-etcd-client.crt"),
                    0o644
                ),
                (
                    "rootfs/etc/kubernetes/pki/apiserver-etcd-client.key",
                    Some("/etc/kubernetes/pki/apiserver-etcd-client.key"),
                    0o600
                ),
                ("rootfs/etc/kubernetes/pki/etcd/ca.crt", Some("/etc/kubernetes/pki/etcd/ca.crt"), 0o644),
                ("signing-key.pub", None, 0o644),
            ]
        );
        assert!(CONTROL_PLANE_BACKUP_DIR.starts_with("/var/lib/etcdpack/"));
        assert_eq!(Kind::from_name(None), Some(Kind::Member));
        assert_eq!(Kind::from_name(Some(Kind::ControlPlane.name())), Some(Kind::ControlPlane));
        assert_eq!(Kind::from_name(Some("other")), None);
    }
}
