//! The topology file: the one input of etcdpack, parsed and validated with every problem located.
//!
//! `parse` runs three passes, collecting all problems into [`Diagnostics`] instead of stopping
//! at the first: `scan` refuses what must never load (duplicate keys, anchors and aliases);
//! the walk reads the YAML tree (with line and column of every node) into a [`Topology`],
//! checking every key (`walker` holds the YAML-with-positions machinery, `sections` and `etcd`
//! the rules of each section, `syntax` the value formats); then `load` reads the files the
//! topology names (`existingCA`, the archives) through a [`FileSource`] that the shell
//! supplies, so this module does no I/O of its own.
//!
//! The schema is read by typed walking rather than by serde: every problem must name its
//! file, line, column and YAML path, which a serde deserializer of YAML does not keep.

mod etcd;
mod load;
mod scan;
mod sections;
mod syntax;
mod walker;

pub use syntax::{is_dns1123_subdomain, parse_duration};

use crate::diag::{Diagnostics, Severity};
use crate::keys::KeyAlgorithm;
use crate::versions::{ArgOrder, ConfigApi, KubeVersion, Release};
use saphyr::{LoadableYamlNode, MarkedYamlOwned};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use walker::{Walker, pos};

/// Reads files named in the topology, relative to the topology's folder.
pub trait FileSource {
    /// The bytes of `path`, or a reason it cannot be read.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;

    /// The bytes of `path` if it holds at most `max` bytes.
    fn read_at_most(&self, path: &str, max: u64) -> Result<Vec<u8>, String> {
        let bytes = self.read(path)?;
        if bytes.len() as u64 > max {
            return Err(format!("it is larger than {} MiB", max >> 20));
        }
        Ok(bytes)
    }
}

/// A map of file contents, for tests and for callers that already hold the files.
impl FileSource for BTreeMap<String, Vec<u8>> {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.get(path).cloned().ok_or_else(|| "no such file".to_string())
    }
}

/// A validated topology.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// Cluster name.
    pub cluster: String,
    /// Target Kubernetes (and kubeadm) version.
    pub kubernetes_version: KubeVersion,
    /// The version table's row for it.
    #[serde(skip)]
    pub release: &'static Release,
    /// The kubeadm config API of kubeadmcfg.yaml (`kubeadmConfigApi`, else the release's).
    pub config_api: ConfigApi,
    /// PKI settings.
    pub pki: PkiSettings,
    /// etcd settings.
    pub etcd: EtcdSettings,
    /// kubelet settings.
    pub kubelet: KubeletSettings,
    /// `monitoring:` section.
    pub monitoring: Monitoring,
    /// `backup:` section; `None` with `backup: false`.
    pub backup: Option<Backup>,
    /// Members, in file order; the first one holds the CA key.
    pub members: Vec<Member>,
}

/// `pki:` section.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PkiSettings {
    /// Algorithm of every key etcdpack creates.
    pub key_algorithm: KeyAlgorithm,
    /// CA validity in seconds.
    pub ca_validity_secs: u64,
    /// Leaf validity in seconds.
    pub cert_validity_secs: u64,
    /// Whether the first member's bundle carries `ca.key`.
    pub ca_key_on_first_member: bool,
    /// `caKeyHolder`: the member whose bundle carries the CA key, when the topology names one
    /// (else the one the state recorded, else the first member).
    pub ca_key_holder: Option<String>,
    /// A CA brought by the user.
    pub existing_ca: Option<ExistingCa>,
}

/// `pki.existingCA`, with the files read.
#[derive(Clone, Debug, Serialize)]
pub struct ExistingCa {
    /// Certificate path as written.
    pub cert: String,
    /// Key path as written.
    pub key: String,
    /// Certificate PEM.
    #[serde(skip)]
    pub cert_pem: String,
    /// Key PEM.
    #[serde(skip)]
    pub key_pem: String,
}

/// One `--name=value` argument as kubeadm's `extraArgs` holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Arg {
    /// Flag name without dashes.
    pub name: String,
    /// Value (may be empty).
    pub value: String,
}

/// `etcd:` section.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSettings {
    /// Image repository, when set (else kubeadm's default).
    pub image_repository: Option<String>,
    /// Image tag, when pinned (else the version table's).
    pub image_tag: Option<String>,
    /// Data directory, when set (else `/var/lib/etcd`).
    pub data_dir: Option<String>,
    /// Client port.
    pub client_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// User extraArgs, in file order.
    pub extra_args: Vec<Arg>,
    /// How kubeadm orders the etcd command (`extraArgsOrder`, else the patch release's default).
    pub arg_order: ArgOrder,
    /// Whether `extraArgsOrder` chose it (else it follows `kubernetesVersion`).
    #[serde(skip)]
    pub arg_order_given: bool,
    /// Image archive shipped in every bundle.
    pub image_archive: Option<ImageArchive>,
    /// How etcd runs on the members (`runtime`).
    #[serde(serialize_with = "runtime_name")]
    pub runtime: crate::layout::Runtime,
    /// The etcd binary of the systemd runtime, when set.
    pub binary: Option<String>,
    /// The user the systemd runtime runs etcd as, when set (else root).
    pub user: Option<String>,
    /// An etcd release archive whose binaries every bundle installs (systemd runtime).
    pub binary_archive: Option<BinaryArchive>,
}

