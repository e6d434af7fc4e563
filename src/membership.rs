//! Membership changes: the topology's member list against the members the state says were
//! built last, turned into bootstrap, join (add or replace) and leave bundles, in the order
//! to install them, refusing a change that would lose quorum in one step.

use crate::state::{Built, BuiltPeer};
use serde::Serialize;

/// A member as another member's bundle knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Name.
    pub name: String,
    /// Peer URL.
    pub peer_url: String,
    /// Client URL.
    pub client_url: String,
}

/// How a member enters the cluster: what its bundle's install.sh does to the membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Role {
    /// One of the members that start a new cluster together (`initial-cluster-state: new`).
    Bootstrap,
    /// A member that joins a running cluster: its install.sh adds it as a learner and
    /// promotes it; `replaces` is the peer URL of the member of the same name that it removes
    /// first. Run again on a member already in the cluster, it only checks that.
    #[serde(rename_all = "camelCase")]
    Join {
        /// The old peer URL, for a member that moves to a new address.
        replaces: Option<String>,
    },
}

/// What one member's bundle is built as: its role, the members it knows, and whether this
/// build adds it to the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// How it enters the cluster.
    pub role: Role,
    /// Its `initial-cluster`: the members its bundle knows.
    pub peers: Vec<Peer>,
    /// Whether this build adds it (a join the last build did not have).
    pub joins_now: bool,
}

/// One membership step, in the order to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// What the step does.
    pub action: StepAction,
    /// The member.
    pub member: String,
    /// Its peer URL (the old one, for a leave).
    pub peer_url: String,
    /// What the bundle's install.sh does, in words.
    pub what: String,
    /// For a leave: the command that removes the member when its host is dead, run as root
    /// on any other member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_host: Option<String>,
}

/// The kinds of step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StepAction {
    /// A new member joins (learner, then promoted).
    Add,
    /// A member moves to a new address: the old one is removed, then the new one joins.
    Replace,
    /// A member leaves the cluster.
    Remove,
}

/// A member that leaves: it gets a leave bundle (no keys).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leaving {
    /// Name.
    pub name: String,
    /// Its peer URL, by which install.sh finds it in the member list.
    pub peer_url: String,
    /// Every file of its bundle, sorted by path.
    pub files: Vec<crate::layout::PlannedFile>,
    /// The generation of its last bundle when it left (0 in states of releases before
    /// generations): a host that installed a newer one took it back since.
    #[serde(skip)]
    pub generation: u64,
}

fn leaving(name: &str, peer_url: &str, generation: u64) -> Leaving {
    Leaving {
        name: name.to_string(),
        peer_url: peer_url.to_string(),
        files: crate::layout::leave_files(),
        generation,
    }
}

/// What the build does to the membership.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// The steps, in order; empty when the members are those of the last build.
    pub steps: Vec<Step>,
    /// Members that leave (this build, or an earlier one whose leave may not have run yet).
    pub leaving: Vec<Leaving>,
    /// Things to say (a reset, leave bundles still shipped).
    pub notes: Vec<String>,
    /// Each member's view, in topology order.
    #[serde(skip)]
    pub views: Vec<View>,
    /// The member whose bundle carries the CA key, if any does.
    pub ca_key_holder: Option<String>,
}

/// Where the CA key goes: whether any bundle carries it, the member the topology names, the
/// member the state recorded.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaKey<'a> {
    /// `pki.caKeyOnFirstMember`.
    pub shipped: bool,
    /// `pki.caKeyHolder`.
    pub named: Option<&'a str>,
    /// The holder the last build recorded.
    pub recorded: Option<&'a str>,
}

