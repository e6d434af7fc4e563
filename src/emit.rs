//! Delivery beyond USB and scp, made from the signed `dist/` alone: cloud-init user-data that
//! carries one member's bundle, its signature and the signing key, and an Ansible inventory
//! and playbook that check every signature on the controller and install one host at a time.

use crate::plan::Plan;
use crate::rollout::{HostChange, install_order};
use base64::Engine;
use serde_json::json;
use std::collections::BTreeMap;

/// What `build --emit` asks for besides the bundles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Emit {
    /// `dist/<member>.user-data` for every member.
    pub cloud_init: bool,
    /// `dist/ansible/`.
    pub ansible: bool,
    /// `--user-data-with-ca-key`: the CA key may go into a user-data, in clear.
    pub user_data_with_ca_key: bool,
}

/// Files for `dist/`, by name.
pub type Files = BTreeMap<String, Vec<u8>>;

/// The user-data size above which some clouds refuse it (EC2 takes 16 KiB).
pub const USER_DATA_LIMIT: usize = 16 * 1024;
/// How long the user-data's install.sh waits for a healthy member.
pub const CLOUD_INIT_WAIT_SECS: u32 = 600;
/// The playbook, verbatim (Jinja, not a handlebars template).
pub const SITE_YML: &str = include_str!("../templates/ansible/site.yml");
/// The tasks that install one host's bundle, verbatim.
pub const INSTALL_BUNDLE_YML: &str = include_str!("../templates/ansible/install-bundle.yml");

/// Why the plan cannot go by cloud-init, if it cannot: a bundle that ships an image or
/// binary archive is far above what any cloud takes as user-data. Checked before any key
/// is made.
pub fn refusal(plan: &Plan, emit: Emit) -> Option<String> {
    if !emit.cloud_init {
        return emit.user_data_with_ca_key.then(|| {
            "--user-data-with-ca-key applies to --emit cloud-init only, which this command does not ask for\n  help: add --emit cloud-init, or leave --user-data-with-ca-key out".to_string()
        });
    }
    let what = match (&plan.image_archive, plan.systemd.as_ref().filter(|s| !s.binaries.is_empty())) {
        (Some(image), _) => format!("the image archive {image}"),
        (None, Some(_)) => "the etcd binaries of etcd.binaryArchive".to_string(),
        (None, None) => {
            // A sealed bundle's user-data holds only ciphertext.
            let holder = plan
                .members
                .iter()
                .find(|m| m.carries_ca_key && m.recipients.is_empty())
                .filter(|_| !emit.user_data_with_ca_key)?;
            return Some(format!(
                "--emit cloud-init: {}'s bundle carries the etcd CA key, and its user-data would hold it in clear for anything that can read the instance's user-data (the metadata service, the cloud's API, launch templates, infrastructure state, /var/lib/cloud/instance)\n  help: seal the bundle to the host (`recipients:` with an age identity or SSH host key baked into the image), keep the CA key out of every bundle with `pki: {{ caKeyOnFirstMember: false }}` (the state folder keeps it), or pass --user-data-with-ca-key to accept that exposure",
                holder.name
            ));
        }
    };
    Some(format!(
        "--emit cloud-init: every bundle carries {what}, far more than cloud-init user-data can hold (16 KiB on EC2)\n  help: deliver these bundles by USB, scp or --emit ansible, or drop the archive from the topology (then install.sh needs the image or binary on the host)"
    ))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `dist/<member>.user-data` for every member, with a warning for each one above
/// [`USER_DATA_LIMIT`]. A leaving member gets none: cloud-init runs when a host first boots,
/// and a host that leaves has long been running.
pub fn cloud_init(
    hb: &crate::render::Templates,
    plan: &Plan,
    dist: &Files,
    fingerprint: &str,
) -> Result<(Files, Vec<String>), crate::render::RenderError> {
    let mut files = BTreeMap::new();
    let mut warnings = vec![format!(
        "each user-data checks its bundle against the signing key baked into the image at {}; an image without it trusts the key the user-data carries, which proves only that the user-data is whole: bake dist/signing-key.pub ({fingerprint}) into the image",
        crate::layout::SIGNING_KEY_PIN
    )];
    let key = b64(&dist[crate::dist::SIGNING_KEY]);
    for m in &plan.members {
        let (name, address) = (&m.name, m.address.to_string());
        let sealed = !m.recipients.is_empty();
        let file = plan.shipped(name);
        let bundle = &dist[&file];
        let ctx = json!({
            "cluster": plan.cluster,
            "member": name,
            "address": address,
            "fingerprint": fingerprint,
            "dir": crate::layout::CLOUD_INIT_DIR,
            "pin": crate::layout::SIGNING_KEY_PIN,
            "wait": CLOUD_INIT_WAIT_SECS,
            "key_b64": key,
            "file": file,
            "sealed": sealed,
            "identities": crate::layout::AGE_IDENTITIES.join(" "),
            "sig_b64": b64(&dist[&crate::dist::signature(&file)]),
            "bundle_b64": b64(bundle),
        });
        let text = hb.render(crate::layout::templates::USER_DATA, &ctx)?;
        let shipped = file;
        let file = crate::dist::user_data(name);
        if text.len() > USER_DATA_LIMIT {
            warnings.push(format!(
                "dist/{file} is {:.1} KiB, above the 16 KiB user-data limit of EC2 (other clouds take more: Azure 64 KiB, GCE 256 KiB); where it is refused, deliver dist/{shipped} by scp or --emit ansible",
                text.len() as f64 / 1024.0
            ));
        }
        files.insert(file, text.into_bytes());
    }
    Ok((files, warnings))
}

/// The host of a peer URL (`https://[fd00::6]:2380` → `fd00::6`).
fn address_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    host.to_string()
}

