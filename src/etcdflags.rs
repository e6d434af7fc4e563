//! The flags each etcd minor knows, so that a misspelt `etcd.extraArgs` name is caught by
//! `check` instead of by a crash-looping static pod on the host.
//!
//! Taken from etcd's `server/etcdmain/help.go` and `config.go` of each release line: 3.5 is
//! the base; 3.6 adds the graduated names of the `experimental-*` flags (which it still
//! accepts, deprecated), `--feature-gates` and removes the v2 proxy and v2 API flags; 3.7
//! decommissions the `experimental-*` flags.

use std::collections::BTreeSet;

/// Flags every etcd from 3.5 on accepts.
const COMMON: &[&str] = &[
    "advertise-client-urls",
    "auth-token",
    "auth-token-ttl",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "auto-tls",
    "backend-batch-interval",
    "backend-batch-limit",
    "backend-bbolt-freelist-type",
    "bcrypt-cost",
    "cert-file",
    "cipher-suites",
    "client-cert-allowed-hostname",
    "client-cert-auth",
    "client-cert-file",
    "client-crl-file",
    "client-key-file",
    "config-file",
    "cors",
    "data-dir",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "election-timeout",
    "enable-grpc-gateway",
    "enable-log-rotation",
    "enable-pprof",
    "force-new-cluster",
    "grpc-keepalive-interval",
    "grpc-keepalive-min-time",
    "grpc-keepalive-timeout",
    "heartbeat-interval",
    "host-whitelist",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "initial-election-tick-advance",
    "key-file",
    "listen-client-http-urls",
    "listen-client-urls",
    "listen-metrics-urls",
    "listen-peer-urls",
    "log-level",
    "log-outputs",
    "log-rotation-config-json",
    "logger",
    "max-concurrent-streams",
    "max-request-bytes",
    "max-snapshots",
    "max-txn-ops",
    "max-wals",
    "metrics",
    "name",
    "peer-auto-tls",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "peer-cert-file",
    "peer-client-cert-auth",
    "peer-client-cert-file",
    "peer-client-key-file",
    "peer-crl-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "pre-vote",
    "quota-backend-bytes",
    "raft-read-timeout",
    "raft-write-timeout",
    "self-signed-cert-validity",
    "snapshot-count",
    "socket-reuse-address",
    "socket-reuse-port",
    "strict-reconfig-check",
    "tls-max-version",
    "tls-min-version",
    "trusted-ca-file",
    "unsafe-no-fsync",
    "v2-deprecation",
    "wal-dir",
];

/// `experimental-*` flags of 3.5, still accepted (deprecated) by 3.6, gone in 3.7.
const EXPERIMENTAL: &[&str] = &[
    "experimental-bootstrap-defrag-threshold-megabytes",
    "experimental-compact-hash-check-enabled",
    "experimental-compact-hash-check-time",
    "experimental-compaction-batch-limit",
    "experimental-compaction-sleep-interval",
    "experimental-corrupt-check-time",
    "experimental-distributed-tracing-address",
    "experimental-distributed-tracing-instance-id",
    "experimental-distributed-tracing-sampling-rate",
    "experimental-distributed-tracing-service-name",
    "experimental-downgrade-check-time",
    "experimental-enable-distributed-tracing",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "experimental-initial-corrupt-check",
    "experimental-max-learners",
    "experimental-memory-mlock",
    "experimental-peer-skip-client-san-verification",
    "experimental-snapshot-catchup-entries",
    "experimental-stop-grpc-service-on-defrag",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-wait-cluster-ready-timeout",
    "experimental-warning-apply-duration",
    "experimental-warning-unary-request-duration",
    "experimental-watch-progress-notify-interval",
];

/// Only in 3.5: the v2 API and the v2 proxy.
const ONLY_35: &[&str] = &[
    "enable-v2",
    "experimental-enable-v2v3",
    "proxy",
    "proxy-dial-timeout",
    "proxy-failure-wait",
    "proxy-read-timeout",
    "proxy-refresh-interval",
    "proxy-write-timeout",
];

/// New in 3.6: the graduated names and the feature gates.
const FROM_36: &[&str] = &[
    "bootstrap-defrag-threshold-megabytes",
    "compact-hash-check-time",
    "compaction-batch-limit",
    "compaction-sleep-interval",
    "corrupt-check-time",
    "discovery-endpoints",
    "discovery-token",
    "distributed-tracing-address",
    "distributed-tracing-instance-id",
    "distributed-tracing-sampling-rate",
    "distributed-tracing-service-name",
    "downgrade-check-time",
    "enable-distributed-tracing",
    "feature-gates",
    "max-learners",
    "memory-mlock",
    "peer-skip-client-san-verification",
    "snapshot-catchup-entries",
    "warning-apply-duration",
    "warning-unary-request-duration",
    "watch-progress-notify-interval",
];

/// The etcd minor a tag names (`3.6.5-0` → 6), when it parses.
pub fn etcd_minor(tag: &str) -> Option<u32> {
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let mut parts = tag.split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    (major == 3).then_some(minor)
}

/// The flags the etcd of `tag` knows. A tag that names no release (a mirror's own tag) gets
/// every flag of 3.5 to 3.7, so nothing valid is refused.
pub fn known_flags(tag: &str) -> BTreeSet<&'static str> {
    let mut set: BTreeSet<&'static str> = COMMON.iter().copied().collect();
    match etcd_minor(tag) {
        Some(..=5) => set.extend(EXPERIMENTAL.iter().chain(ONLY_35)),
        Some(6) => set.extend(EXPERIMENTAL.iter().chain(FROM_36)),
        Some(_) => set.extend(FROM_36),
        None => set.extend(EXPERIMENTAL.iter().chain(ONLY_35).chain(FROM_36)),
    }
    set
}

