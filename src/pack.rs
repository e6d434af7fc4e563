//! Packing: a member's files into a deterministic `.tar.gz`.
//!
//! Entries are sorted, every header field is set explicitly (mode, uid/gid 0, empty owner
//! names, one mtime), directories get kubeadm's modes, and the gzip header carries no
//! timestamp, so the same files always give the same bytes. Compressing dominates packing, so
//! a rebuild keeps the previous tarball when it holds exactly the same tar ([`holds`]).

use crate::render::FileSet;
use flate2::{Compression, GzBuilder};
use std::collections::BTreeSet;
use std::io::Write;

/// Mode of a directory inside a bundle: the manifest folder is 0700 as kubeadm makes it.
fn dir_mode(path: &str) -> u32 {
    if path.ends_with("rootfs/etc/kubernetes/manifests") { 0o700 } else { 0o755 }
}

/// Packs one member's files under `<member>/`; `mtime` is seconds since the epoch.
pub fn pack(set: &FileSet, mtime: u64) -> Vec<u8> {
    gzip(&tar(set, mtime))
}

/// The uncompressed tar of one member's files under `<member>/`.
pub fn tar(set: &FileSet, mtime: u64) -> Vec<u8> {
    let mut dirs = BTreeSet::new();
    dirs.insert(set.member.clone());
    for path in set.files.keys() {
        let mut cur = set.member.clone();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            cur = format!("{cur}/{part}");
            dirs.insert(cur.clone());
        }
    }
    let mut entries: Vec<(String, Option<&crate::render::BundleFile>)> =
        dirs.into_iter().map(|d| (format!("{d}/"), None)).collect();
    entries.extend(set.files.iter().map(|(p, f)| (format!("{}/{p}", set.member), Some(f))));
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    for (path, file) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("").expect("empty user name");
        h.set_groupname("").expect("empty group name");
        match file {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(dir_mode(path.trim_end_matches('/')));
                h.set_size(0);
                tar.append_data(&mut h, &path, std::io::empty()).expect("tar into memory");
            }
            Some(f) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(f.mode);
                h.set_size(f.bytes.len() as u64);
                tar.append_data(&mut h, &path, f.bytes.as_slice()).expect("tar into memory");
            }
        }
    }
    tar.into_inner().expect("tar into memory")
}

/// `tar`, gzip-compressed with no timestamp in the header.
pub fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Compression::default());
    gz.write_all(tar).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// Whether `gz` is one gzip stream that holds exactly `tar` (it is read no further than
/// `tar`'s length, plus one byte to see that nothing follows).
pub fn holds(gz: &[u8], tar: &[u8]) -> bool {
    use std::io::Read;
    let mut out = Vec::with_capacity(tar.len() + 1);
    let mut d = flate2::bufread::GzDecoder::new(gz);
    match d.by_ref().take(tar.len() as u64 + 1).read_to_end(&mut out) {
        Ok(_) => out == tar && d.into_inner().is_empty(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::BundleFile;
    use std::io::Read;

    fn set() -> FileSet {
        let mut files = std::collections::BTreeMap::new();
        files.insert(
            "rootfs/etc/kubernetes/manifests/etcd.yaml".into(),
            BundleFile::new(0o600, b"a".to_vec()),
        );
        files.insert("install.sh".into(), BundleFile::new(0o755, b"b".to_vec()));
        FileSet { member: "infra0".into(), files }
    }

    #[test]
    fn deterministic_with_fixed_headers() {
        let a = pack(&set(), 1_700_000_000);
        assert_eq!(a, pack(&set(), 1_700_000_000));
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "gzip mtime must be zero");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a[..]).read_to_end(&mut raw).unwrap();
        let mut ar = tar::Archive::new(&raw[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 1_700_000_000));
            assert_eq!(h.username().unwrap(), Some(""));
            let p = e.path().unwrap().to_string_lossy().into_owned();
            assert!(!p.starts_with('/') && !p.contains(".."));
            seen.push((p, h.mode().unwrap()));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert!(seen.contains(&("infra0/rootfs/etc/kubernetes/manifests/".into(), 0o700)));
        assert!(seen.contains(&("infra0/install.sh".into(), 0o755)));
        assert!(seen.contains(&("infra0/rootfs/etc/kubernetes/manifests/etcd.yaml".into(), 0o600)));
    }

    #[test]
    fn a_tarball_holds_only_the_tar_it_was_made_from() {
        let tar = tar(&set(), 1_700_000_000);
        let gz = gzip(&tar);
        assert!(holds(&gz, &tar));
        let mut other = set();
        other.files.insert("install.sh".into(), BundleFile::new(0o755, b"c".to_vec()));
        assert!(!holds(&gz, &super::tar(&other, 1_700_000_000)));
        assert!(!holds(&gz, &super::tar(&set(), 1_700_000_001)));
        assert!(!holds(&gz, &tar[..tar.len() - 1]));
        assert!(!holds(&gz[..gz.len() - 4], &tar), "a cut stream");
        let mut longer = gz.clone();
        longer.extend_from_slice(&gz);
        assert!(!holds(&longer, &tar), "a second stream after it");
        assert!(!holds(b"not gzip", &tar));
    }
}
