//! Rendering: every text file of a bundle comes from a template in `templates/`, filled from
//! the plan. Handlebars runs strict (an unknown variable is an error) and never HTML-escapes;
//! values that land in YAML or shell go through the `yaml` and `shell` helpers, which quote
//! the way go-yaml and POSIX shells need.

use crate::layout::{self, Kind, templates};
use crate::layout::{Content, PlannedFile};
use crate::pki::Pki;
use crate::plan::{MemberPlan, Plan};
use crate::x509::rfc3339;
use handlebars::Handlebars;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The templates, embedded at build time; the id is the path under `templates/` without `.hbs`.
pub const TEMPLATES: [(&str, &str); 14] = [
    (templates::KUBEADMCFG, include_str!("../templates/kubeadmcfg.yaml.hbs")),
    (templates::ETCD_MANIFEST, include_str!("../templates/etcd.yaml.hbs")),
    (templates::KUBELET_CONF, include_str!("../templates/kubelet.conf.hbs")),
    (templates::DROPIN, include_str!("../templates/20-etcd-service-manager.conf.hbs")),
    (templates::EXPIRY_SCRIPT, include_str!("../templates/etcdpack-expiry.hbs")),
    (templates::EXPIRY_SERVICE, include_str!("../templates/etcdpack-expiry.service.hbs")),
    (templates::EXPIRY_TIMER, include_str!("../templates/etcdpack-expiry.timer.hbs")),
    (templates::SNAPSHOT_SCRIPT, include_str!("../templates/etcdpack-snapshot.hbs")),
    (templates::SNAPSHOT_SERVICE, include_str!("../templates/etcdpack-snapshot.service.hbs")),
    (templates::SNAPSHOT_TIMER, include_str!("../templates/etcdpack-snapshot.timer.hbs")),
    (templates::ETCD_EXTERNAL, include_str!("../templates/etcd-external.yaml.hbs")),
    (templates::ETCD_UNIT, include_str!("../templates/etcd.service.hbs")),
    (templates::USER_DATA, include_str!("../templates/user-data.hbs")),
    (templates::ANSIBLE_INVENTORY, include_str!("../templates/ansible-inventory.yml.hbs")),
];

/// One file of a bundle, ready to pack.
#[derive(Clone, Debug)]
pub struct BundleFile {
    /// Unix mode.
    pub mode: u32,
    /// Contents (shared, since an image archive goes into every bundle).
    pub bytes: Arc<Vec<u8>>,
    /// SHA-256 of the contents, hex: computed once, used by bundle.json and SHA256SUMS.
    pub sha256: String,
}

impl BundleFile {
    /// A file whose digest is computed here.
    pub fn new(mode: u32, bytes: Vec<u8>) -> BundleFile {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        BundleFile { mode, bytes: Arc::new(bytes), sha256 }
    }
}

/// A bundle before packing: paths relative to its top folder.
#[derive(Clone, Debug)]
pub struct FileSet {
    /// Member name, or [`crate::layout::CONTROL_PLANE`] (the top folder).
    pub member: String,
    /// Files by path, sorted.
    pub files: BTreeMap<String, BundleFile>,
}

/// A template failed: a bug in etcdpack, since the templates ship with it.
#[derive(Debug, thiserror::Error)]
#[error("template {template} failed (a bug in etcdpack): {why}")]
pub struct RenderError {
    /// Template id.
    pub template: String,
    /// Handlebars' reason.
    pub why: String,
}

mod helpers {
    #![allow(missing_docs)]
    use super::json_text;
    use crate::quote::{shell_quote, systemd_arg, yaml_scalar};
    use handlebars::handlebars_helper;
    handlebars_helper!(yaml_helper: |s: Json| yaml_scalar(&json_text(s)));
    handlebars_helper!(shell_helper: |s: Json| shell_quote(&json_text(s)));
    handlebars_helper!(systemd_helper: |s: Json| systemd_arg(&json_text(s)));
}
use helpers::{shell_helper, systemd_helper, yaml_helper};

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The compiled templates: a strict handlebars registry that never escapes. Every template is
/// a few KB (install.sh is assembled from shell files instead, in `installer`), so each
/// compiles whole.
pub struct Templates {
    hb: Handlebars<'static>,
}

