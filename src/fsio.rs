//! The shell's file system work, and the only module that writes: reading the topology's
//! files and the state folder, locking it, applying a state update without ever overwriting
//! a key, and replacing `dist/` as a whole.

use crate::error::{Error, Result};
use crate::plan::LEAVES;
use crate::state::{self, NewFile, State, StateUpdate, StoredLeaf};
use crate::topology::FileSource;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Reads files named in a topology, relative to the topology's folder.
pub struct DirFiles(pub PathBuf);

impl FileSource for DirFiles {
    fn read(&self, path: &str) -> std::result::Result<Vec<u8>, String> {
        fs::read(self.0.join(path)).map_err(|e| e.to_string())
    }
}

/// The default state folder: `<stem>.state/` beside the topology.
pub fn default_state_dir(topology: &Path) -> PathBuf {
    let stem =
        topology.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "topology".into());
    topology.parent().unwrap_or(Path::new(".")).join(format!("{stem}.state"))
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// Loads the state folder (an absent folder is an empty state).
pub fn load_state(dir: &Path) -> Result<State> {
    let mut s = State {
        ca_cert: read_opt(&dir.join(state::CA_CERT))?,
        ca_key: read_opt(&dir.join(state::CA_KEY))?,
        signing_key: read_opt(&dir.join(state::SIGNING_KEY))?,
        ..State::default()
    };
    if let Some(text) = read_opt(&dir.join(state::RECORD))? {
        s.record = state::parse_record(&text).map_err(|e| match e {
            state::RecordError::Newer(_) => {
                Error::StateNewer { path: dir.to_path_buf(), what: e.to_string() }
            }
            state::RecordError::Unreadable(_) => {
                Error::StateCorrupt { path: dir.to_path_buf(), what: e.to_string() }
            }
        })?;
    }
    let members = dir.join("members");
    if members.is_dir() {
        for entry in fs::read_dir(&members).map_err(|e| Error::io("cannot list", &members, e))? {
            let entry = entry.map_err(|e| Error::io("cannot list", &members, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            for leaf in LEAVES {
                let cert = read_opt(&dir.join(state::leaf_path(&name, leaf, "crt")))?;
                let key = read_opt(&dir.join(state::leaf_path(&name, leaf, "key")))?;
                match (cert, key) {
                    (Some(cert_pem), Some(key_pem)) => {
                        s.leaves
                            .entry(name.clone())
                            .or_default()
                            .insert(leaf, StoredLeaf { cert_pem, key_pem });
                    }
                    (None, None) => {}
                    _ => {
                        return Err(Error::StateCorrupt {
                            path: dir.to_path_buf(),
                            what: format!(
                                "{} has a certificate or a key without the other",
                                state::leaf_path(&name, leaf, "*")
                            ),
                        });
                    }
                }
            }
        }
    }
    Ok(s)
}

/// Creates the state folder (0700) if needed and takes its lock. The lock is held while the
/// returned file lives; a second build fails at once instead of racing.
pub fn lock_state(dir: &Path) -> Result<File> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("cannot create", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("cannot set mode of", dir, e))?;
    let path = dir.join(state::LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path, e)),
    }
}

/// Removes a state folder that holds nothing but its lock file (after a failed first build).
pub fn remove_if_unused(dir: &Path) {
    let _ = fs::remove_file(dir.join(state::LOCK));
    let _ = fs::remove_dir(dir);
}

fn mkdirs(dir: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| Error::io("cannot create", dir, e))
}

/// Writes `bytes` to `path` through a temporary file and a rename, with `mode`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    if !overwrite && path.exists() {
        return Err(Error::Internal(format!("refusing to overwrite {}", path.display())));
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io("cannot create", &tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io("cannot write", &tmp, e))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("cannot set mode of", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into", path, e))
}