/// `dist/ansible/`: the inventory (the members in install order: those this build changes
/// first, in the order the build names, then the others; the members that leave in a group of
/// their own, which site.yml runs after the control plane, as the build's order says), the
/// playbook and its tasks.
pub fn ansible(
    hb: &crate::render::Templates,
    plan: &Plan,
    digests: &BTreeMap<String, String>,
    changes: &[HostChange],
) -> Result<Files, crate::render::RenderError> {
    let host = |name: &str, address: &str| {
        let file = plan.shipped(name);
        let sealed = file != crate::dist::tarball(name);
        json!({ "name": name, "address": address, "sha256": digests.get(name), "file": file, "sealed": sealed })
    };
    let changed =
        install_order(changes).into_iter().filter_map(|c| plan.members.iter().find(|m| m.name == c.member));
    let mut order: Vec<&crate::plan::MemberPlan> = Vec::new();
    for m in changed.chain(&plan.members) {
        if !order.iter().any(|o| o.name == m.name) {
            order.push(m);
        }
    }
    let member_hosts: Vec<serde_json::Value> =
        order.iter().map(|m| host(&m.name, &m.address.to_string())).collect();
    let leaving: Vec<serde_json::Value> =
        plan.leaving.iter().map(|l| host(&l.name, &address_of(&l.peer_url))).collect();
    let cp = &plan.control_plane.name;
    let ctx = json!({
        "cluster": plan.cluster,
        "hosts": member_hosts,
        "leaving": leaving,
        "control_plane": cp,
        "control_plane_sha256": digests.get(cp),
    });
    let inventory = hb.render(crate::layout::templates::ANSIBLE_INVENTORY, &ctx)?;
    Ok(BTreeMap::from([
        (crate::dist::ansible("inventory.yml"), inventory.into_bytes()),
        (crate::dist::ansible("site.yml"), SITE_YML.as_bytes().to_vec()),
        (crate::dist::ansible("install-bundle.yml"), INSTALL_BUNDLE_YML.as_bytes().to_vec()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_url_gives_its_host() {
        assert_eq!(address_of("https://10.0.0.6:2380"), "10.0.0.6");
        assert_eq!(address_of("https://[fd00::6]:2380"), "fd00::6");
    }
}
