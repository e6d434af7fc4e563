//! Shared helpers: fixture discovery, committed test keys, and one cached build per scenario,
//! so that the many checks on a scenario's bundles do not build it again.

use etcdpack::keys::{KeyAlgorithm, KeySource, PrivateKey};
use etcdpack::state::State;
use etcdpack::topology::Topology;
use etcdpack::unpack::{Unpacked, unpack};
use etcdpack::{Build, BuildEnv, fsio, topology};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The fixed "now" of every in-process build: 2027-01-15T08:00:00Z.
pub const NOW: i64 = 1_800_000_000;
/// The fixed tar mtime.
pub const EPOCH: u64 = 1_700_000_000;
/// The key seed.
pub const SEED: u64 = 42;

/// Returns from a test that needs root (namespaces, `setpriv`) when not run as root, saying so.
#[macro_export]
macro_rules! needs_root {
    () => {
        if !$crate::e2e::live_env(module_path!()) {
            return;
        }
    };
}

/// Whether `tool` is on PATH. As root (CI) it must be, since the README's test command
/// installs it; another user is told the test is skipped.
pub fn have_tool(tool: &str) -> bool {
    use std::process::Command;
    let have =
        Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success();
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    assert!(
        have || !root,
        "{tool} is missing: run the README test command (bash scripts/test), which installs it"
    );
    if !have {
        eprintln!("skipped: {tool} is missing (bash scripts/test installs it)");
    }
    have
}

/// Keys from the committed pools in tests/keys/ (key generation is random by design). A label
/// starts at the pool index its hash (with the seed) names and takes the next free key, so
/// one build never hands out a key twice; serials are hashed from seed and label.
pub struct FixedKeys {
    seed: u64,
    taken: Mutex<HashMap<KeyAlgorithm, HashSet<usize>>>,
}

impl FixedKeys {
    pub fn new(seed: u64) -> FixedKeys {
        FixedKeys { seed, taken: Mutex::new(HashMap::new()) }
    }

    fn hash(&self, what: &str, label: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.seed.to_be_bytes())
            .chain_update(what)
            .chain_update([0])
            .chain_update(label)
            .finalize()
            .into()
    }
}

fn pool(alg: KeyAlgorithm) -> &'static [PrivateKey] {
    static POOLS: OnceLock<HashMap<KeyAlgorithm, Vec<PrivateKey>>> = OnceLock::new();
    &POOLS.get_or_init(|| {
        etcdpack::keys::ALGORITHMS
            .into_iter()
            .map(|alg| {
                let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("tests/keys/{}.pem", alg.name().to_ascii_lowercase()));
                let text = std::fs::read_to_string(&path).unwrap();
                let keys: Vec<PrivateKey> = pem::parse_many(&text)
                    .unwrap()
                    .iter()
                    .map(|b| PrivateKey::from_pem(&pem::encode(b)).unwrap())
                    .collect();
                assert!(keys.iter().all(|k| k.algorithm() == alg), "{path:?}");
                (alg, keys)
            })
            .collect()
    })[&alg]
}

impl KeySource for FixedKeys {
    fn key(&self, alg: KeyAlgorithm, label: &str) -> PrivateKey {
        let keys = pool(alg);
        let h = self.hash(alg.name(), label);
        let start = u64::from_be_bytes(h[..8].try_into().unwrap()) as usize % keys.len();
        let mut taken = self.taken.lock().unwrap();
        let taken = taken.entry(alg).or_default();
        let i = (0..keys.len())
            .map(|k| (start + k) % keys.len())
            .find(|i| !taken.contains(i))
            .unwrap_or_else(|| panic!("tests/keys/ has too few {alg} keys for one build"));
        taken.insert(i);
        keys[i].clone()
    }

