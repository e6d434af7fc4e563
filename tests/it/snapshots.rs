//! Snapshots of every rendered file of every host of every scenario, and of each plan.
//! Only what is truly random is redacted: digests of PEM files (ECDSA signatures differ
//! on every run). Certificates themselves are checked field by field in `certs`.

use crate::support::{built, scenarios, text};
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
        ["help", "build_help", "renew_help", "verify_help"].map(|h| format!("help__{h}")).to_vec();
    for scenario in scenarios() {
        expected.push(format!("{scenario}__plan"));
        expected.push(format!("{scenario}__control-plane"));
        for m in crate::support::load_topology(&scenario).members {
            expected.push(format!("{scenario}__{}", m.name));
        }
    }
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
