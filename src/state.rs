//! The state folder's contents as values: what earlier builds issued, and what this build adds.
//!
//! The shell loads a [`State`] from disk, `pki::issue` decides against it and returns a
//! [`StateUpdate`], and the shell writes that back. The layout of the folder is defined here
//! (paths relative to the state folder), so the reader and the writer cannot disagree.

use crate::keys::KeyAlgorithm;
use crate::profile::{CertProfile, Leaf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The state format this release writes. Older formats are migrated in memory when read and
/// written back in this format only by a build that succeeds; a newer one is refused.
pub const FORMAT: u32 = 1;

/// `state.json`: the record of inputs each cert was issued for.
pub const RECORD: &str = "state.json";
/// The CA certificate.
pub const CA_CERT: &str = "ca.crt";
/// The CA key.
pub const CA_KEY: &str = "ca.key";
/// The new CA of a rotation in phase 1 (trusted beside the CA, not yet signing).
pub const CA_NEXT_CERT: &str = "ca-next.crt";
/// Its key.
pub const CA_NEXT_KEY: &str = "ca-next.key";
/// The old CA of a rotation in phase 2 (still trusted, no longer signing).
pub const CA_PREVIOUS_CERT: &str = "ca-previous.crt";
/// Its key.
pub const CA_PREVIOUS_KEY: &str = "ca-previous.key";
/// The bundle-signing key (PKCS#8 PEM, ECDSA P-256).
pub const SIGNING_KEY: &str = "signing-key.pem";
/// The lock file that keeps two builds apart.
pub const LOCK: &str = ".lock";

/// Where a member's leaf lives in the state folder.
pub fn leaf_path(member: &str, leaf: Leaf, ext: &str) -> String {
    format!("members/{member}/{}.{ext}", leaf.short())
}

/// Where a replaced leaf is kept (keys are never deleted).
pub fn retired_path(member: &str, leaf: Leaf, serial_hex: &str, ext: &str) -> String {
    format!("retired/{member}/{}-{serial_hex}.{ext}", leaf.short())
}

/// Where a CA that a rotation replaced, or one it abandoned, is kept.
pub fn retired_ca_path(serial_hex: &str, ext: &str) -> String {
    format!("retired/ca/ca-{serial_hex}.{ext}")
}

/// One stored leaf.
#[derive(Clone, Debug)]
pub struct StoredLeaf {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Key PEM.
    pub key_pem: String,
}

/// What the state folder held when the build started.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// CA certificate PEM.
    pub ca_cert: Option<String>,
    /// CA key PEM.
    pub ca_key: Option<String>,
    /// Signing key PEM.
    pub signing_key: Option<String>,
    /// A CA rotation's new CA, in phase 1 ([`CA_NEXT_CERT`]).
    pub ca_next: Option<StoredLeaf>,
    /// A CA rotation's old CA, in phase 2 ([`CA_PREVIOUS_CERT`]).
    pub ca_previous: Option<StoredLeaf>,
    /// Leaves by member and kind.
    pub leaves: BTreeMap<String, BTreeMap<Leaf, StoredLeaf>>,
    /// `state.json`.
    pub record: Record,
}

/// `state.json` contents: the on-disk schema, its own types (not the plan's), so that the
/// plan can change without making state folders unreadable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Format version ([`FORMAT`] when written by this release).
    #[serde(default)]
    pub format: u32,
    /// Seconds since the epoch when the state was created: the tar mtime when
    /// SOURCE_DATE_EPOCH is not set.
    #[serde(default)]
    pub epoch: Option<i64>,
    /// What each stored leaf was issued for.
    #[serde(default)]
    pub issued: BTreeMap<String, BTreeMap<Leaf, IssuedFor>>,
    /// What the last successful build shipped, to tell which hosts a new build changes and
    /// which restart. Absent before the first build (and in states of earlier releases, which
    /// did not record it: their first build here reports every host as changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<Built>,
    /// The member whose bundle carries the CA key: it stays there until the topology names
    /// another (`pki.caKeyHolder`), whatever the order of the members. Absent before the
    /// first build, in states of earlier releases, and with `caKeyOnFirstMember: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key_holder: Option<String>,
    /// The phase of a CA rotation in progress (`etcdpack rotate-ca`): 1, both CAs trusted and
    /// the old one signing; 2, both trusted and the new one signing. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotation: Option<u8>,
    /// The last restore from a snapshot (`etcdpack restore`): the cluster that runs since is
    /// the one its token made. Absent before any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<Restored>,
}

/// A restore from a snapshot, as the state remembers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    /// How many restores this state has built (this one's number).
    pub number: u32,
    /// SHA-256 of the snapshot.
    pub sha256: String,
    /// Its revision.
    pub revision: i64,
    /// The restored cluster's `--initial-cluster-token`.
    pub token: String,
}