/// Applies a state update: retired files are moved aside (never deleted), new files are
/// created (never over an existing one), then the record is replaced.
pub fn apply_state_update(dir: &Path, update: &StateUpdate) -> Result<()> {
    for (from, to) in &update.retire {
        let (from, to) = (dir.join(from), dir.join(to));
        if to.exists() {
            return Err(Error::StateCorrupt {
                path: dir.to_path_buf(),
                what: format!("{} already exists", to.display()),
            });
        }
        mkdirs(to.parent().expect("retired path has a parent"), 0o700)?;
        fs::rename(&from, &to).map_err(|e| Error::io("cannot retire", &from, e))?;
    }
    for NewFile { path, bytes, mode } in &update.create {
        let path = dir.join(path);
        mkdirs(path.parent().expect("state path has a parent"), 0o700)?;
        write_atomic(&path, bytes, *mode, false)?;
    }
    if let Some(record) = &update.record {
        let mut text = serde_json::to_string_pretty(record).expect("JSON");
        text.push('\n');
        write_atomic(&dir.join(state::RECORD), text.as_bytes(), 0o600, true)?;
    }
    Ok(())
}

fn is_dist_file(name: &str) -> bool {
    name.ends_with(".tar.gz")
        || name.ends_with(".tar.gz.sig")
        || ["SHA256SUMS", "SHA256SUMS.sig", "signing-key.pub", "plan.json"].contains(&name)
}

/// Replaces `out` as a whole: everything is written to a sibling folder first, so a failed
/// build leaves the previous `out` as it was.
pub fn write_dist(out: &Path, files: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<()> {
    check_out(out)?;
    write_dist_checked(out, files)
}

/// A path made absolute, with `.` and `..` folded and symlinks of its existing part resolved,
/// so that two spellings of one folder compare equal.
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    // Resolve the longest part that exists (it may hold symlinks); append the rest.
    let mut existing = clean.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = fs::canonicalize(&existing).unwrap_or(existing);
    out.extend(rest.iter().rev());
    out
}

/// Refuses a state folder inside (or equal to) the output folder, or the other way round,
/// before anything is created: the state holds the CA key and must never be shipped.
pub fn check_apart(state: &Path, out: &Path) -> Result<()> {
    let (s, o) = (resolved(state), resolved(out));
    if s.starts_with(&o) {
        return Err(Error::Usage(format!(
            "the state folder {} is inside the output folder {}: the CA and every key would be shipped with the bundles\n  help: keep --state outside --out (by default the state is <topology stem>.state beside the topology)",
            state.display(),
            out.display()
        )));
    }
    if o.starts_with(&s) {
        return Err(Error::Usage(format!(
            "the output folder {} is inside the state folder {}\n  help: write the bundles elsewhere, such as --out dist",
            out.display(),
            state.display()
        )));
    }
    Ok(())
}

/// Refuses an output folder that holds anything etcdpack did not write (run before a build,
/// so that a doomed build creates no keys).
pub fn check_out(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Usage(format!(
            "--out {} is a file, not a folder\n  help: name a folder for the bundles (it is created, and replaced as a whole on every build)",
            out.display()
        )));
    }
    if out.exists() {
        for entry in fs::read_dir(out).map_err(|e| Error::io("cannot list", out, e))? {
            let entry = entry.map_err(|e| Error::io("cannot list", out, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_dist_file(&name) || !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                return Err(Error::ForeignOutput { path: out.to_path_buf(), file: name });
            }
        }
    }
    Ok(())
}

fn write_dist_checked(out: &Path, files: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    mkdirs(&parent, 0o755)?;
    let base = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dist".into());
    let tmp = parent.join(format!(".{base}.new-{}", std::process::id()));
    let old = parent.join(format!(".{base}.old-{}", std::process::id()));
    let result = (|| {
        mkdirs(&tmp, 0o755)?;
        for (name, bytes) in files {
            // Bundles hold private keys: readable by the building user only.
            let mode = if name.ends_with(".tar.gz") { 0o600 } else { 0o644 };
            write_atomic(&tmp.join(name), bytes, mode, false)?;
        }
        if out.exists() {
            fs::rename(out, &old).map_err(|e| Error::io("cannot move aside", out, e))?;
        }
        fs::rename(&tmp, out).map_err(|e| Error::io("cannot rename into", out, e))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
        if old.exists() && !out.exists() {
            let _ = fs::rename(&old, out);
        }
        return result;
    }
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| Error::io("cannot remove", &old, e))?;
    }
    Ok(())
}
