#!/usr/bin/env bats
# The installer's part of a CA rotation: telling a change of the trusted CAs from a change of
# their order (member.sh), and a host recorded with either CA of a rotation (common.sh).

load helpers
bats_require_minimum_version 1.5.0

setup() {
  load_installer common member
  cd "$BATS_TEST_TMPDIR"
  for ca in old new; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca.key" \
      -subj "/CN=etcd-ca" -days 1 -out "$ca.crt" 2>/dev/null
  done
}

@test "cert_set is the same for the same CAs in any order, and differs when one changes" {
  cat old.crt new.crt >both
  cat new.crt old.crt >swapped
  [ "$(cert_set both)" = "$(cert_set swapped)" ]
  [ "$(cert_set both | wc -l)" -eq 2 ]
  [ "$(cert_set old.crt)" != "$(cert_set both)" ]
  [ "$(cert_set old.crt)" = "$(sha256sum <old.crt | cut -d' ' -f1)" ]
}

@test "find_trust_change: a new CA in ca.crt is a change, a swapped order is not" {
  root=$BATS_TEST_TMPDIR/root
  PKI_DIR=/etc/kubernetes/pki
  METRICS_URL=http://127.0.0.1:9
  mkdir -p "$root$PKI_DIR/etcd" bundle
  cat old.crt new.crt >"$root$PKI_DIR/etcd/ca.crt"
  FILES=(bundle/ca.crt "$PKI_DIR/etcd/ca.crt" 644)
  todo=(0)
  cat new.crt old.crt >bundle/ca.crt
  trust_changed=0
  find_trust_change
  [ "$trust_changed" -eq 0 ]
  cat new.crt >bundle/ca.crt
  find_trust_change
  [ "$trust_changed" -eq 1 ]
  # etcd does not answer here: no start time to wait for, and no failure.
  [ -z "$running_since" ]
}

@test "ours_ca: the signing CA or, during a rotation, the other trusted one; nothing else" {
  printf 'CA_SHA256=aaa\nTRUSTED_CA_SHA256=aaa,bbb\n' >bundle.env
  ours_ca aaa
  ours_ca bbb
  run ours_ca ccc
  [ "$status" -eq 1 ]
  run ours_ca ""
  [ "$status" -eq 1 ]
  run ours_ca aa
  [ "$status" -eq 1 ]
  printf 'CA_SHA256=aaa\n' >bundle.env
  run ours_ca bbb
  [ "$status" -eq 1 ]
}

@test "refuse_skipped_phase: a phase-2 bundle on a host that never trusted its CA is refused" {
  root=$BATS_TEST_TMPDIR/root
  PKI_DIR=/etc/kubernetes/pki
  force=0
  # As preflight gathers them.
  problems=()
  refuse() { problems+=("$*"); }
  mkdir -p "$root$PKI_DIR/etcd"
  cp old.crt "$root$PKI_DIR/etcd/ca.crt"
  new=$(sha256sum <new.crt | cut -d' ' -f1)
  old=$(sha256sum <old.crt | cut -d' ' -f1)
  printf 'CA_SHA256=%s\nTRUSTED_CA_SHA256=%s,%s\n' "$new" "$new" "$old" >bundle.env
  refuse_skipped_phase
  [ "${#problems[@]}" -eq 1 ]
  [[ "${problems[0]}" == *"install the CA rotation's phase-1 bundles on every member first"* ]]
  force=1
  run refuse_skipped_phase
  [[ "$output" == *"going on because of --force"* ]]
  force=0
  # After phase 1 the host trusts both: phase 2 goes on; so does a bundle outside a rotation.
  problems=()
  cat old.crt new.crt >"$root$PKI_DIR/etcd/ca.crt"
  refuse_skipped_phase
  printf 'CA_SHA256=%s\n' "$new" >bundle.env
  cp old.crt "$root$PKI_DIR/etcd/ca.crt"
  refuse_skipped_phase
  [ "${#problems[@]}" -eq 0 ]
}
