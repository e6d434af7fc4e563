//! etcdpack compiles one topology file into one signed bundle per etcd host, each holding
//! exactly what kubeadm's "Set up a High Availability etcd Cluster with kubeadm" guide would
//! have left on that host.
//!
//! ```text
//! topology.yaml ─parse/validate→ Topology ─plan→ Plan ─issue (state)→ Pki
//!       ─render (templates/)→ FileSet per host ─pack→ tar.gz ─sign→ dist/
//! ```
//!
//! Everything in this crate except [`fsio`] is pure: no clock, no randomness, no file system.
//! The binary passes in `now`, a [`keys::KeySource`] and the state it read, and hands the
//! results to [`fsio`] to write.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundle;
pub mod command;
pub mod der;
pub mod diag;
pub mod dist;
pub mod emit;
pub mod error;
pub mod etcdflags;
pub mod example;
pub mod expiry;
pub mod extensions;
pub mod fsio;
pub mod inspect;
pub mod installer;
pub mod keys;
pub mod layout;
pub mod membership;
pub mod pack;
pub mod pki;
pub mod plan;
pub mod profile;
pub mod quote;
pub mod render;
pub mod report;
pub mod rollout;
pub mod seal;
pub mod sign;
pub mod snapshot;
pub mod state;
pub mod topology;
pub mod unpack;
pub mod verify;
pub mod versions;
pub mod x509;

use crate::error::{Error, Result};
use crate::keys::KeySource;
use crate::pki::{IssueError, LeafDecision, Pki};
use crate::plan::Plan;
use crate::state::{State, StateUpdate};
use crate::topology::Topology;
use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// What a build produced, before anything is written.
pub struct Build {
    /// The plan.
    pub plan: Plan,
    /// What happened to each leaf.
    pub decisions: Vec<LeafDecision>,
    /// Every secret.
    pub pki: Pki,
    /// Changes for the state folder.
    pub state_update: StateUpdate,
    /// The files of `dist/`, by name.
    pub dist: BTreeMap<String, Vec<u8>>,
    /// The signing key's fingerprint.
    pub fingerprint: String,
    /// Warnings about what ships (expiry inside 30 days, a changed validity).
    pub warnings: Vec<String>,
    /// What installing the new bundles does to each host.
    pub changes: Vec<rollout::HostChange>,
    /// The membership steps this build's bundles take, in order.
    pub membership: membership::Membership,
    /// What `rotate-ca`'s step did.
    pub rotation: Option<String>,
    /// The CA rotation phase the bundles are in (1 or 2), if one is in progress.
    pub ca_phase: Option<u8>,
}

/// Inputs of a build that do not come from the topology.
pub struct BuildEnv<'a> {
    /// The state as loaded.
    pub state: &'a State,
    /// Seconds since the epoch (certificate times).
    pub now: i64,
    /// Tar mtime when SOURCE_DATE_EPOCH is set; otherwise the state's creation time.
    pub source_date_epoch: Option<u64>,
    /// Where keys come from.
    pub keys: &'a dyn KeySource,
    /// `etcdpack renew`: which reused leaves to replace.
    pub renewal: Option<&'a pki::Renewal>,
    /// `build --reset-members`: forget the recorded members and bootstrap anew.
    pub reset_members: bool,
    /// `build --emit`: cloud-init user-data, an Ansible playbook.
    pub emit: emit::Emit,
    /// A file of the last build's `dist/` (by name), if the shell can read it. A tarball whose
    /// digest the state recorded and which holds exactly the new tar is kept as it is instead
    /// of being compressed again; a sealed bundle whose tarball and recipients are unchanged
    /// is kept instead of being sealed again (sealing is never reproducible).
    pub previous: Option<Previous<'a>>,
    /// Seals the bundles of members with recipients (see [`seal`]).
    pub sealer: &'a dyn seal::Sealer,
    /// `etcdpack rotate-ca`: the step of the CA rotation this build takes.
    pub ca_step: Option<pki::CaStep>,
    /// `etcdpack restore`: the snapshot every member's bundle restores.
    pub restore: Option<&'a Restore>,
}

