//! The certificates kubeadm issues for an external etcd cluster: the four leaves (`Leaf`)
//! and what each must say (`CertProfile`: subject, SANs, usages), as kubeadm's certlist
//! builds them (reference sections 1.1-1.3).

use crate::keys::KeyAlgorithm;
use serde::Serialize;
use std::net::IpAddr;

/// The four leaf certificates every member gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Leaf {
    /// `etcd/server`: serving etcd's client port.
    EtcdServer,
    /// `etcd/peer`: member-to-member TLS.
    EtcdPeer,
    /// `etcd/healthcheck-client`: liveness checks.
    EtcdHealthcheckClient,
    /// `apiserver-etcd-client`: what kube-apiserver uses.
    ApiserverEtcdClient,
}

/// All leaves in kubeadm's order.
pub const LEAVES: [Leaf; 4] =
    [Leaf::EtcdServer, Leaf::EtcdPeer, Leaf::EtcdHealthcheckClient, Leaf::ApiserverEtcdClient];

impl Leaf {
    /// kubeadm's name for it (`kubeadm certs renew <name>`).
    pub fn kubeadm_name(self) -> &'static str {
        match self {
            Leaf::EtcdServer => "etcd-server",
            Leaf::EtcdPeer => "etcd-peer",
            Leaf::EtcdHealthcheckClient => "etcd-healthcheck-client",
            Leaf::ApiserverEtcdClient => "apiserver-etcd-client",
        }
    }

    /// File stem under the PKI dir.
    pub fn stem(self) -> &'static str {
        match self {
            Leaf::EtcdServer => "etcd/server",
            Leaf::EtcdPeer => "etcd/peer",
            Leaf::EtcdHealthcheckClient => "etcd/healthcheck-client",
            Leaf::ApiserverEtcdClient => "apiserver-etcd-client",
        }
    }

    /// Short name used in the state folder.
    pub fn short(self) -> &'static str {
        self.stem().trim_start_matches("etcd/")
    }
}

/// Extended key usages, in the order kubeadm lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Eku {
    /// TLS server.
    ServerAuth,
    /// TLS client.
    ClientAuth,
}

/// What one leaf certificate must say: the inputs it is issued for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertProfile {
    /// Subject CN.
    pub common_name: String,
    /// DNS SANs, de-duplicated and sorted (kubeadm's `RemoveDuplicateAltNames`).
    pub dns_names: Vec<String>,
    /// IP SANs, de-duplicated in insertion order.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether serverAuth is present (clientAuth always is).
    pub server_auth: bool,
    /// Key algorithm.
    pub key_algorithm: KeyAlgorithm,
}

/// One certificate of one member.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertRequest {
    /// Which leaf.
    pub leaf: Leaf,
    /// Its profile.
    pub profile: CertProfile,
}

/// The kubeadm profiles (reference section 1.2/1.3) for one member.
pub fn cert_requests(name: &str, address: &IpAddr, sans: &[String], alg: KeyAlgorithm) -> Vec<CertRequest> {
    // serverCertSANs = peerCertSANs = [address] + certSANs, as the guide's config plus ours.
    let mut dns = vec![name.to_string(), "localhost".to_string()];
    let mut ips: Vec<IpAddr> = vec![*address, "127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    for s in std::iter::once(address.to_string()).chain(sans.iter().cloned()) {
        match s.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(s),
        }
    }
    dns.sort();
    dns.dedup();
    let mut seen = Vec::new();
    ips.retain(|ip| {
        let s = ip.to_string();
        if seen.contains(&s) {
            false
        } else {
            seen.push(s);
            true
        }
    });
    let serving = CertProfile {
        common_name: name.to_string(),
        dns_names: dns,
        ip_addresses: ips,
        server_auth: true,
        key_algorithm: alg,
    };
    let client = |cn: &str| client_profile(cn, alg);
    vec![
        CertRequest { leaf: Leaf::EtcdServer, profile: serving.clone() },
        CertRequest { leaf: Leaf::EtcdPeer, profile: serving },
        CertRequest { leaf: Leaf::EtcdHealthcheckClient, profile: client("kube-etcd-healthcheck-client") },
        CertRequest { leaf: Leaf::ApiserverEtcdClient, profile: client("kube-apiserver-etcd-client") },
    ]
}

/// kubeadm's client profile: CN only (no O since 1.29), no SANs, clientAuth.
pub fn client_profile(cn: &str, alg: KeyAlgorithm) -> CertProfile {
    CertProfile {
        common_name: cn.to_string(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        server_auth: false,
        key_algorithm: alg,
    }
}
