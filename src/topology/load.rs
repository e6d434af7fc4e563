//! The topology's referenced files, loaded after the walk: `pki.existingCA` (a CA
//! certificate and its key, checked to be a CA and a pair) and the archives
//! `etcd.imageArchive` and `etcd.binaryArchive` (an etcd release, read bounded). The walk
//! records each reference with its YAML node; every problem is reported there.

use super::walker::Walker;
use super::*;
use crate::keys::PrivateKey;
use saphyr::MarkedYamlOwned;

/// A file the topology names, with the YAML node that names it.
pub(super) enum FileRef<'a> {
    /// `pki.existingCA`: the certificate's and the key's paths.
    ExistingCa { cert: (String, &'a MarkedYamlOwned), key: (String, &'a MarkedYamlOwned) },
    /// `etcd.imageArchive`.
    ImageArchive { path: String, node: &'a MarkedYamlOwned },
    /// `etcd.binaryArchive`, and the etcd image tag its version should match.
    BinaryArchive { path: String, node: &'a MarkedYamlOwned, tag: String },
}

/// What the loader read.
#[derive(Default)]
pub(super) struct Loaded {
    existing_ca: Option<(String, String)>,
    image: Option<Arc<Vec<u8>>>,
    binaries: Option<(Option<String>, Binaries)>,
}

impl Loaded {
    /// The topology with the files' contents in place.
    pub(super) fn fill(self, mut t: Topology) -> Topology {
        if let (Some(ca), Some((cert_pem, key_pem))) = (t.pki.existing_ca.as_mut(), self.existing_ca) {
            ca.cert_pem = cert_pem;
            ca.key_pem = key_pem;
        }
        if let (Some(a), Some(bytes)) = (t.etcd.image_archive.as_mut(), self.image) {
            a.bytes = bytes;
        }
        if let (Some(a), Some((version, binaries))) = (t.etcd.binary_archive.as_mut(), self.binaries) {
            a.version = version;
            a.binaries = binaries;
        }
        t
    }
}

impl Walker {
    /// Reads and checks every referenced file, reporting each problem at its YAML node.
    pub(super) fn load(&mut self, refs: &[FileRef<'_>], files: &dyn FileSource) -> Loaded {
        let mut out = Loaded::default();
        for r in refs {
            match r {
                FileRef::ExistingCa { cert, key } => out.existing_ca = self.load_ca(cert, key, files),
                FileRef::ImageArchive { path, node } => match files.read(path) {
                    Ok(bytes) => out.image = Some(Arc::new(bytes)),
                    Err(e) => self.err(
                        "etcd.imageArchive",
                        node,
                        format!("cannot read `{path}`: {e}"),
                        "give the archive's path relative to the topology file",
                    ),
                },
                FileRef::BinaryArchive { path, node, tag } => {
                    out.binaries = self.load_binaries(path, node, tag, files);
                }
            }
        }
        out
    }

    /// The existing CA's certificate and key PEM: readable, a CA, and a pair.
    fn load_ca(
        &mut self,
        (cert_path, cert_node): &(String, &MarkedYamlOwned),
        (key_path, key_node): &(String, &MarkedYamlOwned),
        files: &dyn FileSource,
    ) -> Option<(String, String)> {
        let (cert_node, key_node) = (*cert_node, *key_node);
        let cert = files.read(cert_path).map_err(|e| {
            self.err(
                "pki.existingCA.cert",
                cert_node,
                format!("cannot read `{cert_path}`: {e}"),
                "give the path of the CA certificate, relative to the topology file",
            );
        });
        let key = files.read(key_path).map_err(|e| {
            self.err(
                "pki.existingCA.key",
                key_node,
                format!("cannot read `{key_path}`: {e}"),
                "give the path of the CA private key, relative to the topology file",
            );
        });
        let (cert, key) = (cert.ok()?, key.ok()?);
        let cert_pem = String::from_utf8_lossy(&cert).into_owned();
        let key_pem = String::from_utf8_lossy(&key).into_owned();
        let parsed = match crate::x509::parse_pem(&cert_pem) {
            Ok(c) => c,
            Err(e) => {
                self.err(
                    "pki.existingCA.cert",
                    cert_node,
                    format!("`{cert_path}` is not a PEM certificate: {e}"),
                    "point cert at the CA's PEM certificate (ca.crt)",
                );
                return None;
            }
        };
        if !parsed.is_ca {
            self.err(
                "pki.existingCA.cert",
                cert_node,
                format!("`{cert_path}` is not a CA certificate (basicConstraints CA:TRUE missing)"),
                "use the etcd CA's own certificate, not a leaf",
            );
            return None;
        }
        let key = match PrivateKey::from_pem(&key_pem) {
            Ok(k) => k,
            Err(e) => {
                self.err(
                    "pki.existingCA.key",
                    key_node,
                    format!("`{key_path}` is not a usable private key: {e}"),
                    "use an RSA or ECDSA (P-256/P-384) key in PEM",
                );
                return None;
            }
        };
        if key.public_key_der() != parsed.spki_der {
            self.err(
                "pki.existingCA.key",
                key_node,
                format!("`{key_path}` does not match the certificate `{cert_path}`"),
                "give the key that belongs to this CA certificate",
            );
            return None;
        }
        Some((cert_pem, key_pem))
    }

    /// An etcd release archive's binaries and the version its folder names.
    fn load_binaries(
        &mut self,
        path: &str,
        n: &MarkedYamlOwned,
        tag: &str,
        files: &dyn FileSource,
    ) -> Option<(Option<String>, Binaries)> {
        // Official etcd release archives are about 25 MiB.
        let archive = files
            .read_at_most(path, MAX_BINARY_ARCHIVE)
            .map_err(|e| {
                let help = if e.contains("larger than") {
                    "an etcd release archive is about 25 MiB: give the release .tar.gz itself"
                } else {
                    "give the archive's path relative to the topology file"
                };
                (format!("cannot read `{path}`: {e}"), help)
            })
            .and_then(|bytes| {
                etcd_binaries(&bytes).map_err(|why| {
                    (format!("`{path}` is not an etcd release archive: {why}"), "give an etcd release .tar.gz as published (etcd-v3.5.24-linux-amd64.tar.gz), holding etcd, etcdctl and etcdutl in one folder")
                })
            });
        match archive {
            Ok((version, binaries)) => {
                let tag_version = tag.split('-').next().unwrap_or_default();
                if let Some(v) = version.as_deref().filter(|v| *v != tag_version) {
                    self.warn("etcd.binaryArchive", n, format!("the archive holds etcd {v}, but the flags are those kubeadm writes for etcd {tag}"), format!("ship the etcd {tag_version} release, or pin etcd.imageTag to {v}-0 so the flags match the binary"));
                }
                Some((version, binaries))
            }
            Err((msg, help)) => {
                self.err("etcd.binaryArchive", n, msg, help);
                None
            }
        }
    }
}

/// The largest `etcd.binaryArchive` read.
pub(super) const MAX_BINARY_ARCHIVE: u64 = 512 << 20;

/// The binaries of an etcd release archive (gzip'd tar, one top folder
/// `etcd-vX.Y.Z-linux-ARCH/`): `etcd` (required), `etcdctl`, `etcdutl`, and the version the
/// folder names. Reading is bounded (entries, sizes), and links or odd paths are refused.
pub(super) fn etcd_binaries(bytes: &[u8]) -> Result<(Option<String>, Binaries), String> {
    use std::io::Read;
    const MAX_ENTRIES: usize = 1000;
    const MAX_BYTES: u64 = 1 << 30;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut found: BTreeMap<String, Arc<Vec<u8>>> = BTreeMap::new();
    let mut top: Option<String> = None;
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| format!("not a gzip'd tar ({e})"))?;
    for (i, entry) in entries.enumerate() {
        if i >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let mut entry = entry.map_err(|e| format!("not a gzip'd tar ({e})"))?;
        let path = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").trim_end_matches('/').to_string();
        let (dir, name) = match path.split_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (path.clone(), String::new()),
        };
        if path.is_empty() {
            continue;
        }
        if top.get_or_insert_with(|| dir.clone()) != &dir {
            return Err(format!("more than one top folder (`{}` and `{dir}`)", top.unwrap_or_default()));
        }
        if !crate::layout::ETCD_BINARIES.contains(&name.as_str()) {
            continue;
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(format!("`{path}` is not a regular file"));
        }
        total += entry.header().size().unwrap_or(u64::MAX);
        if total > MAX_BYTES {
            return Err("its binaries exceed 1 GiB".into());
        }
        let mut body = Vec::new();
        entry
            .by_ref()
            .take(MAX_BYTES)
            .read_to_end(&mut body)
            .map_err(|e| format!("not a gzip'd tar ({e})"))?;
        found.insert(name, Arc::new(body));
    }
    if !found.contains_key("etcd") {
        return Err("it holds no `etcd` binary".into());
    }
    let version = top
        .as_deref()
        .and_then(|t| t.strip_prefix("etcd-v"))
        .and_then(|rest| rest.split('-').next())
        .filter(|v| {
            v.split('.').count() == 3
                && v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string);
    // etcd first, then the tools in name order.
    let mut binaries: Binaries = Vec::new();
    if let Some(b) = found.remove("etcd") {
        binaries.push(("etcd".into(), b));
    }
    binaries.extend(found);
    Ok((version, binaries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, kind, body) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/shadow").unwrap();
            }
            b.append_data(&mut h, path, *body).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn an_etcd_release_archive_gives_its_binaries_and_version() {
        let f = tar::EntryType::Regular;
        let bytes = targz(&[
            ("etcd-v3.5.24-linux-amd64/README.md", f, b"docs"),
            ("etcd-v3.5.24-linux-amd64/etcdctl", f, b"ctl"),
            ("etcd-v3.5.24-linux-amd64/etcd", f, b"etcd"),
        ]);
        let (version, binaries) = etcd_binaries(&bytes).unwrap();
        assert_eq!(version.as_deref(), Some("3.5.24"));
        let names: Vec<(&str, &[u8])> = binaries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        assert_eq!(names, [("etcd", &b"etcd"[..]), ("etcdctl", &b"ctl"[..])]);
        // A folder that names no version still gives its binaries.
        let (version, _) = etcd_binaries(&targz(&[("etcd/etcd", f, b"x")])).unwrap();
        assert_eq!(version, None);
    }

    #[test]
    fn an_archive_that_is_not_an_etcd_release_is_refused_with_the_reason() {
        let f = tar::EntryType::Regular;
        let no_etcd = targz(&[("etcd-v3.5.24-linux-amd64/etcdctl", f, b"ctl")]);
        assert_eq!(etcd_binaries(&no_etcd).unwrap_err(), "it holds no `etcd` binary");
        let link = targz(&[("etcd-v3.5.24-linux-amd64/etcd", tar::EntryType::Symlink, b"")]);
        assert!(etcd_binaries(&link).unwrap_err().contains("is not a regular file"));
        let two = targz(&[("a/etcd", f, b"x"), ("b/etcdctl", f, b"y")]);
        assert!(etcd_binaries(&two).unwrap_err().contains("more than one top folder"));
        assert!(etcd_binaries(b"plain text").unwrap_err().starts_with("not a gzip'd tar"));
    }
}