/// The snapshot of `etcdpack restore`, read and checked ([`snapshot::status`]).
pub struct Restore {
    /// Its bytes.
    pub bytes: std::sync::Arc<Vec<u8>>,
    /// What it is.
    pub status: snapshot::Status,
    /// `--embed`: each bundle carries it.
    pub embed: bool,
}

/// The largest snapshot `--embed` puts into every bundle: a bundle stays well inside what
/// `verify` and `inspect` unpack ([`unpack::MAX_UNPACKED_BYTES`]).
pub const MAX_EMBEDDED_SNAPSHOT: u64 = 1 << 30;

/// Makes `plan` (a bootstrap of the topology's members) the restore of `r`: every member's
/// bundle pins it, with the token of the state's next restore. Refuses a snapshot that would
/// travel where it should not: in clear beside sealed bundles, in cloud-init user-data, left
/// behind by the Ansible playbook (which copies each bundle alone), or too large to embed.
pub fn with_restore(plan: &mut Plan, state: &State, r: &Restore, emit: emit::Emit) -> Result<()> {
    let size = r.status.size;
    if emit.cloud_init {
        return Err(Error::usage(format!(
            "--emit cloud-init: a restore's snapshot ({size} bytes) does not belong in user-data\n  help: deliver restore bundles by USB, scp or --emit ansible (with --embed)"
        )));
    }
    if !r.embed {
        let sealed: Vec<&str> =
            plan.members.iter().filter(|m| !m.recipients.is_empty()).map(|m| m.name.as_str()).collect();
        if !sealed.is_empty() {
            return Err(Error::usage(format!(
                "the members with recipients ({}) get sealed bundles, but the snapshot would travel beside them in clear, and it holds every secret the cluster stores\n  help: pass --embed, so that it travels sealed inside each bundle",
                sealed.join(", ")
            )));
        }
        if emit.ansible {
            return Err(Error::usage(
                "--emit ansible: the playbook copies each host's bundle alone, so the snapshot beside the bundles would not reach the hosts\n  help: pass --embed, so that it travels inside each bundle",
            ));
        }
    } else if size > MAX_EMBEDDED_SNAPSHOT {
        return Err(Error::usage(format!(
            "--embed: the snapshot has {size} bytes, and a bundle may hold at most {MAX_EMBEDDED_SNAPSHOT} of it (verify and inspect read no bigger bundle)\n  help: leave --embed out: the snapshot then travels beside the bundles as dist/{}",
            dist::SNAPSHOT
        )));
    }
    let number = state.record.restored.as_ref().map_or(0, |x| x.number) + 1;
    let restore = plan::RestorePlan {
        sha256: r.status.sha256.clone(),
        size,
        revision: r.status.revision,
        token: restore_token(&plan.cluster, number, &r.status.sha256),
        number,
        embedded: r.embed,
        has_digest: r.status.has_digest,
        bytes: r.bytes.clone(),
    };
    plan.set_restore(restore);
    Ok(())
}

/// The token of the cluster a restore starts: new with every restore built on this state
/// (its number), and tied to the snapshot.
pub fn restore_token(cluster: &str, number: u32, sha256: &str) -> String {
    format!("{cluster}-restore-{number}-{}", &sha256[..12.min(sha256.len())])
}

/// Reads a file the last build wrote into `dist/` (see [`BuildEnv::previous`]).
pub type Previous<'a> = &'a (dyn Fn(&str) -> Option<Vec<u8>> + Sync);

/// Runs the whole pipeline: [`issue`], then [`finish`]. `phase` is called with each stage's
/// name when it ends, so the shell can time stages without the core reading a clock.
pub fn build(t: &Topology, env: &BuildEnv<'_>, phase: &mut dyn FnMut(&'static str)) -> Result<Build> {
    let issued = issue(t, env, phase)?;
    finish(issued, env, phase)
}

