//! `verify`: everything a careful operator would check before carrying a bundle to a host:
//! the signature, every digest, the certificate chain, SANs, expiry and which keys are there.
//!
//! Pure: it takes the bundle's bytes, its signature, the trusted public key and `now`.

use crate::keys::PrivateKey;
use crate::layout::Kind;
use crate::profile::Leaf;
use crate::sign;
use crate::unpack::{Unpacked, unpack};
use crate::x509::{self, CertInfo, rfc3339};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// `None` when it passed, else why it failed.
    pub failure: Option<String>,
}

/// All checks of one bundle.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Checks in order.
    pub checks: Vec<Check>,
    /// What the bundle says it is, once its signature verified and bundle.json was read.
    pub summary: Option<Summary>,
}

/// What a bundle says about the cluster it belongs to, for comparing bundles with each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Cluster name.
    pub cluster: String,
    /// Member name.
    pub member: String,
    /// SHA-256 of the CA certificate PEM.
    pub ca_sha256: String,
    /// The `initial-cluster` the bundle was built for (absent in bundles of older releases):
    /// the members it knows.
    pub initial_cluster: Option<String>,
    /// The peer URL of a join's predecessor of the same name.
    pub replaces: Option<String>,
    /// A leave bundle's peer URL.
    pub leaves: Option<String>,
}

/// `name=url,...` as pairs.
fn pairs(initial_cluster: &str) -> impl Iterator<Item = (&str, &str)> {
    initial_cluster.split(',').filter_map(|p| p.split_once('='))
}

/// Problems between bundles that each verified: they must name one cluster, one CA and one
/// member list, and no member twice. `items` pairs each bundle's name with its summary.
pub fn agreement(items: &[(String, &Summary)]) -> Vec<String> {
    let mut out = Vec::new();
    let Some((first_name, first)) = items.first() else { return out };
    let mut members: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, s) in items {
        if s.cluster != first.cluster {
            out.push(format!(
                "{name} is for cluster {}, {first_name} for cluster {}",
                s.cluster, first.cluster
            ));
        }
        if s.ca_sha256 != first.ca_sha256 {
            out.push(format!(
                "{name} carries another etcd CA than {first_name} (a bundle of another build or cluster)"
            ));
        }
        if let Some(other) = members.insert(&s.member, name) {
            out.push(format!("{name} and {other} are both bundles of member {}", s.member));
        }
    }
    // Bundles of different builds know different member lists (a member's bundle keeps the
    // list it joined with), but never two addresses for one member, unless a join says it
    // replaces the old one.
    let replaced: Vec<&str> = items.iter().filter_map(|(_, s)| s.replaces.as_deref()).collect();
    let mut seen: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (bundle, s) in items {
        let known = s.initial_cluster.as_deref().into_iter().flat_map(pairs);
        let own = s.leaves.as_deref().map(|url| (s.member.as_str(), url));
        for (member, url) in known.chain(own) {
            if replaced.contains(&url) {
                continue;
            }
            match seen.get(member) {
                Some((other_url, other)) if *other_url != url => out.push(format!(
                    "{bundle} has member {member} at {url}, {other} at {other_url}: one of them is stale"
                )),
                Some(_) => {}
                None => {
                    seen.insert(member, (url, bundle));
                }
            }
        }
    }
    out
}

impl Report {
    fn pass(&mut self, what: impl Into<String>) {
        self.checks.push(Check { what: what.into(), failure: None });
    }
    fn fail(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.checks.push(Check { what: what.into(), failure: Some(why.into()) });
    }
    fn check(&mut self, what: impl Into<String>, result: Result<(), String>) {
        match result {
            Ok(()) => self.pass(what),
            Err(e) => self.fail(what, e),
        }
    }
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }
    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failure.is_some())
    }
}