impl Templates {
    /// Renders template `id` with `ctx` (a failure names the template).
    pub fn render(&self, id: &str, ctx: &impl Serialize) -> Result<String, RenderError> {
        let ctx = handlebars::Context::wraps(ctx)
            .map_err(|e| RenderError { template: id.into(), why: e.to_string() })?;
        self.render_in(id, &ctx)
    }

    /// Renders template `id` in a context made once for several templates.
    fn render_in(&self, id: &str, ctx: &handlebars::Context) -> Result<String, RenderError> {
        if !self.hb.has_template(id) {
            return Err(RenderError { template: id.into(), why: "no such template".into() });
        }
        self.hb
            .render_with_context(id, ctx)
            .map_err(|e| RenderError { template: id.into(), why: e.to_string() })
    }
}

/// Compiles every template, each on its own core.
pub fn registry() -> Result<Templates, RenderError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("yaml", Box::new(yaml_helper));
    hb.register_helper("shell", Box::new(shell_helper));
    hb.register_helper("systemd", Box::new(systemd_helper));
    let compiled: Vec<(&str, handlebars::Template)> = TEMPLATES
        .into_par_iter()
        .map(|(id, text)| {
            let t = handlebars::Template::compile_with_name(text, id.to_string())
                .map_err(|e| RenderError { template: id.into(), why: e.to_string() })?;
            Ok((id, t))
        })
        .collect::<Result<_, RenderError>>()?;
    for (id, t) in compiled {
        hb.register_template(id, t);
    }
    Ok(Templates { hb })
}

/// Starts compiling the templates on the thread pool and returns at once, so that the
/// shell's reading of the topology and the state overlaps it; [`compiled`] waits for it.
pub fn prepare() {
    rayon::spawn(|| drop(compiled()));
}

/// The templates, compiled once per process.
pub fn compiled() -> Result<&'static Templates, RenderError> {
    static REGISTRY: std::sync::OnceLock<Result<Templates, RenderError>> = std::sync::OnceLock::new();
    match REGISTRY.get_or_init(registry) {
        Ok(hb) => Ok(hb),
        Err(e) => Err(RenderError { template: e.template.clone(), why: e.why.clone() }),
    }
}

/// The SHA-256 (hex) of what runs etcd on a member (its static pod manifest, or its unit
/// and the binaries it runs): when it changes, installing the bundle restarts etcd. Needs no
/// keys, so `plan` can tell. `binaries` are the binaries' SHA-256 (hex), as
/// [`binary_digests`] gives them.
pub fn runtime_digest(plan: &Plan, m: &MemberPlan, binaries: &[String]) -> Result<String, RenderError> {
    let hb = compiled()?;
    let id = plan.runtime.runner_template();
    let text = hb.render(id, &context(plan, m))?;
    Ok(runner_digest(clean(&text).as_bytes(), binaries))
}

/// The SHA-256 (hex) of each binary the plan ships, in order.
pub fn binary_digests(plan: &Plan) -> Vec<String> {
    plan.systemd
        .iter()
        .flat_map(|s| &s.binaries)
        .map(|(_, b)| hex::encode(Sha256::digest(b.as_slice())))
        .collect()
}

/// What runs etcd, as one digest: the runner file's SHA-256 when nothing else runs with it
/// (a static pod), else that of the file followed by each binary's SHA-256 (hex).
pub fn runner_digest(runner: &[u8], binaries: &[String]) -> String {
    let mut digest = Sha256::new();
    digest.update(runner);
    for b in binaries {
        digest.update(b.as_bytes());
    }
    hex::encode(digest.finalize())
}

/// The unit's `ExecStart=` value: the binary, then the manifest's flags, one per line.
fn exec_start(binary: &str, command: &[String]) -> String {
    std::iter::once(crate::quote::systemd_arg(binary))
        .chain(command.iter().skip(1).map(|a| crate::quote::systemd_arg(a)))
        .collect::<Vec<_>>()
        .join(" \\\n  ")
}

