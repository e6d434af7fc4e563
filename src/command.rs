//! kubeadm's etcd command line and probe endpoint (reference sections 2.2, 2.3 and 2.6):
//! `getEtcdCommand`'s defaults merged with the extraArgs by `ArgumentsToCommand` in the order
//! of the release, and `GetEtcdProbeEndpoint`.

use crate::layout::PKI_DIR;
use crate::topology::Arg;
use crate::versions::ArgOrder;
use serde::Serialize;
use std::net::IpAddr;

/// kubeadm's fixed client port (used where kubeadm ignores the configured one).
pub const KUBEADM_CLIENT_PORT: u16 = 2379;
/// kubeadm's fixed peer port.
pub const KUBEADM_PEER_PORT: u16 = 2380;
/// kubeadm's metrics port.
pub const METRICS_PORT: u16 = 2381;

/// The probe endpoint kubeadm derives (`GetEtcdProbeEndpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub scheme: &'static str,
}

fn arg(name: &str, value: &str) -> Arg {
    Arg { name: name.to_string(), value: value.to_string() }
}

/// An address as it goes into a URL (IPv6 in brackets).
pub fn url_host(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// kubeadm's `getEtcdCommand` for an init, merged with `extra` (`ArgumentsToCommand`): every
/// default that an extraArg names is dropped; then either everything is sorted by name and
/// value ([`ArgOrder::Sorted`]) or the sorted defaults are followed by the extraArgs in the
/// order given ([`ArgOrder::Appended`]).
pub fn etcd_command(
    name: &str,
    address: &IpAddr,
    data_dir: &str,
    etcd36: bool,
    order: ArgOrder,
    extra: &[Arg],
) -> Vec<String> {
    let host = url_host(address);
    let lo = if address.is_ipv6() { "[::1]" } else { "127.0.0.1" };
    let etcd_pki = format!("{PKI_DIR}/etcd");
    let mut defaults = vec![
        arg("name", name),
        arg(
            "listen-client-urls",
            &format!("https://{lo}:{KUBEADM_CLIENT_PORT},https://{host}:{KUBEADM_CLIENT_PORT}"),
        ),
        arg("advertise-client-urls", &format!("https://{host}:{KUBEADM_CLIENT_PORT}")),
        arg("listen-peer-urls", &format!("https://{host}:{KUBEADM_PEER_PORT}")),
        arg("initial-advertise-peer-urls", &format!("https://{host}:{KUBEADM_PEER_PORT}")),
        arg("data-dir", data_dir),
        arg("cert-file", &format!("{etcd_pki}/server.crt")),
        arg("key-file", &format!("{etcd_pki}/server.key")),
        arg("trusted-ca-file", &format!("{etcd_pki}/ca.crt")),
        arg("client-cert-auth", "true"),
        arg("peer-cert-file", &format!("{etcd_pki}/peer.crt")),
        arg("peer-key-file", &format!("{etcd_pki}/peer.key")),
        arg("peer-trusted-ca-file", &format!("{etcd_pki}/ca.crt")),
        arg("peer-client-cert-auth", "true"),
        arg("snapshot-count", "10000"),
        arg("listen-metrics-urls", &format!("http://{lo}:{METRICS_PORT}")),
        arg("initial-cluster", &format!("{name}=https://{host}:{KUBEADM_PEER_PORT}")),
    ];
    if etcd36 {
        defaults.push(arg("feature-gates", "InitialCorruptCheck=true"));
        defaults.push(arg("watch-progress-notify-interval", "5s"));
    } else {
        defaults.push(arg("experimental-initial-corrupt-check", "true"));
        defaults.push(arg("experimental-watch-progress-notify-interval", "5s"));
    }
    defaults.retain(|d| !extra.iter().any(|e| e.name == d.name));
    match order {
        ArgOrder::Sorted => {
            defaults.extend(extra.iter().cloned());
            defaults.sort();
        }
        ArgOrder::Appended => {
            defaults.sort();
            defaults.extend(extra.iter().cloned());
        }
    }
    std::iter::once("etcd".to_string())
        .chain(defaults.into_iter().map(|a| format!("--{}={}", a.name, a.value)))
        .collect()
}

/// kubeadm's `GetEtcdProbeEndpoint`: the first URL of the last `listen-metrics-urls` extraArg
/// (`GetArgValue` searches from the end), if any.
pub fn probe_endpoint(extra: &[Arg], loopback: &str) -> Probe {
    let default = Probe { host: loopback.to_string(), port: METRICS_PORT, scheme: "HTTP" };
    let Some(urls) = extra.iter().rev().find(|a| a.name == "listen-metrics-urls") else {
        return default;
    };
    let first = urls.value.split(',').next().unwrap_or_default();
    let Some((scheme, rest)) = first.split_once("://") else { return default };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h.to_string(), p.strip_prefix(':').unwrap_or("")),
            None => return default,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (authority.to_string(), ""),
        }
    };
    // Go's url.Parse refuses a port that is not all digits (kubeadm then takes the defaults);
    // kubeadm's ParsePort refuses 0 and anything above 65535, and then keeps the URL's host
    // and scheme with port 2381 (reference item H).
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return default;
    }
    let port = port.parse::<u16>().ok().filter(|p| *p != 0).unwrap_or(METRICS_PORT);
    Probe {
        host: if host.is_empty() { loopback.to_string() } else { host },
        port,
        scheme: if scheme == "https" { "HTTPS" } else { "HTTP" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: &str, v: &str) -> Arg {
        arg(n, v)
    }

    #[test]
    fn extra_args_remove_every_default_of_that_name_and_sort() {
        let ip: IpAddr = "10.0.0.6".parse().unwrap();
        let cmd = etcd_command(
            "infra0",
            &ip,
            "/var/lib/etcd",
            false,
            ArgOrder::Sorted,
            &[
                a("listen-client-urls", "https://10.0.0.6:2379"),
                a("snapshot-count", "5"),
                a("snapshot-count", "1"),
            ],
        );
        assert!(cmd.contains(&"--listen-client-urls=https://10.0.0.6:2379".to_string()));
        assert_eq!(cmd.iter().filter(|c| c.starts_with("--listen-client-urls")).count(), 1);
        let snaps: Vec<_> = cmd.iter().filter(|c| c.starts_with("--snapshot-count")).collect();
        assert_eq!(snaps, ["--snapshot-count=1", "--snapshot-count=5"]);
        let mut sorted = cmd[1..].to_vec();
        sorted.sort();
        assert_eq!(sorted, cmd[1..].to_vec());
    }

    #[test]
    fn appended_order_keeps_extra_args_as_given_after_sorted_defaults() {
        let ip: IpAddr = "10.0.0.6".parse().unwrap();
        let extra = [a("snapshot-count", "5"), a("name", "infra0"), a("auto-compaction-retention", "8")];
        let cmd = etcd_command("infra0", &ip, "/var/lib/etcd", true, ArgOrder::Appended, &extra);
        let n = cmd.len();
        assert_eq!(cmd[n - 3..], ["--snapshot-count=5", "--name=infra0", "--auto-compaction-retention=8"]);
        let defaults = cmd[1..n - 3].to_vec();
        let mut sorted = defaults.clone();
        sorted.sort();
        assert_eq!(defaults, sorted);
        assert!(!defaults.iter().any(|d| d.starts_with("--snapshot-count") || d.starts_with("--name=")));
    }

    #[test]
    fn probe_endpoint_follows_last_metrics_arg() {
        let p = probe_endpoint(
            &[
                a("listen-metrics-urls", "http://127.0.0.1:7001"),
                a("listen-metrics-urls", "http://127.0.0.1:7002"),
            ],
            "127.0.0.1",
        );
        assert_eq!(p.port, 7002);
    }

    #[test]
    fn probe_endpoint_follows_first_metrics_url() {
        assert_eq!(probe_endpoint(&[], "::1"), Probe { host: "::1".into(), port: 2381, scheme: "HTTP" });
        let p = probe_endpoint(
            &[a("listen-metrics-urls", "https://[fd00::1]:9000,http://127.0.0.1:2381")],
            "::1",
        );
        assert_eq!(p, Probe { host: "fd00::1".into(), port: 9000, scheme: "HTTPS" });
        let p = probe_endpoint(&[a("listen-metrics-urls", "http://:7000")], "127.0.0.1");
        assert_eq!(p, Probe { host: "127.0.0.1".into(), port: 7000, scheme: "HTTP" });
        let p = probe_endpoint(&[a("listen-metrics-urls", "http://10.1.1.1")], "127.0.0.1");
        assert_eq!(p, Probe { host: "10.1.1.1".into(), port: 2381, scheme: "HTTP" });
        let p = probe_endpoint(&[a("listen-metrics-urls", "garbage")], "127.0.0.1");
        assert_eq!(p.port, 2381);
    }

    #[test]
    fn probe_port_out_of_range_falls_back_to_2381_keeping_host_and_scheme() {
        // kubeadm's GetEtcdProbeEndpoint with ParsePort (reference item H).
        for port in ["0", "65536", "70000", "99999999999999999999"] {
            let url = format!("https://10.1.1.1:{port}");
            let p = probe_endpoint(&[a("listen-metrics-urls", &url)], "127.0.0.1");
            assert_eq!(p, Probe { host: "10.1.1.1".into(), port: 2381, scheme: "HTTPS" }, "{url}");
            let url = format!("http://[fd00::1]:{port}");
            let p = probe_endpoint(&[a("listen-metrics-urls", &url)], "::1");
            assert_eq!(p, Probe { host: "fd00::1".into(), port: 2381, scheme: "HTTP" }, "{url}");
        }
        let p = probe_endpoint(&[a("listen-metrics-urls", "http://10.1.1.1:1")], "127.0.0.1");
        assert_eq!(p.port, 1);
        let p = probe_endpoint(&[a("listen-metrics-urls", "http://10.1.1.1:65535")], "127.0.0.1");
        assert_eq!(p.port, 65535);
        // A port that is not a number fails Go's url.Parse: every default, the loopback too.
        let p = probe_endpoint(&[a("listen-metrics-urls", "https://10.1.1.1:x1")], "127.0.0.1");
        assert_eq!(p, Probe { host: "127.0.0.1".into(), port: 2381, scheme: "HTTP" });
    }
}
