//! How long the work that dominates a build takes: key generation per algorithm, a fresh
//! build of three members, a rebuild of seven members that reuses everything, sealing a
//! bundle with age, and reading a snapshot for `restore` (the committed one, or the file
//! ETCDPACK_BENCH_SNAPSHOT names, such as one of `scripts/bench-snapshot`'s size).
//! `cargo bench` runs it; `scripts/bench-openssl` compares whole builds with the openssl
//! command line.

use etcdpack::keys::{ALGORITHMS, KeyAlgorithm, KeySource, OsKeys, PrivateKey};
use etcdpack::state::State;
use etcdpack::{BuildEnv, fsio, topology};

fn main() {
    divan::main();
}

fn topology_of(alg: KeyAlgorithm, members: usize) -> topology::Topology {
    let mut text =
        format!("cluster: bench\nkubernetesVersion: v1.34.2\npki: {{ keyAlgorithm: {alg} }}\nmembers:\n");
    for i in 0..members {
        text.push_str(&format!("  - {{ name: m{i}, address: 10.0.1.{} }}\n", i + 1));
    }
    let (t, d) = topology::parse("bench.yaml", &text, &fsio::DirFiles(".".into()));
    t.unwrap_or_else(|| panic!("{d}"))
}

const NOW: i64 = 1_800_000_000;

/// One key of each algorithm (on one core).
#[divan::bench(args = ALGORITHMS, sample_count = 10)]
fn generate_key(alg: KeyAlgorithm) -> PrivateKey {
    OsKeys.key(alg, "bench")
}

/// A build's inputs at the fixed clock, with keys from the OS.
fn env(state: &State) -> BuildEnv<'_> {
    BuildEnv {
        state,
        now: NOW,
        source_date_epoch: Some(1),
        keys: &OsKeys,
        renewal: None,
        reset_members: false,
        emit: Default::default(),
        previous: None,
        sealer: &etcdpack::seal::Age,
        ca_step: None,
        restore: None,
    }
}

/// A fresh build of three members (every key made, in parallel) up to signed tarballs.
#[divan::bench(args = [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256], sample_count = 10)]
fn fresh_build_three_members(bencher: divan::Bencher, alg: KeyAlgorithm) {
    let t = topology_of(alg, 3);
    let state = State::default();
    bencher.bench(|| etcdpack::build(&t, &env(&state), &mut |_| {}).unwrap());
}

/// A rebuild from a state that holds everything and the tarballs the last build wrote: no key
/// is made, no bundle compressed again.
#[divan::bench(args = [1, 3, 7], sample_count = 20)]
fn rebuild_reusing_everything(bencher: divan::Bencher, members: usize) {
    let t = topology_of(KeyAlgorithm::EcdsaP256, members);
    let dir = tempfile::tempdir().unwrap();
    let empty = State::default();
    let first = etcdpack::build(&t, &env(&empty), &mut |_| {}).unwrap();
    fsio::apply_state_update(dir.path(), &first.state_update).unwrap();
    let state = fsio::load_state(dir.path()).unwrap();
    // The tarballs the first build wrote, as the shell reads them back from dist/.
    let previous = |file: &str| first.dist.get(file).cloned();
    let env = BuildEnv { previous: Some(&previous), ..env(&state) };
    bencher.bench(|| etcdpack::build(&t, &env, &mut |_| {}).unwrap());
}

/// Sealing one member's bundle (about 24 KB) to an age X25519 recipient and to an SSH
/// ed25519 key, as a build does for a member with `recipients`.
#[divan::bench(args = ["x25519", "ssh-ed25519"], sample_count = 50)]
fn seal_a_bundle(bencher: divan::Bencher, kind: &str) {
    use etcdpack::seal::{Sealer, parse_recipient};
    let t = topology_of(KeyAlgorithm::EcdsaP256, 1);
    let b = etcdpack::build(&t, &env(&State::default()), &mut |_| {}).unwrap();
    let tarball = b.dist["m0.tar.gz"].clone();
    let recipient = match kind {
        "x25519" => "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        _ => "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN",
    };
    let to = [parse_recipient(recipient).unwrap()];
    bencher.bench(|| etcdpack::seal::Age.seal(&tarball, &to).unwrap());
}

/// `restore`'s check of a snapshot: its digests, every page, what `etcdutl snapshot status`
/// says.
#[divan::bench(sample_count = 10)]
fn read_snapshot(b: divan::Bencher) {
    let path = std::env::var("ETCDPACK_BENCH_SNAPSHOT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/snapshot/etcd-3.5.1.db").into()
    });
    let bytes = std::fs::read(&path).unwrap();
    b.bench(|| etcdpack::snapshot::status(&bytes).unwrap());
}
