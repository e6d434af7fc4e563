//! The `etcd:` section of the topology: image, data dir, ports, extraArgs (checked against
//! the flags of the etcd the image runs) and their order, and the runtime that runs etcd
//! (static pod, or systemd with its binary, user and release archive).

use super::load::FileRef;
use super::syntax::{is_clean_abs_path, is_image_repository, is_image_tag, is_safe_file_name};
use super::walker::{Fields, Walker, closest, join, kind};
use super::*;
use crate::layout::ARCHIVE_ETCD_BINARY;
use crate::versions;
use saphyr::{MarkedYamlOwned, YamlDataOwned};

impl Walker {
    pub(super) fn etcd<'a>(
        &mut self,
        node: Option<&'a MarkedYamlOwned>,
        config_api: Option<ConfigApi>,
        release: Option<&'static Release>,
        patch: u32,
        default_tag: Option<&'static str>,
        refs: &mut Vec<FileRef<'a>>,
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
            let dir = v.trim_end_matches('/');
            let dir = if dir.is_empty() { "/" } else { dir };
            match data_dir_refusal(dir) {
                Some(why) => {
                    let n = f.get("dataDir").map(|x| x.1).unwrap_or(node);
                    self.err(
                        "etcd.dataDir",
                        n,
                        format!("{why}: etcd's data dir must be a folder of its own"),
                        "use a folder only etcd uses, such as /var/lib/etcd (kubeadm's default) or /data/etcd",
                    );
                    ok = false;
                }
                None => out.data_dir = Some(dir.to_string()),
            }
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
                        refs.push(FileRef::ImageArchive { path: path.clone(), node: n });
                        out.image_archive = Some(ImageArchive { path, file_name, bytes: Arc::default() });
                    }
                }
                None => ok = false,
            }
        }
        if !self.etcd_runtime(&f, default_tag, refs, &mut out) {
            ok = false;
        }
        ok.then_some(out)
    }

    /// `runtime` and the systemd runtime's `binary`, `user` and `binaryArchive`.
    fn etcd_runtime<'a>(
        &mut self,
        f: &Fields<'a>,
        default_tag: Option<&str>,
        refs: &mut Vec<FileRef<'a>>,
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
            if let Some(b) = out.binary.as_deref().filter(|b| *b != ARCHIVE_ETCD_BINARY) {
                self.err(
                    "etcd.binary",
                    f.get("binary").map_or(n, |x| x.1),
                    format!("etcd.binary is {b}, but etcd.binaryArchive installs {ARCHIVE_ETCD_BINARY}"),
                    "remove etcd.binary (it defaults to the archive's) or etcd.binaryArchive",
                );
                ok = false;
            }
            let tag = out.image_tag.as_deref().or(default_tag).unwrap_or_default().to_string();
            refs.push(FileRef::BinaryArchive { path: path.clone(), node: n, tag });
            out.binary_archive = Some(BinaryArchive { path, version: None, binaries: Vec::new() });
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
}

/// A POSIX login name as useradd takes it.
fn is_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Why `dir` cannot be etcd's data dir, if it cannot: a data dir is a folder of its own.
/// install.sh creates it (0700), gives it to the systemd runtime's user with `chown -R`,
/// moves it into the backup on a leave, and etcd writes below it; none of that may touch a
/// system folder, the PKI, the manifests or etcdpack's own records. `dir` is a clean
/// absolute path without a trailing slash.
pub(super) fn data_dir_refusal(dir: &str) -> Option<String> {
    const SYSTEM: [&str; 25] = [
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/tmp",
    ];
    const OWNED: [&str; 7] = [
        crate::layout::PKI_DIR,
        crate::layout::MANIFEST_DIR,
        crate::layout::DROPIN_DIR,
        crate::layout::RECORD_DIR,
        "/var/lib/etcdpack",
        "/etc/kubernetes",
        "/etc/systemd",
    ];
    const VOLATILE: [&str; 7] = ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/dev/shm"];
    let inside = |parent: &str| dir.starts_with(&format!("{}/", parent.trim_end_matches('/')));
    if SYSTEM.contains(&dir) || OWNED.contains(&dir) {
        return Some(format!("{dir} is a system folder or one that kubeadm or etcdpack own"));
    }
    if let Some(p) = OWNED.iter().find(|p| inside(p)) {
        return Some(format!("{dir} is inside {p}"));
    }
    if let Some(p) = VOLATILE.iter().find(|p| inside(p)) {
        return Some(format!("{dir} is inside {p}, which does not keep data or is shared with every user"));
    }
    if let Some(p) = [
        crate::layout::PKI_DIR,
        crate::layout::MANIFEST_DIR,
        crate::layout::DROPIN_DIR,
        crate::layout::RECORD_DIR,
        crate::layout::BACKUP_DIR,
        crate::layout::ETCD_UNIT_PATH,
    ]
    .iter()
    .find(|p| p.starts_with(&format!("{dir}/")))
    {
        return Some(format!("{dir} holds {p}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_posix_login_names() {
        assert!(
            is_user_name("etcd") && is_user_name("_etcd-2") && !is_user_name("Etcd") && !is_user_name("2x")
        );
    }

    #[test]
    fn a_data_dir_is_a_folder_of_its_own() {
        for refused in [
            "/",
            "/etc",
            "/usr",
            "/var",
            "/var/lib",
            "/etc/kubernetes",
            "/etc/kubernetes/pki",
            "/etc/kubernetes/pki/etcd",
            "/etc/kubernetes/manifests",
            "/etc/etcdpack",
            "/etc/etcdpack/data",
            "/var/lib/etcdpack",
            "/var/lib/etcdpack/backups/x",
            "/tmp/etcd",
            "/run/etcd",
            "/dev/shm/etcd",
            "/etc/systemd/system",
            "/root",
            "/home",
        ] {
            assert!(data_dir_refusal(refused).is_some(), "{refused} must be refused");
        }
        for fine in
            ["/var/lib/etcd", "/data/etcd", "/var/lib/etcd-main", "/srv/etcd", "/opt/etcd/data", "/etc-data"]
        {
            assert_eq!(data_dir_refusal(fine), None, "{fine}");
        }
        assert_eq!(
            data_dir_refusal("/etc/kubernetes/pki/etcd").as_deref(),
            Some("/etc/kubernetes/pki/etcd is inside /etc/kubernetes/pki")
        );
    }
}