/// Renders every bundle of the plan: the members' in topology order, then the control
/// plane's.
pub fn render(plan: &Plan, pki: &Pki) -> Result<Vec<FileSet>, RenderError> {
    let hb = compiled()?;
    // The image archive is the same in every bundle: hash it once.
    let image = plan.image_archive_bytes.as_ref().map(|bytes| BundleFile {
        mode: 0o644,
        bytes: bytes.clone(),
        sha256: hex::encode(Sha256::digest(bytes.as_slice())),
    });
    // Likewise the binaries of an etcd release archive.
    let binaries: Vec<BundleFile> = plan
        .systemd
        .iter()
        .flat_map(|s| &s.binaries)
        .map(|(_, bytes)| BundleFile {
            mode: 0o755,
            bytes: bytes.clone(),
            sha256: hex::encode(Sha256::digest(bytes.as_slice())),
        })
        .collect();
    // Every bundle carries the build's public key and its signature of SHA256SUMS.
    let signer = crate::sign::Signer256::from_pem(&pki.signing_key_pem)
        .map_err(|e| RenderError { template: "the signing key".into(), why: e.to_string() })?;
    let signing_key = BundleFile::new(0o644, signer.public_pem().into_bytes());
    // A restore's snapshot, whose digest the plan already holds.
    let snapshot = plan.restore.as_ref().filter(|r| r.embedded).map(|r| BundleFile {
        mode: 0o600,
        bytes: r.bytes.clone(),
        sha256: r.sha256.clone(),
    });
    let shared = Shared {
        image: image.as_ref(),
        binaries: &binaries,
        signing_key: Some(&signing_key),
        snapshot: snapshot.as_ref(),
    };
    let keys_only = Shared { signing_key: Some(&signing_key), ..Shared::default() };
    // Bundles are independent: render them on every core (members, the control plane, then
    // the leaving members).
    let members = plan.members.len();
    (0..members + 1 + plan.leaving.len())
        .into_par_iter()
        .map(|i| match i {
            i if i < members => render_member(hb, plan, &plan.members[i], pki, shared, &signer),
            i if i == members => render_control_plane(hb, plan, pki, keys_only, &signer),
            i => render_leave(hb, plan, &plan.leaving[i - members - 1], pki, keys_only, &signer),
        })
        .collect()
}

/// What the control-plane bundle's templates read (etcd-external.yaml).
#[derive(Serialize)]
struct ControlPlaneContext<'a> {
    cluster: &'a str,
    tool_version: &'static str,
    kubernetes_version: &'a str,
    api_version: &'static str,
    pki_dir: &'static str,
    endpoints: &'a [String],
    member: Named<'a>,
}

/// `{ name }`: the bundle's name where a template says `member.name`.
#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

fn control_plane_context(plan: &Plan) -> ControlPlaneContext<'_> {
    let cp = &plan.control_plane;
    ControlPlaneContext {
        cluster: &plan.cluster,
        tool_version: env!("CARGO_PKG_VERSION"),
        kubernetes_version: &plan.kubernetes_version,
        api_version: plan.behaviour.config_api.api_version(),
        pki_dir: crate::layout::PKI_DIR,
        endpoints: &cp.endpoints,
        member: Named { name: &cp.name },
    }
}

/// What a member bundle's templates read: the plan's decisions, named as the templates use
/// them. Nothing here is decided: each field is the plan's (or the versions table's) answer.
#[derive(Serialize)]
struct MemberContext<'a> {
    cluster: &'a str,
    tool_version: &'static str,
    kubernetes_version: &'a str,
    api_version: &'static str,
    v1beta3: bool,
    encryption_algorithm: Option<&'static str>,
    ecdsa_feature_gate: bool,
    cert_validity: Option<&'a str>,
    ca_validity: Option<&'a str>,
    image_repository: Option<&'a str>,
    image_tag: &'a str,
    data_dir: &'a str,
    kubeadm_data_dir: Option<&'a str>,
    image: &'a str,
    creation_timestamp_null: bool,
    readiness_probe: bool,
    named_probe_port: bool,
    liveness_path: &'static str,
    startup_path: &'static str,
    cgroup_driver: &'a str,
    container_runtime_endpoint: &'a str,
    kubelet_path: &'a str,
    expiry_script_path: &'static str,
    expiry_metric_dir: &'static str,
    expiry_runtime_dir: &'static str,
    expiry_metric: &'static str,
    textfile_dir: &'static str,
    backup: Option<&'a crate::topology::Backup>,
    snapshot_metric_dir: &'static str,
    snapshot_runtime_dir: &'static str,
    snapshot_metric: &'static str,
    snapshot_script_path: &'static str,
    member: &'a MemberPlan,
    etcd_user: Option<&'a str>,
    exec_start: Option<String>,
}