    fn serial(&self, label: &str) -> u64 {
        let mut n = 0u64;
        etcdpack::keys::serial_from(|| {
            n += 1;
            let h = self.hash("serial", &format!("{label}/{n}"));
            u64::from_be_bytes(h[..8].try_into().unwrap())
        })
    }
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every valid scenario: a folder under tests/fixtures with a topology.yaml.
pub fn scenarios() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("topology.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

pub fn load_topology(scenario: &str) -> Topology {
    let dir = fixtures().join(scenario);
    let text = std::fs::read_to_string(dir.join("topology.yaml")).unwrap();
    let (t, diags) = topology::parse("topology.yaml", &text, &fsio::DirFiles(dir));
    t.unwrap_or_else(|| panic!("{scenario} is invalid:\n{diags}"))
}

pub struct Built {
    pub topology: Topology,
    pub build: Build,
    /// Each member's bundle, by name.
    pub bundles: BTreeMap<String, Unpacked>,
    /// The control-plane bundle.
    pub control_plane: Unpacked,
}

impl Built {
    /// Every bundle by name: the members' in name order, then the control plane's.
    pub fn every_bundle(&self) -> Vec<(&str, &Unpacked)> {
        self.bundles
            .iter()
            .map(|(n, u)| (n.as_str(), u))
            .chain(std::iter::once(("control-plane", &self.control_plane)))
            .collect()
    }
}

/// Builds a scenario from an empty state with seeded keys, once per test binary.
pub fn built(scenario: &str) -> Arc<Built> {
    type Slot = Arc<OnceLock<Arc<Built>>>;
    static CACHE: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    let cell =
        CACHE.get_or_init(Default::default).lock().unwrap().entry(scenario.to_string()).or_default().clone();
    cell.get_or_init(|| {
        let topology = load_topology(scenario);
        let state = State::default();
        let env = BuildEnv {
            state: &state,
            now: NOW,
            source_date_epoch: Some(EPOCH),
            keys: &FixedKeys::new(SEED),
            renewal: None,
            reset_members: false,
            emit: Default::default(),
            previous: None,
            sealer: &etcdpack::seal::Age,
            ca_step: None,
            restore: None,
        };
        let build = etcdpack::build(&topology, &env, &mut |_| {}).unwrap();
        let bundles = build
            .plan
            .members
            .iter()
            .map(|m| (m.name.clone(), unpack(&build.dist[&format!("{}.tar.gz", m.name)]).unwrap()))
            .collect();
        let control_plane = unpack(&build.dist["control-plane.tar.gz"]).unwrap();
        Arc::new(Built { topology, build, bundles, control_plane })
    })
    .clone()
}

/// A topology from YAML text (files it names are read from tests/fixtures).
pub fn topology_of(text: &str) -> Topology {
    let (t, d) = topology::parse("t.yaml", text, &fsio::DirFiles(fixtures()));
    t.unwrap_or_else(|| panic!("{d}"))
}

/// Builds (or, with `renewal`, renews) `text` against the state folder `dir` at `now`, and
/// writes the state back. Each call takes its keys from its own `seed`.
pub fn build_in(
    dir: &std::path::Path,
    text: &str,
    seed: u64,
    now: i64,
    renewal: Option<&etcdpack::pki::Renewal>,
) -> Result<Build, etcdpack::error::Error> {
    step_in(dir, text, seed, now, renewal, None, None)
}

/// `rotate-ca` (`step`) of `text` against the state folder `dir`, as [`build_in`].
pub fn rotate_in(
    dir: &std::path::Path,
    text: &str,
    seed: u64,
    step: etcdpack::pki::CaStep,
) -> Result<Build, etcdpack::error::Error> {
    step_in(dir, text, seed, NOW, None, Some(step), None)
}

/// `restore` of `text` from `snapshot` (the bytes of an etcd snapshot), as [`build_in`].
pub fn restore_in(
    dir: &std::path::Path,
    text: &str,
    seed: u64,
    snapshot: &[u8],
    embed: bool,
) -> Result<Build, etcdpack::error::Error> {
    let status = etcdpack::snapshot::status(snapshot).unwrap();
    let restore = etcdpack::Restore { bytes: Arc::new(snapshot.to_vec()), status, embed };
    step_in(dir, text, seed, NOW, None, None, Some(&restore))
}

fn step_in(
    dir: &std::path::Path,
    text: &str,
    seed: u64,
    now: i64,
    renewal: Option<&etcdpack::pki::Renewal>,
    ca_step: Option<etcdpack::pki::CaStep>,
    restore: Option<&etcdpack::Restore>,
) -> Result<Build, etcdpack::error::Error> {
    let t = topology_of(text);
    let state = fsio::load_state(dir)?;
    let env = BuildEnv {
        state: &state,
        now,
        source_date_epoch: Some(1),
        keys: &FixedKeys::new(seed),
        renewal,
        reset_members: false,
        emit: Default::default(),
        previous: None,
        sealer: &etcdpack::seal::Age,
        ca_step,
        restore,
    };
    let b = etcdpack::build(&t, &env, &mut |_| {})?;
    fsio::apply_state_update(dir, &b.state_update)?;
    Ok(b)
}

/// A bundle file as text.
pub fn text(u: &Unpacked, path: &str) -> String {
    String::from_utf8(u.files.get(path).unwrap_or_else(|| panic!("{path} missing")).bytes.clone()).unwrap()
}

/// What a control-plane bundle's etcd-external.yaml says, after checking that it is one
/// kubeadm ClusterConfiguration with exactly the fields of `etcd.external` kubeadm reads.
pub struct EtcdExternal {
    pub api_version: String,
    pub kubernetes_version: String,
    pub endpoints: Vec<String>,
}

pub fn parse_etcd_external(text: &str) -> EtcdExternal {
    use saphyr::LoadableYamlNode;
    let mut docs = saphyr::YamlOwned::load_from_str(text).expect("etcd-external.yaml is YAML");
    assert_eq!(docs.len(), 1, "one document");
    let doc = docs.remove(0);
    let keys = |node: &saphyr::YamlOwned| -> Vec<String> {
        node.as_mapping().expect("a mapping").keys().map(|k| k.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(keys(&doc), ["apiVersion", "kind", "kubernetesVersion", "etcd"]);
    assert_eq!(doc["kind"].as_str(), Some("ClusterConfiguration"));
    assert_eq!(
        keys(&doc["etcd"]),
        ["external"],
        "etcd.external only (local and external exclude each other)"
    );
    let external = &doc["etcd"]["external"];
    assert_eq!(keys(external), ["endpoints", "caFile", "certFile", "keyFile"]);
    assert_eq!(external["caFile"].as_str(), Some("/etc/kubernetes/pki/etcd/ca.crt"));
    assert_eq!(external["certFile"].as_str(), Some("/etc/kubernetes/pki/apiserver-etcd-client.crt"));
    assert_eq!(external["keyFile"].as_str(), Some("/etc/kubernetes/pki/apiserver-etcd-client.key"));
    EtcdExternal {
        api_version: doc["apiVersion"].as_str().unwrap().to_string(),
        kubernetes_version: doc["kubernetesVersion"].as_str().unwrap().to_string(),
        endpoints: external["endpoints"]
            .as_sequence()
            .expect("endpoints is a list")
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect(),
    }
}

/// Copies a folder tree (files with their modes, and folders) into `to`.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}
