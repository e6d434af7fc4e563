//! `expiry`: when every certificate of a cluster stops being valid, read from a state folder
//! or from bundles, in the shape of `kubeadm certs check-expiration` (which, for external
//! etcd, lists none of them).

use crate::profile::LEAVES;
use crate::state::State;
use crate::unpack::Unpacked;
use crate::x509;
use serde::Serialize;

/// One certificate and its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Member, or `None` for the CA.
    pub member: Option<String>,
    /// kubeadm's name (`etcd-server`, `etcd-ca`, ...).
    pub certificate: String,
    /// NotAfter, seconds since the epoch.
    #[serde(skip)]
    pub not_after: i64,
    /// Serial, hex (to tell one certificate read twice from two).
    #[serde(skip)]
    pub serial: String,
    /// The signing CA (`etcd-ca`), or `self` for the CA.
    pub ca: String,
}

fn row(member: Option<&str>, certificate: &str, pem: &str, ca: &str) -> Result<Row, String> {
    let info = x509::parse_pem(pem).map_err(|e| format!("{certificate}: {e}"))?;
    Ok(Row {
        member: member.map(str::to_string),
        certificate: certificate.to_string(),
        not_after: info.not_after,
        serial: info.serial_hex,
        ca: ca.to_string(),
    })
}

/// The CA and every leaf of a state folder.
pub fn from_state(state: &State) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    if let Some(ca) = &state.ca_cert {
        rows.push(row(None, "etcd-ca", ca, "self")?);
    }
    // A CA rotation in progress: the other CA every bundle trusts.
    if let Some(next) = &state.ca_next {
        rows.push(row(None, "etcd-ca (new, phase 1)", &next.cert_pem, "self")?);
    }
    if let Some(old) = &state.ca_previous {
        rows.push(row(None, "etcd-ca (old, phase 2)", &old.cert_pem, "self")?);
    }
    for (member, leaves) in &state.leaves {
        for (leaf, stored) in leaves {
            rows.push(row(Some(member), leaf.kubeadm_name(), &stored.cert_pem, "etcd-ca")?);
        }
    }
    Ok(rows)
}

/// The CA and the leaves a member bundle carries.
pub fn from_bundle(u: &Unpacked) -> Result<Vec<Row>, String> {
    let text = |p: &str| u.files.get(p).map(|e| String::from_utf8_lossy(&e.bytes).into_owned());
    let meta = u
        .files
        .get("bundle.json")
        .and_then(|e| crate::bundle::BundleJson::parse(&e.bytes).ok())
        .ok_or("the bundle has no readable bundle.json")?;
    let member = meta.member.as_str();
    let mut rows = Vec::new();
    if let Some(ca) = text("rootfs/etc/kubernetes/pki/etcd/ca.crt") {
        // During a CA rotation the file holds a second CA, which the bundle trusts too.
        let blocks = pem::parse_many(&ca).map_err(|e| format!("etcd/ca.crt: {e}"))?;
        for (i, block) in blocks.iter().enumerate() {
            let name = if i == 0 { "etcd-ca" } else { "etcd-ca (also trusted)" };
            rows.push(row(None, name, &pem::encode(block), "self")?);
        }
    }
    for leaf in LEAVES {
        if let Some(pem) = text(&format!("rootfs/etc/kubernetes/pki/{}.crt", leaf.stem())) {
            rows.push(row(Some(member), leaf.kubeadm_name(), &pem, "etcd-ca")?);
        }
    }
    Ok(rows)
}

/// Sorted by expiry (then member and name), each certificate once.
pub fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| {
        (a.not_after, &a.member, &a.certificate).cmp(&(b.not_after, &b.member, &b.certificate))
    });
    rows.dedup_by(|a, b| a.serial == b.serial && a.certificate == b.certificate && a.member == b.member);
    rows
}

/// Residual time as kubeadm prints it from 1.31: `364d`, `23h`, `59m`, or `<invalid>` once
/// expired.
pub fn residual(secs: i64) -> String {
    match secs {
        s if s <= 0 => "<invalid>".to_string(),
        s if s >= 86400 => format!("{}d", s / 86400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s => format!("{}m", (s / 60).max(1)),
    }
}

/// kubeadm's expiry format, `Jan 02, 2006 15:04 UTC`.
pub fn kubeadm_time(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{} {:02}, {} {:02}:{:02} UTC",
            &t.month().to_string()[..3],
            t.day(),
            t.year(),
            t.hour(),
            t.minute()
        ),
        Err(_) => secs.to_string(),
    }
}

/// The table, like `kubeadm certs check-expiration` with a member column.
pub fn table(rows: &[Row], now: i64) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:<24} {:<14} {}\n",
        "MEMBER", "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:<24} {:<24} {:<14} {}\n",
            r.member.as_deref().unwrap_or("-"),
            r.certificate,
            kubeadm_time(r.not_after),
            residual(r.not_after - now),
            r.ca
        ));
    }
    out
}

/// The rows as JSON objects: `member`, `certificate`, `notAfter` (RFC 3339),
/// `residualSeconds`, `ca`.
pub fn json(rows: &[Row], now: i64) -> String {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "member": r.member,
                "certificate": r.certificate,
                "notAfter": x509::rfc3339(r.not_after),
                "residualSeconds": r.not_after - now,
                "ca": r.ca,
            })
        })
        .collect();
    serde_json::to_string_pretty(&items).expect("JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_and_dates_read_like_kubeadm() {
        assert_eq!(residual(365 * 86400), "365d");
        assert_eq!(residual(5 * 3600 + 1), "5h");
        assert_eq!(residual(30), "1m");
        assert_eq!(residual(0), "<invalid>");
        assert_eq!(kubeadm_time(1_800_000_000), "Jan 15, 2027 08:00 UTC");
    }

    #[test]
    fn rows_sort_by_expiry_and_appear_once() {
        let r = |m: &str, c: &str, t: i64, s: &str| Row {
            member: Some(m.into()),
            certificate: c.into(),
            not_after: t,
            serial: s.into(),
            ca: "etcd-ca".into(),
        };
        let rows = sorted(vec![
            r("b", "etcd-peer", 20, "2"),
            r("a", "etcd-server", 10, "1"),
            r("a", "etcd-server", 10, "1"),
        ]);
        assert_eq!(rows.iter().map(|x| x.not_after).collect::<Vec<_>>(), [10, 20]);
    }
}
