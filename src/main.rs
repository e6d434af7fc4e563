//! The thin shell: parses the command line, reads inputs, picks the clock and the key source,
//! calls the pure pipeline and writes what it returns. Exit codes: 0 success, 1 invalid
//! input or failed verification, 2 I/O or internal error.

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use etcdpack::error::{Error, Result};
use etcdpack::pki::Action;
use etcdpack::{fsio, keys, pki, plan, topology, unpack, verify};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const EXAMPLE: &str = include_str!("../examples/etcd-topology.yaml");

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(e) = run(cli) {
        match &e {
            // Diagnostics carry their own `error:`/`warning:` prefixes and a summary line.
            Error::Invalid(d) => eprintln!("{d}"),
            _ => eprintln!("error: {e}"),
        }
        std::process::exit(e.exit_code());
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { file, force } => init(file, force),
        Command::Check { topology } => {
            let t = load(&topology)?;
            println!(
                "{}: ok ({} members, kubeadm {})",
                topology.display(),
                t.members.len(),
                t.kubernetes_version
            );
            Ok(())
        }
        Command::Plan { topology, state, json } => plan_cmd(&topology, state, json),
        Command::Build { topology, out, state, timings } => build(&topology, &out, state, timings),
        Command::Verify { bundles, pubkey } => verify_cmd(&bundles, pubkey.as_deref()),
        Command::Inspect { bundle } => {
            let bytes = std::fs::read(&bundle).map_err(|e| Error::io("cannot read", &bundle, e))?;
            let u = unpack::unpack(&bytes)
                .map_err(|e| Error::VerifyFailed(format!("{}: {e}", bundle.display())))?;
            print!("{}", etcdpack::inspect::inspect(&u));
            Ok(())
        }
    }
}

fn init(file: Option<PathBuf>, force: bool) -> Result<()> {
    match file {
        None => {
            print!("{EXAMPLE}");
            Ok(())
        }
        Some(path) => {
            if path.exists() && !force {
                return Err(Error::Usage(format!(
                    "{} exists\n  help: choose another file or pass --force",
                    path.display()
                )));
            }
            std::fs::write(&path, EXAMPLE).map_err(|e| Error::io("cannot write", &path, e))?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}

/// Reads and validates a topology, printing warnings; errors become `Error::Invalid`.
fn load(path: &Path) -> Result<topology::Topology> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (t, diags) = topology::parse(&path.display().to_string(), &text, &fsio::DirFiles(base));
    match t {
        Some(t) => {
            for w in diags.warnings() {
                eprintln!("{}", w.render(&diags.file));
            }
            Ok(t)
        }
        None => Err(Error::Invalid(diags)),
    }
}

fn action_text(a: &Action) -> String {
    match a {
        Action::New => "new".into(),
        Action::Reuse => "reuse".into(),
        Action::Imported => "imported from existingCA".into(),
        Action::Reissue(why) => format!("re-issue ({why})"),
    }
}

fn plan_cmd(path: &Path, state: Option<PathBuf>, json: bool) -> Result<()> {
    let t = load(path)?;
    let state_dir = state.unwrap_or_else(|| fsio::default_state_dir(path));
    let st = fsio::load_state(&state_dir)?;
    let p = plan::plan(&t);
    let decisions = pki::decide(&p, &st);
    if json {
        let doc = serde_json::json!({ "plan": p, "certificates": decisions });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        return Ok(());
    }
    let ca = match (&t.pki.existing_ca, &st.ca_cert) {
        (Some(_), None) => "import from existingCA",
        (_, Some(_)) => "reuse",
        (None, None) => "new",
    };
    println!(
        "cluster {} · kubeadm {} ({}) · image {} · {} keys",
        p.cluster,
        p.kubernetes_version,
        p.behaviour.config_api.api_version(),
        p.image,
        p.key_algorithm
    );
    println!("state {}: etcd-ca {ca}", state_dir.display());
    for m in &p.members {
        let key_note = if m.carries_ca_key { ", carries ca.key" } else { "" };
        println!("member {} {}{key_note}", m.name, m.address);
        for d in decisions.iter().filter(|d| d.member == m.name) {
            println!("  {:<24} {}", d.leaf.kubeadm_name(), action_text(&d.action));
        }
        for f in &m.files {
            println!("  {:04o} {}", f.mode, f.path);
        }
    }
    Ok(())
}

fn build(path: &Path, out: &Path, state: Option<PathBuf>, timings: bool) -> Result<()> {
    let start = Instant::now();
    let t = load(path)?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(v.trim().parse::<u64>().map_err(|_| Error::Usage(format!("SOURCE_DATE_EPOCH={v} is not a number of seconds\n  help: set it to a Unix time such as 1700000000, or unset it")))?),
        Err(_) => None,
    };
    fsio::check_out(out)?;
    let state_dir = state.unwrap_or_else(|| fsio::default_state_dir(path));
    let created = !state_dir.exists();
    let lock = fsio::lock_state(&state_dir)?;
    let result = build_locked(&t, out, &state_dir, source_date_epoch, start, timings);
    drop(lock);
    if result.is_err() && created {
        // A build that failed on a new state folder leaves no empty folder behind.
        fsio::remove_if_unused(&state_dir);
    }
    result
}

