//! Reading a bundle back into memory, refusing anything a safe bundle never holds
//! (absolute paths, `..`, links, devices, more than one top folder).

use flate2::read::GzDecoder;
use std::collections::BTreeMap;
use std::io::Read;

/// One file read from a bundle.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Unix mode.
    pub mode: u32,
    /// uid and gid.
    pub owner: (u64, u64),
    /// Contents.
    pub bytes: Vec<u8>,
}

/// A bundle's files, paths relative to its top folder.
#[derive(Clone, Debug)]
pub struct Unpacked {
    /// The top folder (the member name).
    pub top: String,
    /// Regular files.
    pub files: BTreeMap<String, Entry>,
    /// Directories with their modes.
    pub dirs: BTreeMap<String, u32>,
}

/// Reads a `.tar.gz` bundle.
pub fn unpack(bytes: &[u8]) -> Result<Unpacked, String> {
    let mut raw = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut raw).map_err(|e| format!("not a gzip file: {e}"))?;
    let mut archive = tar::Archive::new(&raw[..]);
    let mut top: Option<String> = None;
    let mut files = BTreeMap::new();
    let mut dirs = BTreeMap::new();
    for entry in archive.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("damaged tar entry: {e}"))?;
        let path = entry.path().map_err(|e| format!("bad path: {e}"))?.to_string_lossy().into_owned();
        if path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") {
            return Err(format!("unsafe path in bundle: {path}"));
        }
        let path = path.trim_end_matches('/').to_string();
        let (head, rest) = match path.split_once('/') {
            Some((h, r)) => (h.to_string(), Some(r.to_string())),
            None => (path.clone(), None),
        };
        match &top {
            None => top = Some(head.clone()),
            Some(t) if *t != head => return Err(format!("more than one top folder: {t} and {head}")),
            _ => {}
        }
        let h = entry.header();
        let mode = h.mode().map_err(|e| e.to_string())?;
        let owner = (h.uid().map_err(|e| e.to_string())?, h.gid().map_err(|e| e.to_string())?);
        match h.entry_type() {
            tar::EntryType::Directory => {
                if let Some(r) = rest {
                    dirs.insert(r, mode);
                }
            }
            tar::EntryType::Regular => {
                let Some(r) = rest else { return Err(format!("file at top level: {path}")) };
                let mut body = Vec::new();
                entry.read_to_end(&mut body).map_err(|e| format!("cannot read {path}: {e}"))?;
                files.insert(r, Entry { mode, owner, bytes: body });
            }
            other => return Err(format!("{path} is a {other:?}, not a regular file or folder")),
        }
    }
    Ok(Unpacked { top: top.ok_or("the bundle is empty")?, files, dirs })
}