fn context<'a>(plan: &'a Plan, m: &'a MemberPlan) -> MemberContext<'a> {
    let probes = plan.behaviour.probes;
    MemberContext {
        cluster: &plan.cluster,
        tool_version: env!("CARGO_PKG_VERSION"),
        kubernetes_version: &plan.kubernetes_version,
        api_version: plan.behaviour.config_api.api_version(),
        v1beta3: plan.is_v1beta3(),
        encryption_algorithm: plan.kubeadm.encryption_algorithm,
        ecdsa_feature_gate: plan.kubeadm.ecdsa_feature_gate,
        cert_validity: plan.kubeadm.cert_validity.as_deref(),
        ca_validity: plan.kubeadm.ca_validity.as_deref(),
        image_repository: plan.kubeadm.image_repository.as_deref(),
        image_tag: &plan.image_tag,
        data_dir: &plan.data_dir,
        kubeadm_data_dir: plan.kubeadm.data_dir.as_deref(),
        image: &plan.image,
        creation_timestamp_null: plan.behaviour.creation_timestamp_null,
        readiness_probe: probes.readiness(),
        named_probe_port: plan.behaviour.named_probe_port,
        liveness_path: probes.liveness_path(),
        startup_path: probes.startup_path(),
        cgroup_driver: &plan.cgroup_driver,
        container_runtime_endpoint: &plan.container_runtime_endpoint,
        kubelet_path: &plan.kubelet_path,
        expiry_script_path: crate::layout::EXPIRY_SCRIPT_PATH,
        expiry_metric_dir: crate::layout::EXPIRY_METRIC_DIR,
        expiry_runtime_dir: crate::layout::EXPIRY_RUNTIME_DIR,
        expiry_metric: crate::layout::EXPIRY_METRIC,
        textfile_dir: crate::layout::TEXTFILE_DIR,
        backup: plan.backup.as_ref(),
        snapshot_metric_dir: crate::layout::SNAPSHOT_METRIC_DIR,
        snapshot_runtime_dir: crate::layout::SNAPSHOT_RUNTIME_DIR,
        snapshot_metric: crate::layout::SNAPSHOT_METRIC,
        snapshot_script_path: crate::layout::SNAPSHOT_SCRIPT_PATH,
        member: m,
        etcd_user: plan.systemd.as_ref().map(|s| s.user.as_str()),
        exec_start: plan.systemd.as_ref().map(|s| exec_start(&s.binary, &m.command)),
    }
}

/// Files every member bundle shares, digested once.
#[derive(Clone, Copy, Default)]
struct Shared<'a> {
    image: Option<&'a BundleFile>,
    binaries: &'a [BundleFile],
    signing_key: Option<&'a BundleFile>,
    snapshot: Option<&'a BundleFile>,
}