fn build_locked(
    t: &topology::Topology,
    out: &Path,
    state_dir: &Path,
    source_date_epoch: Option<u64>,
    start: Instant,
    timings: bool,
) -> Result<()> {
    let st = fsio::load_state(state_dir)?;
    let mut marks: Vec<(&'static str, Instant)> = vec![("load", Instant::now())];
    let env = etcdpack::BuildEnv { state: &st, now: now(), source_date_epoch, keys: &keys::OsKeys };
    let b = etcdpack::build(t, &env, &mut |name| marks.push((name, Instant::now())))?;
    fsio::apply_state_update(state_dir, &b.state_update)?;
    fsio::write_dist(out, &b.dist)?;
    marks.push(("write", Instant::now()));

    let mut o = std::io::stdout().lock();
    let p = &b.plan;
    let _ = writeln!(
        o,
        "cluster {} · kubeadm {} · image {} · {} keys",
        p.cluster, p.kubernetes_version, p.image, p.key_algorithm
    );
    let _ = writeln!(o, "etcd-ca: {}", action_text(&b.pki.ca.action));
    for d in &b.decisions {
        let _ = writeln!(o, "{:<16} {:<24} {}", d.member, d.leaf.kubeadm_name(), action_text(&d.action));
    }
    let key_state = if b.pki.signing_key_new { "new" } else { "reuse" };
    let _ =
        writeln!(o, "signing key {} ({key_state}); pin it on the hosts that verify bundles", b.fingerprint);
    for m in &p.members {
        let _ = writeln!(o, "wrote {}", out.join(format!("{}.tar.gz", m.name)).display());
    }
    let _ = writeln!(o, "state {}", state_dir.display());
    if timings {
        let mut prev = start;
        for (name, at) in &marks {
            eprintln!("timing {name:<8} {:>8.1} ms", at.duration_since(prev).as_secs_f64() * 1000.0);
            prev = *at;
        }
        eprintln!("timing {:<8} {:>8.1} ms", "total", start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}

fn verify_cmd(bundles: &[PathBuf], pubkey: Option<&Path>) -> Result<()> {
    let now = now();
    let mut failed = 0;
    for bundle in bundles {
        let bytes = std::fs::read(bundle).map_err(|e| Error::io("cannot read", bundle, e))?;
        let sig_path = PathBuf::from(format!("{}.sig", bundle.display()));
        let sig = std::fs::read(&sig_path).ok();
        let key_path = pubkey
            .map(Path::to_path_buf)
            .unwrap_or_else(|| bundle.parent().unwrap_or(Path::new(".")).join("signing-key.pub"));
        let key = std::fs::read_to_string(&key_path)
            .map_err(|e| Error::io("cannot read the signing key", &key_path, e))?;
        let fp = etcdpack::sign::fingerprint_of(&key)
            .map_err(|e| Error::VerifyFailed(format!("{}: {e}", key_path.display())))?;
        let report = verify::verify(&bytes, sig.as_deref(), &key, now);
        let origin = if pubkey.is_some() {
            ""
        } else {
            ", read beside the bundle: compare it with the pinned fingerprint or pass --pubkey"
        };
        println!("{} (signing key {fp}{origin})", bundle.display());
        for c in &report.checks {
            match &c.failure {
                None => println!("  ok    {}", c.what),
                Some(why) => println!("  FAIL  {}: {why}", c.what),
            }
        }
        if !report.ok() {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Error::VerifyFailed(format!(
            "{failed} of {} bundle(s) failed verification",
            bundles.len()
        )));
    }
    println!("{} bundle(s) verified", bundles.len());
    Ok(())
}
