//! Every bundle against golden/: the kubeadm guide's "Ensure all expected files exist"
//! lists (the first member with ca.key, the others without), plus the files etcdpack adds;
//! and the control-plane bundle: the three files the guide copies to the control-plane nodes,
//! plus its installer, records and etcd-external.yaml. Members of the systemd runtime hold the
//! same PKI with etcd.service instead of the kubelet's files (golden/systemd-*).

use crate::support::{built, scenarios};
use etcdpack::unpack::Unpacked;
use std::collections::BTreeMap;

fn golden(name: &str) -> String {
    std::fs::read_to_string(format!("{}/golden/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Draws paths as the guide's `tree` output does.
fn tree(root: &str, paths: &[&str]) -> String {
    #[derive(Default)]
    struct Node(BTreeMap<String, Node>);
    let mut top = Node::default();
    for p in paths {
        let mut n = &mut top;
        for part in p.split('/') {
            n = n.0.entry(part.to_string()).or_default();
        }
    }
    fn draw(n: &Node, prefix: &str, out: &mut String) {
        let len = n.0.len();
        for (i, (name, child)) in n.0.iter().enumerate() {
            let last = i + 1 == len;
            out.push_str(&format!("{prefix}{}{name}\n", if last { "└── " } else { "├── " }));
            draw(child, &format!("{prefix}{}", if last { "    " } else { "│   " }), out);
        }
    }
    let mut out = format!("{root}\n");
    draw(&top, "", &mut out);
    out
}

/// The guide's view of a bundle: the folder holding kubeadmcfg.yaml, then the PKI tree.
fn guide_view(u: &Unpacked, home: &str) -> String {
    let top: Vec<&str> = u.files.keys().filter(|p| *p == "kubeadmcfg.yaml").map(String::as_str).collect();
    let pki: Vec<&str> =
        u.files.keys().filter_map(|p| p.strip_prefix("rootfs/etc/kubernetes/pki/")).collect();
    format!("{}---\n{}", tree(home, &top), tree("/etc/kubernetes/pki", &pki))
}

fn beyond_view(u: &Unpacked) -> String {
    let mut out = String::new();
    for p in u.files.keys() {
        if !(p == "kubeadmcfg.yaml"
            || p.starts_with("rootfs/etc/kubernetes/pki/")
            || p.starts_with("images/")
            || p.starts_with("rootfs/usr/local/bin/"))
        {
            out.push_str(&format!("{:04o} {p}\n", u.files[p].mode));
        }
    }
    out
}

#[test]
fn every_bundle_matches_the_guides_file_lists() {
    let host0 = golden("host0.txt");
    let others = golden("host1.txt");
    let beyond = golden("beyond-the-guide.txt");
    let beyond_systemd = golden("systemd-beyond-the-guide.txt");
    for scenario in scenarios() {
        let b = built(&scenario);
        for m in &b.build.plan.members {
            let u = &b.bundles[&m.name];
            let (expected, home) =
                if m.carries_ca_key { (&host0, "/tmp/${HOST0}") } else { (&others, "$HOME") };
            assert_eq!(&guide_view(u, home), expected, "{scenario}/{}: PKI file list", m.name);
            let (beyond, binaries) = match b.topology.etcd.runtime {
                etcdpack::layout::Runtime::StaticPod => (&beyond, 0),
                etcdpack::layout::Runtime::Systemd => {
                    (&beyond_systemd, b.topology.etcd.binary_archive.as_ref().map_or(0, |a| a.binaries.len()))
                }
            };
            assert_eq!(&beyond_view(u), beyond, "{scenario}/{}: files beyond the guide", m.name);
            let bin: Vec<(&String, u32)> = u
                .files
                .iter()
                .filter(|(p, _)| p.starts_with("rootfs/usr/local/bin/"))
                .map(|(p, f)| (p, f.mode))
                .collect();
            assert_eq!(bin.len(), binaries, "{scenario}/{}: {bin:?}", m.name);
            assert!(bin.iter().all(|(_, mode)| *mode == 0o755), "{scenario}/{}: {bin:?}", m.name);
            let images: Vec<&String> = u.files.keys().filter(|p| p.starts_with("images/")).collect();
            assert_eq!(
                images.len(),
                usize::from(b.topology.etcd.image_archive.is_some()),
                "{scenario}/{}",
                m.name
            );
        }
        let cp: String = b.control_plane.files.iter().map(|(p, f)| format!("{:04o} {p}\n", f.mode)).collect();
        assert_eq!(cp, golden("control-plane.txt"), "{scenario}/control-plane");
        let first = &b.build.plan.members[0];
        assert_eq!(first.carries_ca_key, b.topology.pki.ca_key_on_first_member, "{scenario}");
        assert!(b.build.plan.members[1..].iter().all(|m| !m.carries_ca_key), "{scenario}");
    }
}
