//! What the commands print, made as text (or JSON) from the pipeline's results: main only
//! writes it out. Kept apart so that every message a user reads is in one place.

use crate::Build;
use crate::membership::{Membership, StepAction};
use crate::pki::{Action, LeafDecision, Preflight};
use crate::plan::Plan;
use crate::rollout::HostChange;
use std::fmt::Write;
use std::path::Path;

/// `writeln!` into a String, which cannot fail.
macro_rules! say {
    ($o:expr) => { $o.push('\n') };
    ($o:expr, $($t:tt)*) => { { let _ = writeln!($o, $($t)*); } };
}

/// What runs etcd on the members: the static pod's image, or etcd.service's binary and user.
pub fn runs_etcd(p: &Plan) -> String {
    match &p.systemd {
        Some(s) => format!("etcd.service runs {} as {}", s.binary, s.user),
        None => format!("image {}", p.image),
    }
}

/// A certificate decision in words.
pub fn action_text(a: &Action) -> String {
    match a {
        Action::New => "new".into(),
        Action::Reuse => "reuse".into(),
        Action::Imported => "imported from existingCA".into(),
        Action::Reissue(why) => format!("re-issue ({why})"),
        Action::Renew(why) => format!("renew ({why})"),
    }
}

/// Where `plan` reads: the state folder, and the last build's output folder (for a restore's
/// order).
#[derive(Clone, Copy)]
pub struct Places<'a> {
    /// The state folder.
    pub state_dir: &'a Path,
    /// The output folder.
    pub out_dir: &'a Path,
}

/// `plan` in words: the cluster, each member's certificates and files, the control plane,
/// the membership steps and the hosts that get a new bundle (or a restore's order).
pub fn plan(
    p: &Plan,
    ca: &str,
    places: Places<'_>,
    decisions: &[LeafDecision],
    steps: &Membership,
    hosts: &[HostChange],
) -> String {
    let mut o = String::new();
    say!(
        o,
        "cluster {} · kubeadm {} ({}) · {} · {} keys",
        p.cluster,
        p.kubernetes_version,
        p.behaviour.config_api.api_version(),
        runs_etcd(p),
        p.key_algorithm
    );
    say!(o, "state {}: etcd-ca {ca}", places.state_dir.display());
    for m in &p.members {
        let key_note = if m.carries_ca_key { ", carries ca.key" } else { "" };
        let sealed = match m.recipients.len() {
            0 => String::new(),
            n => format!(", sealed to {n} recipient(s) ({})", crate::dist::sealed(&m.name)),
        };
        say!(o, "member {} {}{key_note}{sealed}", m.name, m.address);
        for d in decisions.iter().filter(|d| d.member == m.name) {
            say!(o, "  {:<24} {}", d.leaf.kubeadm_name(), action_text(&d.action));
        }
        for f in &m.files {
            say!(o, "  {:04o} {}", f.mode, f.path);
        }
    }
    let cp = &p.control_plane;
    say!(o, "{} (kube-apiserver's etcd client files) for {}", cp.name, cp.endpoints.join(","));
    for d in decisions.iter().filter(|d| d.member == cp.name) {
        say!(o, "  {:<24} {}", d.leaf.kubeadm_name(), action_text(&d.action));
    }
    for f in &cp.files {
        say!(o, "  {:04o} {}", f.mode, f.path);
    }
    if let Some(r) = &p.restore {
        // A restore replaces every host's bundle, in its own order.
        o.push_str(&restore(r, p, places.out_dir));
        return o;
    }
    o.push_str(&membership(steps, None));
    o.push_str(&changes(hosts, None));
    o
}

/// What a build did: the cluster, every certificate decision, the signing key, where the
/// bundles went, the membership steps and the hosts that get a new bundle.
pub fn build(b: &Build, out_dir: &Path, state_dir: &Path, wrote: bool, renewal: bool) -> String {
    let mut o = String::new();
    let p = &b.plan;
    say!(
        o,
        "cluster {} · kubeadm {} · {} · {} keys",
        p.cluster,
        p.kubernetes_version,
        runs_etcd(p),
        p.key_algorithm
    );
    say!(o, "etcd-ca: {}", action_text(&b.pki.ca.action));
    if let Some(said) = &b.rotation {
        say!(o, "{said}");
    }
    match b.ca_phase {
        Some(1) => say!(
            o,
            "CA rotation in phase 1 of 3: install these bundles on every host, one at a time (each restarts etcd to read the new trust file, under the quorum guard), control plane last; then `etcdpack rotate-ca` for phase 2"
        ),
        Some(_) => say!(
            o,
            "CA rotation in phase 2 of 3: install these bundles on every host, one at a time (etcd reads new certificates on each connection: no restart), control plane last; then `etcdpack rotate-ca` for phase 3"
        ),
        None => {}
    }
    for d in &b.decisions {
        say!(o, "{:<16} {:<24} {}", d.member, d.leaf.kubeadm_name(), action_text(&d.action));
    }
    let key_state = if b.pki.signing_key_new { "new" } else { "reuse" };
    say!(o, "signing key {} ({key_state}); pin it on the hosts that verify bundles", b.fingerprint);
    let what = format!("{} member bundles and the {} bundle", p.members.len(), p.control_plane.name);
    match wrote {
        true => say!(o, "wrote {what} to {}; state {}", out_dir.display(), state_dir.display()),
        false => say!(o, "{} holds these {what} already; state {}", out_dir.display(), state_dir.display()),
    }
    if renewal {
        let renewed = b.decisions.iter().filter(|d| matches!(d.action, Action::Renew(_))).count();
        say!(o, "renewed {renewed} certificate(s)");
    }
    if let Some(r) = &p.restore {
        o.push_str(&restore(r, p, out_dir));
        return o;
    }
    o.push_str(&membership(&b.membership, Some((out_dir, p))));
    o.push_str(&changes(&b.changes, Some((out_dir, p))));
    o
}

