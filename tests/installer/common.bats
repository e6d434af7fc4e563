#!/usr/bin/env bats
# installer/common.sh, function by function.

load helpers
bats_require_minimum_version 1.5.0

setup() {
  load_installer common
}

@test "messages name the member; die exits 1 on standard error" {
  run say hello
  [ "$output" = "etcdpack[t]: hello" ]
  run --separate-stderr die broken
  [ "$status" -eq 1 ]
  [ -z "$output" ]
  [ "$stderr" = "etcdpack[t]: error: broken" ]
  run --separate-stderr warn careful
  [ "$stderr" = "etcdpack[t]: warning: careful" ]
}

@test "verify_bundle accepts an intact bundle" {
  make_bundle
  run verify_bundle
  [ "$status" -eq 0 ]
  [ "$output" = "etcdpack[t]: verified 2 files against SHA256SUMS" ]
}

@test "verify_bundle refuses an altered file" {
  make_bundle
  printf 'ONE\n' >a
  run verify_bundle
  [ "$status" -eq 1 ]
  [[ "$output" == *"the bundle does not match SHA256SUMS: it was altered or damaged"* ]]
}

@test "verify_bundle refuses a file SHA256SUMS does not list" {
  make_bundle
  printf 'x\n' >extra
  run verify_bundle
  [ "$status" -eq 1 ]
  [[ "$output" == *"files not listed in SHA256SUMS: extra "* ]]
}

@test "verify_bundle refuses a symlink where a file belongs, even one to the right bytes" {
  make_bundle
  cp a "$BATS_TEST_TMPDIR/elsewhere"
  rm a
  ln -s "$BATS_TEST_TMPDIR/elsewhere" a
  run verify_bundle
  [ "$status" -eq 1 ]
  [[ "$output" == *"entries that are not regular files: a "* ]]
}

@test "verify_bundle refuses a folder or a pipe where a file belongs" {
  make_bundle
  rm sub/b
  mkdir sub/b
  run verify_bundle
  [ "$status" -eq 1 ]
  [[ "$output" == *"does not match SHA256SUMS"* ]]
  rm -r sub/b
  mkfifo sub/b
  # Bounded: sha256sum on a pipe would block forever.
  run timeout 10 bash -c "source '$BATS_TEST_DIRNAME/../../installer/common.sh'; MEMBER=t; verify_bundle"
  [ "$status" -eq 1 ]
  [[ "$output" == *"entries that are not regular files: sub/b "* ]]
}

@test "verify_bundle refuses a bundle without SHA256SUMS" {
  make_bundle
  rm SHA256SUMS
  run verify_bundle
  [ "$status" -eq 1 ]
  [[ "$output" == *"SHA256SUMS is missing"* ]]
}