/// The first half of a build: the plan, its checks, and every key and certificate. Its
/// [`StateUpdate`] already holds every new file of the state folder (only the record changes
/// later), so the shell can start writing them while [`finish`] renders and packs.
pub struct Issued {
    plan: Plan,
    membership: membership::Membership,
    pre: pki::Preflight,
    pki: Pki,
    rotation: Option<String>,
    ca_phase: Option<u8>,
    /// Changes for the state folder (its record is completed by [`finish`]).
    pub state_update: StateUpdate,
}

/// Plans `t`, checks the plan against the state and issues what it needs.
pub fn issue(t: &Topology, env: &BuildEnv<'_>, phase: &mut dyn FnMut(&'static str)) -> Result<Issued> {
    // A restore starts the topology's members as one new cluster, whatever the state recorded.
    let (mut plan, membership) = plan_for(t, env.state, env.reset_members || env.restore.is_some())?;
    if let Some(r) = env.restore {
        with_restore(&mut plan, env.state, r, env.emit)?;
    }
    if let Some(why) = emit::refusal(&plan, env.emit) {
        return Err(Error::usage(why));
    }
    phase("plan");
    let phase_now = env.state.record.ca_rotation;
    if env.renewal.is_some() && phase_now.is_some() {
        return Err(Error::refused(format!(
            "a CA rotation is in phase {} of 3: renew would issue leaves in the middle of it\n  help: finish the rotation with `etcdpack rotate-ca TOPOLOGY` (phase 2 issues every leaf again anyway), or abort it in phase 1 with `rotate-ca --abort`",
            phase_now.unwrap_or_default()
        )));
    }
    let rotated = match env.ca_step {
        None => None,
        Some(step) => {
            if let Some(why) = pki::rotation_refusal(phase_now, step, env.state.ca_cert.is_some()) {
                return Err(Error::refused(why));
            }
            if t.pki.existing_ca.is_some() {
                return Err(Error::refused(
                    "pki.existingCA names the CA to use, so etcdpack cannot replace it\n  help: remove pki.existingCA (the state folder keeps the CA) before rotating",
                ));
            }
            Some(pki::rotate(&plan, env.state, step, env.now, env.keys).map_err(issue_error)?)
        }
    };
    let state = rotated.as_ref().map_or(env.state, |r| &r.state);
    let all_again = pki::Renewal { ca_rotation: true, ..Default::default() };
    let renewal =
        if rotated.as_ref().is_some_and(|r| r.reissue_all) { Some(&all_again) } else { env.renewal };
    let pre = preflight(t, &plan, state, env.now, renewal)?;
    let (pki, mut state_update) =
        pki::issue(&plan, state, &pre, ca_source(t), env.now, env.keys).map_err(issue_error)?;
    let ca_phase = state.record.ca_rotation;
    let rotation = rotated.map(|r| {
        // The CA's own files move first, then the leaves' (retired), then the new files;
        // `issue` compared its record with the rotated one, so the step's own record stands
        // where `issue` changed nothing.
        let mut retire = r.update.retire;
        retire.append(&mut state_update.retire);
        state_update.retire = retire;
        let mut create = r.update.create;
        create.append(&mut state_update.create);
        state_update.create = create;
        state_update.record = state_update.record.take().or(r.update.record);
        r.said
    });
    phase("issue");
    Ok(Issued { plan, membership, pre, pki, rotation, ca_phase, state_update })
}

