//! The one table of what differs between the kubeadm releases etcdpack can imitate.
//!
//! Every version-dependent choice in the pipeline (config API, probes, etcd flags and their
//! order, default etcd image tag per patch release, certificate validity rules, key
//! algorithms, key identifiers) is answered here and nowhere else. Each row names where its
//! values come from (see `reference/kubeadm.md`).

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

    /// The short name used in the topology (`v1beta3`, `v1beta4`).
    pub fn short(self) -> &'static str {
        match self {
            ConfigApi::V1Beta3 => "v1beta3",
            ConfigApi::V1Beta4 => "v1beta4",
        }
    }
}

/// How kubeadm's `ArgumentsToCommand` orders the etcd command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ArgOrder {
    /// Defaults and extraArgs merged, then all sorted by name and value (up to 1.35.x).
    Sorted,
    /// Defaults sorted, then every extraArg in the order given (PR #135400, 1.36.0, and its
    /// backports #135850-#135853 from v1.32.12, v1.33.8, v1.34.4 and v1.35.1: see
    /// [`Release::appended_from`]).
    Appended,
}

impl ArgOrder {
    /// The topology's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ArgOrder::Sorted => "sorted",
            ArgOrder::Appended => "appended",
        }
    }
}

/// How the CA's SubjectKeyId is computed (Go's `x509.CreateCertificate` fills it in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyIdMethod {
    /// SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 method 1): Go up to 1.24, and Go
    /// 1.25+ built with `GODEBUG=x509sha256skid=0`.
    Sha1,
}

/// One kubeadm minor release, as far as etcd hosts are concerned.
#[derive(Debug)]
pub struct Release {
    /// Kubernetes minor version (the `34` of `v1.34.2`).
    pub minor: u32,
    /// The configuration API the kubeadm guide writes for this release.
    pub config_api: ConfigApi,
    /// Whether this release still reads `kubeadm.k8s.io/v1beta3` (through 1.36).
    pub accepts_v1beta3: bool,
    /// Default etcd tag per patch release: `(first patch, tag)`, ascending.
    pub etcd_tags: &'static [(u32, &'static str)],
    /// The newest patch release the tag table has seen; `None` when no GA release was seen.
    pub last_known_patch: Option<u32>,
    /// The first patch release whose kubeadm appends extraArgs after the sorted defaults
    /// (PR #135400 or its backport); `None` when every patch release of the minor sorts all.
    pub appended_from: Option<u32>,
    /// Where the row's values come from.
    pub source: &'static str,
}

/// The etcd tag of a patch release, and whether the table knows that release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EtcdTag {
    /// The tag.
    pub tag: &'static str,
    /// False when the patch release is newer than the table (the last known tag is used).
    pub known: bool,
}

impl Release {
    /// The default etcd image tag kubeadm of `patch` lists (reference section 2.5).
    pub fn etcd_tag(&self, patch: u32) -> EtcdTag {
        let tag = self
            .etcd_tags
            .iter()
            .rev()
            .find(|(first, _)| *first <= patch)
            .or(self.etcd_tags.first())
            .map(|(_, t)| *t)
            .unwrap_or_default();
        EtcdTag { tag, known: self.last_known_patch.is_some_and(|last| patch <= last) }
    }

    /// The argument order kubeadm of `patch` uses (reference section 2.3 and item G).
    pub fn arg_order(&self, patch: u32) -> ArgOrder {
        match self.appended_from {
            Some(first) if patch >= first => ArgOrder::Appended,
            _ => ArgOrder::Sorted,
        }
    }

    /// The argument orders `etcd.extraArgsOrder` may choose for this minor: both where the
    /// minor has patch releases of each (1.32-1.35), so that a topology can follow a kubeadm
    /// build that differs from the table; the first is the default of `patch`.
    pub fn arg_orders(&self, patch: u32) -> &'static [ArgOrder] {
        match (self.appended_from, self.arg_order(patch)) {
            (None, _) => &[ArgOrder::Sorted],
            (Some(0), _) => &[ArgOrder::Appended],
            (Some(_), ArgOrder::Sorted) => &[ArgOrder::Sorted, ArgOrder::Appended],
            (Some(_), ArgOrder::Appended) => &[ArgOrder::Appended, ArgOrder::Sorted],
        }
    }
}

