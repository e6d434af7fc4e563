//! The thin shell: parses the command line, reads inputs, picks the clock and the key source,
//! calls the pure pipeline and writes what it returns. Exit codes: 0 success, 1 invalid
//! input or failed verification, 2 I/O or internal error.

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use etcdpack::error::{Error, Result};
use etcdpack::keys::{KeyAlgorithm, KeySource, PrivateKey};
use etcdpack::{fsio, keys, report, topology, unpack, verify};
use std::fmt;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Standard output. A closed pipe (`etcdpack verify ... | head -1`) ends the output quietly:
/// the command still finishes its work and exits with its own code.
fn out(args: fmt::Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(args);
}

/// Standard error, with the same tolerance for a closed pipe.
fn err(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

macro_rules! outln {
    () => { out(format_args!("\n")) };
    ($($t:tt)*) => { out(format_args!("{}\n", format_args!($($t)*))) };
}
macro_rules! errln {
    ($($t:tt)*) => { err(format_args!("{}\n", format_args!($($t)*))) };
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            match &e {
                // Diagnostics carry their own `error:`/`warning:` prefixes and a summary line.
                Error::Invalid(d) => errln!("{d}"),
                _ => errln!("error: {e}"),
            }
            e.exit_code()
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { file, force } => init(file, force),
        Command::Check { topology } => {
            let t = load(&topology)?;
            outln!(
                "{}: ok ({} members, kubeadm {})",
                topology.display(),
                t.members.len(),
                t.kubernetes_version
            );
            Ok(())
        }
        Command::Plan { topology, out, state, json, snapshot, embed } => {
            plan_cmd(&topology, &out, state, json, snapshot.as_deref().map(|s| (s, embed)))
        }
        Command::Build { topology, out, state, timings, reset_members, emit, user_data_with_ca_key } => {
            let emit = cli::emit_of(&emit, user_data_with_ca_key);
            build(&topology, &out, state, BuildOpts { timings, reset_members, emit, ..BuildOpts::default() })
        }
        Command::Renew { topology, members, within, output } => {
            let within = within.as_deref().map(parse_window).transpose()?;
            let renewal = etcdpack::pki::Renewal { members, within, ca_rotation: false };
            let emit = cli::emit_of(&output.emit, output.user_data_with_ca_key);
            let opts = BuildOpts { renewal: Some(&renewal), emit, ..BuildOpts::default() };
            build(&topology, &output.out, output.state, opts)
        }
        Command::RotateCa { topology, abort, output } => {
            let step = if abort { etcdpack::pki::CaStep::Abort } else { etcdpack::pki::CaStep::Advance };
            let emit = cli::emit_of(&output.emit, output.user_data_with_ca_key);
            let opts = BuildOpts { ca_step: Some(step), emit, ..BuildOpts::default() };
            build(&topology, &output.out, output.state, opts)
        }
        Command::Restore { topology, snapshot, embed, output } => {
            let restore = read_snapshot(&snapshot, embed)?;
            let emit = cli::emit_of(&output.emit, output.user_data_with_ca_key);
            let opts = BuildOpts { restore: Some(&restore), emit, ..BuildOpts::default() };
            build(&topology, &output.out, output.state, opts)
        }
        Command::Verify { bundles, pubkey, identity } => {
            verify_cmd(&bundles, pubkey.as_deref(), identities(&identity)?.as_ref())
        }
        Command::Inspect { bundles, pubkey, identity } => {
            inspect_cmd(&bundles, pubkey.as_deref(), identities(&identity)?.as_ref())
        }
        Command::Expiry { inputs, within, json, pubkey, identity } => {
            expiry_cmd(&inputs, &within, json, pubkey.as_deref(), identities(&identity)?.as_ref())
        }
    }
}

