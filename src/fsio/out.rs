//! Writing dist/: checked apart from the state folder and free of anything not etcdpack's,
//! written beside the old one, published after the state is committed, and left alone when
//! it already holds exactly the new files.

use super::*;

/// Whether `dist/<name>` is etcdpack's own: a file it writes, or its ansible folder holding
/// only the playbook's files.
fn is_own_entry(out: &Path, name: &str, file_type: fs::FileType) -> bool {
    if file_type.is_file() {
        return crate::dist::is_ours(name);
    }
    file_type.is_dir()
        && name == crate::dist::ANSIBLE_DIR
        && fs::read_dir(out.join(name)).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).all(|e| {
                e.file_type().is_ok_and(|t| t.is_file())
                    && crate::dist::ANSIBLE_FILES.contains(&e.file_name().to_string_lossy().as_ref())
            })
        })
}

/// Whether `out` holds exactly `files`: the same names (and no other), each a regular file
/// with the same mode and bytes. Run after [`check_out`], so `out` holds nothing but regular
/// files: as many as `files`, each of them one of `files`, are the same set.
fn holds_exactly(out: &Path, files: &std::collections::BTreeMap<String, Vec<u8>>) -> bool {
    walk_files(out).len() == files.len()
        && files.iter().all(|(name, bytes)| {
            let path = out.join(name);
            fs::symlink_metadata(&path).is_ok_and(|m| {
                m.is_file()
                    && m.len() == bytes.len() as u64
                    && m.permissions().mode() & 0o7777 == crate::dist::mode(name)
            }) && fs::read(&path).is_ok_and(|b| b == *bytes)
        })
}

/// The file `out/<file>` the last build wrote (a name of dist/), if it is a regular file no larger than a bundle can be
/// (see [`crate::unpack::MAX_UNPACKED_BYTES`]) that can be read.
pub fn read_previous(out: &Path, file: &str) -> Option<Vec<u8>> {
    if file.contains('/') || !crate::dist::is_ours(file) {
        return None;
    }
    let path = out.join(file);
    fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.is_file() && m.len() <= crate::unpack::MAX_UNPACKED_BYTES)?;
    fs::read(path).ok()
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

/// A name part nobody can predict: the process id and 64 random bits (std's per-process
/// random hasher keys).
fn unpredictable() -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{}-{random:016x}", std::process::id())
}