/// The last build as the state remembers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Built {
    /// `kubernetesVersion`.
    pub kubernetes_version: String,
    /// The etcd image tag of the manifests.
    pub image_tag: String,
    /// Each member's bundle.
    pub members: BTreeMap<String, BuiltMember>,
    /// SHA-256 of the control-plane bundle (absent in states of releases without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_sha256: Option<String>,
    /// The control-plane bundle's generation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub control_plane_generation: u64,
    /// Members left out of the topology, by name, with their peer URL: each build ships
    /// their leave bundle until the name comes back or `--reset-members`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed: BTreeMap<String, String>,
    /// The removed members' last bundle generations, by name (see `removed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed_generations: BTreeMap<String, u64>,
    /// SHA-256 of the `etcd/ca.crt` every bundle shipped (the CAs etcd trusts): a change
    /// restarts etcd, which reads it only at start. Absent in states of earlier releases,
    /// whose ca.crt was the state's CA certificate alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_sha256: Option<String>,
    /// The number of the last build that changed a member's bundle (0 in states of releases
    /// before generations).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// Whether it made restore bundles (`etcdpack restore`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A member as another member's bundle knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltPeer {
    /// Name.
    pub name: String,
    /// Peer URL.
    pub peer_url: String,
}

/// One member's bundle as last built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltMember {
    /// Its peer URL.
    pub peer_url: String,
    /// SHA-256 of its tarball.
    pub bundle_sha256: String,
    /// SHA-256 of what runs etcd (the static pod manifest): a change restarts etcd.
    pub runtime_sha256: String,
    /// The members its bundle knows (its `initial-cluster`); absent in states of releases
    /// before membership changes, whose members all bootstrapped together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<Vec<BuiltPeer>>,
    /// Whether it joined a running cluster (`initial-cluster-state: existing`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
    /// For a join that replaced a member: the old peer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// Its bundle's generation (`GENERATION` in its bundle.env).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// Whom its bundle was sealed to (canonical recipients); empty: a clear tarball.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// SHA-256 of `dist/<member>.tar.gz.age`, when sealed: a rebuild that changes nothing
    /// keeps that file instead of sealing again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_sha256: Option<String>,
}

/// The inputs one leaf was issued for, as state.json stores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedFor {
    /// Subject CN.
    pub common_name: String,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether serverAuth is present.
    pub server_auth: bool,
    /// Key algorithm.
    pub key_algorithm: KeyAlgorithm,
}

impl From<&CertProfile> for IssuedFor {
    fn from(p: &CertProfile) -> IssuedFor {
        IssuedFor {
            common_name: p.common_name.clone(),
            dns_names: p.dns_names.clone(),
            ip_addresses: p.ip_addresses.clone(),
            server_auth: p.server_auth,
            key_algorithm: p.key_algorithm,
        }
    }
}

/// Why state.json cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Written by a newer etcdpack.
    #[error(
        "state.json is format {0}, written by a newer etcdpack; this release reads formats 1 to {FORMAT}"
    )]
    Newer(u32),
    /// Not JSON, or not a record of its format.
    #[error("state.json is not readable: {0}")]
    Unreadable(String),
}

/// Reads state.json of any format this release knows, migrated to the current one in memory.
/// A record without a `format` is format 1 (the first release always wrote one).
pub fn parse_record(text: &str) -> Result<Record, RecordError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| RecordError::Unreadable(e.to_string()))?;
    let format = match value.get("format") {
        None => 1,
        Some(f) => f
            .as_u64()
            .and_then(|f| u32::try_from(f).ok())
            .ok_or_else(|| RecordError::Unreadable(format!("`format` is {f}, not a number")))?,
    };
    match format {
        // Format 1 is the current one; a later format adds its migration from here.
        0 | 1 => {
            let mut r: Record =
                serde_json::from_value(value).map_err(|e| RecordError::Unreadable(e.to_string()))?;
            r.format = FORMAT;
            Ok(r)
        }
        newer => Err(RecordError::Newer(newer)),
    }
}

/// A file to create in the state folder.
#[derive(Clone, Debug)]
pub struct NewFile {
    /// Path relative to the state folder.
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Unix mode.
    pub mode: u32,
}

/// What a build changes in the state folder. Applied in order: `retire`, `create`, `record`.
#[derive(Clone, Debug, Default)]
pub struct StateUpdate {
    /// Existing files to move aside (from, to) before their replacement is written.
    pub retire: Vec<(String, String)>,
    /// Files to create; none of them exists unless it is retired first.
    pub create: Vec<NewFile>,
    /// New `state.json`, when it changed.
    pub record: Option<Record>,
}

impl StateUpdate {
    /// Queues a key (0600) and its certificate (0644), the key first, as kubeadm writes them.
    pub fn store_pair(&mut self, key_path: &str, key_pem: &str, cert_path: &str, cert_pem: &str) {
        self.create.push(NewFile { path: key_path.into(), bytes: key_pem.as_bytes().to_vec(), mode: 0o600 });
        self.create.push(NewFile {
            path: cert_path.into(),
            bytes: cert_pem.as_bytes().to_vec(),
            mode: 0o644,
        });
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.retire.is_empty() && self.create.is_empty() && self.record.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_checked_and_migrated() {
        let r = parse_record(r#"{"epoch": 5, "issued": {}}"#).unwrap();
        assert_eq!((r.format, r.epoch), (FORMAT, Some(5)));
        assert_eq!(parse_record(r#"{"format": 99}"#), Err(RecordError::Newer(99)));
        assert!(matches!(parse_record(r#"{"format": "x"}"#), Err(RecordError::Unreadable(_))));
        assert!(matches!(parse_record("not json"), Err(RecordError::Unreadable(_))));
        // Unknown fields of a known format (a later release's additions) do not break it.
        assert!(parse_record(r#"{"format": 1, "issued": {}, "later": true}"#).is_ok());
    }
}