fn render_member(
    hb: &Templates,
    plan: &Plan,
    m: &MemberPlan,
    pki: &Pki,
    shared: Shared<'_>,
    signer: &crate::sign::Signer256,
) -> Result<FileSet, RenderError> {
    let installer = crate::installer::of_member(plan, m);
    let mut files = render_files(hb, &m.files, &context(plan, m), pki, &m.name, shared, &installer)?;
    if let Some(f) = m.files.iter().find(|f| f.content == Content::BundleEnv) {
        files.insert(f.path.clone(), BundleFile::new(f.mode, bundle_env(plan, m, pki).into_bytes()));
    }
    // bundle.json names the installer's role, a member's as `bootstrap`.
    let role = match installer.role {
        crate::installer::Role::Member => "bootstrap",
        r => r.name(),
    };
    let replaces = installer.etcd.as_ref().and_then(|e| e.replaces.clone());
    let mut doc = bundle_json(plan, Kind::Member, &m.name, &m.files, pki, &files);
    doc.address = Some(m.address);
    doc.index = Some(m.index);
    doc.carries_ca_key = Some(m.carries_ca_key);
    doc.client_url = Some(m.client_url.clone());
    doc.peer_url = Some(m.peer_url.clone());
    doc.data_dir = Some(plan.data_dir.clone());
    doc.role = Some(role.into());
    doc.replaces = Some(replaces);
    doc.initial_cluster = Some(crate::plan::initial_cluster_of(&m.peers));
    doc.restore = plan.restore.as_ref().map(|r| crate::bundle::RestoreEntry {
        sha256: r.sha256.clone(),
        size: r.size,
        revision: r.revision,
        token: r.token.clone(),
        embedded: r.embedded,
    });
    // Static-pod bundles name no runtime (as before the systemd runtime existed).
    if let Some(sd) = &plan.systemd {
        doc.runtime = Some(plan.runtime.name().into());
        doc.etcd_user = Some(sd.user.clone());
        doc.etcd_binary = Some(sd.binary.clone());
    }
    let json = doc.to_text();
    Ok(seal(&m.name, &m.files, files, json, signer))
}

/// A leave bundle: its install.sh (`leave`) removes the member from the cluster through the
/// others (the members of this build), with the host's own installed certificates.
fn render_leave(
    hb: &Templates,
    plan: &Plan,
    l: &crate::membership::Leaving,
    pki: &Pki,
    shared: Shared<'_>,
    signer: &crate::sign::Signer256,
) -> Result<FileSet, RenderError> {
    // A leave bundle holds no template: install.sh, the key, bundle.json and the signed sums.
    let ctx = json!({});
    let installer = crate::installer::of_leave(plan, l);
    let files = render_files(hb, &l.files, &ctx, pki, "", shared, &installer)?;
    let mut doc = bundle_json(plan, Kind::Leave, &l.name, &l.files, pki, &files);
    doc.peer_url = Some(l.peer_url.clone());
    doc.role = Some("leave".into());
    let json = doc.to_text();
    Ok(seal(&l.name, &l.files, files, json, signer))
}

fn render_control_plane(
    hb: &Templates,
    plan: &Plan,
    pki: &Pki,
    shared: Shared<'_>,
    signer: &crate::sign::Signer256,
) -> Result<FileSet, RenderError> {
    let cp = &plan.control_plane;
    let installer = crate::installer::of_control_plane(plan);
    let mut files =
        render_files(hb, &cp.files, &control_plane_context(plan), pki, &cp.name, shared, &installer)?;
    if let Some(f) = cp.files.iter().find(|f| f.content == Content::BundleEnv) {
        let env = format!(
            "FORMAT=1\nCLUSTER={}\nMEMBER={}\nCA_SHA256={}\nGENERATION={}\n{}",
            plan.cluster,
            cp.name,
            hex::encode(Sha256::digest(pki.ca.cert_pem.as_bytes())),
            cp.generation,
            trusted_line(pki)
        );
        files.insert(f.path.clone(), BundleFile::new(f.mode, env.into_bytes()));
    }
    let mut doc = bundle_json(plan, Kind::ControlPlane, &cp.name, &cp.files, pki, &files);
    doc.endpoints = Some(cp.endpoints.clone());
    let json = doc.to_text();
    Ok(seal(&cp.name, &cp.files, files, json, signer))
}

