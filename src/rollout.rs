//! What a build means for the running cluster: which hosts get a new bundle, which of them
//! restart etcd, in which order to install them, and whether the etcd version may move that
//! way. `plan`, `build` and `renew` all say it from the same function.

use crate::membership::Role;
use crate::membership::StepAction;
use crate::pki::{Action, LeafDecision};
use crate::plan::Plan;
use crate::state::{Built, BuiltMember, BuiltPeer};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What installing the new bundle does to one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostChange {
    /// Member.
    pub member: String,
    /// Whether the host needs the new bundle (its bundle changed, or it was never built).
    pub install: bool,
    /// Whether installing it restarts etcd (its manifest changed).
    pub restart: bool,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// The membership step the bundle takes, if any.
    pub step: Option<StepAction>,
}

/// Compares what the plan ships with what the state says was built last. `runtime` holds each
/// member's manifest digest; `bundles` each tarball's digest when known (after a build);
/// `installers` the bundles whose install.sh is not the one the last build shipped (as far
/// as the last build's tarballs tell).
pub fn changes(
    plan: &Plan,
    old: Option<&Built>,
    runtime: &BTreeMap<String, String>,
    bundles: Option<&BTreeMap<String, String>>,
    decisions: &[LeafDecision],
    installers: &BTreeSet<String>,
    trust: Option<&str>,
) -> Vec<HostChange> {
    // The CAs etcd trusts changed (a CA rotation's phase 1 or 3): every member restarts.
    let trust_changed =
        trust.zip(old.and_then(|b| b.trust_sha256.as_deref())).is_some_and(|(now, was)| now != was);
    let mut out: Vec<HostChange> = plan
        .members
        .iter()
        .map(|m| {
            if let (Role::Join { replaces }, true) = (&m.role, m.joins_now) {
                let (step, why) = match replaces {
                    Some(url) => {
                        (StepAction::Replace, format!("replaces the member at {url} on a new host (join)"))
                    }
                    None => (StepAction::Add, "joins the cluster as a new member".to_string()),
                };
                return HostChange {
                    member: m.name.clone(),
                    install: true,
                    restart: false,
                    reasons: vec![why],
                    step: Some(step),
                };
            }
            let Some(was) = old.and_then(|b| b.members.get(&m.name)) else {
                let fresh = decisions.iter().filter(|d| d.member == m.name).all(|d| d.action == Action::New);
                let why = match (old, fresh) {
                    (Some(_), _) => "a member the last build did not have",
                    (None, true) => "first install",
                    (None, false) => {
                        "no record of an earlier build (the state predates it): install it to be sure"
                    }
                };
                return HostChange {
                    member: m.name.clone(),
                    install: true,
                    restart: false,
                    reasons: vec![why.into()],
                    step: None,
                };
            };
            let mut reasons = Vec::new();
            let restart = runtime.get(&m.name).is_some_and(|d| *d != was.runtime_sha256);
            if restart {
                let old = old.expect("a member record implies a build record");
                let mut what = Vec::new();
                if old.kubernetes_version != plan.kubernetes_version {
                    what.push(format!(
                        "kubernetesVersion {} -> {}",
                        old.kubernetes_version, plan.kubernetes_version
                    ));
                    if let Some(moved) = order_moves(plan, &old.kubernetes_version) {
                        what.push(moved);
                    }
                }
                if old.image_tag != plan.image_tag {
                    what.push(format!("etcd {} -> {}", old.image_tag, plan.image_tag));
                }
                if what.is_empty() {
                    what.push("flags or settings".into());
                }
                let runner = match plan.runtime {
                    crate::layout::Runtime::StaticPod => "manifest",
                    crate::layout::Runtime::Systemd => "etcd.service",
                };
                reasons.push(format!("{runner} changed ({}): etcd restarts", what.join(", ")));
            }
            if trust_changed {
                reasons.push("etcd/ca.crt changed (the CAs it trusts): etcd restarts to read it".into());
            }
            let restart = restart || trust_changed;
            let certs: Vec<String> = decisions
                .iter()
                .filter(|d| d.member == m.name && d.action != Action::Reuse)
                .map(|d| d.leaf.kubeadm_name().to_string())
                .collect();
            if !certs.is_empty() {
                reasons.push(format!("new certificates: {}", certs.join(", ")));
            }
            let installer = installers.contains(&m.name);
            let bundle_changed = match bundles.and_then(|b| b.get(&m.name)) {
                Some(digest) => *digest != was.bundle_sha256,
                None => restart || !certs.is_empty() || installer,
            };
            let after_restore = old.is_some_and(|b| b.restore) && plan.restore.is_none();
            if bundle_changed && after_restore && !restart {
                reasons.push(
                    "the restore is done: the member's ordinary bundle again (the same manifest: no restart)"
                        .into(),
                );
            } else if bundle_changed && installer && !restart {
                reasons.push(INSTALLER_CHANGED.into());
            }
            if bundle_changed && reasons.is_empty() {
                reasons.push("bundle contents changed".into());
            }
            HostChange { member: m.name.clone(), install: bundle_changed, restart, reasons, step: None }
        })
        .collect();
    out.push(control_plane_change(plan, old, bundles, decisions, installers, trust_changed));
    out.extend(plan.leaving.iter().map(|l| HostChange {
        member: l.name.clone(),
        install: true,
        restart: false,
        reasons: vec![format!("leaves the cluster ({} is no longer in the topology)", l.name)],
        step: Some(StepAction::Remove),
    }));
    out
}

