//! The rules of each section of the topology file: what each key may hold, its default, and
//! the checks across keys (ports, versions and algorithms, members' names and addresses).

use super::syntax::{
    is_clean_abs_path, is_dns1123_subdomain, is_image_repository, is_image_tag, is_safe_file_name,
    is_wildcard_dns,
};
use super::walker::{Fields, Walker, join, kind};
use super::*;
use crate::keys::{ALGORITHMS, PrivateKey};
use crate::versions;
use saphyr::{MarkedYamlOwned, YamlDataOwned};

impl Walker {
    pub(super) fn topology(&mut self, root: &MarkedYamlOwned, files: &dyn FileSource) -> Option<Topology> {
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

    pub(super) fn pki(
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

    pub(super) fn extra_args(
        &mut self,
        node: &MarkedYamlOwned,
        release: Option<&'static Release>,
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

    pub(super) fn members(&mut self, root: &MarkedYamlOwned, f: &Fields<'_>) -> Option<Vec<Member>> {
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
