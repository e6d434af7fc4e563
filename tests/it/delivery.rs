//! Delivery by cloud-init: every scenario's user-data passes `cloud-init schema` (Debian's
//! cloud-init), carries its member's bundle, signature and signing key byte for byte (and
//! the signature checks as its runcmd checks it), is warned about above 16 KiB, and is refused
//! for bundles that carry an archive.

use crate::support::{built, have_tool, scenarios};
use base64::Engine;
use etcdpack::emit;
use saphyr::LoadableYamlNode;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The user-data of every member of a scenario, as `build --emit cloud-init` writes them.
fn user_data(scenario: &str) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let b = built(scenario);
    let hb = etcdpack::render::compiled().unwrap();
    emit::cloud_init(hb, &b.build.plan, &b.build.dist, &b.build.fingerprint).unwrap()
}

/// Scenarios whose bundles can go by cloud-init (no image or binary archive).
fn small_scenarios() -> Vec<String> {
    scenarios()
        .into_iter()
        .filter(|s| {
            emit::refusal(
                &built(s).build.plan,
                emit::Emit { cloud_init: true, ansible: false, user_data_with_ca_key: true },
            )
            .is_none()
        })
        .collect()
}

#[test]
fn every_user_data_passes_cloud_init_schema() {
    if !have_tool("cloud-init") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for scenario in small_scenarios() {
        for (name, bytes) in user_data(&scenario).0 {
            let path = dir.path().join(format!("{scenario}-{name}"));
            std::fs::write(&path, bytes).unwrap();
            files.push(path);
        }
    }
    assert!(files.len() >= 30, "{} user-data files", files.len());
    // Two at a time (the machine has two cores): each run is a Python start.
    let results: Vec<(String, std::process::Output)> = std::thread::scope(|s| {
        let halves: Vec<_> = files
            .chunks(files.len().div_ceil(2))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|p| {
                            let o = Command::new("cloud-init")
                                .args(["schema", "--config-file"])
                                .arg(p)
                                .output()
                                .unwrap();
                            (p.display().to_string(), o)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    for (path, o) in results {
        let said = crate::host::out(&o);
        assert!(o.status.success() && said.contains("Valid cloud-config"), "{path}: {said}");
        assert!(!said.to_lowercase().contains("deprecat"), "{path}: {said}");
    }
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn user_data_carries_the_signed_bundle_byte_for_byte() {
    let scenario = "guide-v1.34";
    let b = built(scenario);
    let (files, _) = user_data(scenario);
    assert_eq!(files.len(), b.build.plan.members.len());
    for m in &b.build.plan.members {
        let text = String::from_utf8(files[&format!("{}.user-data", m.name)].clone()).unwrap();
        assert!(text.starts_with("#cloud-config\n"), "{}", m.name);
        let doc = saphyr::YamlOwned::load_from_str(&text).unwrap().remove(0);
        let written: BTreeMap<String, (Vec<u8>, String)> = doc["write_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| {
                assert_eq!(f["encoding"].as_str(), Some("b64"));
                assert_eq!(f["owner"].as_str(), Some("root:root"));
                let name = f["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
                (name, (b64(f["content"].as_str().unwrap()), f["permissions"].as_str().unwrap().to_string()))
            })
            .collect();
        let bundle = format!("{}.tar.gz", m.name);
        let sig = format!("{bundle}.sig");
        assert_eq!(written[&bundle], (b.build.dist[&bundle].clone(), "0600".to_string()), "{bundle}");
        assert_eq!(written[&sig].0, b.build.dist[&sig], "{sig}");
        assert_eq!(written["signing-key.pub"].0, b.build.dist["signing-key.pub"]);

        // runcmd's script, run over the written files with install.sh replaced by a marker:
        // the signature checks, the bundle unpacks, install.sh is called with --wait.
        let script = doc["runcmd"][0][2].as_str().unwrap().to_string();
        assert_eq!(doc["runcmd"][0][0].as_str(), Some("sh"));
        let dir = tempfile::tempdir().unwrap();
        // The image's key lives in a test folder here; this "image" has none yet.
        let image_key = dir.path().join("image-signing-key.pub");
        let local = script
            .replace(etcdpack::layout::SIGNING_KEY_PIN, &image_key.display().to_string())
            .replace(etcdpack::layout::CLOUD_INIT_DIR, &dir.path().display().to_string())
            .replace(&format!("./{}/install.sh", m.name), &format!("echo would run ./{}/install.sh", m.name));
        let run = |written: &std::collections::BTreeMap<String, (Vec<u8>, String)>| {
            for (name, (bytes, _)) in written {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
            Command::new("sh").args(["-ec", &local]).output().unwrap()
        };
        let o = run(&written);
        let said = crate::host::out(&o);
        assert!(o.status.success(), "{said}");
        assert!(said.contains("Verified OK"), "{said}");
        assert!(said.contains("no signing key in the image"), "{said}");
        let pubkey = dir.path().join("signing-key.pub").display().to_string();
        assert!(
            said.contains(&format!("would run ./{}/install.sh --pubkey {pubkey} --wait 600", m.name)),
            "{said}"
        );
        // The delivered copies (they hold keys) are gone once install.sh succeeded.
        for gone in [m.name.clone(), bundle.clone(), sig.clone(), "signing-key.pub".into()] {
            assert!(!dir.path().join(&gone).exists(), "{gone}");
        }

        // An image with the build's key baked in checks against it, and passes it on.
        std::fs::write(&image_key, &b.build.dist["signing-key.pub"]).unwrap();
        let o = run(&written);
        let said = crate::host::out(&o);
        assert!(o.status.success() && !said.contains("no signing key in the image"), "{said}");
        assert!(said.contains(&format!("--pubkey {}", image_key.display())), "{said}");

        // A user-data signed again by another key, that key in it: the image's key stops it.
        let mut forged = written.clone();
        let other = etcdpack::keys::KeySource::key(
            &etcdpack::keys::OsKeys,
            etcdpack::keys::KeyAlgorithm::EcdsaP256,
            "x",
        );
        let signer = etcdpack::sign::Signer256::from_pem(&etcdpack::keys::pem_encode(
            "PRIVATE KEY",
            &other.to_pkcs8_der(),
        ))
        .unwrap();
        forged.insert(sig.clone(), (signer.sign(&written[&bundle].0), "0644".into()));
        forged.insert("signing-key.pub".into(), (signer.public_pem().into_bytes(), "0644".into()));
        let o = run(&forged);
        assert!(!o.status.success(), "{}", crate::host::out(&o));
        assert!(!dir.path().join(&m.name).exists(), "nothing unpacked after a failed signature");
        std::fs::remove_file(&image_key).unwrap();

        // A user-data whose bundle was altered stops at the signature.
        let mut bad = written.clone();
        let i = bad[&bundle].0.len() / 2;
        bad.get_mut(&bundle).unwrap().0[i] ^= 1;
        let o = run(&bad);
        assert!(!o.status.success(), "{}", crate::host::out(&o));
        assert!(!dir.path().join(&m.name).exists(), "nothing unpacked after a failed signature");
    }
}

fn etcdpack(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_etcdpack")).args(args).current_dir(dir).output().unwrap()
}

#[test]
fn a_user_data_above_16_kib_is_warned_and_an_archive_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    // RSA keys: every user-data is above 16 KiB.
    std::fs::write(
        w.join("t.yaml"),
        "cluster: big\nkubernetesVersion: v1.34.2\nmembers:\n  - { name: a0, address: 10.0.0.6 }\n",
    )
    .unwrap();
    // a0 holds the CA key: its user-data would carry it in clear, which takes a flag.
    let o = etcdpack(w, &["build", "t.yaml", "--emit", "cloud-init"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "--emit cloud-init: a0's bundle carries the etcd CA key, and its user-data would hold it in clear"
        ),
        "{err}"
    );
    assert!(
        err.contains("help: seal the bundle to the host (`recipients:`")
            && err.contains("keep the CA key out of every bundle with `pki: { caKeyOnFirstMember: false }`"),
        "{err}"
    );
    assert!(!w.join("t.state").exists() && !w.join("dist").exists(), "nothing made");
    let o = etcdpack(w, &["build", "t.yaml", "--emit", "ansible", "--user-data-with-ca-key"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--user-data-with-ca-key applies to --emit cloud-init only"), "{err}");
    assert!(!w.join("t.state").exists(), "nothing made");
    let o = etcdpack(w, &["build", "t.yaml", "--emit", "cloud-init", "--user-data-with-ca-key"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let size = std::fs::metadata(w.join("dist/a0.user-data")).unwrap().len() as f64 / 1024.0;
    assert!(size > 16.0, "{size}");
    assert!(
        err.contains(&format!(
            "warning: dist/a0.user-data is {size:.1} KiB, above the 16 KiB user-data limit of EC2"
        )),
        "{err}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(w.join("dist/a0.user-data")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a user-data holds private keys");
    // A second build reuses dist/ (its user-data are etcdpack's own) and stays quiet about
    // nothing else.
    let o = etcdpack(w, &["build", "t.yaml", "--emit", "cloud-init,ansible", "--user-data-with-ca-key"]);
    assert!(o.status.success(), "{}", crate::host::out(&o));
    assert!(w.join("dist/ansible/site.yml").is_file());
    // Without --emit, the next build's dist/ holds neither.
    let o = etcdpack(w, &["build", "t.yaml"]);
    assert!(o.status.success(), "{}", crate::host::out(&o));
    assert!(!w.join("dist/a0.user-data").exists() && !w.join("dist/ansible").exists());

    // An image archive is refused before any key is made.
    let fixture = crate::support::fixtures().join("image-archive-v1.34");
    let state = w.join("archive.state");
    let o = Command::new(env!("CARGO_BIN_EXE_etcdpack"))
        .arg("build")
        .arg(fixture.join("topology.yaml"))
        .args(["--emit", "cloud-init", "--out"])
        .arg(w.join("archive-dist"))
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--emit cloud-init: every bundle carries the image archive etcd-3.6.5-0.tar"),
        "{err}"
    );
    assert!(err.contains("help: deliver these bundles by USB, scp or --emit ansible"), "{err}");
    assert!(!state.exists() && !w.join("archive-dist").exists(), "nothing made");
}

#[test]
fn a_leaving_member_goes_by_ansible_last_and_gets_no_user_data() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let topology = |n: usize| {
        let mut t =
            "cluster: shrink\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256, caKeyOnFirstMember: false }\nmembers:\n"
                .to_string();
        for i in 0..n {
            t.push_str(&format!("  - {{ name: m{i}, address: 10.0.0.{} }}\n", 6 + i));
        }
        t
    };
    std::fs::write(w.join("t.yaml"), topology(4)).unwrap();
    assert!(etcdpack(w, &["build", "t.yaml"]).status.success());
    std::fs::write(w.join("t.yaml"), topology(3)).unwrap();
    let o = etcdpack(w, &["build", "t.yaml", "--emit", "cloud-init,ansible"]);
    assert!(o.status.success(), "{}", crate::host::out(&o));
    let names: Vec<String> = std::fs::read_dir(w.join("dist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".user-data"))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["m0.user-data", "m1.user-data", "m2.user-data"]);
    let inventory = std::fs::read_to_string(w.join("dist/ansible/inventory.yml")).unwrap();
    let doc = saphyr::YamlOwned::load_from_str(&inventory).unwrap().remove(0);
    let group = |g: &str| -> Vec<(String, String, String)> {
        doc["all"]["children"][g]["hosts"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let field = |f: &str| v[f].as_str().unwrap().to_string();
                (k.as_str().unwrap().to_string(), field("ansible_host"), field("etcdpack_sha256"))
            })
            .collect()
    };
    // Nothing changed for m0..m2 (topology order); m3 takes its leave bundle in its own
    // group, which site.yml runs after the control plane.
    let names: Vec<String> = group("etcd").into_iter().map(|h| h.0).collect();
    assert_eq!(names, ["m0", "m1", "m2"], "{inventory}");
    let leaving = group("etcd_leaving");
    assert_eq!(leaving.len(), 1, "{inventory}");
    assert_eq!((leaving[0].0.as_str(), leaving[0].1.as_str()), ("m3", "10.0.0.9"));
    let digest = leaving[0].2.clone();
    let bytes = std::fs::read(w.join("dist/m3.tar.gz")).unwrap();
    use sha2::Digest;
    assert_eq!(digest, hex::encode(sha2::Sha256::digest(&bytes)), "the digest names m3's leave bundle");
}