/// The control-plane bundle: installed on every control-plane node, never restarting etcd;
/// a new client certificate takes effect when kube-apiserver restarts.
fn control_plane_change(
    plan: &Plan,
    old: Option<&Built>,
    bundles: Option<&BTreeMap<String, String>>,
    decisions: &[LeafDecision],
    installers: &BTreeSet<String>,
    trust_changed: bool,
) -> HostChange {
    let name = &plan.control_plane.name;
    let certs: Vec<&str> = decisions
        .iter()
        .filter(|d| d.member == *name && d.action != Action::Reuse)
        .map(|d| d.leaf.kubeadm_name())
        .collect();
    let was = old.and_then(|b| b.control_plane_sha256.as_ref());
    let mut reasons = Vec::new();
    let install = match (was, bundles.and_then(|b| b.get(name))) {
        (None, _) if old.is_none() => {
            reasons.push("first install (before kubeadm init)".to_string());
            true
        }
        (None, _) => {
            reasons.push("a bundle the last build did not have".to_string());
            true
        }
        (Some(was), Some(now)) => was != now,
        (Some(_), None) => {
            !certs.is_empty() || old.is_some_and(|b| !same_members(plan, b)) || installers.contains(name)
        }
    };
    if !certs.is_empty() && was.is_some() {
        reasons.push(format!(
            "new certificates: {}; restart kube-apiserver on each control-plane node after installing it",
            certs.join(", ")
        ));
    }
    if install && trust_changed {
        reasons.push(
            "etcd/ca.crt changed (the CAs it trusts): restart kube-apiserver on each control-plane node after installing it".into(),
        );
    }
    if install && reasons.is_empty() {
        match old {
            Some(b) if !same_members(plan, b) => {
                reasons.push("the members changed: new etcd endpoints".into())
            }
            Some(b) if b.kubernetes_version != plan.kubernetes_version => reasons.push(format!(
                "kubernetesVersion {} -> {} in etcd-external.yaml",
                b.kubernetes_version, plan.kubernetes_version
            )),
            _ if installers.contains(name) => {}
            _ => reasons.push("bundle contents changed".into()),
        }
    }
    if install && was.is_some() && installers.contains(name) {
        reasons.push(INSTALLER_CHANGED.into());
    }
    HostChange { member: name.clone(), install, restart: false, reasons, step: None }
}

