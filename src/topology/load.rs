//! The topology's referenced files, loaded after the walk: `pki.existingCA` (a CA
//! certificate and its key, checked to be a CA and a pair) and the archives
//! `etcd.imageArchive` and `etcd.binaryArchive` (an etcd release, read bounded). The walk
//! records each reference with its YAML node; every problem is reported there.

use super::etcd::{MAX_BINARY_ARCHIVE, etcd_binaries};
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