@test "quorum_of is a majority" {
  local n want
  for n in 1:1 2:2 3:2 4:3 5:3 6:4 7:4 9:5; do
    want=${n#*:}
    [ "$(quorum_of "${n%%:*}")" = "$want" ]
  done
}

@test "take_lock stops a second run on the same root, and a dry run takes no lock" {
  command -v flock >/dev/null || skip "flock is missing"
  root=$BATS_TEST_TMPDIR/root
  mkdir -p "$root"
  # Another run: the lock held by a process that is nothing but the holder, which says when
  # it holds it.
  (
    exec 8<"$root"
    flock 8
    : >"$BATS_TEST_TMPDIR/held"
    exec sleep 30
  ) &
  local holder=$! i
  for ((i = 0; i < 200; i++)); do
    [ ! -e "$BATS_TEST_TMPDIR/held" ] || break
    sleep 0.05
  done
  [ -e "$BATS_TEST_TMPDIR/held" ]
  run take_lock
  [ "$status" -eq 1 ]
  [[ "$output" == *"another install.sh is running on $root"* ]]
  dry_run=1
  run take_lock
  [ "$status" -eq 0 ]
  kill "$holder"
  wait "$holder" || true
  dry_run=0
  run take_lock
  [ "$status" -eq 0 ]
}

@test "healthy_at is true only for etcd's healthy answer" {
  mkdir -p "$BATS_TEST_TMPDIR/up" "$BATS_TEST_TMPDIR/down"
  printf '{"health":"true","reason":""}' >"$BATS_TEST_TMPDIR/up/health"
  printf '{"health":"false","reason":"NOSPACE"}' >"$BATS_TEST_TMPDIR/down/health"
  healthy_at "file://$BATS_TEST_TMPDIR/up" ca crt key
  ! healthy_at "file://$BATS_TEST_TMPDIR/down" ca crt key
  ! healthy_at "file://$BATS_TEST_TMPDIR/missing" ca crt key
}

@test "record_field reads one KEY=value line" {
  printf 'CLUSTER=prod\nMEMBER=infra0\nMEMBERS=x\n' >"$BATS_TEST_TMPDIR/bundle.env"
  [ "$(record_field "$BATS_TEST_TMPDIR/bundle.env" MEMBER)" = infra0 ]
  [ -z "$(record_field "$BATS_TEST_TMPDIR/bundle.env" CA_SHA256)" ]
}

@test "parse_args reads the options and refuses what a role does not take" {
  ROLE=member
  parse_args --dry-run --force --no-restart --wait=30 --rollback
  [ "$dry_run" -eq 1 ] && [ "$force" -eq 1 ] && [ "$restart" -eq 0 ]
  [ "$wait_secs" = 30 ] && [ "$rollback" -eq 1 ] && [ "$host" -eq 1 ]
  ROLE=control-plane
  run parse_args --force
  [ "$status" -eq 1 ]
  [[ "$output" == *"unknown option '--force' (see --help)"* ]]
  run parse_args --wait 1m
  [ "$status" -eq 1 ]
  [[ "$output" == *"--wait takes a whole number of seconds, not '1m'"* ]]
  run parse_args --wait
  [[ "$output" == *"--wait needs a number of seconds"* ]]
  usage() { echo "the usage"; }
  run parse_args --help
  [ "$status" -eq 0 ] && [ "$output" = "the usage" ]
}

@test "parse_args resolves --root, and only a dry run may name one that does not exist" {
  ROLE=leave
  mkdir -p "$BATS_TEST_TMPDIR/real/root"
  ln -s "$BATS_TEST_TMPDIR/real/root" "$BATS_TEST_TMPDIR/link"
  parse_args --root "$BATS_TEST_TMPDIR/link"
  [ "$root" = "$(cd "$BATS_TEST_TMPDIR/real/root" && pwd -P)" ] && [ "$host" -eq 0 ]
  run parse_args --root "$BATS_TEST_TMPDIR/missing"
  [ "$status" -eq 1 ]
  [[ "$output" == *"is not a directory; create it first"* ]]
  cd "$BATS_TEST_TMPDIR"
  parse_args --dry-run --root=new/
  [ "$root" = "$BATS_TEST_TMPDIR/new" ]
}

@test "on a host the lock lives in a root-only folder, and one another user made is refused" {
  [ "$(id -u)" -eq 0 ] || skip "needs root: the folder must be root's"
  command -v flock >/dev/null || skip "flock is missing"
  host=1
  LOCK_DIR=$BATS_TEST_TMPDIR/run-etcdpack
  run take_lock
  [ "$status" -eq 0 ]
  [ "$(stat -c '%u %a' "$LOCK_DIR")" = "0 700" ]
  [ -f "$LOCK_DIR/install.lock" ]
  # A folder another user made (or made writable) could hold a lock of theirs, or a link.
  chmod 0777 "$LOCK_DIR"
  run take_lock
  [ "$status" -eq 1 ]
  [[ "$output" == *"is not a root-only folder"* ]]
  rm -rf "$LOCK_DIR"
  mkdir "$BATS_TEST_TMPDIR/elsewhere"
  ln -s "$BATS_TEST_TMPDIR/elsewhere" "$LOCK_DIR"
  run take_lock
  [ "$status" -eq 1 ]
  [ ! -e "$BATS_TEST_TMPDIR/elsewhere/install.lock" ]
  rm "$LOCK_DIR"
  mkdir -m 0700 "$LOCK_DIR"
  chown nobody "$LOCK_DIR"
  run take_lock
  [ "$status" -eq 1 ]
}

# Signs the bundle folder's files as they stand: signing-key.pub is key $2's (default $1's),
# and SHA256SUMS over the files and it is signed by key $1.
sign_files() {
  cp "$BATS_TEST_TMPDIR/${2:-$1}.pub" signing-key.pub
  sha256sum a sub/b signing-key.pub >SHA256SUMS
  openssl dgst -sha256 -sign "$BATS_TEST_TMPDIR/$1.pem" -out SHA256SUMS.sig SHA256SUMS
}

# A new bundle folder signed by key $1.
sign_bundle() {
  make_bundle
  sign_files "$1"
}

new_key() {
  openssl ecparam -name prime256v1 -genkey -noout -out "$BATS_TEST_TMPDIR/$1.pem" 2>/dev/null
  openssl pkey -in "$BATS_TEST_TMPDIR/$1.pem" -pubout -out "$BATS_TEST_TMPDIR/$1.pub" 2>/dev/null
}

# A root whose host pinned key $1 at its first install.
pinned_root() {
  root=$BATS_TEST_TMPDIR/root
  SIGNING_KEY_PIN=/etc/etcdpack/signing-key.pub
  mkdir -p "$root/etc/etcdpack"
  cp "$BATS_TEST_TMPDIR/$1.pub" "$root$SIGNING_KEY_PIN"
}

@test "verify_signature: a first install trusts the bundle's key and says its fingerprint" {
  command -v openssl >/dev/null || skip "openssl is missing"
  new_key build
  root=$BATS_TEST_TMPDIR/root
  sign_bundle build
  SIGNING_KEY_PIN=/etc/etcdpack/signing-key.pub
  run --separate-stderr verify_signature
  [ "$status" -eq 0 ]
  [[ "$stderr" == *"no signing key is pinned on this host"*"$(key_fingerprint "$BATS_TEST_TMPDIR/build.pub")"* ]]
  verify_signature 2>/dev/null
  [ "$pin_wanted" -eq 1 ]
  # The same files pass verify_bundle: SHA256SUMS.sig is the bundle's own.
  run verify_bundle
  [ "$status" -eq 0 ]
  [[ "$output" == *"verified 3 files"* ]]
}

@test "verify_signature: the pinned key decides; another signer, or an altered SHA256SUMS, is refused" {
  command -v openssl >/dev/null || skip "openssl is missing"
  new_key build
  new_key attacker
  pinned_root build
  sign_bundle build
  run verify_signature
  [ "$status" -eq 0 ]
  [[ "$output" == *"SHA256SUMS is signed by the key pinned in /etc/etcdpack/signing-key.pub"* ]]
  # The attacker's bundle: every file consistent, SHA256SUMS and the key its own.
  printf 'evil\n' >a
  sign_files attacker
  run verify_signature
  [ "$status" -eq 1 ]
  [[ "$output" == *"SHA256SUMS is not signed by the key pinned in /etc/etcdpack/signing-key.pub"* ]]
  # --pubkey with the build's key refuses it too, pinned or not.
  rm "$root$SIGNING_KEY_PIN"
  pubkey=$BATS_TEST_TMPDIR/build.pub
  run verify_signature
  [ "$status" -eq 1 ]
  [[ "$output" == *"not signed by the key given with --pubkey"* ]]
  # The build's bundle with one file changed after signing.
  sign_bundle build
  printf 'x' >>SHA256SUMS
  run verify_signature
  [ "$status" -eq 1 ]
  # Unsigned, or the signature a link.
  sign_bundle build
  rm SHA256SUMS.sig
  run verify_signature
  [ "$status" -eq 1 ]
  [[ "$output" == *"holds no signed SHA256SUMS (SHA256SUMS.sig is missing or not a file)"* ]]
}

@test "verify_signature: a bundle signed by the pinned key but carrying another key is refused" {
  command -v openssl >/dev/null || skip "openssl is missing"
  new_key build
  new_key other
  pinned_root build
  make_bundle
  sign_files build other
  run verify_signature
  [ "$status" -eq 1 ]
  [[ "$output" == *"the bundle carries another key than the key pinned"* ]]
}
