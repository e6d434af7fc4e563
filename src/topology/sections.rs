//! The rules of each section of the topology file: what each key may hold, its default, and
//! the checks across keys (ports, versions and algorithms, members' names and addresses).

use super::syntax::{
    is_clean_abs_path, is_dns1123_subdomain, is_image_repository, is_image_tag, is_safe_file_name,
    is_wildcard_dns,
};
use super::walker::{Fields, Walker, closest, join, kind};
use super::*;
use crate::keys::{ALGORITHMS, PrivateKey};
use crate::versions;
use saphyr::{MarkedYamlOwned, YamlDataOwned};

impl Walker {
    pub(super) fn topology(&mut self, root: &MarkedYamlOwned, files: &dyn FileSource) -> Option<Topology> {
        let f = self.mapping(
            "",
            root,
            &[
                "cluster",
                "kubernetesVersion",
                "kubeadmConfigApi",
                "pki",
                "etcd",
                "kubelet",
                "monitoring",
                "members",
            ],
        )?;
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
                self.err("kubernetesVersion", n, format!("{v} is not a kubeadm release etcdpack knows"), format!("etcdpack imitates kubeadm {}; choose the kubeadm release your control plane runs within that range", versions::supported_range()));
                return None;
            };
            Some((v, release, n))
        });
        let release = version.as_ref().map(|v| v.1);
        let config_api = self.config_api(&f, release);
        let pki = self.pki(f.get("pki").map(|x| x.1), config_api, release, files);
        let default_tag = version.as_ref().map(|(v, r, _)| r.etcd_tag(v.patch).tag);
        let patch = version.as_ref().map(|(v, _, _)| v.patch).unwrap_or_default();
        let etcd = self.etcd(f.get("etcd").map(|x| x.1), config_api, release, patch, default_tag, files);
        let kubelet = self.kubelet(f.get("kubelet").map(|x| x.1));
        if let (Some(e), Some((_, n))) = (&etcd, f.get("kubelet"))
            && e.runtime == crate::layout::Runtime::Systemd
        {
            self.warn(
                "kubelet",
                n,
                "the kubelet section is unused: with `runtime: systemd` no kubelet runs etcd",
                "remove the kubelet section",
            );
        }
        let monitoring = self.monitoring(f.get("monitoring").map(|x| x.1));
        let members = self.members(root, &f);
        if let (Some((v, release, n)), Some(etcd)) = (&version, &etcd)
            && etcd.image_tag.is_none()
        {
            let tag = release.etcd_tag(v.patch);
            if !tag.known {
                let seen = match release.last_known_patch {
                    Some(last) => {
                        format!("the newest patch release etcdpack knows is v1.{}.{last}", release.minor)
                    }
                    None => format!("no GA release of 1.{} was known when etcdpack was made", release.minor),
                };
                self.warn("kubernetesVersion", n, format!("{v} is newer than etcdpack's etcd image table ({seen}); assuming etcd {}", tag.tag), format!("check `kubeadm config images list --kubernetes-version {v}` and pin that tag as etcd.imageTag"));
            }
        }
        let (cluster, (kubernetes_version, release, _), config_api, pki, etcd, kubelet, monitoring, members) =
            (cluster?, version?, config_api?, pki?, etcd?, kubelet?, monitoring?, members?);
        Some(Topology {
            cluster,
            kubernetes_version,
            release,
            config_api,
            pki,
            etcd,
            kubelet,
            monitoring,
            members,
        })
    }

    /// `kubeadmConfigApi`: the guide's API for the release unless chosen, and only an API
    /// that release reads.
    fn config_api(&mut self, f: &Fields<'_>, release: Option<&'static Release>) -> Option<ConfigApi> {
        let Some((_, n)) = f.get("kubeadmConfigApi") else { return release.map(|r| r.config_api) };
        let s = self.string("kubeadmConfigApi", n)?;
        let api = match s.as_str() {
            "v1beta3" | "kubeadm.k8s.io/v1beta3" => ConfigApi::V1Beta3,
            "v1beta4" | "kubeadm.k8s.io/v1beta4" => ConfigApi::V1Beta4,
            _ => {
                self.err(
                    "kubeadmConfigApi",
                    n,
                    format!("`{s}` is not a kubeadm config API"),
                    "write v1beta3 or v1beta4",
                );
                return None;
            }
        };
        let r = release?;
        match api {
            ConfigApi::V1Beta3 if !r.accepts_v1beta3 => {
                self.err(
                    "kubeadmConfigApi",
                    n,
                    format!("kubeadm 1.{} no longer reads v1beta3 (removed in 1.37, PR #136016)", r.minor),
                    "use v1beta4, or remove kubeadmConfigApi",
                );
                None
            }
            ConfigApi::V1Beta4 if r.minor < 31 => {
                self.err(
                    "kubeadmConfigApi",
                    n,
                    format!("kubeadm 1.{} does not read v1beta4 (enabled in 1.31)", r.minor),
                    "use v1beta3, or remove kubeadmConfigApi",
                );
                None
            }
            _ => Some(api),
        }
    }

    pub(super) fn pki(
        &mut self,
        node: Option<&MarkedYamlOwned>,
        config_api: Option<ConfigApi>,
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
                        if matches!(
                            alg,
                            KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 | KeyAlgorithm::EcdsaP384
                        ) && config_api == Some(ConfigApi::V1Beta3)
                            && (alg != KeyAlgorithm::EcdsaP384 || r.minor >= 34)
                        {
                            self.err("pki.keyAlgorithm", n, format!("{alg} needs the v1beta4 config API (encryptionAlgorithm), and this topology writes v1beta3 for 1.{}", r.minor), "use RSA-2048 or ECDSA-P256 (the PublicKeysECDSA feature gate) with v1beta3");
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

    pub(super) fn existing_ca(
        &mut self,
        node: &MarkedYamlOwned,
        files: &dyn FileSource,
    ) -> Option<ExistingCa> {
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

    pub(super) fn etcd(
        &mut self,
        node: Option<&MarkedYamlOwned>,
        config_api: Option<ConfigApi>,
        release: Option<&'static Release>,
        patch: u32,
        default_tag: Option<&'static str>,
        files: &dyn FileSource,
    ) -> Option<EtcdSettings> {
        let default_order = release.map(|r| r.arg_order(patch)).unwrap_or(ArgOrder::Sorted);
        let mut out = EtcdSettings {
            image_repository: None,
            image_tag: None,
            data_dir: None,
            client_port: 2379,
            peer_port: 2380,
            extra_args: Vec::new(),
            arg_order: default_order,
            arg_order_given: false,
            image_archive: None,
            runtime: crate::layout::Runtime::StaticPod,
            binary: None,
            user: None,
            binary_archive: None,
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
                "extraArgsOrder",
                "imageArchive",
                "runtime",
                "binary",
                "user",
                "binaryArchive",
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
        if let Some((_, n)) = f.get("extraArgsOrder")
            && let Some(s) = self.string("etcd.extraArgsOrder", n)
        {
            let allowed =
                release.map(|r| r.arg_orders(patch)).unwrap_or(&[ArgOrder::Sorted, ArgOrder::Appended]);
            match allowed.iter().find(|o| o.name() == s) {
                Some(o) => {
                    out.arg_order = *o;
                    out.arg_order_given = true;
                }
                None => {
                    let names: Vec<&str> = allowed.iter().map(|o| o.name()).collect();
                    let minor = release.map(|r| format!("kubeadm 1.{}", r.minor)).unwrap_or_default();
                    self.err("etcd.extraArgsOrder", n, format!("`{s}` is not an argument order {minor} uses"), format!("use {} (`appended` is the default from v1.32.12, v1.33.8, v1.34.4 and v1.35.1, which carry PR #135400's backport, and the only order from 1.36; leave the key out to follow kubernetesVersion)", names.join(" or ")));
                    ok = false;
                }
            }
        }
        if let Some((_, n)) = f.get("extraArgs") {
            let tag = out.image_tag.as_deref().or(default_tag).unwrap_or_default();
            match self.extra_args(n, config_api, tag) {
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
        if !self.etcd_runtime(&f, default_tag, files, &mut out) {
            ok = false;
        }
        ok.then_some(out)
    }

    /// `runtime` and the systemd runtime's `binary`, `user` and `binaryArchive`.
    fn etcd_runtime(
        &mut self,
        f: &Fields<'_>,
        default_tag: Option<&str>,
        files: &dyn FileSource,
        out: &mut EtcdSettings,
    ) -> bool {
        use crate::layout::Runtime;
        let mut ok = true;
        if let Some((_, n)) = f.get("runtime")
            && let Some(s) = self.string("etcd.runtime", n)
        {
            match Runtime::from_name(Some(&s)) {
                Some(r) => out.runtime = r,
                None => {
                    self.err("etcd.runtime", n, format!("`{s}` is not an etcd runtime"), "use `static-pod` (a kubelet runs etcd, as in the kubeadm guide) or `systemd` (etcd.service runs the etcd binary)");
                    ok = false;
                }
            }
        }
        let systemd = out.runtime == Runtime::Systemd;
        // The systemd runtime's keys mean nothing to a static pod, and the reverse.
        for key in ["binary", "user", "binaryArchive"] {
            if let Some((_, n)) = f.get(key).filter(|_| !systemd) {
                self.err(
                    &format!("etcd.{key}"),
                    n,
                    format!("etcd.{key} applies to the systemd runtime only"),
                    "add `runtime: systemd` to the etcd section, or remove this key",
                );
                ok = false;
            }
        }
        if let Some((_, n)) = f.get("imageArchive").filter(|_| systemd) {
            self.err(
                "etcd.imageArchive",
                n,
                "etcd.imageArchive is a container image, and the systemd runtime runs no containers",
                "use etcd.binaryArchive (an etcd release .tar.gz) with `runtime: systemd`, or remove it",
            );
            ok = false;
        }
        out.binary = self.checked(
            f,
            "etcd",
            "binary",
            is_clean_abs_path,
            "a clean absolute path",
            "write the etcd binary's absolute path, such as /usr/bin/etcd",
            &mut ok,
        );
        out.user = self.checked(
            f,
            "etcd",
            "user",
            is_user_name,
            "a user name",
            "write a login name of lowercase letters, digits, '_' and '-' (at most 32), such as etcd",
            &mut ok,
        );
        if let Some((_, n)) = f.get("binaryArchive").filter(|_| systemd)
            && let Some(path) = self.string("etcd.binaryArchive", n)
        {
            // Official etcd release archives are about 25 MiB.
            let archive = files
                .read_at_most(&path, MAX_BINARY_ARCHIVE)
                .map_err(|e| {
                    let help = if e.contains("larger than") {
                        "an etcd release archive is about 25 MiB: give the release .tar.gz itself"
                    } else {
                        "give the archive's path relative to the topology file"
                    };
                    (format!("cannot read `{path}`: {e}"), help)
                })
                .and_then(|bytes| {
                    etcd_binaries(&bytes).map_err(|why| {
                        (format!("`{path}` is not an etcd release archive: {why}"), "give an etcd release .tar.gz as published (etcd-v3.5.24-linux-amd64.tar.gz), holding etcd, etcdctl and etcdutl in one folder")
                    })
                });
            match archive {
                Ok((version, binaries)) => {
                    if let Some(b) = out.binary.as_deref().filter(|b| *b != ARCHIVE_ETCD_BINARY) {
                        self.err(
                            "etcd.binary",
                            n,
                            format!(
                                "etcd.binary is {b}, but etcd.binaryArchive installs {ARCHIVE_ETCD_BINARY}"
                            ),
                            "remove etcd.binary (it defaults to the archive's) or etcd.binaryArchive",
                        );
                        ok = false;
                    }
                    let tag = out.image_tag.as_deref().or(default_tag).unwrap_or_default();
                    let tag_version = tag.split('-').next().unwrap_or_default();
                    if let Some(v) = version.as_deref().filter(|v| *v != tag_version) {
                        self.warn("etcd.binaryArchive", n, format!("the archive holds etcd {v}, but the flags are those kubeadm writes for etcd {tag}"), format!("ship the etcd {tag_version} release, or pin etcd.imageTag to {v}-0 so the flags match the binary"));
                    }
                    out.binary_archive = Some(BinaryArchive { path, version, binaries });
                }
                Err((msg, help)) => {
                    self.err("etcd.binaryArchive", n, msg, help);
                    ok = false;
                }
            }
        }
        ok
    }

    pub(super) fn extra_args(
        &mut self,
        node: &MarkedYamlOwned,
        config_api: Option<ConfigApi>,
        tag: &str,
    ) -> Option<Vec<Arg>> {
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
        let known = crate::etcdflags::known_flags(tag);
        let known_list: Vec<&str> = known.iter().copied().collect();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, (arg, n)) in args.iter().enumerate() {
            let path = format!("etcd.extraArgs[{i}].name");
            if arg.name.is_empty()
                || arg.name.starts_with('-')
                || !arg.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            {
                let bare = arg.name.trim_start_matches('-');
                let help = if arg.name.starts_with('-') && known.contains(bare) {
                    format!("write it without the leading dashes: `{bare}`")
                } else {
                    "write the flag without leading dashes, such as snapshot-count".to_string()
                };
                self.err(&path, n, format!("`{}` is not an etcd flag name", arg.name), help);
                ok = false;
                continue;
            }
            if let Some(field) = crate::etcdflags::owned_by_topology(&arg.name) {
                self.err(
                    &path,
                    n,
                    format!("`{}` is set by etcdpack from the topology", arg.name),
                    format!("remove it from extraArgs and set {field} instead"),
                );
                ok = false;
                continue;
            }
            if let Some(successor) = crate::etcdflags::removed_in_3_7(&arg.name, tag) {
                use crate::etcdflags::Successor;
                let help = match successor {
                    Successor::Flag(f) => format!("write `{f}` instead: the same setting without the prefix"),
                    Successor::FeatureGate("InitialCorruptCheck") => "remove it: kubeadm already gives etcd 3.6+ `--feature-gates=InitialCorruptCheck=true`".to_string(),
                    Successor::FeatureGate(g) => format!(
                        "give `feature-gates` the value `InitialCorruptCheck=true,{g}=true` instead: an extraArg `feature-gates` replaces kubeadm's `InitialCorruptCheck=true`, so keep that gate in the list"
                    ),
                };
                self.err(
                    &path,
                    n,
                    format!("`{}` was removed in etcd 3.7 (image tag {tag}): etcd would not start", arg.name),
                    help,
                );
                ok = false;
                continue;
            }
            if !known.contains(arg.name.as_str()) {
                let etcd = match crate::etcdflags::etcd_minor(tag) {
                    Some(m) => format!("etcd 3.{m} (image tag {tag})"),
                    None => format!("etcd (image tag {tag})"),
                };
                let help = match closest(&arg.name, &known_list) {
                    Some(s) => format!("did you mean `{s}`? `etcd --help` lists the flags of {etcd}"),
                    None => format!("check the name against `etcd --help` of {etcd}"),
                };
                self.err(&path, n, format!("`{}` is not a flag of {etcd}", arg.name), help);
                ok = false;
                continue;
            }
            if let Some(first) = seen.insert(arg.name.clone(), i) {
                if config_api == Some(versions::ConfigApi::V1Beta3) {
                    self.err(
                        &path,
                        n,
                        format!("`{}` is given twice (first at extraArgs[{first}])", arg.name),
                        "kubeadm v1beta3 extraArgs is a map: give each flag once",
                    );
                    ok = false;
                } else {
                    self.warn(
                        &path,
                        n,
                        format!("`{}` is given twice (first at extraArgs[{first}]): etcd gets both", arg.name),
                        "keep one unless the flag takes several values; etcd uses the last of a repeated single-value flag",
                    );
                }
            }
        }
        ok.then(|| args.into_iter().map(|(a, _)| a).collect())
    }

    pub(super) fn kubelet(&mut self, node: Option<&MarkedYamlOwned>) -> Option<KubeletSettings> {
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

    pub(super) fn monitoring(&mut self, node: Option<&MarkedYamlOwned>) -> Option<Monitoring> {
        let mut out = Monitoring { expiry_timer: true };
        let Some(node) = node else { return Some(out) };
        let f = self.mapping("monitoring", node, &["expiryTimer"])?;
        if let Some((_, n)) = f.get("expiryTimer") {
            out.expiry_timer = self.boolean("monitoring.expiryTimer", n)?;
        }
        Some(out)
    }

    pub(super) fn members(&mut self, root: &MarkedYamlOwned, f: &Fields<'_>) -> Option<Vec<Member>> {
        let node = self.required("", root, f, "members", "[{ name: infra0, address: 10.0.0.6 }]")?;
        let items = self.list("members", node)?;
        if items.is_empty() {
            self.err("members", node, "no members", "list at least one member with a name and an address");
            return None;
        }
        if items.len() > MAX_MEMBERS {
            self.err(
                "members",
                node,
                format!("{} members, more than the {MAX_MEMBERS} etcdpack builds for", items.len()),
                "etcd recommends at most 7 voting members; split the list or check that this is the right file",
            );
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
                if s == crate::layout::CONTROL_PLANE {
                    self.err(&format!("{path}.name"), n, format!("member name `{s}` is reserved for the control-plane bundle (dist/{s}.tar.gz)"), "give the member another name, such as etcd-cp0");
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
                if let Some(what) = host_local(&ip) {
                    let msg = format!("`{s}` is a {what} address, which other hosts cannot reach");
                    if items.len() > 1 {
                        self.err(&format!("{path}.address"), n, msg, "use the address the other members reach this host on");
                        return None;
                    }
                    self.warn(&format!("{path}.address"), n, msg, "fine for a one-member cluster on one host; use a routable address before adding members");
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

/// Loopback and link-local addresses only mean something on one host (or one link).
fn host_local(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        _ if ip.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        _ => None,
    }
}

/// The largest `etcd.binaryArchive` read.
const MAX_BINARY_ARCHIVE: u64 = 512 << 20;

/// A POSIX login name as useradd takes it.
fn is_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The binaries of an etcd release archive (gzip'd tar, one top folder
/// `etcd-vX.Y.Z-linux-ARCH/`): `etcd` (required), `etcdctl`, `etcdutl`, and the version the
/// folder names. Reading is bounded (entries, sizes), and links or odd paths are refused.
pub(super) fn etcd_binaries(bytes: &[u8]) -> Result<(Option<String>, Binaries), String> {
    use std::io::Read;
    const MAX_ENTRIES: usize = 1000;
    const MAX_BYTES: u64 = 1 << 30;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut found: BTreeMap<String, Arc<Vec<u8>>> = BTreeMap::new();
    let mut top: Option<String> = None;
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| format!("not a gzip'd tar ({e})"))?;
    for (i, entry) in entries.enumerate() {
        if i >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let mut entry = entry.map_err(|e| format!("not a gzip'd tar ({e})"))?;
        let path = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").trim_end_matches('/').to_string();
        let (dir, name) = match path.split_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (path.clone(), String::new()),
        };
        if path.is_empty() {
            continue;
        }
        if top.get_or_insert_with(|| dir.clone()) != &dir {
            return Err(format!("more than one top folder (`{}` and `{dir}`)", top.unwrap_or_default()));
        }
        if !crate::layout::ETCD_BINARIES.contains(&name.as_str()) {
            continue;
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(format!("`{path}` is not a regular file"));
        }
        total += entry.header().size().unwrap_or(u64::MAX);
        if total > MAX_BYTES {
            return Err("its binaries exceed 1 GiB".into());
        }
        let mut body = Vec::new();
        entry
            .by_ref()
            .take(MAX_BYTES)
            .read_to_end(&mut body)
            .map_err(|e| format!("not a gzip'd tar ({e})"))?;
        found.insert(name, Arc::new(body));
    }
    if !found.contains_key("etcd") {
        return Err("it holds no `etcd` binary".into());
    }
    let version = top
        .as_deref()
        .and_then(|t| t.strip_prefix("etcd-v"))
        .and_then(|rest| rest.split('-').next())
        .filter(|v| {
            v.split('.').count() == 3
                && v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string);
    // etcd first, then the tools in name order.
    let mut binaries: Binaries = Vec::new();
    if let Some(b) = found.remove("etcd") {
        binaries.push(("etcd".into(), b));
    }
    binaries.extend(found);
    Ok((version, binaries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, kind, body) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/shadow").unwrap();
            }
            b.append_data(&mut h, path, *body).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn an_etcd_release_archive_gives_its_binaries_and_version() {
        let f = tar::EntryType::Regular;
        let bytes = targz(&[
            ("etcd-v3.5.24-linux-amd64/README.md", f, b"docs"),
            ("etcd-v3.5.24-linux-amd64/etcdctl", f, b"ctl"),
            ("etcd-v3.5.24-linux-amd64/etcd", f, b"etcd"),
        ]);
        let (version, binaries) = etcd_binaries(&bytes).unwrap();
        assert_eq!(version.as_deref(), Some("3.5.24"));
        let names: Vec<(&str, &[u8])> = binaries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        assert_eq!(names, [("etcd", &b"etcd"[..]), ("etcdctl", &b"ctl"[..])]);
        // A folder that names no version still gives its binaries.
        let (version, _) = etcd_binaries(&targz(&[("etcd/etcd", f, b"x")])).unwrap();
        assert_eq!(version, None);
    }

    #[test]
    fn an_archive_that_is_not_an_etcd_release_is_refused_with_the_reason() {
        let f = tar::EntryType::Regular;
        let no_etcd = targz(&[("etcd-v3.5.24-linux-amd64/etcdctl", f, b"ctl")]);
        assert_eq!(etcd_binaries(&no_etcd).unwrap_err(), "it holds no `etcd` binary");
        let link = targz(&[("etcd-v3.5.24-linux-amd64/etcd", tar::EntryType::Symlink, b"")]);
        assert!(etcd_binaries(&link).unwrap_err().contains("is not a regular file"));
        let two = targz(&[("a/etcd", f, b"x"), ("b/etcdctl", f, b"y")]);
        assert!(etcd_binaries(&two).unwrap_err().contains("more than one top folder"));
        assert!(etcd_binaries(b"plain text").unwrap_err().starts_with("not a gzip'd tar"));
        assert!(
            is_user_name("etcd") && is_user_name("_etcd-2") && !is_user_name("Etcd") && !is_user_name("2x")
        );
    }
}
