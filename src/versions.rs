//! The one table of what differs between the kubeadm releases etcdpack can imitate.
//!
//! Every version-dependent choice in the pipeline (config API, probes, etcd flags, default
//! etcd image tag, certificate validity rules, available key algorithms) is answered here and
//! nowhere else. Each row names where its values come from (see `reference/kubeadm.md`).

use serde::Serialize;
use std::fmt;

/// The kubeadm configuration API a release reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ConfigApi {
    /// `kubeadm.k8s.io/v1beta3`: map-form `extraArgs`, no key algorithm or validity fields.
    #[serde(rename = "kubeadm.k8s.io/v1beta3")]
    V1Beta3,
    /// `kubeadm.k8s.io/v1beta4`: list-form `extraArgs`, `encryptionAlgorithm`, validity periods.
    #[serde(rename = "kubeadm.k8s.io/v1beta4")]
    V1Beta4,
}

impl ConfigApi {
    /// The `apiVersion` string.
    pub fn api_version(self) -> &'static str {
        match self {
            ConfigApi::V1Beta3 => "kubeadm.k8s.io/v1beta3",
            ConfigApi::V1Beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

/// One kubeadm minor release, as far as etcd hosts are concerned.
#[derive(Debug)]
pub struct Release {
    /// Kubernetes minor version (the `34` of `v1.34.2`).
    pub minor: u32,
    /// Configuration API kubeadm of this release writes in the guide.
    pub config_api: ConfigApi,
    /// `SupportedEtcdVersion[minor]` of this release's kubeadm at its x.0 release.
    pub etcd_tag: &'static str,
    /// Where the row's values come from.
    pub source: &'static str,
}

/// kubeadm 1.29 to 1.36. The etcd tags are the x.0 values; later patch releases of kubeadm
/// moved some of them (reference section 2.5), which is what `etcd.imageTag` is for.
pub const RELEASES: &[Release] = &[
    Release {
        minor: 29,
        config_api: ConfigApi::V1Beta3,
        etcd_tag: "3.5.10-0",
        source: "PR #122265 (main, Dec 2023: 27-29 -> 3.5.10-0); v1beta4 not enabled before 1.31",
    },
    Release {
        minor: 30,
        config_api: ConfigApi::V1Beta3,
        etcd_tag: "3.5.12-0",
        source: "PR #122265 added 30 -> 3.5.11-0; bumped to 3.5.12-0 before GA (3rd-party upgrade-plan output)",
    },
    Release {
        minor: 31,
        config_api: ConfigApi::V1Beta4,
        etcd_tag: "3.5.15-0",
        source: "upgrade-plan test output 3.5.12-0 -> 3.5.15-0 for 1.30 -> 1.31; v1beta4 enabled by PR #125029",
    },
    Release {
        minor: 32,
        config_api: ConfigApi::V1Beta4,
        etcd_tag: "3.5.16-0",
        source: "release-1.32 constants.go: DefaultEtcdVersion = 3.5.16-0",
    },
    Release {
        minor: 33,
        config_api: ConfigApi::V1Beta4,
        etcd_tag: "3.5.21-0",
        source: "etcd bump to 3.5.21 for 1.30-1.33; PR #134779 review: release-1.33 is at .21",
    },
    Release {
        minor: 34,
        config_api: ConfigApi::V1Beta4,
        etcd_tag: "3.6.4-0",
        source: "release-1.34 constants.go copies: 34 -> 3.6.4-0 (later 3.6.5-0)",
    },
    Release {
        minor: 35,
        config_api: ConfigApi::V1Beta4,
        etcd_tag: "3.6.6-0",
        source: "UNCONFIRMED: kubeadm 1.35 maps 32-34 to 3.5.24-0 (PR #134779); its own minor assumed 3.6.6-0",
    },
    Release {
        minor: 36,
        config_api: ConfigApi::V1Beta4,
        etcd_tag: "3.6.8-0",
        source: "kubeadm 1.36 maps 34-36 to 3.6.8-0 / 3.6.9-0 (reference section 2.5); x.0 value taken",
    },
];

/// A parsed `kubernetesVersion` such as `v1.34.2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeVersion {
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}", self.minor, self.patch)
    }
}

impl KubeVersion {
    /// Parses `v1.MINOR.PATCH` (the leading `v` is optional, as kubeadm accepts).
    pub fn parse(text: &str) -> Option<KubeVersion> {
        let rest = text.strip_prefix('v').unwrap_or(text);
        let mut parts = rest.split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        let patch: u32 = parts.next()?.parse().ok()?;
        if major != 1 || parts.next().is_some() {
            return None;
        }
        Some(KubeVersion { minor, patch })
    }
}

/// The supported range, for error messages.
pub fn supported_range() -> String {
    let first = RELEASES.first().map(|r| r.minor).unwrap_or_default();
    let last = RELEASES.last().map(|r| r.minor).unwrap_or_default();
    format!("v1.{first}.0 to v1.{last}.x")
}

/// Finds the release row for a version.
pub fn release(version: &KubeVersion) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.minor == version.minor)
}