/// The member that carries the CA key: the one the topology names, else the one the state
/// recorded, else (a first build, or a state of an earlier release) the first member. The
/// key never moves on its own: a recorded holder that left the topology is refused until the
/// topology names the new one. Notes a move.
fn ca_key_holder(members: &[Peer], ca: CaKey<'_>, notes: &mut Vec<String>) -> Result<Option<String>, String> {
    if !ca.shipped {
        return Ok(None);
    }
    match (ca.named, ca.recorded) {
        (Some(n), Some(r)) if n != r => {
            notes.push(format!(
                "the CA key moves from {r} to {n} (pki.caKeyHolder): install {n}'s bundle first, then {r}'s, whose install.sh moves its ca.key into the backup"
            ));
            Ok(Some(n.to_string()))
        }
        (Some(n), _) => Ok(Some(n.to_string())),
        (None, Some(r)) if members.iter().any(|m| m.name == r) => Ok(Some(r.to_string())),
        (None, Some(r)) => Err(format!(
            "{r} holds the etcd CA key and leaves the topology: the key does not move on its own\n  help: name the member that takes it over: pki: {{ caKeyHolder: {} }}",
            members.first().map_or("<member>", |m| m.name.as_str())
        )),
        (None, None) => Ok(members.first().map(|m| m.name.clone())),
    }
}