/// The second half of a build: renders, packs and signs the bundles of what [`issue`] made.
pub fn finish(issued: Issued, env: &BuildEnv<'_>, phase: &mut dyn FnMut(&'static str)) -> Result<Build> {
    let Issued { mut plan, membership, pre, pki, rotation, ca_phase, mut state_update } = issued;
    // Generations: each member's bundle keeps the one it was last built with while its bytes
    // stay the same; the bundles this build changes (and new ones) take the next number.
    let built = env.state.record.built.as_ref();
    let recorded_generation =
        |name: &str| built.and_then(|b| b.members.get(name)).map_or(0, |m| m.generation);
    let next = built.map_or(0, |b| {
        b.members.values().map(|m| m.generation).fold(b.generation.max(b.control_plane_generation), u64::max)
    }) + 1;
    for m in &mut plan.members {
        m.generation = Some(recorded_generation(&m.name)).filter(|g| *g > 0).unwrap_or(next);
    }
    plan.control_plane.generation =
        built.map(|b| b.control_plane_generation).filter(|g| *g > 0).unwrap_or(next);
    let mut sets = render::render(&plan, &pki).map_err(|e| Error::Internal(e.to_string()))?;
    phase("render");
    let mtime = env
        .source_date_epoch
        .or_else(|| state_update.record.as_ref().unwrap_or(&env.state.record).epoch.map(|e| e.max(0) as u64))
        .unwrap_or(0);
    let recorded = |member: &str| {
        let built = env.state.record.built.as_ref()?;
        match built.members.get(member) {
            Some(m) => Some(m.bundle_sha256.clone()),
            None if member == plan.control_plane.name => built.control_plane_sha256.clone(),
            None => None,
        }
    };
    let signer = sign::Signer256::from_pem(&pki.signing_key_pem)
        .map_err(|e| Error::StateCorrupt { path: "the state folder".into(), what: e.to_string() })?;
    // (member, tarball, its digest)
    let pack_all = |sets: &[render::FileSet]| -> Vec<(String, Vec<u8>, String)> {
        sets.par_iter()
            .map(|s| {
                let tar = pack::tar(s, mtime);
                let kept = recorded(&s.member).and_then(|digest| {
                    let old = env.previous?(&crate::dist::tarball(&s.member))?;
                    (hex::encode(Sha256::digest(&old)) == digest && pack::holds(&old, &tar))
                        .then_some((old, digest))
                });
                let (bytes, digest) = kept.unwrap_or_else(|| {
                    let bytes = pack::gzip(&tar);
                    let digest = hex::encode(Sha256::digest(&bytes));
                    (bytes, digest)
                });
                (s.member.clone(), bytes, digest)
            })
            .collect()
    };
    let mut tarballs = pack_all(&sets);
    let changed: BTreeSet<&str> = tarballs
        .iter()
        .filter(|(member, _, digest)| recorded(member).is_some_and(|was| was != *digest))
        .map(|(member, ..)| member.as_str())
        .collect();
    let stale: Vec<usize> = (0..plan.members.len())
        .filter(|&i| plan.members[i].generation != next && changed.contains(plan.members[i].name.as_str()))
        .collect();
    let cp_stale =
        plan.control_plane.generation != next && changed.contains(plan.control_plane.name.as_str());
    if !stale.is_empty() || cp_stale {
        for i in stale {
            plan.members[i].generation = next;
        }
        if cp_stale {
            plan.control_plane.generation = next;
        }
        sets = render::render(&plan, &pki).map_err(|e| Error::Internal(e.to_string()))?;
        tarballs = pack_all(&sets);
    }
    // The binaries every member ships, as the bundles hold them (hashed once, in render).
    let shipped: Option<Vec<String>> = plan.members.first().zip(sets.first()).map(|(m, set)| {
        m.files
            .iter()
            .filter(|f| matches!(f.content, layout::Content::Binary(_)))
            .filter_map(|f| Some(set.files.get(&f.path)?.sha256.clone()))
            .collect()
    });
    let runtime = runtime_digests(&plan, shipped)?;
    phase("pack");
    // Bundles with recipients ship sealed: dist/ never holds their clear tarball.
    // (member, file name in dist/, its bytes, the tarball's digest, the file's digest)
    let shipped_files = tarballs
        .into_par_iter()
        .map(|(member, bytes, digest)| {
            let name = plan.shipped(&member);
            let Some(m) = plan.members.iter().find(|m| m.name == member && !m.recipients.is_empty()) else {
                return Ok((member, name, bytes, digest.clone(), digest));
            };
            let was = built.and_then(|b| b.members.get(&member));
            let kept =
                was.filter(|w| w.bundle_sha256 == digest && w.recipients == m.recipients).and_then(|w| {
                    let old = env.previous?(&name)?;
                    let old_digest = hex::encode(Sha256::digest(&old));
                    (w.sealed_sha256.as_deref() == Some(&old_digest)).then_some((old, old_digest))
                });
            let (ciphertext, file_digest) = match kept {
                Some(old) => old,
                None => {
                    let to = m
                        .recipients
                        .iter()
                        .map(|r| seal::parse_recipient(r))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| Error::Internal(format!("recipient of {member}: {e}")))?;
                    let sealed = env
                        .sealer
                        .seal(&bytes, &to)
                        .map_err(|e| Error::Internal(format!("sealing {member}'s bundle: {e}")))?;
                    let sealed_digest = hex::encode(Sha256::digest(&sealed));
                    (sealed, sealed_digest)
                }
            };
            Ok((member, name, ciphertext, digest, file_digest))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut dist = BTreeMap::new();
    let mut sums = String::new();
    let mut digests = BTreeMap::new();
    let mut file_digests = BTreeMap::new();
    for (member, name, bytes, digest, file_digest) in shipped_files {
        sums.push_str(&format!("{file_digest}  {name}\n"));
        file_digests.insert(member.clone(), file_digest);
        digests.insert(member, digest);
        dist.insert(crate::dist::signature(&name), signer.sign(&bytes));
        dist.insert(name, bytes);
    }
    // A restore's snapshot travels beside the bundles, in the signed list.
    if let Some(r) = plan.restore.as_ref().filter(|r| !r.embedded) {
        sums.push_str(&format!("{}  {}\n", r.sha256, crate::dist::SNAPSHOT));
        dist.insert(crate::dist::SNAPSHOT.into(), r.bytes.to_vec());
    }
    dist.insert(crate::dist::signature(crate::dist::SUMS), signer.sign(sums.as_bytes()));
    dist.insert(crate::dist::SUMS.into(), sums.into_bytes());
    dist.insert(crate::dist::SIGNING_KEY.into(), signer.public_pem().into_bytes());
    dist.insert(crate::dist::PLAN_JSON.into(), plan_json(&plan, &pki, Some(&digests)).into_bytes());
    phase("sign");
    let mut warnings = pre.warnings(env.now);
    let installers = env.previous.map(|p| installer_changes(&plan, env.state, p)).unwrap_or_default();
    // The trust file every bundle ships, and the one the last build shipped (before a
    // recorded digest, the state's CA certificate alone).
    let trust = trust_digest(std::iter::once(&pki.ca.cert_pem).chain(&pki.also_trusted));
    let mut was = env.state.record.built.clone();
    if let Some(b) = was.as_mut().filter(|b| b.trust_sha256.is_none()) {
        b.trust_sha256 = env.state.ca_cert.as_ref().map(|c| trust_digest([c]));
    }
    let changes = rollout::changes(
        &plan,
        was.as_ref(),
        &runtime,
        Some(&digests),
        &pre.decisions,
        &installers,
        Some(&trust),
    );
    let fingerprint = signer.fingerprint();
    if env.emit != emit::Emit::default() {
        let internal = |e: render::RenderError| Error::Internal(e.to_string());
        let hb = render::compiled().map_err(internal)?;
        if env.emit.cloud_init {
            let (files, said) = emit::cloud_init(hb, &plan, &dist, &fingerprint).map_err(internal)?;
            dist.extend(files);
            warnings.extend(said);
        }
        if env.emit.ansible {
            dist.extend(emit::ansible(hb, &plan, &file_digests, &changes).map_err(internal)?);
        }
    }
    // The state remembers what shipped, so the next build can say what it changes.
    let mut record = state_update.record.clone().unwrap_or_else(|| env.state.record.clone());
    let mut now_built = rollout::built(&plan, &runtime, &digests);
    now_built.generation = now_built.generation.max(built.map_or(0, |b| b.generation));
    now_built.trust_sha256 = Some(trust);
    for m in &plan.members {
        if let Some(b) = now_built.members.get_mut(&m.name) {
            b.recipients = m.recipients.clone();
            b.sealed_sha256 = (!m.recipients.is_empty()).then(|| file_digests[&m.name].clone());
        }
    }
    record.built = Some(now_built);
    record.ca_key_holder = plan.members.iter().find(|m| m.carries_ca_key).map(|m| m.name.clone());
    if let Some(r) = &plan.restore {
        record.restored = Some(state::Restored {
            number: r.number,
            sha256: r.sha256.clone(),
            revision: r.revision,
            token: r.token.clone(),
        });
    }
    if record != env.state.record {
        state_update.record = Some(record);
    }
    Ok(Build {
        rotation,
        ca_phase,
        membership,
        changes,
        fingerprint,
        plan,
        decisions: pre.decisions,
        pki,
        state_update,
        dist,
        warnings,
    })
}

/// The bundles whose install.sh differs from the one the last build shipped: read from that
/// build's tarballs through `previous`, each only when its digest is the one the state
/// recorded. A bundle without such a tarball is not named (nothing is known of it).
pub fn installer_changes(plan: &Plan, state: &State, previous: Previous<'_>) -> BTreeSet<String> {
    let Some(built) = state.record.built.as_ref() else { return BTreeSet::new() };
    installer::texts(plan)
        .into_iter()
        .filter(|(name, text)| {
            let recorded = match built.members.get(name) {
                Some(m) => Some(&m.bundle_sha256),
                None if *name == plan.control_plane.name => built.control_plane_sha256.as_ref(),
                None => None,
            };
            let old = recorded.and_then(|digest| {
                let old = previous(&crate::dist::tarball(name))?;
                (hex::encode(Sha256::digest(&old)) == *digest).then_some(old)
            });
            old.and_then(|old| unpack::unpack(&old).ok())
                .is_some_and(|u| u.files.get("install.sh").is_none_or(|f| f.bytes != text.as_bytes()))
        })
        .map(|(name, _)| name)
        .collect()
}

/// Each member's runtime digest (its manifest, or its unit and the binaries it ships): what
/// decides whether installing its bundle restarts etcd, for `plan` and `build` alike. The
/// runner is rendered from the plan (it holds no key); `binaries` are the shipped binaries'
/// digests when the caller has them (a build), else they are computed.
pub fn runtime_digests(plan: &Plan, binaries: Option<Vec<String>>) -> Result<BTreeMap<String, String>> {
    let binaries = binaries.unwrap_or_else(|| render::binary_digests(plan));
    plan.members
        .iter()
        .map(|m| {
            let d = render::runtime_digest(plan, m, &binaries).map_err(|e| Error::Internal(e.to_string()))?;
            Ok((m.name.clone(), d))
        })
        .collect()
}

/// The plan of `t` against the members the state recorded: roles, views and the membership
/// steps (or the refusal of a change that would lose quorum).
pub fn plan_for(t: &Topology, state: &State, reset_members: bool) -> Result<(Plan, membership::Membership)> {
    let ca = membership::CaKey {
        shipped: t.pki.ca_key_on_first_member,
        named: t.pki.ca_key_holder.as_deref(),
        recorded: state.record.ca_key_holder.as_deref(),
    };
    let mut membership = membership::decide(
        &plan::peers(t),
        t.etcd.client_port,
        state.record.built.as_ref(),
        reset_members,
        ca,
    )
    .map_err(Error::refused)?;
    // A membership change during a CA rotation is folded in: the new member's bundle is the
    // phase's like every other.
    if let (Some(phase), false) = (state.record.ca_rotation, membership.steps.is_empty()) {
        membership.notes.push(format!(
            "a CA rotation is in phase {phase} of 3: the members this change adds trust the same CAs as the others and get their certificates from the CA that signs in this phase; the rotation goes on as before"
        ));
    }
    Ok((plan::plan(t, &membership), membership))
}

/// What identifies a set of trusted CA certificates whatever their order (etcd puts them all
/// in one pool): the SHA-256 of their sorted SHA-256s.
fn trust_digest<'a>(certs: impl IntoIterator<Item = &'a String>) -> String {
    let mut each: Vec<String> =
        certs.into_iter().map(|c| hex::encode(Sha256::digest(c.as_bytes()))).collect();
    each.sort();
    hex::encode(Sha256::digest(each.join("\n").as_bytes()))
}