/// Refuses a folder that another user could replace or already holds: `path` (the state
/// folder or `--out`), when it exists, must be this user's and not writable by all; the
/// folder it is in (its nearest existing ancestor) must be this user's or root's, and not
/// writable by all unless it is root's with the sticky bit (as /tmp is), where no one can
/// rename or remove what this user made. (A folder writable by its group is accepted: with
/// umask 002 every folder of a user is, and the group is the user's own.)
pub fn check_folder(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let refuse = |why: String, fix: &str| {
        Err(Error::usage(format!("{what} {}: {why}\n  help: {fix}", path.display())))
    };
    if let Ok(m) = fs::symlink_metadata(path) {
        let m = if m.file_type().is_symlink() { fs::metadata(path).unwrap_or(m) } else { m };
        if m.is_dir() && m.uid() != me {
            return refuse(
                format!(
                    "it belongs to uid {}, not to this user (uid {me}): another user made it, and may hold what is in it",
                    m.uid()
                ),
                "use a folder this user made, or remove this one after checking what it holds",
            );
        }
        if m.is_dir() && m.mode() & 0o002 != 0 {
            return refuse(
                format!("it is writable by other users (mode {:04o})", m.mode() & 0o7777),
                "make it writable by no one else (chmod o-w), or use another folder",
            );
        }
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut parent = abs.parent();
    while let Some(p) = parent {
        if let Ok(m) = fs::metadata(p) {
            let sticky_root = m.uid() == 0 && m.mode() & 0o1000 != 0;
            if m.uid() != me && m.uid() != 0 {
                return refuse(
                    format!(
                        "it is in {}, which belongs to uid {}: that user can replace it",
                        p.display(),
                        m.uid()
                    ),
                    "use a folder in one of this user's own folders",
                );
            }
            if m.mode() & 0o002 != 0 && !sticky_root {
                return refuse(
                    format!(
                        "it is in {}, which other users may write (mode {:04o}): they can replace it",
                        p.display(),
                        m.mode() & 0o7777
                    ),
                    "use a folder in one of this user's own folders (a root-owned sticky folder such as /tmp is fine)",
                );
            }
            break;
        }
        parent = p.parent();
    }
    Ok(())
}

/// Refuses a state folder inside (or equal to) the output folder, or the other way round,
/// before anything is created: the state holds the CA key and must never be shipped.
pub fn check_apart(state: &Path, out: &Path) -> Result<()> {
    let (s, o) = (resolved(state), resolved(out));
    if s.starts_with(&o) {
        return Err(Error::usage(format!(
            "the state folder {} is inside the output folder {}: the CA and every key would be shipped with the bundles\n  help: keep --state outside --out (by default the state is <topology stem>.state beside the topology)",
            state.display(),
            out.display()
        )));
    }
    if o.starts_with(&s) {
        return Err(Error::usage(format!(
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
        return Err(Error::usage(format!(
            "--out {} is a file, not a folder\n  help: name a folder for the bundles (it is created, and replaced as a whole on every build)",
            out.display()
        )));
    }
    if out.exists() {
        for entry in fs::read_dir(out).map_err(|e| Error::io("cannot list", out, e))? {
            let entry = entry.map_err(|e| Error::io("cannot list", out, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type().is_ok_and(|t| is_own_entry(out, &name, t)) {
                return Err(Error::ForeignOutput { path: out.to_path_buf(), file: name });
            }
        }
    }
    Ok(())
}

/// Lands a finished build: writes its `dist/` beside the old one, commits the state update
/// (its new files `staged` ahead, or not), then puts the new `dist/` in place. A `dist/`
/// that cannot be written stops it before the state changes; a failure after the commit is
/// completed or undone by the next build ([`recover`]). Returns whether `dist/` was written
/// (false: it held exactly these files already).
pub fn land(
    state_dir: &Path,
    out: &Path,
    staged: Option<Staged>,
    update: &StateUpdate,
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<bool> {
    let dist = match prepare_dist(out, files) {
        Ok(dist) => dist,
        Err(e) => {
            let _ = discard_staging(state_dir);
            return Err(e);
        }
    };
    if let Err(e) = commit(state_dir, staged, update) {
        if let Some(dist) = dist {
            dist.discard();
        }
        return Err(e);
    }
    match dist {
        Some(dist) => dist.publish().map(|()| true),
        None => Ok(false),
    }
}

/// A new `dist/`, written and synced beside the old one, waiting to replace it: `dist/` is
/// replaced as a whole, so a failed build leaves the previous one as it was.
struct NewDist {
    out: PathBuf,
    tmp: PathBuf,
    old: PathBuf,
}

/// Writes `files` into a sibling folder of `out` (checked with [`check_out`] first), synced,
/// ready to replace it; `None` when `out` holds exactly these files already (same names,
/// bytes and modes, nothing else), and is left as it is.
fn prepare_dist(out: &Path, files: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<Option<NewDist>> {
    check_out(out)?;
    if holds_exactly(out, files) {
        return Ok(None);
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    mkdirs(&parent, 0o755)?;
    let base = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dist".into());
    let new = NewDist {
        out: out.to_path_buf(),
        tmp: parent.join(format!(".{base}.new-{}", unpredictable())),
        old: parent.join(format!(".{base}.old-{}", unpredictable())),
    };
    let tmp = &new.tmp;
    let written = (|| {
        // A new folder, never one that is already there (whoever made it).
        fs::DirBuilder::new().mode(0o755).create(tmp).map_err(|e| Error::io("cannot create", tmp, e))?;
        let mut batch = Batch::default();
        for (name, bytes) in files {
            let path = tmp.join(name);
            if let Some(dir) = path.parent().filter(|d| d != tmp) {
                mkdirs(dir, 0o755)?;
            }
            batch.create(&path, bytes, crate::dist::mode(name))?;
        }
        batch.sync()?;
        if tmp.join(crate::dist::ANSIBLE_DIR).is_dir() {
            sync_dir(&tmp.join(crate::dist::ANSIBLE_DIR))?;
        }
        sync_dir(tmp)
    })();
    match written {
        Ok(()) => Ok(Some(new)),
        Err(e) => {
            new.discard();
            Err(e)
        }
    }
}

impl NewDist {
    /// Replaces `dist/` with the new folder (the old one is moved aside, then removed).
    fn publish(self) -> Result<()> {
        let (out, tmp, old) = (&self.out, &self.tmp, &self.old);
        let result = (|| {
            if out.exists() {
                fs::rename(out, old).map_err(|e| Error::io("cannot move aside", out, e))?;
            }
            fs::rename(tmp, out).map_err(|e| Error::io("cannot rename into", out, e))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(tmp);
            if old.exists() && !out.exists() {
                let _ = fs::rename(old, out);
            }
            return result;
        }
        if old.exists() {
            fs::remove_dir_all(old).map_err(|e| Error::io("cannot remove", old, e))?;
        }
        Ok(())
    }

    /// Removes the new folder, leaving `dist/` as it was.
    fn discard(self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}