impl Membership {
    /// A new cluster: every member bootstraps it together, no step.
    pub fn bootstrap(members: &[Peer]) -> Membership {
        let view = View { role: Role::Bootstrap, peers: members.to_vec(), joins_now: false };
        Membership {
            views: vec![view; members.len()],
            ca_key_holder: members.first().map(|m| m.name.clone()),
            ..Membership::default()
        }
    }
}

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Decides every member's role and view (`members`: the topology's, in its order) from the
/// last build's record, and says which steps the change of members takes. `reset` (`build
/// --reset-members`) ignores the record: everyone bootstraps anew. Refuses (with the safe
/// way) a change that removes so many members at once that the rest are not a quorum of the
/// cluster before it, or replaces a majority.
pub fn decide(
    members: &[Peer],
    client_port: u16,
    old: Option<&Built>,
    reset: bool,
    ca: CaKey<'_>,
) -> Result<Membership, String> {
    // Everyone bootstraps the cluster together, unless the record says otherwise.
    let mut out = Membership::bootstrap(members);
    out.ca_key_holder = ca_key_holder(members, ca, &mut out.notes)?;
    let Some(old) = old.filter(|_| !reset) else {
        if reset && old.is_some_and(|b| !b.members.is_empty()) {
            out.notes.push(format!(
                "--reset-members: the recorded members ({}) are forgotten; every bundle bootstraps a new cluster ({})",
                old.map(|b| b.members.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default(),
                members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        return Ok(out);
    };
    let client_url = |peer_url: &str| match peer_url.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{client_port}"),
        None => peer_url.to_string(),
    };
    let peer_of = |p: &BuiltPeer| Peer {
        name: p.name.clone(),
        peer_url: p.peer_url.clone(),
        client_url: client_url(&p.peer_url),
    };
    // The cluster as recorded: the topology's order first, then members it no longer has.
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let position = |name: &str| names.iter().position(|n| n == name).unwrap_or(usize::MAX);
    let mut cluster: Vec<Peer> = old
        .members
        .iter()
        .map(|(name, b)| peer_of(&BuiltPeer { name: name.clone(), peer_url: b.peer_url.clone() }))
        .collect();
    cluster.sort_by_key(|p| (position(&p.name), p.name.clone()));
    let before = cluster.len();
    let replaced: Vec<usize> = (0..members.len())
        .filter(|&i| old.members.get(&members[i].name).is_some_and(|b| b.peer_url != members[i].peer_url))
        .collect();
    let added: Vec<usize> =
        (0..members.len()).filter(|&i| !old.members.contains_key(&members[i].name)).collect();
    let removed: Vec<Peer> = cluster.iter().filter(|p| position(&p.name) == usize::MAX).cloned().collect();
    if before > 0 && replaced.len() * 2 > before {
        return Err(format!(
            "{} of the {before} members move to a new address at once ({}): each replacement removes a member before its successor joins, so replacing a majority in one step loses quorum\n  help: replace at most {} member(s) per build; build and install those, then the next",
            replaced.len(),
            replaced.iter().map(|&i| members[i].name.as_str()).collect::<Vec<_>>().join(", "),
            (before - 1) / 2
        ));
    }
    let after_joins = before + added.len();
    let remaining = after_joins - removed.len();
    if !removed.is_empty() && remaining < quorum(after_joins) {
        return Err(format!(
            "removing {} ({}) takes the cluster from {after_joins} to {remaining} member(s) in one step: fewer than a quorum ({}) of the {after_joins} would be left while they leave\n  help: remove at most {} member(s) per build, install their leave bundles, then build again for the next",
            removed.len(),
            removed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
            quorum(after_joins),
            after_joins - quorum(after_joins)
        ));
    }
    // Members of the last build keep the view they were built with, so their bundles stay
    // byte-identical.
    for (m, slot) in members.iter().zip(out.views.iter_mut()) {
        let Some(b) = old.members.get(&m.name).filter(|b| b.peer_url == m.peer_url) else { continue };
        let view: Vec<Peer> = match &b.view {
            Some(v) => v.iter().map(peer_of).collect(),
            None => cluster.clone(),
        };
        let role = if b.joined { Role::Join { replaces: b.replaces.clone() } } else { Role::Bootstrap };
        *slot = View { role, peers: view, joins_now: false };
    }
    // Replacements, then additions, in topology order: each joins the cluster as the steps
    // before it left it.
    for &i in replaced.iter().chain(&added) {
        let m = members[i].clone();
        let old_url = old.members.get(&m.name).map(|b| b.peer_url.clone());
        match &old_url {
            Some(url) => {
                cluster.retain(|p| &p.peer_url != url);
                out.steps.push(Step {
                    action: StepAction::Replace,
                    member: m.name.clone(),
                    peer_url: m.peer_url.clone(),
                    dead_host: None,
                    what: format!(
                        "on the new host: removes {} ({url}) from the cluster, adds {} as a learner, installs, waits for it to catch up and promotes it",
                        m.name, m.peer_url
                    ),
                });
            }
            None => out.steps.push(Step {
                dead_host: None,
                action: StepAction::Add,
                member: m.name.clone(),
                peer_url: m.peer_url.clone(),
                what: format!(
                    "adds {} as a learner, installs, waits for it to catch up and promotes it",
                    m.peer_url
                ),
            }),
        }
        let at = cluster.iter().position(|p| position(&p.name) > i).unwrap_or(cluster.len());
        cluster.insert(at, m);
        out.views[i] =
            View { role: Role::Join { replaces: old_url }, peers: cluster.clone(), joins_now: true };
    }
    let endpoints: Vec<String> = members.iter().map(|m| m.client_url.clone()).collect();
    for p in &removed {
        out.steps.push(Step {
            action: StepAction::Remove,
            member: p.name.clone(),
            peer_url: p.peer_url.clone(),
            what: format!(
                "on {}: checks that the others keep quorum, removes it from the cluster, stops etcd and moves its data dir and keys into the backup",
                p.name
            ),
            dead_host: Some(remove_command(&p.name, &p.peer_url, &endpoints)),
        });
    }
    // Earlier leaves are shipped again until the name comes back: a leave that already ran
    // finds the member gone and only cleans up.
    let mut leaves: Vec<Leaving> = removed
        .iter()
        .map(|p| leaving(&p.name, &p.peer_url, old.members.get(&p.name).map_or(0, |m| m.generation)))
        .collect();
    for (name, url) in &old.removed {
        if position(name) == usize::MAX && !leaves.iter().any(|l| &l.name == name) {
            leaves.push(leaving(name, url, old.removed_generations.get(name).copied().unwrap_or(0)));
            out.notes.push(format!(
                "{name} left the topology in an earlier build: its leave bundle is shipped again (run it once if it has not run; `build --reset-members` forgets it)"
            ));
        }
    }
    out.leaving = leaves;
    Ok(out)
}

/// The command line that removes a dead member, run as root on any other member: its ID is
/// looked up by peer URL in `member list` (an ID is known only to the cluster).
pub fn remove_command(name: &str, peer_url: &str, endpoints: &[String]) -> String {
    let ctl = format!(
        "etcdctl --endpoints={} --cacert={pki}/etcd/ca.crt --cert={pki}/etcd/healthcheck-client.crt --key={pki}/etcd/healthcheck-client.key",
        endpoints.join(","),
        pki = crate::layout::PKI_DIR
    );
    format!("{ctl} member remove \"$({ctl} member list | grep -F ', {name}, {peer_url},' | cut -d, -f1)\"")
}
