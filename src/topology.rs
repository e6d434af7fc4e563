//! The topology file: the one input of etcdpack, parsed and validated with every problem located.
//!
//! `parse` walks the YAML tree (with line and column of every node) into a [`Topology`],
//! collecting all problems into [`Diagnostics`] instead of stopping at the first. Files the
//! topology names (`existingCA`, `imageArchive`) are read through a [`FileSource`] that the
//! shell supplies, so this module does no I/O of its own.

use crate::diag::{Diagnostics, Severity};
use crate::keys::{ALGORITHMS, KeyAlgorithm, PrivateKey};
use crate::versions::{self, KubeVersion, Release};
use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Reads files named in the topology, relative to the topology's folder.
pub trait FileSource {
    /// The bytes of `path`, or a reason it cannot be read.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
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
    /// PKI settings.
    pub pki: PkiSettings,
    /// etcd settings.
    pub etcd: EtcdSettings,
    /// kubelet settings.
    pub kubelet: KubeletSettings,
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
    /// Image archive shipped in every bundle.
    pub image_archive: Option<ImageArchive>,
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
}

/// Default CA validity: 87600h.
pub const DEFAULT_CA_VALIDITY: u64 = 87600 * 3600;
/// Default leaf validity: 8760h.
pub const DEFAULT_CERT_VALIDITY: u64 = 8760 * 3600;

/// Parses and validates a topology. Returns the topology when there is no error; the
/// diagnostics always (they may hold warnings).
pub fn parse(file: &str, text: &str, files: &dyn FileSource) -> (Option<Topology>, Diagnostics) {
    let mut w = Walker { d: Diagnostics::new(file), key_pos: BTreeMap::new() };
    let topology = match MarkedYamlOwned::load_from_str(text) {
        Err(e) => {
            let m = e.marker();
            w.d.push(
                Severity::Error,
                "",
                Some((m.line(), m.col() + 1)),
                format!("not valid YAML: {}", e.info()),
                "fix the YAML syntax at this place",
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
            w.topology(&docs[0], files)
        }
    };
    w.d.sort();
    let ok = !w.d.has_errors();
    (topology.filter(|_| ok), w.d)
}

/// Where a node starts. The YAML parser gives block collections no position of their own,
/// so a collection is placed at its first child.
fn pos_of(node: &MarkedYamlOwned) -> Option<(usize, usize)> {
    if node.span.start.line() > 0 {
        return Some((node.span.start.line(), node.span.start.col() + 1));
    }
    match &node.data {
        YamlDataOwned::Mapping(map) => map.keys().next().and_then(pos_of),
        YamlDataOwned::Sequence(items) => items.first().and_then(pos_of),
        _ => None,
    }
}

fn pos(node: &MarkedYamlOwned) -> (usize, usize) {
    pos_of(node).unwrap_or((1, 1))
}

fn kind(node: &MarkedYamlOwned) -> &'static str {
    match &node.data {
        YamlDataOwned::Value(ScalarOwned::Null) => "null",
        YamlDataOwned::Value(ScalarOwned::Boolean(_)) => "a boolean",
        YamlDataOwned::Value(ScalarOwned::Integer(_)) => "a number",
        YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => "a number",
        YamlDataOwned::Value(ScalarOwned::String(_)) => "a string",
        YamlDataOwned::Sequence(_) => "a list",
        YamlDataOwned::Mapping(_) => "a mapping",
        _ => "an unsupported YAML node",
    }
}

struct Walker {
    d: Diagnostics,
    /// Position of the key that introduced each path, for nodes without a position.
    key_pos: BTreeMap<String, (usize, usize)>,
}

type Fields<'a> = BTreeMap<String, (&'a MarkedYamlOwned, &'a MarkedYamlOwned)>;

impl Walker {
    fn err(&mut self, path: &str, node: &MarkedYamlOwned, msg: impl Into<String>, help: impl Into<String>) {
        let at = self.locate(path, node);
        self.d.push(Severity::Error, path, Some(at), msg, help);
    }

