//! The PKI of a build: which certificates it reuses, issues, re-issues or renews (`decide`),
//! every refusal it can meet before a key exists (`preflight`: the state's CA, expiry, what
//! ships), and what issuing returns (`Pki`); `issue` (in `issue.rs`) is the only stage that
//! creates secrets.
//!
//! Certificates follow kubeadm's profiles (reference section 1): subject CN only, SANs as
//! `plan` computed them, digitalSignature + keyEncipherment (+ keyCertSign on the CA),
//! critical basicConstraints, SKI on the CA only (SHA-1 of the key, as Go writes it), AKI on
//! leaves, random serials below 2^63 and validity with the 5-minute backdate.

use crate::extensions;
use crate::keys::{KeyAlgorithm, KeySource, PrivateKey, pem_encode};
use crate::plan::Plan;
use crate::profile::{CertProfile, Leaf};
use crate::state::{self, IssuedFor, NewFile, State, StateUpdate};
use crate::versions::{KeyIdMethod, ValidityRule};
use crate::x509::{self, CertInfo};
use rayon::prelude::*;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer};
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;

mod issue;
mod rotate;
pub use issue::{CaSource, issue};
pub use rotate::{CaStep, Rotated, also_trusted, refusal as rotation_refusal, rotate};

/// kubeadm's `CertificateBackdate`.
pub const BACKDATE_SECS: i64 = 5 * 60;

/// Why issuing could not go on.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The state's CA is not the `existingCA` of the topology.
    #[error("the state folder belongs to a different CA than pki.existingCA ({0})")]
    CaMismatch(String),
    /// The state is damaged.
    #[error("the state folder is inconsistent: {0}")]
    Corrupt(String),
    /// A certificate the build would ship is expired or expires within a day.
    #[error("{0}")]
    Expiring(String),
    /// A crypto library failed.
    #[error("could not issue {what}: {why}")]
    Crypto {
        /// What was being issued.
        what: String,
        /// The library's reason.
        why: String,
    },
}

/// What happened to one certificate or key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action", content = "reason")]
pub enum Action {
    /// Created by this build.
    New,
    /// Taken from the state unchanged.
    Reuse,
    /// Replaced because its inputs changed (the reason says which).
    Reissue(String),
    /// Taken from `pki.existingCA`.
    Imported,
    /// Replaced by `renew` with a new key and certificate from the same CA (the reason names
    /// the certificate it replaces).
    Renew(String),
}

/// Which leaves `etcdpack renew` replaces: the chosen members' (every member and the control
/// plane when none is named), and with `within` only those that expire inside that window.
#[derive(Clone, Debug, Default)]
pub struct Renewal {
    /// Members (or `control-plane`) whose leaves are renewed; empty means all.
    pub members: Vec<String>,
    /// Renew only leaves whose NotAfter is less than this many seconds after `now`.
    pub within: Option<i64>,
    /// A CA rotation's step into phase 2: every leaf, signed by the old CA, is issued again
    /// by the new one.
    pub ca_rotation: bool,
}

impl Renewal {
    fn selects(&self, member: &str, not_after: i64, now: i64) -> bool {
        self.ca_rotation
            || ((self.members.is_empty() || self.members.iter().any(|m| m == member))
                && self.within.is_none_or(|w| not_after - now < w))
    }
}

/// One issued certificate with its key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Key PEM, in kubeadm's block type.
    pub key_pem: String,
    /// The certificate read back.
    pub info: CertInfo,
    /// What the build did.
    pub action: Action,
}

/// All secrets of one build.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The etcd CA.
    pub ca: Issued,
    /// The bundle-signing key (PKCS#8 PEM) and what happened to it.
    pub signing_key_pem: String,
    /// Whether the signing key was created by this build.
    pub signing_key_new: bool,
    /// Leaves by member name and kind.
    pub leaves: BTreeMap<String, BTreeMap<Leaf, Issued>>,
    /// During a CA rotation, the other CA certificate every bundle trusts (after the signing
    /// CA's in `ca.crt`).
    pub also_trusted: Vec<String>,
}