/// Every planned file whose bytes come from a template, the PKI or the image archive.
fn render_files(
    hb: &Templates,
    planned: &[PlannedFile],
    ctx: &impl Serialize,
    pki: &Pki,
    holder: &str,
    shared: Shared<'_>,
    installer: &crate::installer::Data,
) -> Result<BTreeMap<String, BundleFile>, RenderError> {
    let none = BTreeMap::new();
    let leaves = pki.leaves.get(holder).unwrap_or(&none);
    // One context for every template of the bundle.
    let ctx = handlebars::Context::wraps(ctx)
        .map_err(|e| RenderError { template: "context".into(), why: e.to_string() })?;
    let mut files = BTreeMap::new();
    for f in planned {
        let bytes: Vec<u8> = match &f.content {
            Content::Installer => crate::installer::assemble(installer).into_bytes(),
            Content::Template(id) => {
                let text = hb.render_in(id, &ctx)?;
                clean(&text).into_bytes()
            }
            Content::Cert(leaf) => leaves[leaf].cert_pem.clone().into_bytes(),
            Content::Key(leaf) => leaves[leaf].key_pem.clone().into_bytes(),
            Content::CaCert => pki.trust_pem().into_bytes(),
            Content::CaKey => pki.ca.key_pem.clone().into_bytes(),
            Content::SigningKey => {
                if let Some(key) = shared.signing_key {
                    files.insert(f.path.clone(), key.clone());
                }
                continue;
            }
            Content::ImageArchive => {
                if let Some(image) = shared.image {
                    files.insert(f.path.clone(), image.clone());
                }
                continue;
            }
            Content::Binary(i) => {
                if let Some(b) = shared.binaries.get(*i) {
                    files.insert(f.path.clone(), b.clone());
                }
                continue;
            }
            Content::Snapshot => {
                if let Some(s) = shared.snapshot {
                    files.insert(f.path.clone(), s.clone());
                }
                continue;
            }
            Content::BundleEnv | Content::BundleJson | Content::Sums | Content::SumsSig => continue,
        };
        files.insert(f.path.clone(), BundleFile::new(f.mode, bytes));
    }
    Ok(files)
}

/// Adds bundle.json, then SHA256SUMS (of every other file, the build's public key among
/// them), then the build's signature of SHA256SUMS, at the paths the plan gives: what
/// install.sh checks before anything else.
fn seal(
    name: &str,
    planned: &[PlannedFile],
    mut files: BTreeMap<String, BundleFile>,
    bundle_json: String,
    signer: &crate::sign::Signer256,
) -> FileSet {
    let path_of = |c: Content| planned.iter().find(|f| f.content == c).map(|f| f.path.clone());
    if let Some(path) = path_of(Content::BundleJson) {
        files.insert(path, BundleFile::new(0o644, bundle_json.into_bytes()));
    }
    let sums: String = files.iter().map(|(path, f)| format!("{}  {path}\n", f.sha256)).collect();
    if let Some(path) = path_of(Content::SumsSig) {
        files.insert(path, BundleFile::new(0o644, signer.sign(sums.as_bytes())));
    }
    if let Some(path) = path_of(Content::Sums) {
        files.insert(path, BundleFile::new(0o644, sums.into_bytes()));
    }
    FileSet { member: name.to_string(), files }
}

/// What install.sh reads of a bundle, line by line, without parsing JSON. Every value is a
/// DNS name, an IP address, a URL, hex or a number, so none needs quoting.
fn bundle_env(plan: &Plan, m: &MemberPlan, pki: &Pki) -> String {
    format!(
        "FORMAT=1\nCLUSTER={}\nMEMBER={}\nADDRESS={}\nCLIENT_URL={}\nPEER_URL={}\nCA_SHA256={}\nGENERATION={}\n{}",
        plan.cluster,
        m.name,
        m.address,
        m.client_url,
        m.peer_url,
        hex::encode(Sha256::digest(pki.ca.cert_pem.as_bytes())),
        m.generation,
        trusted_line(pki)
    ) + &restore_lines(plan)
}

/// A restore bundle's pins: the snapshot's digest, size and revision, and the new cluster's
/// token. Empty otherwise.
fn restore_lines(plan: &Plan) -> String {
    plan.restore.as_ref().map_or_else(String::new, |r| {
        format!(
            "RESTORE_TOKEN={}\nSNAPSHOT_SHA256={}\nSNAPSHOT_SIZE={}\nSNAPSHOT_REVISION={}\n",
            r.token, r.sha256, r.size, r.revision
        )
    })
}