    /// The node's own position, else that of the key that introduced it (or an ancestor's).
    fn locate(&self, path: &str, node: &MarkedYamlOwned) -> (usize, usize) {
        if let Some(p) = pos_of(node) {
            return p;
        }
        let mut p = path;
        loop {
            if let Some(at) = self.key_pos.get(p) {
                return *at;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }

    fn warn(&mut self, path: &str, node: &MarkedYamlOwned, msg: impl Into<String>, help: impl Into<String>) {
        let at = self.locate(path, node);
        self.d.push(Severity::Warning, path, Some(at), msg, help);
    }

    /// A mapping's fields, reporting unknown keys (with a suggestion) and a wrong node kind.
    fn mapping<'a>(&mut self, path: &str, node: &'a MarkedYamlOwned, allowed: &[&str]) -> Option<Fields<'a>> {
        let YamlDataOwned::Mapping(map) = &node.data else {
            let shown = if path.is_empty() { "the document" } else { path };
            self.err(
                path,
                node,
                format!("expected a mapping, found {}", kind(node)),
                format!("write {shown} as `key: value` lines"),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let YamlDataOwned::Value(ScalarOwned::String(key)) = &k.data else {
                self.err(
                    path,
                    k,
                    format!("keys must be strings, found {}", kind(k)),
                    "quote the key or rename it",
                );
                continue;
            };
            let child = join(path, key);
            if let Some(at) = pos_of(k) {
                self.key_pos.insert(child.clone(), at);
            }
            if !allowed.contains(&key.as_str()) {
                let help = match closest(key, allowed) {
                    Some(s) => format!("did you mean `{s}`? known keys here: {}", allowed.join(", ")),
                    None => format!("remove it; known keys here: {}", allowed.join(", ")),
                };
                self.err(&child, k, format!("unknown key `{key}`"), help);
                continue;
            }
            out.insert(key.clone(), (k, v));
        }
        Some(out)
    }

    fn required<'a>(
        &mut self,
        path: &str,
        parent: &MarkedYamlOwned,
        fields: &Fields<'a>,
        key: &str,
        example: &str,
    ) -> Option<&'a MarkedYamlOwned> {
        match fields.get(key) {
            Some((_, v)) => Some(v),
            None => {
                self.err(
                    &join(path, key),
                    parent,
                    format!("missing required key `{key}`"),
                    format!("add `{key}: {example}`"),
                );
                None
            }
        }
    }

    fn string(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<String> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => Some(s.clone()),
            _ => {
                self.err(path, node, format!("expected a string, found {}", kind(node)), "quote the value");
                None
            }
        }
    }

    /// An optional string field `section.key` that must satisfy `valid`; an invalid value is
    /// reported as "`value` is not <what>" and clears `ok`.
    #[allow(clippy::too_many_arguments)]
    fn checked(
        &mut self,
        fields: &Fields<'_>,
        section: &str,
        key: &str,
        valid: fn(&str) -> bool,
        what: &str,
        help: &str,
        ok: &mut bool,
    ) -> Option<String> {
        let (_, node) = fields.get(key)?;
        let path = join(section, key);
        let value = self.string(&path, node);
        match value {
            Some(v) if valid(&v) => Some(v),
            Some(v) => {
                self.err(&path, node, format!("`{v}` is not {what}"), help);
                *ok = false;
                None
            }
            None => {
                *ok = false;
                None
            }
        }
    }

    /// A scalar as text (numbers and booleans too, as extraArgs values are strings).
    fn scalar_text(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<String> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => Some(s.clone()),
            YamlDataOwned::Value(ScalarOwned::Integer(i)) => Some(i.to_string()),
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(b.to_string()),
            YamlDataOwned::Value(ScalarOwned::FloatingPoint(f)) => Some(f.to_string()),
            YamlDataOwned::Value(ScalarOwned::Null) => Some(String::new()),
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected a value, found {}", kind(node)),
                    "write a single value",
                );
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<bool> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(*b),
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected true or false, found {}", kind(node)),
                    "write `true` or `false`",
                );
                None
            }
        }
    }

    fn port(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<u16> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::Integer(i)) if (1..=65535).contains(i) => Some(*i as u16),
            YamlDataOwned::Value(ScalarOwned::Integer(i)) => {
                self.err(path, node, format!("port {i} is out of range"), "use a port from 1 to 65535");
                None
            }
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected a port number, found {}", kind(node)),
                    "write a number from 1 to 65535",
                );
                None
            }
        }
    }

    fn list<'a>(&mut self, path: &str, node: &'a MarkedYamlOwned) -> Option<&'a [MarkedYamlOwned]> {
        match &node.data {
            YamlDataOwned::Sequence(items) => Some(items),
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected a list, found {}", kind(node)),
                    "write one `- item` per line",
                );
                None
            }
        }
    }

    fn duration(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<u64> {
        let text = self.string(path, node)?;
        match parse_duration(&text) {
            Some(0) => {
                self.err(
                    path,
                    node,
                    format!("duration `{text}` is not positive"),
                    "use a positive duration such as 8760h",
                );
                None
            }
            Some(s) => Some(s),
            None => {
                self.err(
                    path,
                    node,
                    format!("`{text}` is not a duration"),
                    "write a duration such as 8760h, 90m, 365d or 10y",
                );
                None
            }
        }
    }

    fn topology(&mut self, root: &MarkedYamlOwned, files: &dyn FileSource) -> Option<Topology> {
        let f =
            self.mapping("", root, &["cluster", "kubernetesVersion", "pki", "etcd", "kubelet", "members"])?;
        let cluster = self.required("", root, &f, "cluster", "prod-etcd").and_then(|n| {
            let s = self.string("cluster", n)?;
            if !is_dns1123_subdomain(&s) {
                self.err(
                    "cluster",
                    n,
                    format!("cluster name `{s}` is not a DNS-1123 subdomain"),
                    "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
                );
                return None;
            }
            Some(s)
        });
        let version = self.required("", root, &f, "kubernetesVersion", "v1.34.2").and_then(|n| {
            let s = self.string("kubernetesVersion", n)?;
            let Some(v) = KubeVersion::parse(&s) else {
                self.err("kubernetesVersion", n, format!("`{s}` is not a Kubernetes version"), "write it as v1.MINOR.PATCH, for example v1.34.2");
                return None;
            };
            let Some(release) = versions::release(&v) else {
                self.err("kubernetesVersion", n, format!("kubernetesVersion {v} is not supported"), format!("etcdpack knows kubeadm {}; choose one of those (pin etcd.imageTag for an etcd image the table does not list)", versions::supported_range()));
                return None;
            };
            Some((v, release, n))
        });
        let pki = self.pki(f.get("pki").map(|x| x.1), version.as_ref().map(|v| v.1), files);
        let etcd = self.etcd(f.get("etcd").map(|x| x.1), version.as_ref().map(|v| v.1), files);
        let kubelet = self.kubelet(f.get("kubelet").map(|x| x.1));
        let members = self.members(root, &f);
        let (cluster, (kubernetes_version, release, _), pki, etcd, kubelet, members) =
            (cluster?, version?, pki?, etcd?, kubelet?, members?);
        Some(Topology { cluster, kubernetes_version, release, pki, etcd, kubelet, members })
    }

    fn pki(
        &mut self,
        node: Option<&MarkedYamlOwned>,
        release: Option<&'static Release>,
        files: &dyn FileSource,
    ) -> Option<PkiSettings> {
        let mut out = PkiSettings {
            key_algorithm: KeyAlgorithm::Rsa2048,
            ca_validity_secs: DEFAULT_CA_VALIDITY,
            cert_validity_secs: DEFAULT_CERT_VALIDITY,
            ca_key_on_first_member: true,
            existing_ca: None,
        };
        let Some(node) = node else { return Some(out) };
        let f = self.mapping(
            "pki",
            node,
            &["keyAlgorithm", "caValidity", "certValidity", "caKeyOnFirstMember", "existingCA"],
        )?;
        let mut ok = true;
        if let Some((_, n)) = f.get("keyAlgorithm") {
            match self.string("pki.keyAlgorithm", n).map(|s| (s.parse::<KeyAlgorithm>(), s)) {
                Some((Ok(alg), _)) => {
                    out.key_algorithm = alg;
                    if let Some(r) = release {
                        if alg == KeyAlgorithm::EcdsaP384 && r.minor < 34 {
                            self.err(
                                "pki.keyAlgorithm",
                                n,
                                format!(
                                    "ECDSA-P384 needs kubeadm 1.34 or later, the topology targets 1.{}",
                                    r.minor
                                ),
                                "use ECDSA-P256 or raise kubernetesVersion to v1.34",
                            );
                            ok = false;
                        }
                        if matches!(alg, KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096) && r.minor < 31 {
                            self.err("pki.keyAlgorithm", n, format!("{alg} needs kubeadm 1.31 or later (v1beta4 encryptionAlgorithm), the topology targets 1.{}", r.minor), "use RSA-2048 or ECDSA-P256 (the PublicKeysECDSA feature gate) before 1.31");
                            ok = false;
                        }
                    }
                }
                Some((Err(()), s)) => {
                    let names: Vec<&str> = ALGORITHMS.iter().map(|a| a.name()).collect();
                    self.err(
                        "pki.keyAlgorithm",
                        n,
                        format!("unknown key algorithm `{s}`"),
                        format!("use one of {}", names.join(", ")),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some((_, n)) = f.get("caValidity") {
            match self.duration("pki.caValidity", n) {
                Some(s) => out.ca_validity_secs = s,
                None => ok = false,
            }
        }
        if let Some((_, n)) = f.get("certValidity") {
            match self.duration("pki.certValidity", n) {
                Some(s) => out.cert_validity_secs = s,
                None => ok = false,
            }
        }
        if out.cert_validity_secs > out.ca_validity_secs {
            let n = f.get("certValidity").or(f.get("caValidity")).map(|x| x.1).unwrap_or(node);
            self.warn(
                "pki.certValidity",
                n,
                "leaf validity is longer than the CA's: leaves will outlive their CA",
                "shorten pki.certValidity or lengthen pki.caValidity",
            );
        }
        if let Some((_, n)) = f.get("caKeyOnFirstMember") {
            match self.boolean("pki.caKeyOnFirstMember", n) {
                Some(b) => out.ca_key_on_first_member = b,
                None => ok = false,
            }
        }
        if let Some((_, n)) = f.get("existingCA") {
            match self.existing_ca(n, files) {
                Some(ca) => out.existing_ca = Some(ca),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn existing_ca(&mut self, node: &MarkedYamlOwned, files: &dyn FileSource) -> Option<ExistingCa> {
        let f = self.mapping("pki.existingCA", node, &["cert", "key"])?;
        let cert_path = self
            .required("pki.existingCA", node, &f, "cert", "ca.crt")
            .and_then(|n| Some((self.string("pki.existingCA.cert", n)?, n)));
        let key_path = self
            .required("pki.existingCA", node, &f, "key", "ca.key")
            .and_then(|n| Some((self.string("pki.existingCA.key", n)?, n)));
        let (cert_path, cert_node) = cert_path?;
        let (key_path, key_node) = key_path?;
        let cert = files.read(&cert_path).map_err(|e| {
            self.err(
                "pki.existingCA.cert",
                cert_node,
                format!("cannot read `{cert_path}`: {e}"),
                "give the path of the CA certificate, relative to the topology file",
            );
        });
        let key = files.read(&key_path).map_err(|e| {
            self.err(
                "pki.existingCA.key",
                key_node,
                format!("cannot read `{key_path}`: {e}"),
                "give the path of the CA private key, relative to the topology file",
            );
        });
        let (cert, key) = (cert.ok()?, key.ok()?);
        let cert_pem = String::from_utf8_lossy(&cert).into_owned();
        let key_pem = String::from_utf8_lossy(&key).into_owned();
        let parsed = match crate::x509::parse_pem(&cert_pem) {
            Ok(c) => c,
            Err(e) => {
                self.err(
                    "pki.existingCA.cert",
                    cert_node,
                    format!("`{cert_path}` is not a PEM certificate: {e}"),
                    "point cert at the CA's PEM certificate (ca.crt)",
                );
                return None;
            }
        };
        if !parsed.is_ca {
            self.err(
                "pki.existingCA.cert",
                cert_node,
                format!("`{cert_path}` is not a CA certificate (basicConstraints CA:TRUE missing)"),
                "use the etcd CA's own certificate, not a leaf",
            );
            return None;
        }
        let key = match PrivateKey::from_pem(&key_pem) {
            Ok(k) => k,
            Err(e) => {
                self.err(
                    "pki.existingCA.key",
                    key_node,
                    format!("`{key_path}` is not a usable private key: {e}"),
                    "use an RSA or ECDSA (P-256/P-384) key in PEM",
                );
                return None;
            }
        };
        if key.public_key_der() != parsed.spki_der {
            self.err(
                "pki.existingCA.key",
                key_node,
                format!("`{key_path}` does not match the certificate `{cert_path}`"),
                "give the key that belongs to this CA certificate",
            );
            return None;
        }
        Some(ExistingCa { cert: cert_path, key: key_path, cert_pem, key_pem })
    }

    fn etcd(
        &mut self,
        node: Option<&MarkedYamlOwned>,
        release: Option<&'static Release>,
        files: &dyn FileSource,
    ) -> Option<EtcdSettings> {
        let mut out = EtcdSettings {
            image_repository: None,
            image_tag: None,
            data_dir: None,
            client_port: 2379,
            peer_port: 2380,
            extra_args: Vec::new(),
            image_archive: None,
        };
        let Some(node) = node else { return Some(out) };
        let f = self.mapping(
            "etcd",
            node,
            &[
                "imageRepository",
                "imageTag",
                "dataDir",
                "clientPort",
                "peerPort",
                "extraArgs",
                "imageArchive",
            ],
        )?;
        let mut ok = true;
        if let Some(v) = self.checked(
            &f,
            "etcd",
            "imageRepository",
            is_image_repository,
            "an image repository",
            "write a registry path such as registry.example.com/k8s",
            &mut ok,
        ) {
            out.image_repository = Some(v.trim_end_matches('/').to_string());
        }
        out.image_tag = self.checked(
            &f,
            "etcd",
            "imageTag",
            is_image_tag,
            "a valid image tag",
            "use letters, digits, '.', '_' and '-' (at most 128), for example 3.6.5-0",
            &mut ok,
        );
        if let Some(v) = self.checked(
            &f,
            "etcd",
            "dataDir",
            is_clean_abs_path,
            "a clean absolute path",
            "write an absolute path without spaces, `..` or `//`, such as /var/lib/etcd",
            &mut ok,
        ) {
            out.data_dir = Some(v.trim_end_matches('/').to_string());
        }
        for (key, slot) in [("clientPort", &mut out.client_port), ("peerPort", &mut out.peer_port)] {
            if let Some((_, n)) = f.get(key) {
                match self.port(&format!("etcd.{key}"), n) {
                    Some(p) => *slot = p,
                    None => ok = false,
                }
            }
        }
        if out.client_port == out.peer_port {
            let n = f.get("peerPort").or(f.get("clientPort")).map(|x| x.1).unwrap_or(node);
            self.err(
                "etcd.peerPort",
                n,
                format!("client and peer ports are both {}", out.client_port),
                "give the peer port its own number (kubeadm uses 2379 for clients and 2380 for peers)",
            );
            ok = false;
        }
        for (key, p) in [("clientPort", out.client_port), ("peerPort", out.peer_port)] {
            if p == 2381 {
                let n = f.get(key).map(|x| x.1).unwrap_or(node);
                self.err(
                    &format!("etcd.{key}"),
                    n,
                    "port 2381 is the metrics port of kubeadm's etcd manifest",
                    "choose another port",
                );
                ok = false;
            }
        }
        if let Some((_, n)) = f.get("extraArgs") {
            match self.extra_args(n, release) {
                Some(a) => out.extra_args = a,
                None => ok = false,
            }
        }
        if let Some((_, n)) = f.get("imageArchive") {
            match self.string("etcd.imageArchive", n) {
                Some(path) => {
                    let file_name = path.rsplit('/').next().unwrap_or_default().to_string();
                    if !file_name.ends_with(".tar") || !is_safe_file_name(&file_name) {
                        self.err("etcd.imageArchive", n, format!("`{path}` is not a .tar image archive"), "give the path of an image saved with `ctr images export` or `docker save`, ending in .tar");
                        ok = false;
                    } else {
                        match files.read(&path) {
                            Ok(bytes) => {
                                out.image_archive =
                                    Some(ImageArchive { path, file_name, bytes: Arc::new(bytes) })
                            }
                            Err(e) => {
                                self.err(
                                    "etcd.imageArchive",
                                    n,
                                    format!("cannot read `{path}`: {e}"),
                                    "give the archive's path relative to the topology file",
                                );
                                ok = false
                            }
                        }
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn extra_args(&mut self, node: &MarkedYamlOwned, release: Option<&'static Release>) -> Option<Vec<Arg>> {
        let mut args: Vec<(Arg, &MarkedYamlOwned)> = Vec::new();
        let mut ok = true;
        match &node.data {
            YamlDataOwned::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("etcd.extraArgs[{i}]");
                    let Some(f) = self.mapping(&path, item, &["name", "value"]) else {
                        ok = false;
                        continue;
                    };
                    let name = self
                        .required(&path, item, &f, "name", "snapshot-count")
                        .and_then(|n| Some((self.string(&format!("{path}.name"), n)?, n)));
                    let value = self
                        .required(&path, item, &f, "value", "\"20000\"")
                        .and_then(|n| self.scalar_text(&format!("{path}.value"), n));
                    match (name, value) {
                        (Some((name, n)), Some(value)) => args.push((Arg { name, value }, n)),
                        _ => ok = false,
                    }
                }
            }
            YamlDataOwned::Mapping(_) => {
                let YamlDataOwned::Mapping(map) = &node.data else { unreachable!() };
                for (k, v) in map {
                    let name = self.scalar_text("etcd.extraArgs", k);
                    let value =
                        name.as_ref().and_then(|name| self.scalar_text(&join("etcd.extraArgs", name), v));
                    match (name, value) {
                        (Some(name), Some(value)) => args.push((Arg { name, value }, k)),
                        _ => ok = false,
                    }
                }
            }
            _ => {
                self.err(
                    "etcd.extraArgs",
                    node,
                    format!("expected a list of {{name, value}}, found {}", kind(node)),
                    "write `- { name: snapshot-count, value: \"20000\" }` entries",
                );
                return None;
            }
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, (arg, n)) in args.iter().enumerate() {
            let path = format!("etcd.extraArgs[{i}].name");
            if arg.name.is_empty()
                || arg.name.starts_with('-')
                || !arg.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            {
                self.err(
                    &path,
                    n,
                    format!("`{}` is not an etcd flag name", arg.name),
                    "write the flag without leading dashes, such as snapshot-count",
                );
                ok = false;
            }
            if let Some(first) = seen.insert(arg.name.clone(), i)
                && release.is_some_and(|r| r.config_api == versions::ConfigApi::V1Beta3)
            {
                self.err(
                    &path,
                    n,
                    format!("`{}` is given twice (first at extraArgs[{first}])", arg.name),
                    "kubeadm v1beta3 extraArgs is a map: give each flag once",
                );
                ok = false;
            }
        }
        ok.then(|| args.into_iter().map(|(a, _)| a).collect())
    }

    fn kubelet(&mut self, node: Option<&MarkedYamlOwned>) -> Option<KubeletSettings> {
        let mut out = KubeletSettings {
            cgroup_driver: "systemd".into(),
            container_runtime_endpoint: "unix:///var/run/containerd/containerd.sock".into(),
            path: "/usr/bin/kubelet".into(),
        };
        let Some(node) = node else { return Some(out) };
        let f = self.mapping("kubelet", node, &["cgroupDriver", "containerRuntimeEndpoint", "path"])?;
        let mut ok = true;
        if let Some(v) = self.checked(
            &f,
            "kubelet",
            "cgroupDriver",
            |s| s == "systemd" || s == "cgroupfs",
            "a cgroup driver",
            "use `systemd` or `cgroupfs`, matching the container runtime",
            &mut ok,
        ) {
            out.cgroup_driver = v;
        }
        if let Some(v) = self.checked(
            &f,
            "kubelet",
            "containerRuntimeEndpoint",
            |s| s.starts_with("unix:///") && !s.contains(char::is_whitespace),
            "a unix socket URL",
            "write it like unix:///var/run/containerd/containerd.sock",
            &mut ok,
        ) {
            out.container_runtime_endpoint = v;
        }
        if let Some(v) = self.checked(
            &f,
            "kubelet",
            "path",
            is_clean_abs_path,
            "a clean absolute path",
            "write the kubelet binary's absolute path, such as /usr/bin/kubelet",
            &mut ok,
        ) {
            out.path = v;
        }
        ok.then_some(out)
    }

    fn members(&mut self, root: &MarkedYamlOwned, f: &Fields<'_>) -> Option<Vec<Member>> {
        let node = self.required("", root, f, "members", "[{ name: infra0, address: 10.0.0.6 }]")?;
        let items = self.list("members", node)?;
        if items.is_empty() {
            self.err("members", node, "no members", "list at least one member with a name and an address");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut addrs: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("members[{i}]");
            let Some(mf) = self.mapping(&path, item, &["name", "address", "certSANs"]) else {
                ok = false;
                continue;
            };
            let name = self.required(&path, item, &mf, "name", "infra0").and_then(|n| {
                let s = self.string(&format!("{path}.name"), n)?;
                if !is_dns1123_subdomain(&s) {
                    self.err(&format!("{path}.name"), n, format!("member name `{s}` is not a DNS-1123 subdomain"), "use lowercase letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit");
                    return None;
                }
                if let Some(first) = names.insert(s.clone(), i) {
                    self.err(&format!("{path}.name"), n, format!("member name `{s}` is already used by members[{first}]"), "give every member its own name");
                    return None;
                }
                Some(s)
            });
            let address = self.required(&path, item, &mf, "address", "10.0.0.6").and_then(|n| {
                let s = self.string(&format!("{path}.address"), n)?;
                let Ok(ip) = s.parse::<IpAddr>() else {
                    self.err(&format!("{path}.address"), n, format!("`{s}` is not an IP address"), "write an IPv4 or IPv6 literal such as 10.0.0.6 or fd00::6 (no brackets, no port, no host name)");
                    return None;
                };
                if ip.is_unspecified() || ip.is_multicast() {
                    self.err(&format!("{path}.address"), n, format!("`{s}` cannot be a member's address"), "use the address etcd peers reach this host on");
                    return None;
                }
                if let Some(first) = addrs.insert(ip, i) {
                    self.err(&format!("{path}.address"), n, format!("address {ip} is already used by members[{first}]"), "give every member its own address");
                    return None;
                }
                Some(ip)
            });
            let mut sans = Vec::new();
            let mut sans_ok = true;
            if let Some((_, n)) = mf.get("certSANs") {
                match self.list(&format!("{path}.certSANs"), n) {
                    Some(list) => {
                        for (j, san) in list.iter().enumerate() {
                            let sp = format!("{path}.certSANs[{j}]");
                            match self.string(&sp, san) {
                                Some(s)
                                    if s.parse::<IpAddr>().is_ok()
                                        || is_dns1123_subdomain(&s)
                                        || is_wildcard_dns(&s) =>
                                {
                                    sans.push(s)
                                }
                                Some(s) => {
                                    self.err(&sp, san, format!("`{s}` is neither an IP address nor a DNS name"), "write an IP literal or a DNS name such as etcd0.example.com (kubeadm would drop it with a warning)");
                                    sans_ok = false
                                }
                                None => sans_ok = false,
                            }
                        }
                    }
                    None => sans_ok = false,
                }
            }
            match (name, address, sans_ok) {
                (Some(name), Some(address), true) => out.push(Member { name, address, cert_sans: sans }),
                _ => ok = false,
            }
        }
        if items.len() % 2 == 0 {
            self.warn(
                "members",
                node,
                format!(
                    "{} members: an even count adds no failure tolerance over {}",
                    items.len(),
                    items.len() - 1
                ),
                "use an odd number of members (3, 5 or 7)",
            );
        }
        if items.len() > 7 {
            self.warn(
                "members",
                node,
                format!("{} members: more than 7 slows every write for little gain", items.len()),
                "etcd recommends at most 7 voting members",
            );
        }
        ok.then_some(out)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn closest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    options
        .iter()
        .map(|o| (edit_distance(&lower, &o.to_ascii_lowercase()), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 4))
        .min()
        .map(|(_, o)| o)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses kubeadm-style durations (`87600h`, `1h30m`, `90s`) plus `d` and `y` (365d).
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'y' => 365 * 86400,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

/// RFC 1123 subdomain as Kubernetes validates it.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_wildcard_dns(s: &str) -> bool {
    s.strip_prefix("*.").is_some_and(is_dns1123_subdomain)
}

fn is_image_repository(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._:/".contains(c))
}

fn is_image_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !s.starts_with(['.', '-'])
}

fn is_clean_abs_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.contains("//")
        && !s.split('/').any(|c| c == ".." || c == ".")
        && s.chars().all(|c| c.is_ascii_graphic() && !"\"'\\$`;&|<>*?#{}".contains(c))
}

fn is_safe_file_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("87600h"), Some(87600 * 3600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("10y"), Some(3650 * 86400));
        assert_eq!(parse_duration("365d"), Some(365 * 86400));
        assert_eq!(parse_duration("0s"), Some(0));
        assert_eq!(parse_duration("12"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration("1.5h"), None);
    }

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("infra0"));
        assert!(is_dns1123_subdomain("etcd-0.corp.example"));
        assert!(!is_dns1123_subdomain("Infra0"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(&"a".repeat(64)));
        assert!(is_wildcard_dns("*.etcd.example"));
        assert_eq!(closest("adress", &["name", "address", "certSANs"]), Some("address"));
        assert_eq!(closest("zzzzzz", &["name", "address"]), None);
    }
}