impl Pki {
    /// What every bundle's `etcd/ca.crt` holds: the signing CA's certificate, then, during a
    /// CA rotation, the other CA's (etcd trusts every certificate of the file).
    pub fn trust_pem(&self) -> String {
        let mut pem = self.ca.cert_pem.clone();
        for other in &self.also_trusted {
            pem.push_str(other);
        }
        pem
    }
}

/// A decision for one leaf, before any key is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafDecision {
    /// Member.
    pub member: String,
    /// Leaf.
    pub leaf: Leaf,
    /// New, reuse or re-issue.
    #[serde(flatten)]
    pub action: Action,
}

/// Decides, without creating anything, what `issue` will do for each leaf.
pub fn decide(plan: &Plan, state: &State) -> Vec<LeafDecision> {
    let mut out = Vec::new();
    for (name, certs) in plan.holders() {
        for req in certs {
            let stored = state.leaves.get(name).and_then(|l| l.get(&req.leaf));
            let recorded = state.record.issued.get(name).and_then(|l| l.get(&req.leaf));
            let action = match (stored, recorded) {
                (None, _) => Action::New,
                (Some(_), Some(r)) if *r == IssuedFor::from(&req.profile) => Action::Reuse,
                (Some(_), Some(r)) => Action::Reissue(change_reason(r, &req.profile)),
                (Some(_), None) => Action::Reissue("no record of its inputs".into()),
            };
            out.push(LeafDecision { member: name.to_string(), leaf: req.leaf, action });
        }
    }
    out
}

fn change_reason(old: &IssuedFor, new: &CertProfile) -> String {
    let mut why = Vec::new();
    if old.key_algorithm != new.key_algorithm {
        why.push(format!("key algorithm {} -> {}", old.key_algorithm, new.key_algorithm));
    }
    if old.ip_addresses != new.ip_addresses || old.dns_names != new.dns_names {
        why.push("address or SANs changed".to_string());
    }
    if old.common_name != new.common_name {
        why.push("common name changed".to_string());
    }
    if old.server_auth != new.server_auth {
        why.push("usages changed".to_string());
    }
    why.join(", ")
}

/// Refuse to ship a certificate that expires within this many seconds (a day).
pub const REFUSE_WITHIN_SECS: i64 = 24 * 3600;
/// Warn about a certificate that expires within this many seconds (30 days).
pub const WARN_WITHIN_SECS: i64 = 30 * 86400;

/// One certificate the build would ship, with the date it stops being valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipped {
    /// Member, or `None` for the CA.
    pub member: Option<String>,
    /// kubeadm's name.
    pub certificate: &'static str,
    /// NotAfter, seconds since the epoch.
    pub not_after: i64,
    /// Whether the build reuses it (else it is new).
    pub reused: bool,
}

/// What `build` would do and what it would refuse, known before any key exists: `plan`
/// shows it and `build` stops on it, so the two never disagree.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preflight {
    /// What happens to each leaf.
    pub decisions: Vec<LeafDecision>,
    /// Every certificate that would ship, with its expiry.
    pub shipped: Vec<Shipped>,
    /// Things the user should know that do not stop the build (a changed validity).
    pub notes: Vec<String>,
    /// Every reused leaf, read and checked (its CA, its key), for `issue` to take as it is.
    #[serde(skip)]
    pub reused: BTreeMap<(String, Leaf), CertInfo>,
}

impl Preflight {
    /// Certificates that expire within `secs` of `now`.
    pub fn expiring(&self, now: i64, secs: i64) -> impl Iterator<Item = &Shipped> {
        self.shipped.iter().filter(move |c| c.not_after - now < secs)
    }

    /// The warnings to print: expiry inside the 30-day window, and the notes.
    pub fn warnings(&self, now: i64) -> Vec<String> {
        let mut out: Vec<String> = self
            .expiring(now, WARN_WITHIN_SECS)
            .map(|c| {
                format!(
                    "{} expires on {} ({} days): plan its renewal",
                    c.label(),
                    x509::rfc3339(c.not_after),
                    (c.not_after - now) / 86400
                )
            })
            .collect();
        out.extend(self.notes.iter().cloned());
        out
    }