/// The change of kubeadm's etcd argument order that a new `kubernetesVersion` brings when the
/// topology leaves the order to the patch release (PR #135400 and its backports).
fn order_moves(plan: &Plan, old_version: &str) -> Option<String> {
    if plan.arg_order_given {
        return None;
    }
    let old = crate::versions::KubeVersion::parse(old_version)?;
    let was = crate::versions::release(&old)?.arg_order(old.patch);
    let now = plan.behaviour.arg_order;
    (was != now).then(|| {
        format!(
            "argument order {} -> {}: kubeadm {} {} the extraArgs after the sorted defaults",
            was.name(),
            now.name(),
            plan.kubernetes_version,
            if now == crate::versions::ArgOrder::Appended { "appends" } else { "no longer appends" }
        )
    })
}

/// Why a host whose only change is its installer gets the new bundle.
const INSTALLER_CHANGED: &str =
    "install.sh changed (this etcdpack release's installer); etcd does not restart";

/// Whether the plan has the members (names and peer URLs) the last build had.
fn same_members(plan: &Plan, old: &Built) -> bool {
    plan.members.len() == old.members.len()
        && plan.members.iter().all(|m| old.members.get(&m.name).is_some_and(|b| b.peer_url == m.peer_url))
}

/// The record of this build, for the state: what each bundle was built from (its view of the
/// cluster among it), and the members that leave.
pub fn built(plan: &Plan, runtime: &BTreeMap<String, String>, bundles: &BTreeMap<String, String>) -> Built {
    Built {
        kubernetes_version: plan.kubernetes_version.clone(),
        image_tag: plan.image_tag.clone(),
        members: plan
            .members
            .iter()
            .map(|m| {
                let member = BuiltMember {
                    peer_url: m.peer_url.clone(),
                    bundle_sha256: bundles.get(&m.name).cloned().unwrap_or_default(),
                    runtime_sha256: runtime.get(&m.name).cloned().unwrap_or_default(),
                    view: Some(
                        m.peers
                            .iter()
                            .map(|p| BuiltPeer { name: p.name.clone(), peer_url: p.peer_url.clone() })
                            .collect(),
                    ),
                    joined: matches!(m.role, Role::Join { .. }),
                    replaces: match &m.role {
                        Role::Join { replaces } => replaces.clone(),
                        Role::Bootstrap => None,
                    },
                    generation: m.generation,
                    ..BuiltMember::default()
                };
                (m.name.clone(), member)
            })
            .collect(),
        control_plane_sha256: bundles.get(&plan.control_plane.name).cloned(),
        restore: plan.restore.is_some(),
        removed: plan.leaving.iter().map(|l| (l.name.clone(), l.peer_url.clone())).collect(),
        removed_generations: plan
            .leaving
            .iter()
            .filter(|l| l.generation > 0)
            .map(|l| (l.name.clone(), l.generation))
            .collect(),
        generation: plan.members.iter().map(|m| m.generation).fold(plan.control_plane.generation, u64::max),
        trust_sha256: None,
        control_plane_generation: plan.control_plane.generation,
    }
}

/// The order to install: members that do not restart first (any order, nothing stops), then
/// the restarting ones one at a time in topology order, then the joins (replacements, then
/// additions), then the control plane (pointed at the new member list), then the leaves.
pub fn install_order(changes: &[HostChange]) -> Vec<&HostChange> {
    let cp = |c: &HostChange| c.member == crate::layout::CONTROL_PLANE;
    let step = |c: &HostChange, s: StepAction| c.step == Some(s);
    let todo = || changes.iter().filter(|c| c.install);
    let mut order: Vec<&HostChange> = todo().filter(|c| !c.restart && !cp(c) && c.step.is_none()).collect();
    order.extend(todo().filter(|c| c.restart && c.step.is_none()));
    order.extend(todo().filter(|c| step(c, StepAction::Replace)));
    order.extend(todo().filter(|c| step(c, StepAction::Add)));
    order.extend(todo().filter(|c| cp(c)));
    order.extend(todo().filter(|c| step(c, StepAction::Remove)));
    order
}

/// `major.minor.patch` of an etcd image tag (`3.5.24-0`, `v3.6.5`), if it reads as one (the
/// patch 0 when the tag has none).
fn version_of(tag: &str) -> Option<(u32, u32, u32)> {
    let mut parts = tag.trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, parts.next().and_then(|p| p.parse().ok()).unwrap_or(0)))
}