fn init(file: Option<PathBuf>, force: bool) -> Result<()> {
    let Some(path) = file else {
        out(format_args!("{}", etcdpack::example::EXAMPLE));
        return Ok(());
    };
    if path.is_dir() {
        return Err(Error::usage(format!(
            "{} is a folder\n  help: name the file to write, such as {}/etcd.yaml",
            path.display(),
            path.display()
        )));
    }
    let Some(text) = path.to_str().and_then(etcdpack::example::for_file) else {
        return Err(Error::usage(format!(
            "{:?} cannot be named in the example's comments\n  help: choose a file name of UTF-8 text without control characters",
            path.as_os_str()
        )));
    };
    fsio::write_user_file(&path, text.as_bytes(), force)?;
    let word = etcdpack::quote::shell_quote(&path.to_string_lossy());
    outln!(
        "wrote {}: the kubeadm guide's three hosts; edit it, then run `etcdpack check {word}`",
        path.display()
    );
    Ok(())
}

/// Reads a topology file: at most its size limit, and only text.
fn read_topology(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Error::usage(format!(
            "{} is a folder, not a topology file\n  help: give the YAML file, such as examples/etcd-topology.yaml",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(topology::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("cannot read", path, e))?;
    if bytes.len() > topology::MAX_FILE_BYTES {
        return Err(Error::usage(format!(
            "{} is larger than 1 MiB, more than any topology\n  help: check that this is the topology file",
            path.display()
        )));
    }
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Ok(text),
        _ => Err(Error::usage(format!(
            "{} is not a text file (it holds bytes that are not UTF-8 text)\n  help: give the topology YAML file; `etcdpack init etcd.yaml` writes an example",
            path.display()
        ))),
    }
}

/// Reads and validates a topology, printing warnings; errors become `Error::Invalid`.
fn load(path: &Path) -> Result<topology::Topology> {
    let text = read_topology(path)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (t, diags) = topology::parse(&path.display().to_string(), &text, &fsio::DirFiles(base));
    match t {
        Some(t) => {
            for w in diags.warnings() {
                errln!("{}", w.render(&diags.file));
            }
            Ok(t)
        }
        None => Err(Error::Invalid(diags)),
    }
}

/// A `--within` window in seconds.
fn parse_window(text: &str) -> Result<i64> {
    topology::parse_duration(text).filter(|s| *s <= topology::MAX_VALIDITY).map(|s| s as i64).ok_or_else(
        || Error::usage(format!("--within {text} is not a duration\n  help: write it like 30d, 720h or 60d")),
    )
}

fn plan_cmd(
    path: &Path,
    out_dir: &Path,
    state: Option<PathBuf>,
    json: bool,
    restore: Option<(&Path, bool)>,
) -> Result<()> {
    let t = load(path)?;
    let state_dir = state.unwrap_or_else(|| fsio::default_state_dir(path));
    let st = fsio::load_state(&state_dir)?;
    let (mut p, membership) = etcdpack::plan_for(&t, &st, restore.is_some())?;
    if let Some((snapshot, embed)) = restore {
        if st.ca_cert.is_none() {
            return Err(Error::usage(format!(
                "nothing to restore: {} holds no certificates yet\n  help: name the cluster's state folder with --state",
                state_dir.display()
            )));
        }
        etcdpack::with_restore(&mut p, &st, &read_snapshot(snapshot, embed)?, Default::default())?;
    }
    let now = now();
    // The same checks build runs before it creates anything: the same refusals.
    let pre = etcdpack::preflight(&t, &p, &st, now, None)?;
    let runtime = etcdpack::runtime_digests(&p, None)?;
    let previous = |file: &str| fsio::read_previous(out_dir, file);
    let installers = etcdpack::installer_changes(&p, &st, &previous);
    let changes = etcdpack::rollout::changes(
        &p,
        st.record.built.as_ref(),
        &runtime,
        None,
        &pre.decisions,
        &installers,
        None,
    );
    for w in pre.warnings(now) {
        errln!("warning: {w}");
    }
    if json {
        outln!("{}", report::plan_json(&p, &pre, &membership, &changes));
        return Ok(());
    }
    let ca = match (&t.pki.existing_ca, &st.ca_cert) {
        (Some(_), None) => "import from existingCA",
        (_, Some(_)) => "reuse",
        (None, None) => "new",
    };
    let ca = match st.record.ca_rotation {
        Some(1) => format!(
            "{ca}; CA rotation in phase 1 of 3 (both CAs trusted, the old one signing): `etcdpack rotate-ca` takes phase 2, `--abort` goes back"
        ),
        Some(phase) => format!(
            "{ca}; CA rotation in phase {phase} of 3 (both CAs trusted, the new one signing): `etcdpack rotate-ca` takes phase 3"
        ),
        None => ca.to_string(),
    };
    let places = report::Places { state_dir: &state_dir, out_dir };
    out(format_args!("{}", report::plan(&p, &ca, places, &pre.decisions, &membership, &changes)));
    Ok(())
}

/// Counts keys as the parallel pass makes them and shows the count on a terminal.
struct Progress<'a> {
    inner: &'a dyn KeySource,
    done: AtomicUsize,
    shown: bool,
}