    /// The refusal, if anything that would ship is expired or expires within a day.
    pub fn refusal(&self, now: i64) -> Option<IssueError> {
        let bad: Vec<String> = self
            .expiring(now, REFUSE_WITHIN_SECS)
            .map(|c| {
                let when = if c.not_after <= now { "expired on" } else { "expires on" };
                format!("{} {when} {}", c.label(), x509::rfc3339(c.not_after))
            })
            .collect();
        if bad.is_empty() {
            return None;
        }
        let ca = self.expiring(now, REFUSE_WITHIN_SECS).any(|c| c.member.is_none());
        let fix = if ca {
            "the etcd CA cannot be renewed in place (kubeadm never renews CAs): build with a new --state folder for a new CA and roll the bundles out to every member"
        } else {
            "these certificates need renewal before they can ship: run `etcdpack renew TOPOLOGY` (new keys and certificates from the same CA; `--member NAME` for some members only), then install the new bundles"
        };
        Some(IssueError::Expiring(format!(
            "refusing to ship certificates that are expired or expire within 24 hours:\n  {}\n  help: {fix}",
            bad.join("\n  ")
        )))
    }
}

impl Shipped {
    fn label(&self) -> String {
        match &self.member {
            Some(m) => format!("{} of {m}", self.certificate),
            None => "etcd-ca".to_string(),
        }
    }
}

/// The validity (seconds) a certificate was issued for, where its dates show it: kubeadm
/// backdates NotBefore by 5 minutes, so NotAfter - NotBefore - 5 min (1.31+ and every CA).
fn issued_validity(info: &CertInfo) -> i64 {
    info.not_after - info.not_before - BACKDATE_SECS
}

