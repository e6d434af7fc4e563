//! bundle.json, the bundle's own account of itself: what it is (kind, cluster, holder, role,
//! runtime), every file with its digest and every certificate with its dates. One type,
//! written by `render` and read by `verify`, `inspect` and `expiry`; fields that releases
//! before a feature did not write are optional, so their bundles still read.

use serde::{Deserialize, Deserializer, Serialize};
use std::net::IpAddr;

/// The format number this release writes.
pub const FORMAT: u32 = 1;

/// bundle.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleJson {
    /// [`FORMAT`].
    #[serde(default)]
    pub format: u32,
    /// `member`, `control-plane` or `leave`; absent in bundles of releases before the
    /// control-plane bundle (all member bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The tool that made it.
    #[serde(default)]
    pub tool: Tool,
    /// Cluster name.
    pub cluster: String,
    /// The bundle's holder: a member's name, or `control-plane`.
    pub member: String,
    /// The kubeadm release imitated.
    #[serde(default)]
    pub kubernetes_version: String,
    /// The kubeadm config API of kubeadmcfg.yaml.
    #[serde(default)]
    pub config_api: String,
    /// The etcd image.
    #[serde(default)]
    pub image: String,
    /// SHA-256 of the CA certificate's PEM.
    pub ca_sha256: String,
    /// The member's `initial-cluster` (a member's own view), else the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
    /// A member's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// A member's position in the topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Whether a member's bundle carries the CA key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carries_ca_key: Option<bool>,
    /// A member's client URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
    /// A member's (or a leaving member's) peer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_url: Option<String>,
    /// A member's data dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// `bootstrap`, `join` or `leave` (absent before membership changes: bootstrap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A member bundle says whom it replaces: the old peer URL, or `null`.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Option<String>>,
    /// `systemd`, or absent for static pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The systemd runtime's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_user: Option<String>,
    /// The systemd runtime's etcd binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_binary: Option<String>,
    /// A restore bundle's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreEntry>,
    /// The control-plane bundle's etcd endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// Every file but bundle.json and SHA256SUMS.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Every certificate the bundle holds, the CA's first.
    #[serde(default)]
    pub certs: Vec<CertEntry>,
}

/// The snapshot a restore bundle restores, pinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreEntry {
    /// SHA-256 of the snapshot file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The revision of its newest key.
    pub revision: i64,
    /// The restored cluster's `--initial-cluster-token`.
    pub token: String,
    /// Whether the bundle carries it (`snapshot/snapshot.db`), else it travels beside.
    pub embedded: bool,
}

/// The tool that made a bundle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// `etcdpack`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// One file of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Path in the bundle.
    pub path: String,
    /// Where install.sh puts it (`null` for the bundle's own files).
    pub install_path: Option<String>,
    /// Mode, four octal digits.
    pub mode: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// `etcd-user` for the files the systemd runtime's etcd.user owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One certificate of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertEntry {
    /// kubeadm's name (`etcd-ca`, `etcd-server`, ...).
    pub name: String,
    /// Path in the bundle.
    pub path: String,
    /// Serial, hex.
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
}

/// A field that is present (possibly `null`) reads as `Some(..)`; an absent one stays
/// `None` through `#[serde(default)]`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl BundleJson {
    /// The text of bundle.json: pretty JSON with its keys in sorted order, as every release
    /// wrote it (so that unchanged bundles keep their bytes), and a final newline.
    pub fn to_text(&self) -> String {
        let value = serde_json::to_value(self).expect("bundle.json is plain data");
        let mut s = serde_json::to_string_pretty(&value).expect("JSON");
        s.push('\n');
        s
    }

    /// Reads bundle.json.
    pub fn parse(bytes: &[u8]) -> Result<BundleJson, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_a_null_replaces_is_kept() {
        let b = BundleJson {
            format: FORMAT,
            cluster: "c".into(),
            member: "m".into(),
            ca_sha256: "x".into(),
            replaces: Some(None),
            files: vec![FileEntry {
                path: "install.sh".into(),
                install_path: None,
                mode: "0755".into(),
                sha256: "y".into(),
                owner: None,
            }],
            ..BundleJson::default()
        };
        let text = b.to_text();
        let keys: Vec<&str> =
            text.lines().filter(|l| l.starts_with("  \"")).map(|l| l.split('"').nth(1).unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(text.contains("\"replaces\": null"));
        assert!(text.contains("\"installPath\": null"));
        assert!(!text.contains("\"runtime\""));
        assert_eq!(BundleJson::parse(text.as_bytes()).unwrap(), b);
        // A bundle of an early release: no kind, no role, no replaces.
        let old = BundleJson::parse(br#"{"cluster":"c","member":"m","caSha256":"x"}"#).unwrap();
        assert_eq!((old.kind, old.role, old.replaces), (None, None, None));
    }
}