/// The `experimental-*` flags etcd 3.6 maps to a feature gate (`ExperimentalFlagToFeatureMap`
/// in etcd's `server/features/etcd_features.go`).
const TO_FEATURE_GATE: &[(&str, &str)] = &[
    ("experimental-compact-hash-check-enabled", "CompactHashCheck"),
    ("experimental-enable-lease-checkpoint", "LeaseCheckpoint"),
    ("experimental-enable-lease-checkpoint-persist", "LeaseCheckpointPersist"),
    ("experimental-initial-corrupt-check", "InitialCorruptCheck"),
    ("experimental-stop-grpc-service-on-defrag", "StopGRPCServiceOnDefrag"),
    ("experimental-txn-mode-write-with-shared-buffer", "TxnModeWriteWithSharedBuffer"),
];

/// What replaces an `experimental-*` flag that etcd 3.7 removed (etcd PR #19959; the
/// deprecation messages of 3.6's `server/etcdmain/config.go` name each successor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Successor {
    /// The same setting under a flag without the prefix.
    Flag(&'static str),
    /// A feature gate: `--feature-gates=<Gate>=true`.
    FeatureGate(&'static str),
}

/// The successor of `flag` when `tag` is etcd 3.7 or later and `flag` is one of the
/// `experimental-*` flags it removed; `None` otherwise (also for a flag 3.7 has no successor
/// of, which the unknown-flag check reports).
pub fn removed_in_3_7(flag: &str, tag: &str) -> Option<Successor> {
    if etcd_minor(tag).is_none_or(|m| m < 7) || !EXPERIMENTAL.contains(&flag) {
        return None;
    }
    if let Some((_, gate)) = TO_FEATURE_GATE.iter().find(|(f, _)| *f == flag) {
        return Some(Successor::FeatureGate(gate));
    }
    let bare = flag.strip_prefix("experimental-")?;
    FROM_36.iter().find(|f| **f == bare).map(|f| Successor::Flag(f))
}

/// Flags that etcdpack sets from a topology field: naming them in `extraArgs` would make the
/// manifest disagree with the certificates, the data dir or the member list. The value says
/// which field to change instead.
pub fn owned_by_topology(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "data-dir" => "etcd.dataDir",
        "name" => "the member's `name`",
        "initial-cluster" | "initial-cluster-state" => "the `members` list",
        "cert-file"
        | "key-file"
        | "peer-cert-file"
        | "peer-key-file"
        | "trusted-ca-file"
        | "peer-trusted-ca-file" => "`pki` (etcdpack issues and places every certificate)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_etcd_minor() {
        assert!(known_flags("3.5.24-0").contains("experimental-initial-corrupt-check"));
        assert!(!known_flags("3.5.24-0").contains("feature-gates"));
        assert!(known_flags("3.6.5-0").contains("feature-gates"));
        assert!(known_flags("3.6.5-0").contains("experimental-watch-progress-notify-interval"));
        assert!(!known_flags("3.6.5-0").contains("enable-v2"));
        assert!(!known_flags("3.7.0-0").contains("experimental-initial-corrupt-check"));
        assert!(known_flags("3.7.0-0").contains("watch-progress-notify-interval"));
        assert!(known_flags("custom").contains("enable-v2"));
        assert_eq!(etcd_minor("v3.6.0"), Some(6));
        assert_eq!(etcd_minor("latest"), None);
    }

    #[test]
    fn the_experimental_flags_3_7_removed_name_their_successor() {
        use Successor::*;
        let t = "3.7.0-0";
        assert_eq!(
            removed_in_3_7("experimental-initial-corrupt-check", t),
            Some(FeatureGate("InitialCorruptCheck"))
        );
        assert_eq!(
            removed_in_3_7("experimental-compact-hash-check-enabled", t),
            Some(FeatureGate("CompactHashCheck"))
        );
        assert_eq!(
            removed_in_3_7("experimental-watch-progress-notify-interval", t),
            Some(Flag("watch-progress-notify-interval"))
        );
        assert_eq!(removed_in_3_7("experimental-max-learners", t), Some(Flag("max-learners")));
        assert_eq!(removed_in_3_7("experimental-wait-cluster-ready-timeout", t), None);
        // 3.6 still accepts them (deprecated); a tag that names no release is not refused.
        assert_eq!(removed_in_3_7("experimental-initial-corrupt-check", "3.6.5-0"), None);
        assert_eq!(removed_in_3_7("experimental-initial-corrupt-check", "custom"), None);
        assert_eq!(removed_in_3_7("snapshot-count", t), None);
        // Every experimental flag but one has a successor that 3.7 knows.
        for flag in EXPERIMENTAL {
            match removed_in_3_7(flag, t) {
                Some(Flag(f)) => assert!(known_flags(t).contains(f), "{f}"),
                Some(FeatureGate(_)) => {}
                None => assert_eq!(*flag, "experimental-wait-cluster-ready-timeout"),
            }
        }
    }

    #[test]
    fn lists_are_sorted_and_disjoint() {
        for list in [COMMON, EXPERIMENTAL, ONLY_35, FROM_36] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
        let all: Vec<&str> = [COMMON, EXPERIMENTAL, ONLY_35, FROM_36].concat();
        let set: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(set.len(), all.len());
    }
}
