//! The rules of each section of the topology file but `etcd:` (in `etcd.rs`): what each key
//! may hold, its default, and the checks across keys (versions and algorithms, members'
//! names and addresses).

use super::load::FileRef;
use super::syntax::{is_clean_abs_path, is_dns1123_subdomain, is_wildcard_dns};
use super::walker::{Fields, Walker};
use super::*;
use crate::keys::ALGORITHMS;
use crate::versions;
use saphyr::MarkedYamlOwned;

impl Walker {
    pub(super) fn topology<'a>(
        &mut self,
        root: &'a MarkedYamlOwned,
        refs: &mut Vec<FileRef<'a>>,
    ) -> Option<Topology> {
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
                "backup",
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
        let pki = self.pki(f.get("pki").map(|x| x.1), config_api, release, refs);
        let default_tag = version.as_ref().map(|(v, r, _)| r.etcd_tag(v.patch).tag);
        let patch = version.as_ref().map(|(v, _, _)| v.patch).unwrap_or_default();
        let etcd = self.etcd(f.get("etcd").map(|x| x.1), config_api, release, patch, default_tag, refs);
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
        let backup = self.backup(f.get("backup").map(|x| x.1));
        let members = self.members(root, &f);
        if let (Some(p), Some(ms), Some((_, pn))) = (&pki, &members, f.get("pki")) {
            let node = match &pn.data {
                saphyr::YamlDataOwned::Mapping(m) => m
                    .iter()
                    .find(|(k, _)| matches!(&k.data, saphyr::YamlDataOwned::Value(saphyr::ScalarOwned::String(s)) if s == "caKeyHolder"))
                    .map(|(_, v)| v),
                _ => None,
            };
            if let (Some(h), Some(node)) = (&p.ca_key_holder, node) {
                if !p.ca_key_on_first_member {
                    self.err("pki.caKeyHolder", node, format!("caKeyHolder names {h}, but caKeyOnFirstMember: false keeps the CA key out of every bundle"), "remove one of the two");
                } else if !ms.iter().any(|m| &m.name == h) {
                    let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
                    self.err(
                        "pki.caKeyHolder",
                        node,
                        format!("`{h}` is not a member"),
                        format!("name one of the members: {}", names.join(", ")),
                    );
                }
            }
        }
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
        let backup = backup?;
        let data_dir = etcd
            .data_dir
            .as_deref()
            .unwrap_or(crate::layout::DEFAULT_DATA_DIR)
            .trim_end_matches('/')
            .to_string();
        if let Some(b) = backup.as_ref().filter(|b| {
            let inside = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
            inside(&b.dir, &data_dir) || inside(&data_dir, &b.dir)
        }) {
            let n = f.get("backup").map(|x| x.1).unwrap_or(root);
            self.err("backup.dir", n, format!("{} and the data dir {data_dir} hold one another", b.dir), "keep snapshots in a folder of their own, beside the data dir (a restore moves the data dir away)");
            return None;
        }
        Some(Topology {
            cluster,
            kubernetes_version,
            release,
            config_api,
            pki,
            etcd,
            kubelet,
            monitoring,
            backup,
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

    pub(super) fn pki<'a>(
        &mut self,
        node: Option<&'a MarkedYamlOwned>,
        config_api: Option<ConfigApi>,
        release: Option<&'static Release>,
        refs: &mut Vec<FileRef<'a>>,
    ) -> Option<PkiSettings> {
        let mut out = PkiSettings {
            key_algorithm: KeyAlgorithm::Rsa2048,
            ca_validity_secs: DEFAULT_CA_VALIDITY,
            cert_validity_secs: DEFAULT_CERT_VALIDITY,
            ca_key_on_first_member: true,
            ca_key_holder: None,
            existing_ca: None,
        };
        let Some(node) = node else { return Some(out) };
        let f = self.mapping(
            "pki",
            node,
            &[
                "keyAlgorithm",
                "caValidity",
                "certValidity",
                "caKeyOnFirstMember",
                "caKeyHolder",
                "existingCA",
            ],
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
        if let Some((_, n)) = f.get("caKeyHolder") {
            match self.string("pki.caKeyHolder", n) {
                Some(h) => out.ca_key_holder = Some(h),
                None => ok = false,
            }
        }
        if let Some((_, n)) = f.get("existingCA") {
            match self.existing_ca(n, refs) {
                Some(ca) => out.existing_ca = Some(ca),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `pki.existingCA`: its two paths; the files are read and checked by the loader.
    pub(super) fn existing_ca<'a>(
        &mut self,
        node: &'a MarkedYamlOwned,
        refs: &mut Vec<FileRef<'a>>,
    ) -> Option<ExistingCa> {
        let f = self.mapping("pki.existingCA", node, &["cert", "key"])?;
        let cert_path = self
            .required("pki.existingCA", node, &f, "cert", "ca.crt")
            .and_then(|n| Some((self.string("pki.existingCA.cert", n)?, n)));
        let key_path = self
            .required("pki.existingCA", node, &f, "key", "ca.key")
            .and_then(|n| Some((self.string("pki.existingCA.key", n)?, n)));
        let (cert, cert_node) = cert_path?;
        let (key, key_node) = key_path?;
        refs.push(FileRef::ExistingCa { cert: (cert.clone(), cert_node), key: (key.clone(), key_node) });
        Some(ExistingCa { cert, key, cert_pem: String::new(), key_pem: String::new() })
    }

    pub(super) fn kubelet(&mut self, node: Option<&MarkedYamlOwned>) -> Option<KubeletSettings> {
        let mut out = KubeletSettings {
            cgroup_driver: "systemd".into(),
            container_runtime_endpoint: "unix:///var/run/containerd/containerd.sock".into(),
            path: crate::layout::DEFAULT_KUBELET.into(),
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

    /// `backup:`: `false`, or the schedule, retention and folder of each member's snapshots.
    /// The outer `None` is an error; `Some(None)` is `backup: false`.
    pub(super) fn backup(&mut self, node: Option<&MarkedYamlOwned>) -> Option<Option<Backup>> {
        let mut out =
            Backup { schedule: "daily".into(), keep: 7, dir: crate::topology::DEFAULT_BACKUP_DIR.into() };
        let Some(node) = node else { return Some(Some(out)) };
        if let saphyr::YamlDataOwned::Value(saphyr::ScalarOwned::Boolean(b)) = &node.data {
            return Some(b.then_some(out));
        }
        let f = self.mapping("backup", node, &["schedule", "keep", "dir"])?;
        let mut ok = true;
        if let Some(v) = self.checked(
            &f,
            "backup",
            "schedule",
            is_calendar,
            "a systemd calendar expression",
            "write it as systemd's OnCalendar= takes it, such as daily, hourly or *-*-* 02:30:00",
            &mut ok,
        ) {
            out.schedule = v;
        }
        if let Some((_, n)) = f.get("keep") {
            match self.scalar_text("backup.keep", n).and_then(|t| t.parse::<u32>().ok()) {
                Some(k) if (1..=1000).contains(&k) => out.keep = k,
                _ => {
                    self.err(
                        "backup.keep",
                        n,
                        "not a number of snapshots from 1 to 1000",
                        "write how many snapshots each member keeps, such as 7",
                    );
                    ok = false;
                }
            }
        }
        if let Some(v) = self.checked(
            &f,
            "backup",
            "dir",
            is_clean_abs_path,
            "a clean absolute path",
            "write an absolute path without spaces, `..` or `//`, such as /var/lib/etcdpack/snapshots",
            &mut ok,
        ) {
            let dir = v.trim_end_matches('/').to_string();
            let ours = dir == crate::topology::DEFAULT_BACKUP_DIR
                || dir.starts_with(&format!("{}/", crate::topology::DEFAULT_BACKUP_DIR));
            let why = if ours { None } else { super::etcd::data_dir_refusal(&dir) };
            match why {
                Some(why) => {
                    let n = f.get("dir").map(|x| x.1).unwrap_or(node);
                    self.err("backup.dir", n, format!("{why}: snapshots need a folder of their own"), "use a folder only the snapshots use, such as /var/lib/etcdpack/snapshots (the default) or /backup/etcd");
                    ok = false;
                }
                None => out.dir = dir,
            }
        }
        ok.then_some(Some(out))
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
            let Some(mf) = self.mapping(&path, item, &["name", "address", "certSANs", "recipients"]) else {
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
            let recipients =
                mf.get("recipients").map_or(Some(Vec::new()), |(_, n)| self.recipients(&path, n));
            match (name, address, sans_ok, recipients) {
                (Some(name), Some(address), true, Some(recipients)) => {
                    out.push(Member { name, address, cert_sans: sans, recipients })
                }
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

impl Walker {
    /// `members[i].recipients`: whom the member's bundle is sealed to, each parsed by age.
    fn recipients(&mut self, member: &str, node: &MarkedYamlOwned) -> Option<Vec<String>> {
        let path = format!("{member}.recipients");
        let list = self.list(&path, node)?;
        if list.is_empty() {
            self.err(&path, node, "an empty list of recipients", "name the host's age recipient or SSH host key (ssh-ed25519 …), or remove `recipients` to ship the bundle unsealed");
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        let mut at: Vec<usize> = Vec::new();
        let mut ok = true;
        for (j, item) in list.iter().enumerate() {
            let sp = format!("{path}[{j}]");
            let Some(text) = self.string(&sp, item) else {
                ok = false;
                continue;
            };
            match crate::seal::parse_recipient(&text) {
                Ok(r) => {
                    let canonical = r.canonical();
                    if let Some(first) = out.iter().position(|o| *o == canonical) {
                        self.err(
                            &sp,
                            item,
                            format!("the same key as {path}[{}]", at[first]),
                            "name each recipient once",
                        );
                        ok = false;
                    } else {
                        out.push(canonical);
                        at.push(j);
                    }
                }
                Err(why) => {
                    self.err(&sp, item, format!("`{}`: {why}", shorten(&text)), "write an age recipient (age1…, from age-keygen) or the host's SSH public key (the line of /etc/ssh/ssh_host_ed25519_key.pub)");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

/// A systemd calendar expression as `OnCalendar=` takes it, in characters that need no
/// quoting in a unit or a shell word list (no `%`, `$`, quotes or backslashes).
fn is_calendar(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " *,./:~-".contains(c))
        && !s.starts_with(' ')
}

/// A value cut to a length an error line can show.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(48) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
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