/// kubeadm 1.29 to 1.37, with the etcd tag of every patch release seen (reference 2.5: what
/// `kubeadm config images list --kubernetes-version vX` answers, per released kubeadm).
pub const RELEASES: &[Release] = &[
    Release {
        minor: 29,
        config_api: ConfigApi::V1Beta3,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.5.10-0"), (3, "3.5.12-0"), (9, "3.5.15-0"), (11, "3.5.16-0")],
        last_known_patch: Some(15),
        appended_from: None,
        source: "reference 2.5 per-patch table; v1beta4 not enabled before 1.31 (PR #125029)",
    },
    Release {
        minor: 30,
        config_api: ConfigApi::V1Beta3,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.5.12-0"), (5, "3.5.15-0")],
        last_known_patch: Some(14),
        appended_from: None,
        source: "reference 2.5 per-patch table; v1beta4 not enabled before 1.31 (PR #125029)",
    },
    Release {
        minor: 31,
        config_api: ConfigApi::V1Beta4,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.5.15-0"), (14, "3.5.24-0")],
        last_known_patch: Some(14),
        appended_from: None,
        source: "reference 2.5 per-patch table (.14: backport PR #135020); v1beta4 enabled by PR #125029",
    },
    Release {
        minor: 32,
        config_api: ConfigApi::V1Beta4,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.5.16-0"), (10, "3.5.24-0")],
        last_known_patch: Some(13),
        appended_from: Some(12),
        source: "reference 2.5 per-patch table (.10+: backport PR #135019); extraArgs appended from .12 (PR #135850, CHANGELOG-1.32 since v1.32.11)",
    },
    Release {
        minor: 33,
        config_api: ConfigApi::V1Beta4,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.5.21-0"), (6, "3.5.24-0")],
        last_known_patch: Some(13),
        appended_from: Some(8),
        source: "reference 2.5 per-patch table (.6+: backport PR #135018); extraArgs appended from .8 (PR #135851, merged 2026-01 with the other three; its changelog line not seen, README Choices)",
    },
    Release {
        minor: 34,
        config_api: ConfigApi::V1Beta4,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.6.4-0"), (2, "3.6.5-0")],
        last_known_patch: Some(10),
        appended_from: Some(4),
        source: "reference 2.5 per-patch table; named probe port PR #132776; extraArgs appended from .4 (PR #135852, CHANGELOG-1.34 since v1.34.3)",
    },
    Release {
        minor: 35,
        config_api: ConfigApi::V1Beta4,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.6.6-0")],
        last_known_patch: Some(7),
        appended_from: Some(1),
        source: "reference 2.5 per-patch table; extraArgs appended from .1 (PR #135853, CHANGELOG-1.35 since v1.35.0)",
    },
    Release {
        minor: 36,
        config_api: ConfigApi::V1Beta4,
        accepts_v1beta3: true,
        etcd_tags: &[(0, "3.6.8-0")],
        last_known_patch: Some(3),
        appended_from: Some(0),
        source: "reference 2.5 per-patch table; experimental flags dropped (PR #135701); extraArgs order (PR #135400); v1beta3 still read (removed by PR #136016 in 1.37)",
    },
    Release {
        minor: 37,
        config_api: ConfigApi::V1Beta4,
        accepts_v1beta3: false,
        etcd_tags: &[(0, "3.7.0-0")],
        last_known_patch: None,
        appended_from: Some(0),
        source: "reference 2.5: 3.7.0-0 seen at v1.37.0-rc.0, GA UNCONFIRMED; v1beta3 and PublicKeysECDSA removed (PR #136016)",
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

impl ProbeStyle {
    /// The liveness probe's path (reference section 2.6).
    pub fn liveness_path(self) -> &'static str {
        match self {
            ProbeStyle::Health => "/health?exclude=NOSPACE&serializable=true",
            ProbeStyle::LivezReadyz => "/livez",
        }
    }

    /// The startup probe's path.
    pub fn startup_path(self) -> &'static str {
        match self {
            ProbeStyle::Health => "/health?serializable=false",
            ProbeStyle::LivezReadyz => "/readyz",
        }
    }

    /// Whether the manifest has a readiness probe (`/readyz`, 1.31+).
    pub fn readiness(self) -> bool {
        self == ProbeStyle::LivezReadyz
    }
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
    /// kubeadm config API of kubeadmcfg.yaml.
    pub config_api: ConfigApi,
    /// Probe style.
    pub probes: ProbeStyle,
    /// Probes name their port `probe-port`, declared in the container's `ports` (1.34+,
    /// PR #132776).
    pub named_probe_port: bool,
    /// `--feature-gates=InitialCorruptCheck=true` and `--watch-progress-notify-interval`
    /// instead of the two `--experimental-*` flags.
    pub etcd36_flags: bool,
    /// How defaults and extraArgs are ordered in the etcd command.
    pub arg_order: ArgOrder,
    /// `metadata.creationTimestamp: null` in the manifest (up to 1.33; UNCONFIRMED boundary).
    pub creation_timestamp_null: bool,
    /// Validity rule.
    pub validity: ValidityRule,
    /// How the CA's SubjectKeyId is computed.
    pub key_id: KeyIdMethod,
    /// Whether `ECDSA-P384` exists (1.34+).
    pub ecdsa_p384: bool,
    /// Whether RSA-3072/4096 can be asked for (v1beta4 `encryptionAlgorithm`).
    pub encryption_algorithm_field: bool,
}