impl KeySource for Progress<'_> {
    fn key(&self, alg: KeyAlgorithm, label: &str) -> PrivateKey {
        let key = self.inner.key(alg, label);
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.shown {
            err(format_args!(
                "\r\x1b[Kgenerating {alg} keys on {} threads: {n} done",
                rayon::current_num_threads()
            ));
        }
        key
    }
    fn serial(&self, label: &str) -> u64 {
        self.inner.serial(label)
    }
}

/// What kind of build: `--timings`, `renew`'s selection, `--reset-members`.
#[derive(Default)]
struct BuildOpts<'a> {
    timings: bool,
    renewal: Option<&'a etcdpack::pki::Renewal>,
    reset_members: bool,
    emit: etcdpack::emit::Emit,
    ca_step: Option<etcdpack::pki::CaStep>,
    restore: Option<&'a etcdpack::Restore>,
}

/// Reads and checks the snapshot of `etcdpack restore`.
fn read_snapshot(path: &Path, embed: bool) -> Result<etcdpack::Restore> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read the snapshot", path, e))?;
    if !meta.is_file() {
        return Err(Error::usage(format!(
            "{}: not a file\n  help: give the snapshot file that `etcdctl snapshot save` or etcdpack-snapshot wrote",
            path.display()
        )));
    }
    let too_big = |size: u64| {
        Error::usage(format!(
            "{}: {size} bytes or more, more than any etcd database etcdpack restores ({} bytes: etcd's largest recommended backend quota, 8 GiB)\n  help: check that this is the snapshot you mean; a bigger one is restored by hand with etcdutl",
            path.display(),
            etcdpack::snapshot::MAX_SIZE
        ))
    };
    let limit = etcdpack::snapshot::MAX_SIZE;
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    // Read no further than the limit, whatever the file grew to since.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, limit + 1), &mut bytes))
        .map_err(|e| Error::io("cannot read the snapshot", path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    let status = etcdpack::snapshot::status(&bytes).map_err(|e| {
        Error::usage(format!(
            "{}: {e}\n  help: give a snapshot that `etcdctl snapshot save` (or etcdpack-snapshot) wrote, unchanged",
            path.display()
        ))
    })?;
    Ok(etcdpack::Restore { bytes: std::sync::Arc::new(bytes), status, embed })
}

fn build(path: &Path, out: &Path, state: Option<PathBuf>, opts: BuildOpts<'_>) -> Result<()> {
    let renewal = opts.renewal;
    let start = Instant::now();
    etcdpack::render::prepare();
    let t = load(path)?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(v.trim().parse::<u64>().map_err(|_| Error::usage(format!("SOURCE_DATE_EPOCH={v} is not a number of seconds\n  help: set it to a Unix time such as 1700000000, or unset it")))?),
        Err(_) => None,
    };
    let state_dir = state.unwrap_or_else(|| fsio::default_state_dir(path));
    let rebuild = renewal.is_some() || opts.ca_step.is_some() || opts.restore.is_some();
    let ca = state_dir.join(etcdpack::state::CA_CERT);
    let has_ca = match std::fs::metadata(&ca) {
        Ok(m) => m.is_file(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Another user's state folder, say: its own error, not "nothing there".
        Err(e) if rebuild => return Err(Error::io("cannot read", &ca, e)),
        Err(_) => false,
    };
    if rebuild && !has_ca {
        return Err(Error::usage(format!(
            "nothing to {}: {} holds no certificates yet\n  help: run `etcdpack build {}` first, or name the state folder with --state",
            if renewal.is_some() {
                "renew"
            } else if opts.restore.is_some() {
                "restore"
            } else {
                "rotate"
            },
            state_dir.display(),
            path.display()
        )));
    }
    fsio::check_apart(&state_dir, out)?;
    fsio::check_folder(&state_dir, "the state folder")?;
    fsio::check_folder(out, "the output folder")?;
    fsio::check_out(out)?;
    let created = !state_dir.exists();
    let lock = fsio::lock_state(&state_dir)?;
    let result = build_locked(&t, out, &state_dir, source_date_epoch, start, &opts);
    drop(lock);
    if result.is_err() && created {
        // A build that failed on a new state folder leaves no empty folder behind.
        fsio::remove_if_unused(&state_dir);
    }
    result
}

fn build_locked(
    t: &topology::Topology,
    out_dir: &Path,
    state_dir: &Path,
    source_date_epoch: Option<u64>,
    start: Instant,
    opts: &BuildOpts<'_>,
) -> Result<()> {
    let (timings, renewal, reset_members, emit) = (opts.timings, opts.renewal, opts.reset_members, opts.emit);
    for said in fsio::recover(state_dir, out_dir)? {
        errln!("note: {said}");
    }
    let st = fsio::load_state(state_dir)?;
    let mut marks: Vec<(&'static str, Instant)> = vec![("load", Instant::now())];
    let progress =
        Progress { inner: &keys::OsKeys, done: AtomicUsize::new(0), shown: std::io::stderr().is_terminal() };
    let env = etcdpack::BuildEnv {
        state: &st,
        now: now(),
        source_date_epoch,
        keys: &progress,
        renewal,
        reset_members,
        emit,
        previous: Some(&|file: &str| fsio::read_previous(out_dir, file)),
        sealer: &etcdpack::seal::Age,
        ca_step: opts.ca_step,
        restore: opts.restore,
    };
    let mut mark = |name| marks.push((name, Instant::now()));
    let issued = etcdpack::issue(t, &env, &mut mark);
    if progress.shown && progress.done.load(Ordering::Relaxed) > 0 {
        err(format_args!("\r\x1b[K"));
    }
    let issued = issued?;
    // The state's new files are written (staged, not yet committed) while the bundles are
    // rendered and packed.
    let files = issued.state_update.create.clone();
    let (staged, result) = std::thread::scope(|s| {
        let staging = (!files.is_empty()).then(|| s.spawn(|| fsio::stage(state_dir, &files)));
        let result = etcdpack::finish(issued, &env, &mut mark);
        (staging.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))), result)
    });
    let (b, staged) = match (result, staged.transpose()) {
        (Ok(b), Ok(staged)) => (b, staged),
        (Err(e), _) | (_, Err(e)) => {
            // Nothing was committed: what was staged goes.
            let _ = fsio::discard_staging(state_dir);
            return Err(e);
        }
    };
    let wrote = fsio::land(state_dir, out_dir, staged, &b.state_update, &b.dist)?;
    marks.push(("write", Instant::now()));

    for w in &b.warnings {
        errln!("warning: {w}");
    }
    out(format_args!("{}", report::build(&b, out_dir, state_dir, wrote, renewal.is_some())));
    if timings {
        let mut prev = start;
        for (name, at) in &marks {
            errln!("timing {name:<8} {:>8.1} ms", at.duration_since(prev).as_secs_f64() * 1000.0);
            prev = *at;
        }
        errln!("timing {:<8} {:>8.1} ms", "total", start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}

/// A bundle, its signature and the key that should have made it.
struct Signed {
    bytes: Vec<u8>,
    sig: Option<Vec<u8>>,
    key_pem: String,
    fingerprint: String,
}

fn read_signed(bundle: &Path, pubkey: Option<&Path>) -> Result<Signed> {
    let bytes = std::fs::read(bundle).map_err(|e| Error::io("cannot read", bundle, e))?;
    let sig = bundle.file_name().and_then(|n| {
        std::fs::read(bundle.with_file_name(etcdpack::dist::signature(&n.to_string_lossy()))).ok()
    });
    let key_path = pubkey
        .map(Path::to_path_buf)
        .unwrap_or_else(|| bundle.parent().unwrap_or(Path::new(".")).join(etcdpack::dist::SIGNING_KEY));
    let key_pem = std::fs::read_to_string(&key_path).map_err(|e| {
        let help = if pubkey.is_some() {
            "give the pinned signing-key.pub of the build (dist/signing-key.pub)"
        } else {
            "no signing-key.pub beside the bundle: pass --pubkey with the pinned key (dist/signing-key.pub of the build)"
        };
        Error::usage(format!("cannot read the signing key {}: {e}\n  help: {help}", key_path.display()))
    })?;
    let fingerprint = etcdpack::sign::fingerprint_of(&key_pem).map_err(|e| {
        Error::usage(format!(
            "{} is not a signing key: {e}\n  help: pass --pubkey with the signing-key.pub etcdpack wrote",
            key_path.display()
        ))
    })?;
    Ok(Signed { bytes, sig, key_pem, fingerprint })
}

/// The identities of `--identity`, each file read whole (a key file is small) and never
/// echoed back.
fn identities(files: &[PathBuf]) -> Result<Option<etcdpack::seal::Identities>> {
    const MAX_IDENTITY_BYTES: u64 = 64 << 10;
    let mut all: Option<etcdpack::seal::Identities> = None;
    for f in files {
        let meta = std::fs::metadata(f).map_err(|e| Error::io("cannot read the identity", f, e))?;
        if !meta.is_file() || meta.len() > MAX_IDENTITY_BYTES {
            return Err(Error::usage(format!(
                "{} is not an identity file (a regular file of at most {MAX_IDENTITY_BYTES} bytes)\n  help: pass an age identity file (age-keygen) or an SSH private key such as /etc/ssh/ssh_host_ed25519_key",
                f.display()
            )));
        }
        let text = std::fs::read(f).map_err(|e| Error::io("cannot read the identity", f, e))?;
        let ids = etcdpack::seal::Identities::parse(&f.display().to_string(), &text)
            .map_err(|e| Error::usage(format!("{e}\n  help: pass an age identity file (age-keygen) or an unencrypted SSH private key (ed25519 or RSA)")))?;
        all = Some(match all {
            Some(mut a) => {
                a.extend(ids);
                a
            }
            None => ids,
        });
    }
    Ok(all)
}

fn key_origin(pubkey: Option<&Path>, fingerprint: &str) -> String {
    match pubkey {
        Some(_) => format!("pinned signing key {fingerprint}"),
        None => format!(
            "signing key {fingerprint} read beside the bundle, not pinned: compare it with your pinned fingerprint or pass --pubkey"
        ),
    }
}

fn verify_cmd(
    bundles: &[PathBuf],
    pubkey: Option<&Path>,
    ids: Option<&etcdpack::seal::Identities>,
) -> Result<()> {
    let now = now();
    let mut failed = 0;
    let mut summaries = Vec::new();
    let mut fingerprints = std::collections::BTreeSet::new();
    for bundle in bundles {
        let s = read_signed(bundle, pubkey)?;
        let report = if is_sealed_name(bundle) {
            verify::verify_sealed(&s.bytes, s.sig.as_deref(), &s.key_pem, ids, now)
        } else {
            verify::verify(&s.bytes, s.sig.as_deref(), &s.key_pem, now)
        };
        let heading = format!("{} ({})", bundle.display(), key_origin(pubkey, &s.fingerprint));
        out(format_args!("{}", report::checks(&heading, &report.checks)));
        if !report.ok() {
            failed += 1;
        }
        fingerprints.insert(s.fingerprint);
        if let Some(summary) = report.summary {
            summaries.push((bundle.display().to_string(), summary));
        }
    }
    if bundles.len() > 1 {
        let pairs: Vec<(String, &verify::Summary)> = summaries.iter().map(|(n, s)| (n.clone(), s)).collect();
        let mut problems = verify::agreement(&pairs);
        if fingerprints.len() > 1 {
            problems.push(format!("the bundles are signed by {} different keys", fingerprints.len()));
        }
        let unopened = if ids.is_none() { bundles.iter().filter(|b| is_sealed_name(b)).count() } else { 0 };
        out(format_args!("{}", report::agreement(bundles.len(), unopened, &problems)));
        if !problems.is_empty() {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Error::verify_failed(format!(
            "{failed} check group(s) failed for {} bundle(s)",
            bundles.len()
        )));
    }
    outln!("{} bundle(s) verified", bundles.len());
    Ok(())
}

/// Whether a path names a sealed bundle (`.tar.gz.age`).
fn is_sealed_name(bundle: &Path) -> bool {
    bundle.to_string_lossy().ends_with(".age")
}

/// A bundle whose signature verified, opened when sealed, unpacked: nothing is decrypted or
/// decompressed before that.
fn read_verified_bundle(
    bundle: &Path,
    pubkey: Option<&Path>,
    ids: Option<&etcdpack::seal::Identities>,
) -> Result<(Signed, unpack::Unpacked)> {
    let s = read_signed(bundle, pubkey)?;
    let signed = match &s.sig {
        Some(sig) => etcdpack::sign::verify(&s.key_pem, &s.bytes, sig).map_err(|e| e.to_string()),
        None => Err("no .sig file beside it".to_string()),
    };
    if let Err(why) = signed {
        return Err(Error::verify_failed(format!(
            "{}: signature check failed ({why}); not unpacked\n  help: run `etcdpack verify {}` for details",
            bundle.display(),
            bundle.display()
        )));
    }
    let opened;
    let tarball = if is_sealed_name(bundle) {
        let Some(ids) = ids else {
            return Err(Error::usage(format!(
                "{} is sealed to its host\n  help: pass --identity with a recipient's key (the host's /etc/ssh/ssh_host_ed25519_key, or a break-glass age identity)",
                bundle.display()
            )));
        };
        opened =
            ids.open(&s.bytes).map_err(|e| Error::verify_failed(format!("{}: {e}", bundle.display())))?;
        &opened
    } else {
        &s.bytes
    };
    let u =
        unpack::unpack(tarball).map_err(|e| Error::verify_failed(format!("{}: {e}", bundle.display())))?;
    Ok((s, u))
}

fn inspect_cmd(
    bundles: &[PathBuf],
    pubkey: Option<&Path>,
    ids: Option<&etcdpack::seal::Identities>,
) -> Result<()> {
    for (i, bundle) in bundles.iter().enumerate() {
        let (s, u) = read_verified_bundle(bundle, pubkey, ids)?;
        if bundles.len() > 1 {
            if i > 0 {
                outln!();
            }
            outln!("==> {} <==", bundle.display());
        }
        outln!("({})", key_origin(pubkey, &s.fingerprint));
        out(format_args!("{}", etcdpack::inspect::inspect(&u)));
    }
    Ok(())
}

fn expiry_cmd(
    inputs: &[PathBuf],
    within: &str,
    json: bool,
    pubkey: Option<&Path>,
    ids: Option<&etcdpack::seal::Identities>,
) -> Result<()> {
    let window = parse_window(within)?;
    let mut rows = Vec::new();
    for input in inputs {
        let found = if input.is_dir() {
            etcdpack::expiry::from_state(&fsio::load_state(input)?)
        } else if input.to_string_lossy().ends_with(".tar.gz")
            || input.to_string_lossy().ends_with(".tar.gz.age")
        {
            let (_, u) = read_verified_bundle(input, pubkey, ids)?;
            etcdpack::expiry::from_bundle(&u)
        } else {
            load(input)?;
            let state_dir = fsio::default_state_dir(input);
            if !state_dir.is_dir() {
                return Err(Error::usage(format!(
                    "{} has no state folder {} yet\n  help: run `etcdpack build {}` first, or name the state folder",
                    input.display(),
                    state_dir.display(),
                    input.display()
                )));
            }
            etcdpack::expiry::from_state(&fsio::load_state(&state_dir)?)
        };
        rows.extend(found.map_err(|e| Error::verify_failed(format!("{}: {e}", input.display())))?);
    }
    let rows = etcdpack::expiry::sorted(rows);
    let now = now();
    if json {
        outln!("{}", etcdpack::expiry::json(&rows, now));
    } else {
        out(format_args!("{}", etcdpack::expiry::table(&rows, now)));
    }
    let soon = rows.iter().filter(|r| r.not_after - now < window).count();
    if soon > 0 {
        return Err(Error::verify_failed(format!(
            "{soon} certificate(s) expire within {within}: they need renewal before then"
        )));
    }
    Ok(())
}