fn ca_source(t: &Topology) -> pki::CaSource<'_> {
    pki::CaSource { existing: t.pki.existing_ca.as_ref().map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())) }
}

fn issue_error(e: IssueError) -> Error {
    match e {
        IssueError::CaMismatch(_) => Error::StateCaMismatch(e.to_string()),
        IssueError::Corrupt(what) => Error::StateCorrupt { path: "the state folder".into(), what },
        IssueError::Expiring(why) => Error::refused(why),
        IssueError::Crypto { .. } => Error::Internal(e.to_string()),
    }
}

/// Every check `build` makes before it creates anything, for `plan` to report the same
/// refusals: the state against the topology's CA, damaged state, expiry, a `--member` of
/// `renew` that is not in the topology, and an etcd downgrade.
pub fn preflight(
    t: &Topology,
    plan: &Plan,
    state: &State,
    now: i64,
    renewal: Option<&pki::Renewal>,
) -> Result<pki::Preflight> {
    if let Some(r) = renewal {
        let unknown: Vec<&str> = r.members.iter().filter(|n| !plan.holds(n)).map(String::as_str).collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = plan.holders().map(|(name, _)| name).collect();
            return Err(Error::usage(format!(
                "--member {}: not a member of the topology\n  help: members are {} (and {} for the control-plane bundle's certificate)",
                unknown.join(", "),
                known[..known.len() - 1].join(", "),
                plan.control_plane.name
            )));
        }
    }
    let mut pre = pki::preflight(plan, state, &ca_source(t), now, renewal).map_err(issue_error)?;
    if let Some(refusal) = pre.refusal(now) {
        return Err(issue_error(refusal));
    }
    if let Some(old) = &state.record.built {
        match rollout::etcd_move(&old.image_tag, &plan.image_tag) {
            Err(why) => return Err(Error::refused(why)),
            Ok(Some(warning)) => pre.notes.push(warning),
            Ok(None) => {}
        }
    }
    Ok(pre)
}

/// `plan.json`: the plan, each cert's serial and validity, and each bundle's digest.
pub fn plan_json(plan: &Plan, pki: &Pki, digests: Option<&BTreeMap<String, String>>) -> String {
    let cert = |i: &x509::CertInfo| json!({ "serial": i.serial_hex, "notBefore": x509::rfc3339(i.not_before), "notAfter": x509::rfc3339(i.not_after) });
    let certs: BTreeMap<&str, BTreeMap<&str, serde_json::Value>> = pki
        .leaves
        .iter()
        .map(|(m, leaves)| {
            (m.as_str(), leaves.iter().map(|(l, i)| (l.kubeadm_name(), cert(&i.info))).collect())
        })
        .collect();
    let doc = json!({
        "tool": { "name": "etcdpack", "version": env!("CARGO_PKG_VERSION") },
        "plan": plan,
        "ca": cert(&pki.ca.info),
        "certs": certs,
        "bundles": digests,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("JSON");
    s.push('\n');
    s
}