/// Verifies one bundle. `signature` is the detached `.sig`; `public_pem` the trusted key.
pub fn verify(bundle: &[u8], signature: Option<&[u8]>, public_pem: &str, now: i64) -> Report {
    let r = signed(bundle, signature, public_pem, "signature by the signing key");
    if !r.ok() {
        // Nothing unsigned is unpacked: an attacker's archive is never decompressed.
        return r;
    }
    contents(r, bundle, public_pem, now)
}

/// A report that starts with the check of `bytes`' detached signature.
fn signed(bytes: &[u8], signature: Option<&[u8]>, public_pem: &str, what: &str) -> Report {
    let mut r = Report::default();
    let result = match signature {
        Some(sig) => sign::verify(public_pem, bytes, sig).map_err(|e| e.to_string()),
        None => Err("no .sig file beside the bundle".to_string()),
    };
    r.check(what, result);
    r
}

/// Verifies one sealed bundle (`<member>.tar.gz.age`): its signature, then, opened with
/// `identities` (a recipient's key), everything [`verify`] checks in a tarball. Without
/// identities only the signature and the age format can be checked, and the report says so.
pub fn verify_sealed(
    sealed: &[u8],
    signature: Option<&[u8]>,
    public_pem: &str,
    identities: Option<&crate::seal::Identities>,
    now: i64,
) -> Report {
    let mut r = signed(sealed, signature, public_pem, "signature by the signing key (over the sealed file)");
    if !r.ok() {
        return r;
    }
    if !crate::seal::is_sealed(sealed) {
        r.fail("sealed bundle", "not an age file (no age-encryption.org/v1 header)");
        return r;
    }
    let Some(ids) = identities else {
        r.pass("sealed with age; its contents are not checked: pass --identity with a recipient's key (such as the host's SSH host key) to check them");
        return r;
    };
    match ids.open(sealed) {
        Ok(plain) => {
            r.pass("opened with the given identity");
            contents(r, &plain, public_pem, now)
        }
        Err(e) => {
            r.fail("open the sealed bundle", e);
            r
        }
    }
}

/// The checks of a tarball whose signature held.
fn contents(mut r: Report, bundle: &[u8], public_pem: &str, now: i64) -> Report {
    let u = match unpack(bundle) {
        Ok(u) => u,
        Err(e) => {
            r.fail("bundle archive", e);
            return r;
        }
    };
    r.pass("bundle archive is safe to unpack");
    check_sums(&mut r, &u);
    check_inner_signature(&mut r, &u, public_pem);
    let meta = match u.files.get("bundle.json").map(|e| crate::bundle::BundleJson::parse(&e.bytes)) {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            r.fail("bundle.json", format!("unreadable: {e}"));
            return r;
        }
        None => {
            r.fail("bundle.json", "missing");
            return r;
        }
    };
    let Some(kind) = Kind::from_name(meta.kind.as_deref()) else {
        r.fail("bundle.json", format!("unknown kind {:?}", meta.kind.as_deref().unwrap_or_default()));
        return r;
    };
    let Some(runtime) = crate::layout::Runtime::from_name(meta.runtime.as_deref()) else {
        r.fail("bundle.json", format!("unknown runtime {:?}", meta.runtime.as_deref().unwrap_or_default()));
        return r;
    };
    check_layout(&mut r, &u, kind, runtime);
    check_snapshot(&mut r, &u, &meta);
    if kind != Kind::ControlPlane {
        r.pass(role_text(&meta));
        if runtime == crate::layout::Runtime::Systemd {
            r.pass(format!(
                "runtime systemd: etcd.service runs {} as {}",
                meta.etcd_binary.as_deref().unwrap_or("?"),
                meta.etcd_user.as_deref().unwrap_or("?")
            ));
        }
    }
    r.check(
        "top folder is the member's name",
        if u.top == meta.member {
            Ok(())
        } else {
            Err(format!("top folder {} but bundle.json says {}", u.top, meta.member))
        },
    );
    // A leave bundle holds no certificate or key (its layout check says so).
    if kind != Kind::Leave {
        check_pki(&mut r, &u, &meta, kind, now);
    }
    r.summary = Some(Summary {
        cluster: meta.cluster.clone(),
        member: meta.member.clone(),
        ca_sha256: meta.ca_sha256.clone(),
        initial_cluster: meta.initial_cluster.clone(),
        replaces: meta.replaces.clone().flatten(),
        leaves: (kind == Kind::Leave).then(|| meta.peer_url.clone()).flatten(),
    });
    r
}

