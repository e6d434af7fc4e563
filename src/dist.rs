//! The one home of dist/'s names: each bundle's tarball, signature and user-data, the signed
//! SHA256SUMS, the signing key, plan.json and the Ansible folder, with the mode each file is
//! written with. The build names its output, fsio writes and recognises it, emit and the
//! printers point at it, all through here.

/// The list of every tarball's digest.
pub const SUMS: &str = "SHA256SUMS";
/// The public key that verifies every signature.
pub const SIGNING_KEY: &str = "signing-key.pub";
/// The plan the bundles were built from.
pub const PLAN_JSON: &str = "plan.json";
/// The folder of `--emit ansible`.
pub const ANSIBLE_DIR: &str = "ansible";
/// The files that folder holds: the inventory and the playbook.
pub const ANSIBLE_FILES: [&str; 3] = ["inventory.yml", "site.yml", "install-bundle.yml"];

/// The snapshot that restore bundles restore, beside them (and signed in SHA256SUMS).
pub const SNAPSHOT: &str = "snapshot.db";

/// `<bundle>.tar.gz`.
pub fn tarball(bundle: &str) -> String {
    format!("{bundle}.tar.gz")
}

/// `<member>.tar.gz.age`: a bundle sealed to its member's recipients.
pub fn sealed(member: &str) -> String {
    format!("{member}.tar.gz.age")
}

/// The detached signature of a file of dist/: `<file>.sig`.
pub fn signature(file: &str) -> String {
    format!("{file}.sig")
}

/// `<member>.user-data` (`--emit cloud-init`).
pub fn user_data(member: &str) -> String {
    format!("{member}.user-data")
}

/// `ansible/<file>` (`--emit ansible`).
pub fn ansible(file: &str) -> String {
    format!("{ANSIBLE_DIR}/{file}")
}

/// Whether a file of that name in dist/ is one etcdpack writes.
pub fn is_ours(name: &str) -> bool {
    name.ends_with(".tar.gz")
        || name.ends_with(".tar.gz.sig")
        || name.ends_with(".tar.gz.age")
        || name.ends_with(".tar.gz.age.sig")
        || name.ends_with(".user-data")
        || [SUMS, &signature(SUMS), SIGNING_KEY, PLAN_JSON, SNAPSHOT].contains(&name)
}

/// The mode of `dist/<name>`: bundles (and user-data carrying one) hold private keys, so
/// they are readable by the building user only.
pub fn mode(name: &str) -> u32 {
    // A snapshot holds every secret the cluster stores.
    if name.ends_with(".tar.gz")
        || name.ends_with(".tar.gz.age")
        || name.ends_with(".user-data")
        || name == SNAPSHOT
    {
        0o600
    } else {
        0o644
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_modes() {
        assert_eq!(signature(&tarball("infra0")), "infra0.tar.gz.sig");
        assert!(is_ours("infra0.tar.gz.sig") && is_ours("SHA256SUMS.sig") && is_ours("plan.json"));
        assert!(!is_ours("notes.txt") && !is_ours("ansible"));
        assert_eq!(mode(&tarball("a")), 0o600);
        assert_eq!(mode(&user_data("a")), 0o600);
        assert_eq!(mode(SIGNING_KEY), 0o644);
        assert_eq!(ansible(ANSIBLE_FILES[0]), "ansible/inventory.yml");
    }
}
