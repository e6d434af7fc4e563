#!/usr/bin/env bats
# installer/files.sh: writing files, dry runs and restoring a backup.

load helpers
bats_require_minimum_version 1.5.0

setup() {
  load_installer common files
  root=$BATS_TEST_TMPDIR/root
  mkdir -p "$root/etc"
}

@test "do_or_say runs a command, or with --dry-run only says it" {
  do_or_say touch "$BATS_TEST_TMPDIR/made"
  [ -f "$BATS_TEST_TMPDIR/made" ]
  dry_run=1
  run do_or_say touch "$BATS_TEST_TMPDIR/not-made"
  [ "$output" = "etcdpack[t]: would run: touch $BATS_TEST_TMPDIR/not-made" ]
  [ ! -e "$BATS_TEST_TMPDIR/not-made" ]
}

@test "put_file writes the bytes and the mode, and replaces a symlink without following it" {
  printf 'secret\n' >"$BATS_TEST_TMPDIR/src"
  printf 'keep\n' >"$BATS_TEST_TMPDIR/target"
  ln -s "$BATS_TEST_TMPDIR/target" "$root/etc/key"
  put_file "$BATS_TEST_TMPDIR/src" "$root/etc/key" 600
  [ ! -L "$root/etc/key" ]
  [ "$(cat "$root/etc/key")" = secret ]
  [ "$(stat -c %a "$root/etc/key")" = 600 ]
  [ "$(cat "$BATS_TEST_TMPDIR/target")" = keep ]
  [ -z "$pending" ]
  # Nothing but the file: no temporary file stays beside it.
  [ "$(ls -A "$root/etc")" = key ]
}

@test "put_file fails into a missing folder and leaves nothing" {
  printf 'x\n' >"$BATS_TEST_TMPDIR/src"
  run put_file "$BATS_TEST_TMPDIR/src" "$root/nowhere/file" 644
  [ "$status" -ne 0 ]
  [ ! -e "$root/nowhere" ]
}

# A backup as apply_changes leaves it: /etc/a replaced (old bytes kept, mode 640), /etc/b
# added, /etc/d created.
make_backup() {
  backup=$BATS_TEST_TMPDIR/backup
  mkdir -p "$backup/files/etc" "$root/etc/d"
  printf 'old\n' >"$backup/files/etc/a"
  chmod 640 "$backup/files/etc/a"
  printf 'new\n' >"$root/etc/a"
  printf 'added\n' >"$root/etc/b"
  printf 'dir\t/etc/d\nreplaced\t/etc/a\nadded\t/etc/b\n' >"$backup/changes"
}

@test "restore_from puts replaced files back with their modes and removes what was added" {
  make_backup
  run restore_from "$backup"
  [ "$status" -eq 0 ]
  [ "$(cat "$root/etc/a")" = old ]
  [ "$(stat -c %a "$root/etc/a")" = 640 ]
  [ ! -e "$root/etc/b" ]
  [ ! -e "$root/etc/d" ]
  # Last change first.
  [ "${lines[0]}" = "etcdpack[t]: removed /etc/b" ]
  [ "${lines[1]}" = "etcdpack[t]: restored /etc/a" ]
  [ "${lines[2]}" = "etcdpack[t]: removed folder /etc/d" ]
}

@test "restore_from keeps a folder that is no longer empty" {
  make_backup
  printf 'x\n' >"$root/etc/d/someone-elses"
  run restore_from "$backup"
  [ "$status" -eq 0 ]
  [ -f "$root/etc/d/someone-elses" ]
}

@test "restore_from with --dry-run says what it would do and changes nothing" {
  make_backup
  dry_run=1
  run restore_from "$backup"
  [ "$status" -eq 0 ]
  [ "$(cat "$root/etc/a")" = new ]
  [ -f "$root/etc/b" ]
  [ "$output" = "etcdpack[t]: would remove /etc/b
etcdpack[t]: would restore /etc/a
etcdpack[t]: would remove folder /etc/d if empty" ]
}

@test "restore_from restores what it can and names what it could not" {
  make_backup
  printf 'replaced\t/etc/gone/c\n' >>"$backup/changes"
  mkdir -p "$backup/files/etc/gone"
  printf 'c\n' >"$backup/files/etc/gone/c"
  run --separate-stderr restore_from "$backup"
  [ "$status" -eq 1 ]
  [ "$(cat "$root/etc/a")" = old ]
  [[ "$stderr" == *"could not restore: /etc/gone/c; the backup in $backup holds them"* ]]
}

@test "restore_from refuses a backup without its list of changes" {
  mkdir -p "$BATS_TEST_TMPDIR/empty"
  run restore_from "$BATS_TEST_TMPDIR/empty"
  [ "$status" -eq 1 ]
  [[ "$output" == *"has no list of changes; restore by hand"* ]]
}

@test "owner_of gives etcd.user the files etcd reads, root the rest" {
  ETCD_OWNED=(/etc/kubernetes/pki/etcd/server.key)
  ETCD_USER=etcd
  etcd_owner=998:997
  [ "$(owner_of /etc/kubernetes/pki/etcd/server.key)" = 998:997 ]
  [ "$(owner_of /etc/kubernetes/pki/etcd/ca.crt)" = 0:0 ]
  [ "$(owner_said /etc/kubernetes/pki/etcd/server.key)" = ", owner etcd" ]
  [ -z "$(owner_said /etc/kubernetes/pki/etcd/ca.crt)" ]
  ETCD_OWNED=()
  [ "$(owner_of /etc/kubernetes/pki/etcd/server.key)" = 0:0 ]
}

@test "restore_from renames a set-aside file back over the link put in its place" {
  backup=$BATS_TEST_TMPDIR/backup
  mkdir -p "$backup/files/etc/metrics" "$root/etc/metrics"
  printf 'old metric\n' >"$backup/files/etc/metrics/m.prom"
  ln -s /run/elsewhere/m.prom "$root/etc/metrics/m.prom"
  printf 'set-aside\t/etc/metrics/m.prom\nadded\t/etc/metrics/m.prom\n' >"$backup/changes"
  run restore_from "$backup"
  [ "$status" -eq 0 ]
  [ ! -L "$root/etc/metrics/m.prom" ]
  [ "$(cat "$root/etc/metrics/m.prom")" = "old metric" ]
  [ ! -e "$backup/files/etc/metrics/m.prom" ]
  [ "${lines[0]}" = "etcdpack[t]: removed /etc/metrics/m.prom" ]
  [ "${lines[1]}" = "etcdpack[t]: put back /etc/metrics/m.prom" ]
}
