//! Bundles sealed to their host (`members[].recipients`): dist/ holds only ciphertext for
//! them, signed like a tarball; Debian's `age` opens it with the host's SSH key (ed25519 or
//! RSA) or a break-glass age identity and with nothing else; `verify`, `inspect` and `expiry`
//! open it with `--identity`; a rebuild keeps it byte for byte and a changed recipient list
//! seals it again; cloud-init user-data carries ciphertext only and its runcmd opens it.

use crate::support::have_tool;
use base64::Engine;
use saphyr::LoadableYamlNode;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn run(w: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).current_dir(w).output().unwrap()
}

fn etcdpack(w: &Path, args: &[&str]) -> Output {
    run(w, env!("CARGO_BIN_EXE_etcdpack"), args)
}

/// The keys of a lab: infra0's SSH host key (ed25519), infra1's (RSA), a break-glass age
/// identity, and an outsider's ed25519 key. Returns the public line of each, by file name.
struct Keys {
    ed25519: String,
    rsa: String,
    glass: String,
}

fn keys(w: &Path) -> Keys {
    for (file, kind) in [("host0", "ed25519"), ("host1", "rsa"), ("outsider", "ed25519")] {
        let mut args = vec!["-q", "-t", kind, "-N", "", "-C", "", "-f", file];
        if kind == "rsa" {
            args.extend(["-b", "2048"]);
        }
        let o = run(w, "ssh-keygen", &args);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = run(w, "age-keygen", &["-o", "glass.txt"]);
    assert!(o.status.success(), "{}", text(&o));
    let glass = String::from_utf8(run(w, "age-keygen", &["-y", "glass.txt"]).stdout).unwrap();
    Keys {
        ed25519: std::fs::read_to_string(w.join("host0.pub")).unwrap().trim().to_string(),
        rsa: std::fs::read_to_string(w.join("host1.pub")).unwrap().trim().to_string(),
        glass: glass.trim().to_string(),
    }
}

/// A work folder with the keys, when the tools are there.
fn lab() -> Option<(tempfile::TempDir, Keys)> {
    if !have_tool("age") || !have_tool("ssh-keygen") {
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let k = keys(work.path());
    Some((work, k))
}

fn topology(k: &Keys, infra1: &str) -> String {
    format!(
        "cluster: sealed\nkubernetesVersion: v1.34.2\npki: {{ keyAlgorithm: ECDSA-P256 }}\nmembers:\n  - name: infra0\n    address: 10.0.0.6\n    recipients:\n      - \"{}\"\n      - {}\n  - {{ name: infra1, address: 10.0.0.7{infra1} }}\n  - {{ name: infra2, address: 10.0.0.8 }}\n",
        k.ed25519, k.glass
    )
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What `age -d -i identity file` prints, or its failure.
fn age_open(w: &Path, identity: &str, file: &str) -> Result<Vec<u8>, String> {
    let o = run(w, "age", &["-d", "-i", identity, file]);
    if o.status.success() { Ok(o.stdout) } else { Err(text(&o)) }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_sealed_bundle_opens_only_with_its_hosts_keys_and_verify_checks_it_inside() {
    let Some((work, k)) = lab() else { return };
    let w = work.path();
    let rsa = format!(", recipients: [\"{}\"]", k.rsa);
    std::fs::write(w.join("t.yaml"), topology(&k, &rsa)).unwrap();
    let o = etcdpack(w, &["build", "t.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("infra0 <- dist/infra0.tar.gz.age: first install"), "{}", text(&o));

    // dist/ holds ciphertext for the sealed members, never their clear tarball.
    let dist = w.join("dist");
    for m in ["infra0", "infra1"] {
        assert!(!dist.join(format!("{m}.tar.gz")).exists(), "{m}");
        let sealed = read(dist.join(format!("{m}.tar.gz.age")));
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"), "{m}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dist.join(format!("{m}.tar.gz.age"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{m}");
    }
    assert!(dist.join("infra2.tar.gz").is_file());
    // SHA256SUMS names the sealed files by their own digest; the signature is over them.
    let sums = String::from_utf8(read(dist.join("SHA256SUMS"))).unwrap();
    let sealed0 = read(dist.join("infra0.tar.gz.age"));
    assert!(sums.contains(&format!("{}  infra0.tar.gz.age\n", sha256(&sealed0))), "{sums}");
    let o = run(
        &dist,
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-verify",
            "signing-key.pub",
            "-signature",
            "infra0.tar.gz.age.sig",
            "infra0.tar.gz.age",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    // Debian's age opens each with the host's SSH key or the break-glass identity, and the
    // result is the tarball plan.json names.
    let plan: serde_json::Value = serde_json::from_slice(&read(dist.join("plan.json"))).unwrap();
    let by_host = age_open(w, "host0", "dist/infra0.tar.gz.age").unwrap();
    assert_eq!(sha256(&by_host), plan["bundles"]["infra0"].as_str().unwrap());
    assert_eq!(age_open(w, "glass.txt", "dist/infra0.tar.gz.age").unwrap(), by_host);
    let infra1 = age_open(w, "host1", "dist/infra1.tar.gz.age").unwrap();
    assert_eq!(sha256(&infra1), plan["bundles"]["infra1"].as_str().unwrap());
    let ca_key = etcdpack::unpack::unpack(&by_host).unwrap();
    assert!(ca_key.files.contains_key("rootfs/etc/kubernetes/pki/etcd/ca.key"), "the CA holder's bundle");
    // Nobody else: another host's key, an outsider's key.
    assert!(age_open(w, "host1", "dist/infra0.tar.gz.age").is_err());
    assert!(age_open(w, "outsider", "dist/infra0.tar.gz.age").is_err());
    assert!(age_open(w, "host0", "dist/infra1.tar.gz.age").is_err());

    // verify: the signature alone without an identity (and it says so), everything with one.
    let o = etcdpack(
        w,
        &["verify", "--pubkey", "dist/signing-key.pub", "dist/infra0.tar.gz.age", "dist/infra2.tar.gz"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("its contents are not checked: pass --identity"), "{}", text(&o));
    assert!(text(&o).contains("1 sealed bundle(s) not opened"), "{}", text(&o));
    let o = etcdpack(
        w,
        &[
            "verify",
            "--pubkey",
            "dist/signing-key.pub",
            "-i",
            "host0",
            "-i",
            "host1",
            "dist/infra0.tar.gz.age",
            "dist/infra1.tar.gz.age",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    for line in [
        "opened with the given identity",
        "SHA256SUMS signed by the signing key",
        "key placement",
        "one cluster, one CA",
    ] {
        assert!(text(&o).contains(line), "{line}: {}", text(&o));
    }
    // The wrong identity fails, and says why.
    let o = etcdpack(w, &["verify", "-i", "outsider", "dist/infra0.tar.gz.age"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("none of the given identities is a recipient"), "{}", text(&o));
    // inspect and expiry need one; with it they read the bundle.
    let o = etcdpack(w, &["inspect", "dist/infra1.tar.gz.age"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is sealed to its host") && text(&o).contains("--identity"), "{}", text(&o));
    let o = etcdpack(w, &["inspect", "--identity", "host1", "dist/infra1.tar.gz.age"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("bundle infra1 (cluster sealed, address 10.0.0.7"), "{}", text(&o));
    let o = etcdpack(w, &["expiry", "--identity", "glass.txt", "dist/infra0.tar.gz.age"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("etcd-server"), "{}", text(&o));
    // Not an identity: a public key, a folder, an encrypted key.
    for (bad, says) in [("host0.pub", "not an age identity file"), ("dist", "not an identity file")] {
        let o = etcdpack(w, &["inspect", "-i", bad, "dist/infra0.tar.gz.age"]);
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", text(&o));
        assert!(text(&o).contains(says), "{bad}: {}", text(&o));
    }
    let o = run(w, "ssh-keygen", &["-q", "-t", "ed25519", "-N", "secret", "-f", "locked"]);
    assert!(o.status.success());
    let o = etcdpack(w, &["inspect", "-i", "locked", "dist/infra0.tar.gz.age"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("protected by a passphrase"), "{}", text(&o));
    assert!(!text(&o).contains("OPENSSH PRIVATE KEY"), "no key echoed: {}", text(&o));

    // An attacker who changes the ciphertext cannot keep the signature; one who seals a forged
    // tarball to the host and signs it with another key is refused against the pinned key.
    let mut tampered = sealed0.clone();
    let i = tampered.len() - 40;
    tampered[i] ^= 1;
    std::fs::write(dist.join("infra0.tar.gz.age"), &tampered).unwrap();
    let o =
        etcdpack(w, &["verify", "--pubkey", "dist/signing-key.pub", "-i", "host0", "dist/infra0.tar.gz.age"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAIL  signature by the signing key"), "{}", text(&o));
    std::fs::write(dist.join("infra0.tar.gz.age"), &sealed0).unwrap();
    std::fs::copy(dist.join("signing-key.pub"), w.join("pinned.pub")).unwrap();
    let sh = |script: &str| {
        let o = Command::new("bash").args(["-c", script]).current_dir(w).output().unwrap();
        assert!(o.status.success(), "{script}: {}", text(&o));
    };
    sh(
        "age -d -i host0 -o clear.tgz dist/infra0.tar.gz.age && age -R host0.pub -o dist/infra0.tar.gz.age clear.tgz && openssl ecparam -name prime256v1 -genkey -noout -out attacker.pem && openssl pkey -in attacker.pem -pubout -out dist/signing-key.pub && openssl dgst -sha256 -sign attacker.pem -out dist/infra0.tar.gz.age.sig dist/infra0.tar.gz.age",
    );
    let o = etcdpack(w, &["verify", "--pubkey", "pinned.pub", "-i", "host0", "dist/infra0.tar.gz.age"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAIL  signature by the signing key"), "{}", text(&o));
}

#[test]
fn a_rebuild_keeps_a_sealed_bundle_and_new_recipients_seal_it_again() {
    let Some((work, k)) = lab() else { return };
    let w = work.path();
    std::fs::write(w.join("t.yaml"), topology(&k, "")).unwrap();
    let build = || {
        let o = etcdpack(w, &["build", "t.yaml"]);
        assert!(o.status.success(), "{}", text(&o));
        o
    };
    build();
    let first = read(w.join("dist/infra0.tar.gz.age"));
    let clear = age_open(w, "host0", "dist/infra0.tar.gz.age").unwrap();
    // Unchanged: the same ciphertext (sealing again would make other bytes).
    let o = build();
    assert!(text(&o).contains("no host needs a new bundle"), "{}", text(&o));
    assert_eq!(read(w.join("dist/infra0.tar.gz.age")), first);
    // A recipient added (infra0's topology names the outsider too): sealed again, same
    // tarball inside, so no host needs it for its contents.
    let outsider = std::fs::read_to_string(w.join("outsider.pub")).unwrap();
    let t = topology(&k, "").replace(
        &format!("      - {}\n", k.glass),
        &format!("      - {}\n      - \"{}\"\n", k.glass, outsider.trim()),
    );
    std::fs::write(w.join("t.yaml"), t).unwrap();
    build();
    let second = read(w.join("dist/infra0.tar.gz.age"));
    assert_ne!(second, first);
    assert_eq!(age_open(w, "outsider", "dist/infra0.tar.gz.age").unwrap(), clear);
    assert_eq!(age_open(w, "host0", "dist/infra0.tar.gz.age").unwrap(), clear);
    // A sealed file swapped for an older one in dist/ is not kept: its digest is not recorded.
    std::fs::write(w.join("dist/infra0.tar.gz.age"), &first).unwrap();
    build();
    let third = read(w.join("dist/infra0.tar.gz.age"));
    assert_ne!(third, first, "an unrecorded sealed file is sealed again");
    assert_eq!(age_open(w, "outsider", "dist/infra0.tar.gz.age").unwrap(), clear);
    // Recipients removed: the clear tarball again, the sealed file gone.
    let plain = "cluster: sealed\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: infra0, address: 10.0.0.6 }\n  - { name: infra1, address: 10.0.0.7 }\n  - { name: infra2, address: 10.0.0.8 }\n";
    std::fs::write(w.join("t.yaml"), plain).unwrap();
    build();
    assert!(!w.join("dist/infra0.tar.gz.age").exists() && !w.join("dist/infra0.tar.gz.age.sig").exists());
    assert_eq!(read(w.join("dist/infra0.tar.gz")), clear);
}

#[test]
fn user_data_of_a_sealed_bundle_carries_ciphertext_only_and_its_runcmd_opens_it() {
    let Some((work, k)) = lab() else { return };
    let w = work.path();
    std::fs::write(w.join("t.yaml"), topology(&k, "")).unwrap();
    // infra0 holds the CA key, sealed: no --user-data-with-ca-key needed for it; infra2's
    // clear bundle holds no CA key.
    let o = etcdpack(w, &["build", "t.yaml", "--emit", "cloud-init"]);
    assert!(o.status.success(), "{}", text(&o));
    let ud = String::from_utf8(read(w.join("dist/infra0.user-data"))).unwrap();
    let doc = saphyr::YamlOwned::load_from_str(&ud).unwrap().remove(0);
    let written: Vec<(String, Vec<u8>)> = doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(f["content"].as_str().unwrap()).unwrap();
            (name, bytes)
        })
        .collect();
    let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["signing-key.pub", "infra0.tar.gz.age.sig", "infra0.tar.gz.age"]);
    for (name, bytes) in &written {
        let s = String::from_utf8_lossy(bytes);
        assert!(!s.contains("PRIVATE KEY") && !bytes.starts_with(&[0x1f, 0x8b]), "{name} is not clear");
    }
    assert_eq!(written[2].1, read(w.join("dist/infra0.tar.gz.age")));
    if have_tool("cloud-init") {
        let o = run(w, "cloud-init", &["schema", "--config-file", "dist/infra0.user-data"]);
        assert!(text(&o).contains("Valid cloud-config"), "{}", text(&o));
    }

    // runcmd over the written files, the image's paths moved into a test folder and
    // install.sh replaced by a marker: it opens the bundle with the image's SSH host key.
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let script = doc["runcmd"][0][2].as_str().unwrap().to_string();
    let [identity, ed25519, rsa] = etcdpack::layout::AGE_IDENTITIES;
    let local = script
        .replace(etcdpack::layout::CLOUD_INIT_DIR, &h.display().to_string())
        .replace(etcdpack::layout::SIGNING_KEY_PIN, &h.join("image.pub").display().to_string())
        .replace(identity, &h.join("age-identity").display().to_string())
        .replace(ed25519, &h.join("ssh_host_ed25519_key").display().to_string())
        .replace(rsa, &h.join("ssh_host_rsa_key").display().to_string())
        .replace("./infra0/install.sh", "echo would run ./infra0/install.sh");
    let runcmd = || {
        for (name, bytes) in &written {
            std::fs::write(h.join(name), bytes).unwrap();
        }
        Command::new("sh").args(["-ec", &local]).output().unwrap()
    };
    // An image without any key to open it: a clear refusal, nothing unpacked.
    let o = runcmd();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no key to open infra0.tar.gz.age"), "{}", text(&o));
    assert!(!h.join("infra0").exists() && !h.join("infra0.tar.gz").exists());
    // An image whose host key is not a recipient: age refuses, nothing unpacked.
    std::fs::copy(w.join("outsider"), h.join("ssh_host_ed25519_key")).unwrap();
    let o = runcmd();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!h.join("infra0").exists());
    // The image's own host key: opened, unpacked, installed, every delivered copy removed.
    std::fs::copy(w.join("host0"), h.join("ssh_host_ed25519_key")).unwrap();
    let o = runcmd();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Verified OK") && text(&o).contains("would run ./infra0/install.sh --pubkey"),
        "{}",
        text(&o)
    );
    for gone in ["infra0", "infra0.tar.gz", "infra0.tar.gz.age", "infra0.tar.gz.age.sig", "signing-key.pub"] {
        assert!(!h.join(gone).exists(), "{gone}");
    }
}