/// Checks the state against the plan without creating anything: the CA (and that it is the
/// `existingCA`), every reused leaf (its CA, its key), and the expiry of everything that
/// would ship. `build` runs it before generating a key; `plan` runs it to report the same.
/// With `renewal` (`etcdpack renew`), the reused leaves it selects become renewals.
pub fn preflight(
    plan: &Plan,
    state: &State,
    ca_source: &CaSource<'_>,
    now: i64,
    renewal: Option<&Renewal>,
) -> Result<Preflight, IssueError> {
    let stored_ca = match (ca_source.existing, &state.ca_cert, &state.ca_key) {
        (Some((cert, _)), stored, _) => {
            let given = x509::parse_pem(cert).map_err(|e| IssueError::Corrupt(format!("existingCA: {e}")))?;
            if let Some(stored) = stored {
                let stored =
                    x509::parse_pem(stored).map_err(|e| IssueError::Corrupt(format!("ca.crt: {e}")))?;
                if stored.der != given.der {
                    return Err(IssueError::CaMismatch(format!(
                        "state CA serial {}, existingCA serial {}",
                        stored.serial_hex, given.serial_hex
                    )));
                }
            }
            Some(given)
        }
        (None, Some(cert), Some(_)) => {
            Some(x509::parse_pem(cert).map_err(|e| IssueError::Corrupt(format!("ca.crt: {e}")))?)
        }
        (None, Some(_), None) => {
            return Err(IssueError::Corrupt("ca.crt is present but ca.key is missing".into()));
        }
        (None, None, Some(_)) => {
            return Err(IssueError::Corrupt("ca.key is present but ca.crt is missing".into()));
        }
        (None, None, None) if !state.leaves.is_empty() => {
            return Err(IssueError::Corrupt("member certificates exist but the CA is missing".into()));
        }
        (None, None, None) => None,
    };
    let mut shipped = vec![Shipped {
        member: None,
        certificate: "etcd-ca",
        not_after: stored_ca.as_ref().map_or(now + plan.ca_validity_secs as i64, |c| c.not_after),
        reused: stored_ca.is_some(),
    }];
    let mut notes = Vec::new();
    if let Some(ca) = stored_ca.as_ref().filter(|_| ca_source.existing.is_none()) {
        let was = issued_validity(ca);
        if was != plan.ca_validity_secs as i64 {
            notes.push(format!(
                "pki.caValidity is {}h but the state's CA was issued for {}h: the CA keeps its dates (CAs are never re-issued)",
                plan.ca_validity_secs / 3600,
                was / 3600
            ));
        }
    }
    let mut decisions = decide(plan, state);
    // Each reused leaf is parsed and checked against the CA and its key, on every core.
    // Per leaf: what ships, whether its validity differs from the plan's, (reused) the
    // certificate as read, and (renewed) the renewal that replaces it.
    type Checked = (Shipped, bool, Option<CertInfo>, Option<Action>);
    let checked: Vec<Result<Checked, IssueError>> = decisions
        .par_iter()
        .map(|d| {
            // A reused leaf is read and checked; it is kept unless the renewal selects it.
            let (kept, renewed) = if d.action == Action::Reuse {
                let stored = &state.leaves[&d.member][&d.leaf];
                let crt = state::leaf_path(&d.member, d.leaf, "crt");
                let info = x509::parse_pem(&stored.cert_pem)
                    .map_err(|e| IssueError::Corrupt(format!("{crt}: {e}")))?;
                let ca = stored_ca.as_ref().ok_or_else(|| IssueError::Corrupt("the CA is missing".into()))?;
                // Into a CA rotation's phase 2, every leaf is still the old CA's: each is
                // issued again, so none is checked against the new one.
                let rotating = renewal.is_some_and(|r| r.ca_rotation);
                if !rotating && !x509::signed_by(&info.der, &ca.der) {
                    return Err(IssueError::Corrupt(format!("{crt} is not signed by the state's CA")));
                }
                if !PrivateKey::from_pem(&stored.key_pem).is_ok_and(|k| k.public_key_der() == info.spki_der) {
                    return Err(IssueError::Corrupt(format!(
                        "{} does not belong to its certificate",
                        state::leaf_path(&d.member, d.leaf, "key")
                    )));
                }
                if rotating {
                    let why =
                        format!("the CA rotation: issued by the new CA, replaces serial {}", info.serial_hex);
                    (None, Some(Action::Renew(why)))
                } else if renewal.is_some_and(|r| r.selects(&d.member, info.not_after, now)) {
                    let why = format!(
                        "replaces serial {}, valid until {}",
                        info.serial_hex,
                        x509::rfc3339(info.not_after)
                    );
                    (None, Some(Action::Renew(why)))
                } else {
                    (Some(info), None)
                }
            } else {
                (None, None)
            };
            // A leaf dated from the CA's NotBefore (kubeadm up to 1.30) does not show its
            // validity.
            let validity_changed = kept.as_ref().is_some_and(|info| {
                plan.behaviour.validity == ValidityRule::Backdated
                    && issued_validity(info) != plan.cert_validity_secs as i64
            });
            let shipped = Shipped {
                member: Some(d.member.clone()),
                certificate: d.leaf.kubeadm_name(),
                not_after: kept.as_ref().map_or(now + plan.cert_validity_secs as i64, |i| i.not_after),
                reused: kept.is_some(),
            };
            Ok((shipped, validity_changed, kept, renewed))
        })
        .collect();
    let mut changed_validity = Vec::new();
    let mut reused = BTreeMap::new();
    for (c, d) in checked.into_iter().zip(decisions.iter_mut()) {
        let (s, changed, info, renewed) = c?;
        if let Some(action) = renewed {
            d.action = action;
        }
        if let Some(info) = info {
            reused.insert((d.member.clone(), d.leaf), info);
        }
        if changed {
            changed_validity.push(format!(
                "{} of {}",
                s.certificate,
                s.member.as_deref().unwrap_or_default()
            ));
        }
        shipped.push(s);
    }
    if !changed_validity.is_empty() {
        notes.push(format!(
            "pki.certValidity is {}h, but {} reused certificate(s) were issued for another validity ({}): they keep their dates; the new validity takes effect at their next renewal",
            plan.cert_validity_secs / 3600,
            changed_validity.len(),
            changed_validity.join(", ")
        ));
    }
    Ok(Preflight { decisions, shipped, notes, reused })
}
