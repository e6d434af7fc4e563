//! `inspect`: a bundle shown the way the kubeadm guide lists a host's files, as trees rooted
//! at the install folders, with each certificate's subject, SANs and expiry.

use crate::unpack::Unpacked;
use crate::x509::{self, rfc3339};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    note: Option<String>,
}

fn insert(node: &mut Node, parts: &[&str], note: Option<String>) {
    match parts {
        [] => {}
        [last] => node.children.entry((*last).to_string()).or_default().note = note,
        [first, rest @ ..] => insert(node.children.entry((*first).to_string()).or_default(), rest, note),
    }
}

fn draw(node: &Node, prefix: &str, out: &mut String) {
    let n = node.children.len();
    for (i, (name, child)) in node.children.iter().enumerate() {
        let last = i + 1 == n;
        let branch = if last { "└── " } else { "├── " };
        let note = child.note.as_deref().map(|s| format!("  {s}")).unwrap_or_default();
        let _ = writeln!(out, "{prefix}{branch}{name}{note}");
        draw(child, &format!("{prefix}{}", if last { "    " } else { "│   " }), out);
    }
}

fn cert_note(pem: &[u8]) -> Option<String> {
    let info = x509::parse_pem(std::str::from_utf8(pem).ok()?).ok()?;
    let mut sans: Vec<String> = info.dns_names.iter().map(|d| format!("DNS:{d}")).collect();
    sans.extend(info.ip_addresses.iter().map(|i| format!("IP:{i}")));
    let sans = if sans.is_empty() { String::new() } else { format!(" SANs=[{}]", sans.join(", ")) };
    Some(format!("[CN={}{} expires {}]", info.common_name, sans, rfc3339(info.not_after)))
}

/// Renders the bundle as text.
pub fn inspect(u: &Unpacked) -> String {
    let mut out = String::new();
    let meta = u
        .files
        .get("bundle.json")
        .and_then(|e| crate::bundle::BundleJson::parse(&e.bytes).ok())
        .unwrap_or_default();
    let or_unknown = |s: &Option<String>| s.clone().unwrap_or_else(|| "?".into());
    let kind = crate::layout::Kind::from_name(meta.kind.as_deref());
    let whom = match kind {
        Some(crate::layout::Kind::ControlPlane) => {
            let endpoints = meta.endpoints.as_ref().map_or(0, Vec::len);
            format!("the control plane's etcd client files, {endpoints} endpoints")
        }
        Some(crate::layout::Kind::Leave) => format!("leaves the cluster: {}", or_unknown(&meta.peer_url)),
        _ => {
            let role = match (meta.role.as_deref(), meta.replaces.clone().flatten()) {
                (Some("join"), Some(old)) => format!(", join replacing {old}"),
                (Some("join"), None) => ", join".to_string(),
                (Some("restore"), _) => format!(
                    ", restore from the snapshot of revision {}",
                    meta.restore.as_ref().map_or_else(|| "?".to_string(), |r| r.revision.to_string())
                ),
                _ => String::new(),
            };
            let knows = or_unknown(&meta.initial_cluster);
            let runtime = match &meta.runtime {
                Some(r) => {
                    format!(
                        ", runtime {r} ({} as {})",
                        or_unknown(&meta.etcd_binary),
                        or_unknown(&meta.etcd_user)
                    )
                }
                None => String::new(),
            };
            let address = meta.address.map_or_else(|| "?".to_string(), |a| a.to_string());
            format!("address {address}{role}{runtime}, members {knows}")
        }
    };
    // The generation (bundle.env) that install.sh compares with the host's record.
    let generation = u
        .files
        .get("bundle.env")
        .and_then(|e| std::str::from_utf8(&e.bytes).ok())
        .and_then(|env| env.lines().find_map(|l| l.strip_prefix("GENERATION=")))
        .map(|g| format!(", generation {g}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "bundle {} (cluster {}, {whom}, kubeadm {}{generation}, {} files)",
        u.top,
        if meta.cluster.is_empty() { "?" } else { &meta.cluster },
        if meta.kubernetes_version.is_empty() { "?" } else { &meta.kubernetes_version },
        u.files.len()
    );
    let mut top = Node::default();
    for name in u.files.keys().filter(|p| !p.starts_with("rootfs/")) {
        let parts: Vec<&str> = name.split('/').collect();
        insert(&mut top, &parts, None);
    }
    let _ = writeln!(out, "{}", u.top);
    draw(&top, "", &mut out);
    // Each file shows in the first tree that holds it (the kubelet drop-in folder comes
    // before the systemd folder that contains it).
    let mut shown = std::collections::BTreeSet::new();
    let runtime = crate::layout::Runtime::from_name(meta.runtime.as_deref())
        .unwrap_or(crate::layout::Runtime::StaticPod);
    let trees = crate::layout::install_trees(kind.unwrap_or(crate::layout::Kind::Member), runtime);
    for root in trees {
        let prefix = format!("rootfs{root}/");
        let mut tree = Node::default();
        for (path, e) in &u.files {
            if let Some(rest) = path.strip_prefix(&prefix).filter(|_| shown.insert(path.clone())) {
                let note = if rest.ends_with(".crt") { cert_note(&e.bytes) } else { None };
                let parts: Vec<&str> = rest.split('/').collect();
                insert(&mut tree, &parts, note);
            }
        }
        if !tree.children.is_empty() {
            let _ = writeln!(out, "---\n{root}");
            draw(&tree, "", &mut out);
        }
    }
    out
}