/// What the bundle does to the membership, for the report.
fn role_text(meta: &crate::bundle::BundleJson) -> String {
    let knows = || {
        let names: Vec<&str> = meta
            .initial_cluster
            .as_deref()
            .into_iter()
            .flat_map(pairs)
            .filter(|(n, _)| *n != meta.member)
            .map(|(n, _)| n)
            .collect();
        names.join(", ")
    };
    match meta.role.as_deref() {
        Some("join") => format!(
            "role join: {}expects to find {} in the cluster, then adds {} as a learner and promotes it",
            meta.replaces
                .clone()
                .flatten()
                .map(|u| format!("removes the member at {u}, "))
                .unwrap_or_default(),
            knows(),
            meta.member
        ),
        Some("leave") => format!(
            "role leave: removes {} ({}) from the cluster",
            meta.member,
            meta.peer_url.as_deref().unwrap_or("?")
        ),
        Some("restore") => format!(
            "role restore: restores {} from the snapshot of revision {} as a member of a new cluster with {}",
            meta.member,
            meta.restore.as_ref().map_or_else(|| "?".to_string(), |r| r.revision.to_string()),
            knows()
        ),
        _ => format!("role bootstrap: starts the cluster with {}", knows()),
    }
}

/// A restore bundle's snapshot: the one bundle.json pins, when the bundle carries it (else it
/// travels beside, and install.sh checks it there); no other bundle carries one.
fn check_snapshot(r: &mut Report, u: &Unpacked, meta: &crate::bundle::BundleJson) {
    let carried = u.files.get(crate::layout::SNAPSHOT_IN_BUNDLE);
    let what = "the snapshot is the one bundle.json pins";
    match (&meta.restore, carried) {
        (None, None) => {}
        (None, Some(_)) => r.fail(what, "a bundle that restores nothing carries a snapshot"),
        (Some(p), None) if p.embedded => {
            r.fail(what, "bundle.json says the bundle carries it, but it does not")
        }
        (Some(_), None) => r.pass("the snapshot travels beside the bundle (install.sh checks its digest)"),
        (Some(p), Some(f)) => r.check(
            what,
            crate::snapshot::status(&f.bytes).map_err(|e| e.to_string()).and_then(|s| {
                if (s.sha256.as_str(), s.size, s.revision) == (p.sha256.as_str(), p.size, p.revision) {
                    Ok(())
                } else {
                    Err(format!(
                        "it has SHA-256 {} and revision {}, bundle.json pins {} and {}",
                        s.sha256, s.revision, p.sha256, p.revision
                    ))
                }
            }),
        ),
    }
}

fn check_sums(r: &mut Report, u: &Unpacked) {
    let Some(sums) = u.files.get("SHA256SUMS") else {
        r.fail("SHA256SUMS", "missing");
        return;
    };
    let text = String::from_utf8_lossy(&sums.bytes);
    let mut listed = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        match line.split_once("  ") {
            Some((digest, path)) if digest.len() == 64 => {
                listed.insert(path.to_string(), digest.to_string());
            }
            _ => r.fail("SHA256SUMS", format!("line {} is not `<sha256>  <path>`", n + 1)),
        }
    }
    let mut bad = Vec::new();
    for (path, digest) in &listed {
        match u.files.get(path) {
            None => bad.push(format!("{path} is listed but missing")),
            Some(e) if hex::encode(Sha256::digest(&e.bytes)) != *digest => {
                bad.push(format!("{path} does not match its digest"))
            }
            _ => {}
        }
    }
    for path in u.files.keys() {
        if path != "SHA256SUMS" && path != "SHA256SUMS.sig" && !listed.contains_key(path) {
            bad.push(format!("{path} is not listed"));
        }
    }
    r.check(
        format!("{} files match SHA256SUMS", listed.len()),
        if bad.is_empty() { Ok(()) } else { Err(bad.join("; ")) },
    );
}

