//! Snapshots of every rendered file of every host of every scenario, and of each plan.
//! Only what is truly random is redacted: digests of PEM files (ECDSA signatures differ
//! on every run). Certificates themselves are checked field by field in `certs`.

use crate::support::{built, scenarios, text};
use etcdpack::installer::Role;
use insta::Settings;

fn settings() -> Settings {
    let mut s = Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

fn redacted_bundle_json(raw: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["caSha256"] = "[pem digest]".into();
    for f in v["files"].as_array_mut().unwrap() {
        let path = f["path"].as_str().unwrap().to_string();
        if path.ends_with(".crt") || path.ends_with(".key") || path == "bundle.env" {
            f["sha256"] = "[pem digest]".into();
        }
        // install.sh is checked below (its data here, its shared part once per role and
        // runtime), so that a change to the installer does not touch every scenario.
        if path == "install.sh" {
            f["sha256"] = "[installer digest]".into();
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

fn rendered(scenario: &str) {
    let b = built(scenario);
    for (member, u) in b.every_bundle() {
        let mut out = String::new();
        for (path, _) in u.files.iter().filter(|(p, _)| !p.ends_with(".crt") && !p.ends_with(".key")) {
            let body = match path.as_str() {
                "bundle.json" => redacted_bundle_json(&text(u, path)),
                // The CA's PEM differs on every run with ECDSA (random signatures).
                "bundle.env" => text(u, path)
                    .lines()
                    .map(|l| {
                        if l.starts_with("CA_SHA256=") {
                            "CA_SHA256=[pem digest]\n".to_string()
                        } else {
                            format!("{l}\n")
                        }
                    })
                    .collect(),
                "SHA256SUMS" => text(u, path).lines().map(|l| format!("<sha256>  {}\n", &l[66..])).collect(),
                // Deterministic, but over digests of PEM files that differ on every run.
                "SHA256SUMS.sig" => "<signature of SHA256SUMS>\n".to_string(),
                // The part every bundle of a role and runtime shares is checked here and
                // snapshotted once (`installers`); this bundle's own part is its data.
                "install.sh" => own_part(&text(u, path)),
                p if p.starts_with("images/") || p.starts_with("rootfs/usr/local/bin/") => {
                    format!("<{} bytes>", u.files[p].bytes.len())
                }
                _ => text(u, path),
            };
            out.push_str(&format!("==> {path} ({:04o}) <==\n{body}\n", u.files[path].mode));
        }
        settings().bind(|| insta::assert_snapshot!(format!("{scenario}__{member}"), out));
    }
}

/// install.sh up to the part its role and runtime share, after checking that part is exactly
/// [`etcdpack::installer::shared_part`] of the role and runtime its data names.
fn own_part(install: &str) -> String {
    let at = install.find(etcdpack::installer::SHARED_PART).expect("install.sh has its shared part");
    let (own, shared) = install.split_at(at);
    let value = |key: &str| {
        own.lines().find_map(|l| l.strip_prefix(&format!("readonly {key}="))).expect(key).to_string()
    };
    let role = [Role::Member, Role::Join, Role::Leave, Role::ControlPlane, Role::Restore]
        .into_iter()
        .find(|r| r.name() == value("ROLE"))
        .expect("a role");
    let runtime = etcdpack::layout::Runtime::from_name(Some(&value("RUNTIME")))
        .filter(|_| !value("RUNTIME").is_empty());
    assert_eq!(shared, etcdpack::installer::shared_part(role, runtime), "{} {:?}", role.name(), runtime);
    format!(
        "{own}[the installer of role {}{}: tests/snapshots/installer__*.snap]\n",
        role.name(),
        runtime.map(|r| format!(", runtime {}", r.name())).unwrap_or_default()
    )
}

/// One whole install.sh of each role and runtime: a member and the control plane of the
/// guide's scenario, a member of the systemd one, and the join and leave bundles of a member
/// added and removed again, in both runtimes.
#[test]
fn installers() {
    let guide = built("guide-v1.34");
    let systemd = built("systemd-v1.33");
    let mut whole: Vec<(String, String)> = vec![
        ("member-static-pod".into(), text(&guide.bundles["infra0"], "install.sh")),
        ("member-systemd".into(), text(&systemd.bundles["infra0"], "install.sh")),
        ("control-plane".into(), text(&guide.control_plane, "install.sh")),
    ];
    for runtime in ["static-pod", "systemd"] {
        let dir = tempfile::tempdir().unwrap();
        let topology = |names: &[&str]| {
            let mut t = format!(
                "cluster: c\nkubernetesVersion: v1.34.2\npki: {{ keyAlgorithm: ECDSA-P256 }}\netcd: {{ runtime: {runtime} }}\nmembers:\n"
            );
            for (i, n) in names.iter().enumerate() {
                t.push_str(&format!("  - {{ name: {n}, address: 10.0.0.{} }}\n", 6 + i));
            }
            t
        };
        for (names, role) in [
            (&["a", "b", "c"][..], None),
            (&["a", "b", "c", "d"], Some("join")),
            (&["a", "b", "c"], Some("leave")),
        ] {
            let b =
                crate::support::build_in(dir.path(), &topology(names), 7, crate::support::NOW, None).unwrap();
            let Some(role) = role else { continue };
            let u = etcdpack::unpack::unpack(&b.dist["d.tar.gz"]).unwrap();
            let name = if role == "leave" { "leave".to_string() } else { format!("{role}-{runtime}") };
            let install = text(&u, "install.sh");
            own_part(&install);
            if role == "leave" && runtime == "systemd" {
                // A leave stops whatever runs etcd: one installer for both runtimes.
                assert_eq!(whole.iter().find(|w| w.0 == "leave").map(|w| &w.1), Some(&install));
                continue;
            }
            whole.push((name, install));
        }
    }
    // A restore bundle (static pods): the member's parts and restore.sh.
    let dir = tempfile::tempdir().unwrap();
    let t = "cluster: c\nkubernetesVersion: v1.34.2\npki: { keyAlgorithm: ECDSA-P256 }\nmembers:\n  - { name: a, address: 10.0.0.6 }\n  - { name: b, address: 10.0.0.7 }\n";
    crate::support::build_in(dir.path(), t, 7, crate::support::NOW, None).unwrap();
    let snapshot = std::fs::read(crate::support::fixtures().join("snapshot/etcd-3.5.1.db")).unwrap();
    let b = crate::support::restore_in(dir.path(), t, 7, &snapshot, false).unwrap();
    let install = text(&etcdpack::unpack::unpack(&b.dist["b.tar.gz"]).unwrap(), "install.sh");
    own_part(&install);
    whole.push(("restore-static-pod".into(), install));
    let names: Vec<&str> = whole.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(names, INSTALLERS);
    for (name, install) in whole {
        settings().bind(|| insta::assert_snapshot!(format!("installer__{name}"), install));
    }
}

/// The installers snapshotted whole, one per role and runtime.
const INSTALLERS: [&str; 7] = [
    "member-static-pod",
    "member-systemd",
    "control-plane",
    "join-static-pod",
    "leave",
    "join-systemd",
    "restore-static-pod",
];

fn plan(scenario: &str) {
    let b = built(scenario);
    settings().bind(|| insta::assert_json_snapshot!(format!("{scenario}__plan"), b.build.plan));
}

/// One module per scenario, with one test case for its rendered files and one for its plan,
/// so that a failing scenario does not hide the others.
macro_rules! scenarios {
    ($($module:ident => $dir:literal),* $(,)?) => {
        $(
            mod $module {
                #[test]
                fn rendered_files() {
                    super::rendered($dir)
                }
                #[test]
                fn plan() {
                    super::plan($dir)
                }
            }
        )*
        const LISTED: &[&str] = &[$($dir),*];
    };
}

scenarios! {
    args_order_v1_34_3 => "args-order-v1.34.3",
    args_order_v1_34_4 => "args-order-v1.34.4",
    args_order_v1_35_0 => "args-order-v1.35.0",
    args_order_v1_35_4 => "args-order-v1.35.4",
    backport_order_v1_35 => "backport-order-v1.35",
    ecdsa_p256_v1_29 => "ecdsa-p256-v1.29",
    ecdsa_p256_v1_37 => "ecdsa-p256-v1.37",
    ecdsa_p384_v1_36 => "ecdsa-p384-v1.36",
    existing_ca_v1_32 => "existing-ca-v1.32",
    five_members_custom_ports => "five-members-custom-ports",
    guide_v1_34 => "guide-v1.34",
    image_archive_v1_34 => "image-archive-v1.34",
    ipv6_v1_30 => "ipv6-v1.30",
    no_ca_key_v1_31 => "no-ca-key-v1.31",
    rsa_4096_single => "rsa-4096-single",
    systemd_v1_33 => "systemd-v1.33",
    v1beta3_api_v1_36 => "v1beta3-api-v1.36",
}

#[test]
fn every_scenario_has_its_own_test_cases() {
    assert_eq!(LISTED, scenarios(), "list every folder of tests/fixtures in the scenarios! block");
}

/// Every committed snapshot belongs to a test: a renamed scenario or member must not leave
/// a stale snapshot behind, and no `.snap.new` may be committed.
#[test]
fn no_snapshot_is_unreferenced() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut expected: Vec<String> =
        ["help", "build_help", "renew_help", "verify_help", "rotate-ca_help", "restore_help"]
            .map(|h| format!("help__{h}"))
            .to_vec();
    for scenario in scenarios() {
        expected.push(format!("{scenario}__plan"));
        expected.push(format!("{scenario}__control-plane"));
        for m in crate::support::load_topology(&scenario).members {
            expected.push(format!("{scenario}__{}", m.name));
        }
    }
    expected.extend(INSTALLERS.map(|i| format!("installer__{i}")));
    for e in std::fs::read_dir(crate::support::fixtures().join("invalid")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".yaml") {
            expected.push(format!("invalid__{stem}"));
        }
    }
    let mut unreferenced = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        match name.strip_suffix(".snap") {
            Some(stem) if expected.iter().any(|x| x == stem) => {}
            _ => unreferenced.push(name),
        }
    }
    assert!(unreferenced.is_empty(), "snapshots no test writes: {unreferenced:?}");
}
