//! The state folder's contents as values: what earlier builds issued, and what this build adds.
//!
//! The shell loads a [`State`] from disk, `pki::issue` decides against it and returns a
//! [`StateUpdate`], and the shell writes that back. The layout of the folder is defined here
//! (paths relative to the state folder), so the reader and the writer cannot disagree.

use crate::plan::{CertProfile, Leaf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `state.json`: the record of inputs each cert was issued for.
pub const RECORD: &str = "state.json";
/// The CA certificate.
pub const CA_CERT: &str = "ca.crt";
/// The CA key.
pub const CA_KEY: &str = "ca.key";
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
    /// Leaves by member and kind.
    pub leaves: BTreeMap<String, BTreeMap<Leaf, StoredLeaf>>,
    /// `state.json`.
    pub record: Record,
}

/// `state.json` contents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Format version.
    #[serde(default)]
    pub format: u32,
    /// Seconds since the epoch when the state was created: the tar mtime when
    /// SOURCE_DATE_EPOCH is not set.
    #[serde(default)]
    pub epoch: Option<i64>,
    /// The profile each stored leaf was issued for.
    #[serde(default)]
    pub issued: BTreeMap<String, BTreeMap<Leaf, CertProfile>>,
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