/// Which probe endpoints the manifest uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeStyle {
    /// `/health?...` liveness and startup, no readiness probe (1.29, 1.30).
    Health,
    /// `/livez` liveness, `/readyz` readiness and startup (1.31+, PR #124465).
    LivezReadyz,
}

/// How certificate validity windows are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ValidityRule {
    /// Before PR #124652 (1.29, 1.30): leaf NotBefore is the CA's NotBefore.
    LeafFromCa,
    /// 1.31+: every cert starts at start-5min.
    Backdated,
}

/// Everything the rest of the pipeline asks about a (release, etcd tag) pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    /// kubeadm config API.
    pub config_api: ConfigApi,
    /// Probe style.
    pub probes: ProbeStyle,
    /// `--feature-gates=InitialCorruptCheck=true` and `--watch-progress-notify-interval`
    /// instead of the two `--experimental-*` flags.
    pub etcd36_flags: bool,
    /// `metadata.creationTimestamp: null` in the manifest (up to 1.33; UNCONFIRMED boundary).
    pub creation_timestamp_null: bool,
    /// Validity rule.
    pub validity: ValidityRule,
    /// Whether `ECDSA-P384` exists (1.34+).
    pub ecdsa_p384: bool,
    /// Whether RSA-3072/4096 can be asked for (v1beta4 `encryptionAlgorithm`).
    pub encryption_algorithm_field: bool,
}

/// Decides the behaviour of kubeadm `release` writing a manifest for etcd `tag`.
pub fn behaviour(release: &Release, tag: &str) -> Behaviour {
    let minor = release.minor;
    let etcd36_flags = match minor {
        0..=33 => false,
        34 | 35 => etcd_tag_at_least_3_6(tag),
        _ => true,
    };
    Behaviour {
        config_api: release.config_api,
        probes: if minor >= 31 { ProbeStyle::LivezReadyz } else { ProbeStyle::Health },
        etcd36_flags,
        creation_timestamp_null: minor <= 33,
        validity: if minor >= 31 { ValidityRule::Backdated } else { ValidityRule::LeafFromCa },
        ecdsa_p384: minor >= 34,
        encryption_algorithm_field: minor >= 31,
    }
}

/// kubeadm's semver "at least 3.6.0" check on an image tag. A pre-release (`3.6.0-0`) sorts
/// below the release, as semver says; a tag that does not parse is "below".
pub fn etcd_tag_at_least_3_6(tag: &str) -> bool {
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let (core, pre) = match tag.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (tag, None),
    };
    let nums: Vec<Option<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    let [Some(major), Some(minor), Some(patch)] = nums[..] else {
        return false;
    };
    match (major, minor, patch).cmp(&(3, 6, 0)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => pre.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(KubeVersion::parse("v1.34.2"), Some(KubeVersion { minor: 34, patch: 2 }));
        assert_eq!(KubeVersion::parse("1.29.0"), Some(KubeVersion { minor: 29, patch: 0 }));
        assert_eq!(KubeVersion::parse("v1.34"), None);
        assert_eq!(KubeVersion::parse("v2.1.0"), None);
        assert_eq!(KubeVersion::parse("v1.34.2.1"), None);
    }

    #[test]
    fn table_is_contiguous_and_sourced() {
        for pair in RELEASES.windows(2) {
            assert_eq!(pair[0].minor + 1, pair[1].minor);
        }
        assert!(RELEASES.iter().all(|r| !r.source.is_empty()));
        assert_eq!(supported_range(), "v1.29.0 to v1.36.x");
    }

    #[test]
    fn etcd36_switch() {
        assert!(etcd_tag_at_least_3_6("3.6.4-0"));
        assert!(etcd_tag_at_least_3_6("3.6.0"));
        assert!(etcd_tag_at_least_3_6("v3.7.1"));
        assert!(!etcd_tag_at_least_3_6("3.6.0-0"));
        assert!(!etcd_tag_at_least_3_6("3.5.24-0"));
        assert!(!etcd_tag_at_least_3_6("latest"));
        let r = |m| RELEASES.iter().find(|r| r.minor == m).unwrap();
        assert!(!behaviour(r(33), "3.6.4-0").etcd36_flags);
        assert!(behaviour(r(34), "3.6.4-0").etcd36_flags);
        assert!(!behaviour(r(35), "3.5.24-0").etcd36_flags);
        assert!(behaviour(r(36), "3.5.24-0").etcd36_flags);
    }

    #[test]
    fn version_boundaries() {
        let r = |m| RELEASES.iter().find(|r| r.minor == m).unwrap();
        assert_eq!(behaviour(r(30), "x").config_api, ConfigApi::V1Beta3);
        assert_eq!(behaviour(r(31), "x").config_api, ConfigApi::V1Beta4);
        assert_eq!(behaviour(r(30), "x").probes, ProbeStyle::Health);
        assert_eq!(behaviour(r(31), "x").probes, ProbeStyle::LivezReadyz);
        assert!(behaviour(r(33), "x").creation_timestamp_null);
        assert!(!behaviour(r(34), "x").creation_timestamp_null);
        assert!(!behaviour(r(33), "x").ecdsa_p384);
        assert!(behaviour(r(34), "x").ecdsa_p384);
    }
}
