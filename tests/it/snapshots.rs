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
        if path.ends_with(".crt") || path.ends_with(".key") {
            f["sha256"] = "[pem digest]".into();
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn rendered_files_of_every_host() {
    for scenario in scenarios() {
        let b = built(&scenario);
        for (member, u) in &b.bundles {
            let mut out = String::new();
            for (path, _) in u.files.iter().filter(|(p, _)| !p.ends_with(".crt") && !p.ends_with(".key")) {
                let body = match path.as_str() {
                    "bundle.json" => redacted_bundle_json(&text(u, path)),
                    "SHA256SUMS" => {
                        text(u, path).lines().map(|l| format!("<sha256>  {}\n", &l[66..])).collect()
                    }
                    p if p.starts_with("images/") => format!("<{} bytes>", u.files[p].bytes.len()),
                    _ => text(u, path),
                };
                out.push_str(&format!("==> {path} ({:04o}) <==\n{body}\n", u.files[path].mode));
            }
            settings().bind(|| insta::assert_snapshot!(format!("{scenario}__{member}"), out));
        }
    }
}

#[test]
fn plan_of_every_scenario() {
    for scenario in scenarios() {
        let b = built(&scenario);
        settings().bind(|| insta::assert_json_snapshot!(format!("{scenario}__plan"), b.build.plan));
    }
}
