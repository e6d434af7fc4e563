//! Shared helpers: fixture discovery and one cached build per scenario, so that the many
//! checks on a scenario's bundles do not generate its keys again.

use etcdpack::keys::SeededKeys;
use etcdpack::state::State;
use etcdpack::topology::Topology;
use etcdpack::unpack::{Unpacked, unpack};
use etcdpack::{Build, BuildEnv, fsio, topology};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The fixed "now" of every in-process build: 2027-01-15T08:00:00Z.
pub const NOW: i64 = 1_800_000_000;
/// The fixed tar mtime.
pub const EPOCH: u64 = 1_700_000_000;
/// The key seed.
pub const SEED: u64 = 42;

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
    pub bundles: BTreeMap<String, Unpacked>,
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
        let env =
            BuildEnv { state: &state, now: NOW, source_date_epoch: Some(EPOCH), keys: &SeededKeys(SEED) };
        let build = etcdpack::build(&topology, &env, &mut |_| {}).unwrap();
        let bundles = build
            .plan
            .members
            .iter()
            .map(|m| (m.name.clone(), unpack(&build.dist[&format!("{}.tar.gz", m.name)]).unwrap()))
            .collect();
        Arc::new(Built { topology, build, bundles })
    })
    .clone()
}

/// A bundle file as text.
pub fn text(u: &Unpacked, path: &str) -> String {
    String::from_utf8(u.files.get(path).unwrap_or_else(|| panic!("{path} missing")).bytes.clone()).unwrap()
}
