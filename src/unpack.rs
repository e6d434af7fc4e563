//! Reading a bundle back into memory, refusing anything a safe bundle never holds
//! (absolute paths, `..`, links, devices, more than one top folder), and bounding what a
//! hostile archive can make it decompress.

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

/// The most bytes a bundle may decompress to (its files plus tar headers).
pub const MAX_UNPACKED_BYTES: u64 = 2 << 30;
/// The most entries (files and folders) a bundle may hold.
pub const MAX_ENTRIES: usize = 1000;

/// Reads a `.tar.gz` bundle, streaming: at most [`MAX_UNPACKED_BYTES`] are decompressed and
/// at most [`MAX_ENTRIES`] entries read, whatever the archive claims.
pub fn unpack(bytes: &[u8]) -> Result<Unpacked, String> {
    unpack_bounded(bytes, MAX_UNPACKED_BYTES, MAX_ENTRIES)
}

fn unpack_bounded(bytes: &[u8], max_bytes: u64, max_entries: usize) -> Result<Unpacked, String> {
    let limited = GzDecoder::new(bytes).take(max_bytes + 1);
    let mut archive = tar::Archive::new(limited);
    let mut top: Option<String> = None;
    let mut files = BTreeMap::new();
    let mut dirs = BTreeMap::new();
    let too_big = || format!("the bundle decompresses to more than {max_bytes} bytes; refused");
    let entries = archive.entries().map_err(|e| format!("not a gzip'd tar archive: {e}"))?;
    for (count, entry) in entries.enumerate() {
        if count >= max_entries {
            return Err(format!("the bundle holds more than {max_entries} entries; refused"));
        }
        let mut entry = entry.map_err(|e| format!("not a valid gzip'd tar archive: {e}"))?;
        if entry.size() > max_bytes {
            return Err(too_big());
        }
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
                if (body.len() as u64) < entry.size() {
                    return Err(too_big());
                }
                files.insert(r, Entry { mode, owner, bytes: body });
            }
            other => return Err(format!("{path} is a {other:?}, not a regular file or folder")),
        }
    }
    if archive.into_inner().limit() == 0 {
        return Err(too_big());
    }
    Ok(Unpacked { top: top.ok_or("the bundle is empty")?, files, dirs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, &vec![0u8; *size][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_file_larger_than_the_bound_is_refused() {
        let bomb = gz(&tar_of(&[("m/a", 4096), ("m/zeros", 1 << 20)]));
        assert!(bomb.len() < 4096, "a small archive");
        let err = unpack_bounded(&bomb, 64 << 10, 10).unwrap_err();
        assert!(err.contains("more than 65536 bytes"), "{err}");
        assert!(unpack_bounded(&bomb, 4 << 20, 10).is_ok());
    }

    #[test]
    fn too_many_entries_are_refused() {
        let names: Vec<String> = (0..(MAX_ENTRIES + 5)).map(|i| format!("m/f{i}")).collect();
        let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 0)).collect();
        let err = unpack(&gz(&tar_of(&files))).unwrap_err();
        assert!(err.contains("more than 1000 entries"), "{err}");
    }

    #[test]
    fn garbage_is_not_a_bundle() {
        assert!(unpack(b"definitely not gzip").is_err());
    }
}