/// What install.sh checks on the host before anything else: SHA256SUMS signed by the
/// trusted key, and the public key the bundle carries (pinned at a host's first install)
/// being that key.
fn check_inner_signature(r: &mut Report, u: &Unpacked, public_pem: &str) {
    let signed = match (u.files.get("SHA256SUMS"), u.files.get("SHA256SUMS.sig")) {
        (Some(sums), Some(sig)) => {
            sign::verify(public_pem, &sums.bytes, &sig.bytes).map_err(|e| e.to_string())
        }
        (_, None) => Err("no SHA256SUMS.sig in the bundle (install.sh refuses it): rebuild it".to_string()),
        (None, _) => Err("no SHA256SUMS".to_string()),
    };
    r.check("SHA256SUMS signed by the signing key (what install.sh checks)", signed);
    let carried = u.files.get("signing-key.pub").map(|e| String::from_utf8_lossy(&e.bytes).into_owned());
    let same = match (carried.as_deref().map(sign::fingerprint_of), sign::fingerprint_of(public_pem)) {
        (Some(Ok(a)), Ok(b)) if a == b => Ok(()),
        (Some(Ok(a)), Ok(b)) => Err(format!("it carries {a}, not {b}")),
        (None, _) => Err("missing".to_string()),
        (Some(Err(e)), _) | (_, Err(e)) => Err(e.to_string()),
    };
    r.check("signing-key.pub is the signing key", same);
}

/// The files a bundle of its kind holds (for a member, the guide's lists plus etcdpack's own).
fn check_layout(r: &mut Report, u: &Unpacked, kind: Kind, runtime: crate::layout::Runtime) {
    // The layout table with and without ca.key: whether this bundle should carry it is the
    // key placement check's business.
    use crate::layout::{MemberLayout, control_plane_files, member_files};
    let image = u
        .files
        .keys()
        .find_map(|p| p.strip_prefix("images/"))
        .filter(|n| !n.contains('/') && n.ends_with(".tar"));
    // The binaries of an etcd release archive (systemd) are optional.
    let binaries: Vec<String> = crate::layout::ETCD_BINARIES.map(String::from).to_vec();
    // Likewise the expiry timer (`monitoring.expiryTimer`) and the snapshot job (`backup`).
    let paths = |optional: bool| -> Vec<String> {
        let files = match kind {
            Kind::Member => member_files(&MemberLayout {
                runtime,
                carries_ca_key: optional,
                expiry_timer: optional,
                backup: optional,
                image_archive: image,
                binaries: if optional { &binaries } else { &[] },
                // A restore bundle may carry its snapshot (`restore --embed`).
                snapshot: optional,
            }),
            Kind::ControlPlane => control_plane_files(),
            Kind::Leave => crate::layout::leave_files(),
        };
        files.into_iter().map(|f| f.path).collect()
    };
    let (required, allowed) = (paths(false), paths(true));
    let missing: Vec<&String> = required.iter().filter(|p| !u.files.contains_key(*p)).collect();
    let unexpected: Vec<&String> = u.files.keys().filter(|p| !allowed.contains(p)).collect();
    let what = match kind {
        Kind::Member => "bundle holds a member's files and nothing else",
        Kind::ControlPlane => "bundle holds the control plane's files and nothing else",
        Kind::Leave => "bundle holds a leave's files and nothing else",
    };
    match (missing.is_empty(), unexpected.is_empty()) {
        (true, true) => r.pass(what),
        _ => r.fail(what, format!("missing {missing:?}, unexpected {unexpected:?}")),
    }
}

fn pem_at<'a>(u: &'a Unpacked, path: &str) -> Option<&'a str> {
    u.files.get(path).and_then(|e| std::str::from_utf8(&e.bytes).ok())
}

