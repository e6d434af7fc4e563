//! The shell's file system work, and the only module that writes: reading the topology's
//! files and the state folder, locking it, applying a state update without ever overwriting
//! a key, and replacing `dist/` as a whole.

use crate::error::{Error, Result};
use crate::profile::LEAVES;
use crate::state::{self, NewFile, State, StateUpdate, StoredLeaf};
use crate::topology::FileSource;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod out;
pub use out::{check_apart, check_folder, check_out, land, read_previous};

/// Reads files named in a topology, relative to the topology's folder.
pub struct DirFiles(pub PathBuf);

impl FileSource for DirFiles {
    fn read(&self, path: &str) -> std::result::Result<Vec<u8>, String> {
        fs::read(self.0.join(path)).map_err(|e| e.to_string())
    }

    /// Refuses a file above `max` before reading it.
    fn read_at_most(&self, path: &str, max: u64) -> std::result::Result<Vec<u8>, String> {
        use std::io::Read;
        let mut f = fs::File::open(self.0.join(path)).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        (&mut f).take(max + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if bytes.len() as u64 > max {
            return Err(format!("it is larger than {} MiB", max >> 20));
        }
        Ok(bytes)
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
    if dir.join(JOURNAL).exists() {
        return Err(Error::StateCorrupt {
            path: dir.to_path_buf(),
            what: "an interrupted build left a state update half-applied; `etcdpack build` completes it first (plan only reads)".into(),
        });
    }
    let pair = |cert: &str, key: &str| -> Result<Option<state::StoredLeaf>> {
        match (read_opt(&dir.join(cert))?, read_opt(&dir.join(key))?) {
            (Some(cert_pem), Some(key_pem)) => Ok(Some(state::StoredLeaf { cert_pem, key_pem })),
            (None, None) => Ok(None),
            _ => Err(Error::StateCorrupt {
                path: dir.to_path_buf(),
                what: format!("{cert} and {key} must both be there or neither"),
            }),
        }
    };
    let mut s = State {
        ca_cert: read_opt(&dir.join(state::CA_CERT))?,
        ca_key: read_opt(&dir.join(state::CA_KEY))?,
        signing_key: read_opt(&dir.join(state::SIGNING_KEY))?,
        ca_next: pair(state::CA_NEXT_CERT, state::CA_NEXT_KEY)?,
        ca_previous: pair(state::CA_PREVIOUS_CERT, state::CA_PREVIOUS_KEY)?,
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

/// Writes `bytes` to a new `path` (never over an existing file) through a synced temporary
/// file and a rename, with `mode`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if path.exists() {
        return Err(Error::Internal(format!("refusing to overwrite {}", path.display())));
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    write_new(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into", path, e))
}

/// The staging folder of a state update: every new file is written here first.
const STAGING: &str = ".staging";
/// The journal of a state update: the renames that commit it, in order. Its presence means a
/// build was interrupted after its commit point; the next build completes it.
const JOURNAL: &str = ".journal";

/// New files of a state update, written and synced into `.staging/` by [`stage`] while the
/// build goes on; [`land`] commits them.
pub struct Staged(usize);

/// Writes and syncs `files` (a [`StateUpdate`]'s `create`, in order) into `.staging/`, replacing
/// what an earlier attempt left there. Nothing in the state changes until [`land`] commits
/// them.
pub fn stage(dir: &Path, files: &[NewFile]) -> Result<Staged> {
    discard_staging(dir)?;
    mkdirs(&dir.join(STAGING), 0o700)?;
    let mut batch = Batch::default();
    for (i, NewFile { bytes, mode, .. }) in files.iter().enumerate() {
        batch.create(&dir.join(format!("{STAGING}/{i}")), bytes, *mode)?;
    }
    batch.sync()?;
    Ok(Staged(files.len()))
}

/// Removes `.staging/` (what [`stage`] wrote for a build that then failed).
pub fn discard_staging(dir: &Path) -> Result<()> {
    let staging = dir.join(STAGING);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| Error::io("cannot clear", &staging, e))?;
    }
    Ok(())
}

/// Applies a state update all or nothing (as [`land`] does, without `dist/`).
pub fn apply_state_update(dir: &Path, update: &StateUpdate) -> Result<()> {
    commit(dir, None, update)
}

/// Applies a state update all or nothing: every new file (keys, certificates, state.json) is
/// written and synced into `.staging/` (by [`stage`] ahead of time, given as `staged`, or
/// now), then a journal of the renames that commit the update (retired files aside first,
/// then each staged file into place) is written atomically, then the renames run and the
/// journal goes. A kill before the journal leaves the state as it was (the next build
/// removes the staging folder); a kill after it is completed by the next build. No key is
/// ever overwritten or deleted.
fn commit(dir: &Path, staged: Option<Staged>, update: &StateUpdate) -> Result<()> {
    if update.is_empty() {
        return discard_staging(dir);
    }
    if staged.is_none_or(|s| s.0 != update.create.len()) {
        stage(dir, &update.create)?;
    }
    let staging = dir.join(STAGING);
    let mut ops: Vec<(String, String)> = update.retire.clone();
    ops.extend(update.create.iter().enumerate().map(|(i, f)| (format!("{STAGING}/{i}"), f.path.clone())));
    if let Some(record) = &update.record {
        let mut text = serde_json::to_string_pretty(record).expect("JSON");
        text.push('\n');
        let staged = format!("{STAGING}/record");
        write_new(&dir.join(&staged), text.as_bytes(), 0o600)?;
        ops.push((staged, state::RECORD.to_string()));
    }
    sync_dir(&staging)?;
    let journal = serde_json::to_vec(&ops).expect("JSON");
    write_atomic(&dir.join(JOURNAL), &journal, 0o600)?;
    sync_dir(dir)?;
    replay(dir)?;
    Ok(())
}

/// Writes a new file (never over an existing one) and syncs it.
/// Writes a file the user named (`init`'s topology): complete or not at all, through a new
/// temporary file beside it that is renamed over `path` (so never through a symlink at
/// `path`); an existing `path` is replaced only with `replace`.
pub fn write_user_file(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    if !replace && fs::symlink_metadata(path).is_ok() {
        return Err(Error::usage(format!(
            "{} exists\n  help: choose another file or pass --force to overwrite it",
            path.display()
        )));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| Error::io("cannot write", path, e))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("cannot write", path, e));
    }
    let landed = if replace {
        fs::rename(&tmp, path)
    } else {
        // Without --force a file that appeared meanwhile is not replaced.
        fs::hard_link(&tmp, path).and_then(|()| fs::remove_file(&tmp))
    };
    landed.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::usage(format!(
                "{} exists\n  help: choose another file or pass --force to overwrite it",
                path.display()
            ))
        } else {
            Error::io("cannot write", path, e)
        }
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut batch = Batch::default();
    batch.create(path, bytes, mode)?;
    batch.sync()
}