/// Decides the behaviour of kubeadm `release` writing `config_api` and a manifest for etcd
/// `tag`, with the argument order `arg_order` (one of `release.arg_orders()`).
pub fn behaviour(release: &Release, tag: &str, config_api: ConfigApi, arg_order: ArgOrder) -> Behaviour {
    let minor = release.minor;
    let etcd36_flags = match minor {
        0..=33 => false,
        34 | 35 => etcd_tag_at_least_3_6(tag),
        _ => true,
    };
    Behaviour {
        config_api,
        probes: if minor >= 31 { ProbeStyle::LivezReadyz } else { ProbeStyle::Health },
        named_probe_port: minor >= 34,
        etcd36_flags,
        arg_order,
        creation_timestamp_null: minor <= 33,
        validity: if minor >= 31 { ValidityRule::Backdated } else { ValidityRule::LeafFromCa },
        // Go 1.25 (kubeadm 1.35+ toolchains) defaults to a truncated SHA-256 unless the build
        // pins GODEBUG x509sha256skid=0; which kubeadm binaries do is UNCONFIRMED, so every
        // release keeps SHA-1 here, the one place to change it (README, "Choices").
        key_id: KeyIdMethod::Sha1,
        ecdsa_p384: minor >= 34,
        encryption_algorithm_field: config_api == ConfigApi::V1Beta4,
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

/// The lowest patch of one etcd minor that etcd's upgrade guide lets upgrade to the next.
pub struct UpgradeMinimum {
    /// The minor upgraded to (`3.6`).
    pub to: (u32, u32),
    /// The lowest version every member must run first.
    pub from: (u32, u32, u32),
    /// Where etcd says so.
    pub source: &'static str,
}

/// etcd's minimum patch before each minor upgrade, as its upgrade guides state them (they have
/// been raised after data-consistency bugs; 3.4 to 3.5 names none).
pub const ETCD_UPGRADE_MINIMUMS: &[UpgradeMinimum] = &[
    UpgradeMinimum {
        to: (3, 6),
        from: (3, 5, 26),
        source: "etcd-io/website content/en/docs/v3.7/upgrades/upgrade_3_6.md, \"Update 3.5\": patch releases 3.5.24 through 3.5.26 fix upgrade blockers",
    },
    UpgradeMinimum {
        to: (3, 7),
        from: (3, 6, 11),
        source: "etcd-io/website content/en/docs/v3.7/upgrades/upgrade_3_7.md, \"Update 3.6\"",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: u32) -> &'static Release {
        RELEASES.iter().find(|r| r.minor == m).unwrap()
    }

    fn b(m: u32, tag: &str) -> Behaviour {
        behaviour(r(m), tag, r(m).config_api, r(m).arg_order(0))
    }

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
        for rel in RELEASES {
            assert!(!rel.source.is_empty());
            assert_eq!(rel.etcd_tags.first().map(|t| t.0), Some(0), "1.{} starts at .0", rel.minor);
            assert!(rel.etcd_tags.windows(2).all(|w| w[0].0 < w[1].0));
        }
        assert_eq!(supported_range(), "v1.29.0 to v1.37.x");
    }

    #[test]
    fn etcd_tag_follows_the_patch_release() {
        assert_eq!(r(34).etcd_tag(0), EtcdTag { tag: "3.6.4-0", known: true });
        assert_eq!(r(34).etcd_tag(1), EtcdTag { tag: "3.6.4-0", known: true });
        assert_eq!(r(34).etcd_tag(2), EtcdTag { tag: "3.6.5-0", known: true });
        assert_eq!(r(34).etcd_tag(10), EtcdTag { tag: "3.6.5-0", known: true });
        assert_eq!(r(34).etcd_tag(11), EtcdTag { tag: "3.6.5-0", known: false });
        assert_eq!(r(29).etcd_tag(2).tag, "3.5.10-0");
        assert_eq!(r(29).etcd_tag(3).tag, "3.5.12-0");
        assert_eq!(r(29).etcd_tag(9).tag, "3.5.15-0");
        assert_eq!(r(29).etcd_tag(11).tag, "3.5.16-0");
        assert_eq!(r(31).etcd_tag(13).tag, "3.5.15-0");
        assert_eq!(r(31).etcd_tag(14).tag, "3.5.24-0");
        assert_eq!(r(32).etcd_tag(10).tag, "3.5.24-0");
        assert_eq!(r(33).etcd_tag(5).tag, "3.5.21-0");
        assert_eq!(r(33).etcd_tag(6).tag, "3.5.24-0");
        assert_eq!(r(37).etcd_tag(0), EtcdTag { tag: "3.7.0-0", known: false });
    }

    #[test]
    fn etcd36_switch() {
        assert!(etcd_tag_at_least_3_6("3.6.4-0"));
        assert!(etcd_tag_at_least_3_6("3.6.0"));
        assert!(etcd_tag_at_least_3_6("v3.7.1"));
        assert!(!etcd_tag_at_least_3_6("3.6.0-0"));
        assert!(!etcd_tag_at_least_3_6("3.5.24-0"));
        assert!(!etcd_tag_at_least_3_6("latest"));
        assert!(!b(33, "3.6.4-0").etcd36_flags);
        assert!(b(34, "3.6.4-0").etcd36_flags);
        assert!(!b(35, "3.5.24-0").etcd36_flags);
        assert!(b(36, "3.5.24-0").etcd36_flags);
        assert!(b(37, "3.7.0-0").etcd36_flags);
    }

    #[test]
    fn the_backported_argument_order_starts_at_its_patch_release() {
        // Item G of the reference: the first patch release of each minor with PR #135400.
        for (minor, last_sorted) in [(32, 11), (33, 7), (34, 3), (35, 0)] {
            assert_eq!(r(minor).arg_order(last_sorted), ArgOrder::Sorted, "v1.{minor}.{last_sorted}");
            assert_eq!(
                r(minor).arg_order(last_sorted + 1),
                ArgOrder::Appended,
                "v1.{minor}.{}",
                last_sorted + 1
            );
            assert_eq!(r(minor).arg_order(99), ArgOrder::Appended);
        }
        for minor in [29, 30, 31] {
            assert_eq!(r(minor).arg_order(99), ArgOrder::Sorted);
        }
        for minor in [36, 37] {
            assert_eq!(r(minor).arg_order(0), ArgOrder::Appended);
        }
        // The table says where each boundary comes from.
        for rel in RELEASES.iter().filter(|rel| matches!(rel.appended_from, Some(p) if p > 0)) {
            assert!(rel.source.contains("extraArgs appended from"), "1.{}", rel.minor);
        }
    }

    #[test]
    fn version_boundaries() {
        assert_eq!(b(30, "x").config_api, ConfigApi::V1Beta3);
        assert_eq!(b(31, "x").config_api, ConfigApi::V1Beta4);
        assert_eq!(b(30, "x").probes, ProbeStyle::Health);
        assert_eq!(b(31, "x").probes, ProbeStyle::LivezReadyz);
        assert!(b(33, "x").creation_timestamp_null);
        assert!(!b(34, "x").creation_timestamp_null);
        assert!(!b(33, "x").ecdsa_p384);
        assert!(b(34, "x").ecdsa_p384);
        assert!(!b(33, "x").named_probe_port);
        assert!(b(34, "x").named_probe_port);
        assert_eq!(b(36, "x").arg_order, ArgOrder::Appended);
        assert_eq!(r(31).arg_orders(99), [ArgOrder::Sorted]);
        assert_eq!(r(36).arg_orders(0), [ArgOrder::Appended]);
        assert_eq!(r(32).arg_orders(11), [ArgOrder::Sorted, ArgOrder::Appended]);
        assert_eq!(r(32).arg_orders(12), [ArgOrder::Appended, ArgOrder::Sorted]);
        assert!(r(36).accepts_v1beta3 && !r(37).accepts_v1beta3);
        assert!(RELEASES.iter().all(|rel| b(rel.minor, "x").key_id == KeyIdMethod::Sha1));
    }
}