fn runtime_name<S: serde::Serializer>(r: &crate::layout::Runtime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

impl EtcdSettings {
    /// The etcd binary the systemd unit runs.
    pub fn binary(&self) -> String {
        match (&self.binary, &self.binary_archive) {
            (Some(b), _) => b.clone(),
            (None, Some(_)) => crate::layout::ARCHIVE_ETCD_BINARY.to_string(),
            (None, None) => crate::layout::DEFAULT_ETCD_BINARY.to_string(),
        }
    }
}

/// Binaries by file name, with their bytes (shared by every bundle).
pub type Binaries = Vec<(String, Arc<Vec<u8>>)>;

/// An official etcd release archive (`etcd-v3.5.24-linux-amd64.tar.gz`), read once: the
/// binaries it holds, shared by every bundle.
#[derive(Clone, Debug, Serialize)]
pub struct BinaryArchive {
    /// Path as written in the topology.
    pub path: String,
    /// The etcd version its top folder names (`3.5.24`), if it names one.
    pub version: Option<String>,
    /// `etcd`, then `etcdctl` and `etcdutl` when present, with their bytes.
    #[serde(skip)]
    pub binaries: Binaries,
}

/// An image archive, read once and shared by every bundle.
#[derive(Clone, Debug, Serialize)]
pub struct ImageArchive {
    /// Path as written in the topology.
    pub path: String,
    /// File name inside the bundle's `images/`.
    pub file_name: String,
    /// Contents.
    #[serde(skip)]
    pub bytes: Arc<Vec<u8>>,
}

/// `kubelet:` section.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletSettings {
    /// `systemd` or `cgroupfs`.
    pub cgroup_driver: String,
    /// CRI endpoint.
    pub container_runtime_endpoint: String,
    /// Path of the kubelet binary.
    pub path: String,
}

/// `monitoring:` section.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Whether bundles carry `etcdpack-expiry` with its daily systemd timer.
    pub expiry_timer: bool,
}

/// `backup:` section: scheduled snapshots on every member (`backup: false` leaves them out).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// When the timer runs (systemd `OnCalendar=`).
    pub schedule: String,
    /// How many snapshots each member keeps.
    pub keep: u32,
    /// The root-only folder they are kept in.
    pub dir: String,
}

/// The snapshot folder when the topology names none.
pub const DEFAULT_BACKUP_DIR: &str = "/var/lib/etcdpack/snapshots";

/// One etcd member.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Member and node name.
    pub name: String,
    /// Advertise address.
    pub address: IpAddr,
    /// Extra SANs for server and peer certs, as written.
    pub cert_sans: Vec<String>,
    /// Whom its bundle is sealed to (canonical age or SSH recipients); empty: not sealed.
    pub recipients: Vec<String>,
}

/// Default CA validity: 87600h.
pub const DEFAULT_CA_VALIDITY: u64 = 87600 * 3600;
/// Default leaf validity: 8760h.
pub const DEFAULT_CERT_VALIDITY: u64 = 8760 * 3600;
/// The longest validity accepted: 100 years.
pub const MAX_VALIDITY: u64 = 100 * 365 * 86400;
/// The largest topology file read, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// The most members a topology may list.
pub const MAX_MEMBERS: usize = 100;

/// Parses and validates a topology. Returns the topology when there is no error; the
/// diagnostics always (they may hold warnings).
pub fn parse(file: &str, text: &str, files: &dyn FileSource) -> (Option<Topology>, Diagnostics) {
    let mut w = Walker { d: Diagnostics::new(file), key_pos: BTreeMap::new() };
    if text.len() > MAX_FILE_BYTES {
        w.d.push(
            Severity::Error,
            "",
            None,
            format!(
                "the file is {} bytes, more than the {MAX_FILE_BYTES} bytes (1 MiB) a topology may have",
                text.len()
            ),
            "a topology lists members and settings; check that this is the right file",
        );
        return (None, w.d);
    }
    // A UTF-8 byte-order mark, as some editors write, is accepted and skipped.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let loadable = scan::scan(text, &mut w.d);
    let topology = if !loadable {
        None
    } else {
        match MarkedYamlOwned::load_from_str(text) {
            Err(e) => {
                let m = e.marker();
                let line = text.lines().nth(m.line().saturating_sub(1)).unwrap_or_default();
                let indent = &line[..line.len() - line.trim_start().len()];
                let help = if indent.contains('\t') || e.info().contains("tab") {
                    "YAML indentation must use spaces, not tabs: replace the tabs at the start of this line"
                } else {
                    "fix the YAML syntax at this place"
                };
                w.d.push(
                    Severity::Error,
                    "",
                    Some((m.line(), m.col() + 1)),
                    format!("not valid YAML: {}", e.info()),
                    help,
                );
                None
            }
            Ok(docs) if docs.is_empty() => {
                w.d.push(
                    Severity::Error,
                    "",
                    None,
                    "the file is empty",
                    "write a topology; `etcdpack init` prints a commented example",
                );
                None
            }
            Ok(docs) => {
                if docs.len() > 1 {
                    w.d.push(
                        Severity::Error,
                        "",
                        Some(pos(&docs[1])),
                        "more than one YAML document",
                        "keep one topology per file",
                    );
                }
                // The walk checks every key; then the files it names are read and checked.
                let mut refs = Vec::new();
                let walked = w.topology(&docs[0], &mut refs);
                let loaded = w.load(&refs, files);
                walked.map(|t| loaded.fill(t))
            }
        }
    };
    w.d.sort();
    let ok = !w.d.has_errors();
    (topology.filter(|_| ok), w.d)
}