fn check_pki(r: &mut Report, u: &Unpacked, meta: &crate::bundle::BundleJson, kind: Kind, now: i64) {
    let pki = "rootfs/etc/kubernetes/pki";
    let ca = match pem_at(u, &format!("{pki}/etcd/ca.crt")).map(x509::parse_pem) {
        Some(Ok(ca)) if ca.is_ca => ca,
        Some(Ok(_)) => return r.fail("etcd/ca.crt", "not a CA certificate"),
        Some(Err(e)) => return r.fail("etcd/ca.crt", e),
        None => return r.fail("etcd/ca.crt", "missing"),
    };
    check_validity(r, "etcd/ca.crt", &ca, now);
    let ca_key_path = format!("{pki}/etcd/ca.key");
    let may_carry = kind == Kind::Member && meta.carries_ca_key == Some(true);
    match (u.files.contains_key(&ca_key_path), may_carry) {
        (true, true) => {
            r.check("etcd/ca.key belongs to etcd/ca.crt", key_matches(pem_at(u, &ca_key_path), &ca))
        }
        (true, false) if kind == Kind::ControlPlane => r.fail(
            "key placement",
            "etcd/ca.key is in the control-plane bundle, which must not hold the CA key",
        ),
        (true, false) => r.fail(
            "key placement",
            format!(
                "etcd/ca.key is in the bundle of {} (member #{}), which must not hold the CA key",
                meta.member,
                meta.index.unwrap_or_default()
            ),
        ),
        (false, true) => {
            r.fail("key placement", "bundle.json says this bundle carries etcd/ca.key, but it is missing")
        }
        (false, false) => r.pass("key placement: no CA key in this bundle"),
    }
    for &leaf in kind.leaves() {
        let name = format!("{}.crt", leaf.stem());
        let Some(cert) = pem_at(u, &format!("{pki}/{name}")) else {
            r.fail(&name, "missing");
            continue;
        };
        let info = match x509::parse_pem(cert) {
            Ok(i) => i,
            Err(e) => {
                r.fail(&name, e);
                continue;
            }
        };
        r.check(
            format!("{name} is signed by the bundle's CA"),
            if x509::signed_by(&info.der, &ca.der) {
                Ok(())
            } else {
                Err("not signed by etcd/ca.crt".into())
            },
        );
        r.check(
            format!("{}.key belongs to {name}", leaf.stem()),
            key_matches(pem_at(u, &format!("{pki}/{}.key", leaf.stem())), &info),
        );
        check_validity(r, &name, &info, now);
        if matches!(leaf, Leaf::EtcdServer | Leaf::EtcdPeer) {
            let Some(address) = meta.address else {
                r.fail(&name, "bundle.json names no address for the member");
                continue;
            };
            let has_ip = info.ip_addresses.contains(&address);
            let cn_ok = info.common_name == meta.member;
            r.check(
                format!("{name} names member {} at {address}", meta.member),
                match (has_ip, cn_ok) {
                    (true, true) => Ok(()),
                    (false, _) => Err(format!("no IP SAN {address} (has {:?})", info.ip_addresses)),
                    (_, false) => Err(format!("CN is {}, not {}", info.common_name, meta.member)),
                },
            );
        }
    }
}

fn key_matches(key_pem: Option<&str>, cert: &CertInfo) -> Result<(), String> {
    let key = PrivateKey::from_pem(key_pem.ok_or("key file missing")?).map_err(|e| e.to_string())?;
    if key.public_key_der() == cert.spki_der {
        Ok(())
    } else {
        Err("the key does not belong to the certificate".into())
    }
}

fn check_validity(r: &mut Report, name: &str, info: &CertInfo, now: i64) {
    let what = format!("{name} is valid now (until {})", rfc3339(info.not_after));
    if now > info.not_after {
        r.fail(what, format!("expired on {}", rfc3339(info.not_after)));
    } else if now < info.not_before {
        r.fail(what, format!("not valid before {}", rfc3339(info.not_before)));
    } else {
        r.pass(what);
    }
}