/// A restore build's snapshot and the order to install its bundles.
pub fn restore(r: &crate::plan::RestorePlan, p: &Plan, out_dir: &Path) -> String {
    let mut o = String::new();
    let travels = if r.embedded {
        format!("inside every bundle ({})", crate::layout::SNAPSHOT_IN_BUNDLE)
    } else {
        format!("beside the bundles as {}", out_dir.join(crate::dist::SNAPSHOT).display())
    };
    say!(
        o,
        "restore from snapshot {} (revision {}, {} bytes), {travels}; the restored cluster's token is {}",
        r.sha256,
        r.revision,
        r.size,
        r.token
    );
    say!(
        o,
        "install, in this order (each stops etcd, moves its data dir into the backup and restores the snapshot):"
    );
    let last = p.members.len();
    for (i, m) in p.members.iter().enumerate() {
        let bundle = out_dir.join(p.shipped(&m.name));
        let copy =
            if r.embedded { String::new() } else { format!(" with {} beside it", crate::dist::SNAPSHOT) };
        let wait = if i + 1 == last {
            " (its --wait waits for the whole cluster)"
        } else {
            " (it cannot be healthy alone)"
        };
        say!(o, "  {}. {} on {} ({}){copy}{wait}", i + 1, bundle.display(), m.name, m.address);
    }
    say!(
        o,
        "  {}. {} on the control-plane nodes, where it is not installed yet: the same PKI, so the installed client certificate stays valid",
        last + 1,
        out_dir.join(p.shipped(&p.control_plane.name)).display()
    );
    say!(
        o,
        "a member's install.sh refuses while its etcd answers healthy (a working quorum would lose every write since revision {}); the next build makes ordinary bundles again",
        r.revision
    );
    o
}

/// What installing the new bundles does to each host, in the order to install them.
pub fn changes(changes: &[HostChange], out_dir: Option<(&Path, &Plan)>) -> String {
    let mut o = String::new();
    let order = crate::rollout::install_order(changes);
    if order.is_empty() {
        say!(o, "no host needs a new bundle: every bundle is byte-identical to the last build");
        return o;
    }
    let restarts = order.iter().filter(|c| c.restart).count();
    say!(o, "hosts that need the new bundle, in this order:");
    for (i, c) in order.iter().enumerate() {
        let bundle = match out_dir {
            Some((d, p)) => format!(" <- {}", d.join(p.shipped(&c.member)).display()),
            None => String::new(),
        };
        say!(o, "  {}. {}{bundle}: {}", i + 1, c.member, c.reasons.join("; "));
    }
    if restarts > 0 {
        say!(
            o,
            "  {restarts} host(s) restart etcd: install them one at a time with install.sh --wait (its quorum guard refuses when too few other members are healthy), the current leader last"
        );
    }
    for c in changes.iter().filter(|c| !c.install) {
        say!(o, "  {} unchanged", c.member);
    }
    o
}

/// The membership steps, in the order to run them, each with its bundle.
pub fn membership(m: &Membership, out_dir: Option<(&Path, &Plan)>) -> String {
    let mut o = String::new();
    for n in &m.notes {
        say!(o, "note: {n}");
    }
    if m.steps.is_empty() {
        return o;
    }
    say!(o, "membership changes, one at a time in this order (each waits for a healthy cluster):");
    for (i, s) in m.steps.iter().enumerate() {
        let bundle = match out_dir {
            Some((d, p)) => d.join(p.shipped(&s.member)).display().to_string(),
            None => crate::dist::tarball(&s.member),
        };
        let verb = match s.action {
            StepAction::Add => "add",
            StepAction::Replace => "replace",
            StepAction::Remove => "remove",
        };
        say!(o, "  {}. {verb} {} ({}) with {bundle}: {}", i + 1, s.member, s.peer_url, s.what);
        if let Some(cmd) = &s.dead_host {
            say!(o, "     if {} is dead, run this on any other member instead:\n     {cmd}", s.member);
        }
    }
    o
}

/// `plan --json`: the plan, the certificate decisions, what ships and expires, the hosts
/// that get a new bundle and their order, and the membership steps.
pub fn plan_json(p: &Plan, pre: &Preflight, steps: &Membership, hosts: &[HostChange]) -> String {
    let doc = serde_json::json!({
        "plan": p,
        "certificates": pre.decisions,
        "expiry": pre.shipped,
        "notes": pre.notes,
        "hosts": hosts,
        "membership": steps,
        "installOrder": crate::rollout::install_order(hosts).iter().map(|c| &c.member).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&doc).expect("JSON")
}

/// One bundle's `verify` checks under `heading`: ok or FAIL with the reason.
pub fn checks(heading: &str, checks: &[crate::verify::Check]) -> String {
    let mut o = String::new();
    say!(o, "{heading}");
    for c in checks {
        match &c.failure {
            None => say!(o, "  ok    {}", c.what),
            Some(why) => say!(o, "  FAIL  {}: {why}", c.what),
        }
    }
    o
}

/// Whether `count` bundles verified together agree (`problems` empty) or how they do not.
pub fn agreement(count: usize, unopened: usize, problems: &[String]) -> String {
    let mut o = String::new();
    say!(o, "{count} bundles together");
    if problems.is_empty() {
        say!(o, "  ok    one cluster, one CA, one signing key, one member list, no member twice");
    }
    if unopened > 0 {
        say!(
            o,
            "  note  {unopened} sealed bundle(s) not opened (no --identity for them) are left out of this comparison"
        );
    }
    for p in problems {
        say!(o, "  FAIL  bundles agree: {p}");
    }
    o
}