/// New files made durable together. Each is handed to the kernel for writeback as soon as it
/// is written, and all are synced at the end, when most of them are on disk already: one
/// `fsync` after another, each waiting for its own journal commit, took three times as long.
#[derive(Default)]
struct Batch {
    files: Vec<(PathBuf, File)>,
}

impl Batch {
    /// At most this many files stay open before the batch syncs them.
    const OPEN: usize = 128;

    /// Creates `path` (never over an existing file, never through a symlink) with `bytes`
    /// and `mode`.
    fn create(&mut self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(mode)
            .open(path)
            .map_err(|e| Error::io("cannot create", path, e))?;
        f.write_all(bytes).map_err(|e| Error::io("cannot write", path, e))?;
        start_writeback(&f);
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("cannot set mode of", path, e))?;
        self.files.push((path.to_path_buf(), f));
        if self.files.len() >= Self::OPEN {
            self.sync_pending()?;
        }
        Ok(())
    }

    fn sync_pending(&mut self) -> Result<()> {
        for (path, f) in self.files.drain(..) {
            f.sync_all().map_err(|e| Error::io("cannot write", &path, e))?;
        }
        Ok(())
    }

    /// Syncs every file the batch created.
    fn sync(mut self) -> Result<()> {
        self.sync_pending()
    }
}

/// Starts writing `f`'s data back to disk without waiting. On Linux, `POSIX_FADV_DONTNEED`
/// starts writeback of a file's dirty pages at once (mm/fadvise.c), as `sync_file_range`
/// would; it is only a hint, and the `fsync` that follows still decides.
#[cfg(target_os = "linux")]
fn start_writeback(f: &File) {
    let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
}