/// During a CA rotation, `TRUSTED_CA_SHA256=` with the digest of every CA certificate in
/// ca.crt (comma-separated, the signing CA's first): a host recorded with either CA is this
/// cluster's. Empty otherwise, so bundles outside a rotation keep their bytes.
fn trusted_line(pki: &Pki) -> String {
    if pki.also_trusted.is_empty() {
        return String::new();
    }
    let digests: Vec<String> = std::iter::once(&pki.ca.cert_pem)
        .chain(&pki.also_trusted)
        .map(|pem| hex::encode(Sha256::digest(pem.as_bytes())))
        .collect();
    format!("TRUSTED_CA_SHA256={}\n", digests.join(","))
}

/// bundle.json of a bundle, common part: what the bundle is, every file with its digest and
/// every certificate with its dates; the caller adds what is particular to its kind.
fn bundle_json(
    plan: &Plan,
    kind: Kind,
    name: &str,
    planned: &[PlannedFile],
    pki: &Pki,
    files: &BTreeMap<String, BundleFile>,
) -> crate::bundle::BundleJson {
    use crate::bundle::{BundleJson, CertEntry, FileEntry, Tool};
    let entries = planned
        .iter()
        .filter_map(|f| {
            let body = files.get(&f.path)?;
            Some(FileEntry {
                path: f.path.clone(),
                install_path: f.install_path.clone(),
                mode: format!("{:04o}", f.mode),
                sha256: body.sha256.clone(),
                owner: (f.owner == layout::Owner::Etcd).then(|| "etcd-user".to_string()),
            })
        })
        .collect();
    let cert = |name: &str, path: String, info: &crate::x509::CertInfo| CertEntry {
        name: name.to_string(),
        path,
        serial: info.serial_hex.clone(),
        not_before: rfc3339(info.not_before),
        not_after: rfc3339(info.not_after),
    };
    let mut certs = vec![cert("etcd-ca", "rootfs/etc/kubernetes/pki/etcd/ca.crt".into(), &pki.ca.info)];
    for (leaf, issued) in pki.leaves.get(name).into_iter().flatten() {
        certs.push(cert(
            leaf.kubeadm_name(),
            format!("rootfs/etc/kubernetes/pki/{}.crt", leaf.stem()),
            &issued.info,
        ));
    }
    BundleJson {
        format: crate::bundle::FORMAT,
        kind: Some(kind.name().to_string()),
        tool: Tool { name: "etcdpack".into(), version: env!("CARGO_PKG_VERSION").into() },
        cluster: plan.cluster.clone(),
        member: name.to_string(),
        kubernetes_version: plan.kubernetes_version.clone(),
        config_api: plan.behaviour.config_api.api_version().to_string(),
        image: plan.image.clone(),
        ca_sha256: hex::encode(Sha256::digest(pki.ca.cert_pem.as_bytes())),
        initial_cluster: Some(plan.initial_cluster.clone()),
        files: entries,
        certs,
        ..BundleJson::default()
    }
}

/// `\n` line endings and exactly one trailing newline.
fn clean(text: &str) -> String {
    let mut s = text.replace("\r\n", "\n").trim_end_matches('\n').to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_puts_one_quoted_flag_on_each_line() {
        assert_eq!(
            exec_start("/usr/bin/etcd", &["etcd".into(), "--a=1".into(), "--b=2".into()]),
            "/usr/bin/etcd \\\n  --a=1 \\\n  --b=2"
        );
    }

    #[test]
    fn every_template_is_registered_and_every_planned_id_exists() {
        let ids: Vec<&str> = TEMPLATES.iter().map(|t| t.0).collect();
        assert_eq!(ids, templates::ALL.to_vec());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f != "ansible")
            .map(|f| f.trim_end_matches(".hbs").to_string())
            .collect();
        // templates/ansible/ holds the playbook's files, shipped verbatim.
        let mut verbatim: Vec<String> = std::fs::read_dir(format!("{dir}/ansible"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        verbatim.sort();
        assert_eq!(verbatim, ["install-bundle.yml", "site.yml"]);
        for f in &on_disk {
            assert!(ids.contains(&f.as_str()), "templates/{f}.hbs is not used");
        }
        assert_eq!(on_disk.len(), ids.len());
        registry().unwrap();
    }
}