/// How the etcd version moves from the last build: `Err` for a downgrade across minor
/// versions (etcd refuses to start on data of a newer minor) and for an upgrade that skips a
/// minor version (etcd supports one minor at a time), `Ok(Some(warning))` for a minor upgrade
/// from a patch below etcd's minimum for it ([`crate::versions::ETCD_UPGRADE_MINIMUMS`]),
/// naming the intermediate step, `Ok(None)` otherwise (or when a tag does not read as a
/// version).
pub fn etcd_move(old_tag: &str, new_tag: &str) -> Result<Option<String>, String> {
    let (Some(old), Some(new)) = (version_of(old_tag), version_of(new_tag)) else {
        return Ok(None);
    };
    let (old_minor, new_minor) = ((old.0, old.1), (new.0, new.1));
    if new_minor < old_minor {
        return Err(format!(
            "the etcd image moves from {old_tag} to {new_tag}, a downgrade from etcd {}.{} to {}.{}: etcd does not run on data written by a newer minor version\n  help: keep kubernetesVersion (or etcd.imageTag) at a release with etcd {}.{} or later",
            old.0, old.1, new.0, new.1, old.0, old.1
        ));
    }
    if new.0 == old.0 && new.1 > old.1 + 1 {
        return Err(format!(
            "the etcd image moves from {old_tag} to {new_tag}, skipping etcd {}.{}: etcd supports upgrades one minor version at a time (etcd-io/website, docs/v3.6/upgrades/upgrading-etcd.md)\n  help: roll out a release with etcd {}.{} first (an earlier kubernetesVersion, or etcd.imageTag), then this one",
            old.0,
            old.1 + 1,
            old.0,
            old.1 + 1
        ));
    }
    if new.0 == old.0 && new.1 == old.1 + 1 {
        let minimum = crate::versions::ETCD_UPGRADE_MINIMUMS.iter().find(|m| (m.to.0, m.to.1) == new_minor);
        if let Some(m) = minimum.filter(|m| old < m.from) {
            let (a, b, c) = m.from;
            return Ok(Some(format!(
                "the etcd image moves from {old_tag} to {new_tag}, but etcd requires every member to run {a}.{b}.{c} or later before an upgrade to {}.{} ({}): first build and roll out this cluster with `etcd: {{ imageTag: {a}.{b}.{c}-0 }}` (or later) at kubernetesVersion of the running release, then this upgrade",
                new.0, new.1, m.source
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_moves() {
        assert_eq!(etcd_move("3.5.15-0", "3.5.24-0"), Ok(None));
        assert_eq!(etcd_move("3.5.24-0", "3.5.15-0"), Ok(None));
        assert!(etcd_move("3.6.5-0", "3.5.24-0").unwrap_err().contains("downgrade from etcd 3.6 to 3.5"));
        assert!(etcd_move("3.5.24-0", "3.7.0-0").unwrap_err().contains("skipping etcd 3.6"));
        assert_eq!(etcd_move("custom", "3.5.0"), Ok(None));
        assert_eq!(version_of("v3.6.5"), Some((3, 6, 5)));
        assert_eq!(version_of("3.5"), Some((3, 5, 0)));
        // etcd's minimum patch before the next minor: 3.5.26 for 3.6, 3.6.11 for 3.7.
        let step = etcd_move("3.5.24-0", "3.6.5-0").unwrap().unwrap();
        assert!(step.contains("3.5.26 or later") && step.contains("imageTag: 3.5.26-0"), "{step}");
        assert_eq!(etcd_move("3.5.26-0", "3.6.5-0"), Ok(None));
        assert!(etcd_move("3.6.5-0", "3.7.0-0").unwrap().unwrap().contains("3.6.11 or later"));
        assert_eq!(etcd_move("3.6.11-0", "3.7.0-0"), Ok(None));
        assert_eq!(etcd_move("3.4.23", "3.5.1"), Ok(None), "no minimum for 3.5");
    }
}