/// Elsewhere (a build on a macOS laptop), the `fsync` alone.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File) {}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("cannot sync", dir, e))
}

/// Runs the journal's renames that have not happened yet, then removes the journal and the
/// staging folder. Idempotent: a rename whose source is gone already happened.
fn replay(dir: &Path) -> Result<()> {
    let journal = dir.join(JOURNAL);
    let text = fs::read(&journal).map_err(|e| Error::io("cannot read", &journal, e))?;
    let ops: Vec<(String, String)> = serde_json::from_slice(&text).map_err(|e| Error::StateCorrupt {
        path: dir.to_path_buf(),
        what: format!("{JOURNAL} is not readable: {e}"),
    })?;
    for (i, (from_rel, to_rel)) in ops.iter().enumerate() {
        let (from, to) = (dir.join(from_rel), dir.join(to_rel));
        // Done already: the source is gone, or its destination exists while a later step
        // already put a new file at its source (a retirement, named by the serial, so never
        // reused; or a CA rotation's chain of moves, ca.crt aside and ca-next.crt into its
        // place).
        let refilled = ops[i + 1..].iter().any(|(_, later)| later == from_rel);
        if !from.exists() || ((to_rel.starts_with("retired/") || refilled) && to.exists()) {
            continue;
        }
        // Only state.json is ever replaced; a key or certificate never is.
        if to.exists() && !to.ends_with(state::RECORD) {
            return Err(Error::StateCorrupt {
                path: dir.to_path_buf(),
                what: format!("{} already exists and would be replaced", to.display()),
            });
        }
        mkdirs(to.parent().expect("state path has a parent"), 0o700)?;
        fs::rename(&from, &to).map_err(|e| Error::io("cannot rename into", &to, e))?;
    }
    sync_dir(dir)?;
    fs::remove_file(&journal).map_err(|e| Error::io("cannot remove", &journal, e))?;
    let staging = dir.join(STAGING);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| Error::io("cannot remove", &staging, e))?;
    }
    Ok(())
}

/// Finishes or undoes what an interrupted build left in the state folder and beside `out`,
/// and says what it did. Run under the state lock, before the state is read.
pub fn recover(state_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let mut said = Vec::new();
    if state_dir.join(JOURNAL).exists() {
        replay(state_dir)?;
        said.push(format!("completed the state update of an interrupted build in {}", state_dir.display()));
    } else if state_dir.join(STAGING).exists() {
        let staging = state_dir.join(STAGING);
        fs::remove_dir_all(&staging).map_err(|e| Error::io("cannot remove", &staging, e))?;
        said.push(format!(
            "removed the uncommitted state files of an interrupted build in {}",
            state_dir.display()
        ));
    }
    let tmp_files =
        |dir: &Path| -> Vec<PathBuf> { walk_files(dir).into_iter().filter(|p| is_tmp_name(p)).collect() };
    for t in tmp_files(state_dir) {
        fs::remove_file(&t).map_err(|e| Error::io("cannot remove", &t, e))?;
        said.push(format!("removed {}, a partial write of an interrupted build", t.display()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dist".into());
    if let Ok(entries) = fs::read_dir(&parent) {
        let mut names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            let path = parent.join(&name);
            if name.starts_with(&format!(".{base}.new-")) {
                fs::remove_dir_all(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
                said.push(format!(
                    "removed {}, the unfinished output of an interrupted build",
                    path.display()
                ));
            } else if name.starts_with(&format!(".{base}.old-")) {
                if out.exists() {
                    fs::remove_dir_all(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
                    said.push(format!(
                        "removed {}, the previous output an interrupted build had replaced",
                        path.display()
                    ));
                } else {
                    fs::rename(&path, out).map_err(|e| Error::io("cannot restore", out, e))?;
                    said.push(format!(
                        "restored {} from {} (an interrupted build had moved it aside)",
                        out.display(),
                        path.display()
                    ));
                }
            }
        }
    }
    if out.is_dir() {
        for t in tmp_files(out) {
            fs::remove_file(&t).map_err(|e| Error::io("cannot remove", &t, e))?;
            said.push(format!("removed {}, a partial write of an interrupted build", t.display()));
        }
    }
    Ok(said)
}

fn is_tmp_name(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.starts_with("tmp-"))
        || p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".tmp-"))
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return out };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk_files(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}
