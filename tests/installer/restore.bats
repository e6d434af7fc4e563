#!/usr/bin/env bats
# A restore bundle's steps on their own (restore.sh, files.sh): the snapshot checked on a
# private copy, the restore tool found, and the data dir swapped back by restore_from.

load helpers
bats_require_minimum_version 1.5.0

setup() {
  load_installer common files apply member restore
  ROLE=restore
  cd "$BATS_TEST_TMPDIR"
  mkdir -p dist/m
  bundle=$BATS_TEST_TMPDIR/dist/m
  head -c 5000 /dev/urandom >dist/snapshot.db
  SNAPSHOT_NAME=snapshot.db
  SNAPSHOT_IN_BUNDLE=""
  SNAPSHOT_SHA256=$(sha256sum <dist/snapshot.db | cut -d' ' -f1)
  SNAPSHOT_SIZE=5000
  SNAPSHOT_REVISION=7
  snapshot_arg=""
  problems=()
  refuse() { problems+=("$*"); }
  export TMPDIR=$BATS_TEST_TMPDIR
}

@test "check_snapshot: the one beside the bundle folder, copied into a private folder" {
  check_snapshot
  [ ${#problems[@]} -eq 0 ]
  [ "$snapshot" = "$work/snapshot.db" ]
  cmp "$snapshot" dist/snapshot.db
  [ "$(stat -c %a "$work")" = 700 ]
}

@test "check_snapshot: a changed, cut or missing snapshot is refused" {
  printf 'x' | dd of=dist/snapshot.db bs=1 seek=100 conv=notrunc 2>/dev/null
  check_snapshot
  [ ${#problems[@]} -eq 1 ]
  [[ "${problems[0]}" == *"is not the one this bundle pins"* ]]
  problems=()
  head -c 4000 /dev/zero >other.db
  snapshot_arg=$BATS_TEST_TMPDIR/other.db
  check_snapshot
  [[ "${problems[0]}" == *"4000 bytes"* ]]
  problems=()
  snapshot_arg=$BATS_TEST_TMPDIR/none.db
  check_snapshot
  [[ "${problems[0]}" == *"none.db is missing"* ]]
}

@test "check_snapshot: --embed's copy inside the bundle" {
  mkdir -p "$bundle/snapshot"
  mv dist/snapshot.db "$bundle/snapshot/snapshot.db"
  SNAPSHOT_IN_BUNDLE=snapshot/snapshot.db
  check_snapshot
  [ ${#problems[@]} -eq 0 ]
}

@test "find_restore_tool: the bundle's etcdutl, then the host's etcdutl, then etcdctl (etcd 3.4)" {
  mkdir -p bin "$bundle/rootfs/usr/local/bin"
  printf '#!/bin/sh\n' >bin/etcdctl
  chmod +x bin/etcdctl
  cd "$bundle"
  # Only the test's own tools: not the host's etcdctl.
  local only=$BATS_TEST_TMPDIR/bin
  PATH=$only find_restore_tool
  [ "$restore_tool" = etcdctl ]
  [ "${restore_with[*]}" = "env ETCDCTL_API=3 etcdctl" ]
  cp ../../bin/etcdctl ../../bin/etcdutl
  PATH=$only find_restore_tool
  [ "$restore_tool" = etcdutl ]
  printf '#!/bin/sh\n' >rootfs/usr/local/bin/etcdutl
  PATH=$only find_restore_tool
  [ "$restore_tool" = "the bundle's etcdutl" ]
  [ "${restore_with[0]}" = "$bundle/rootfs/usr/local/bin/etcdutl" ]
  rm rootfs/usr/local/bin/etcdutl ../../bin/*
  PATH=$only find_restore_tool
  [[ "${problems[0]}" == *"no etcdutl or etcdctl here"* ]]
}

@test "restore_from: the data dir from before the restore comes back, the restored one into the backup" {
  root=$BATS_TEST_TMPDIR/root
  b=$BATS_TEST_TMPDIR/backup
  mkdir -p "$root/var/lib/etcd/member" "$b/data-dir/member"
  echo restored >"$root/var/lib/etcd/member/x"
  echo old >"$b/data-dir/member/x"
  printf 'data-dir\t/var/lib/etcd\n' >"$b/changes"
  run restore_from "$b"
  [ "$status" -eq 0 ]
  [ "$(cat "$root/var/lib/etcd/member/x")" = old ]
  [ "$(cat "$b"/data-dir.restored.*/member/x)" = restored ]
  # No data dir before the restore: the restored one goes, nothing comes back.
  rm -rf "$b" && mkdir -p "$b"
  printf 'data-dir\t/var/lib/etcd\n' >"$b/changes"
  run restore_from "$b"
  [ "$status" -eq 0 ]
  [[ "$output" == *"there was none before the restore"* ]]
  [ ! -e "$root/var/lib/etcd" ]
}

@test "adopt_interrupted: the data dir an interrupted restore moved into the last backup comes over" {
  root=$BATS_TEST_TMPDIR/root
  BACKUP_DIR=/var/lib/etcdpack/backups
  DATA_DIR=/var/lib/etcd
  b=$root$BACKUP_DIR
  mkdir -p "$b/20261201T000000Z-1/data-dir/member" "$b/20261202T000000Z-2/data-dir/member" "$b/20261203T000000Z-3"
  printf 'data-dir\t/var/lib/etcd\n' >"$b/20261201T000000Z-1/changes"
  printf 'set-aside\t/x\ndata-dir\t/var/lib/etcd\n' >"$b/20261202T000000Z-2/changes"
  backup=$b/20261203T000000Z-3
  run adopt_interrupted
  [ "$status" -eq 0 ]
  [[ "$output" == *"took over the data dir from before the interrupted restore of 20261202T000000Z-2"* ]]
  [ -d "$backup/data-dir/member" ]
  [ ! -e "$b/20261202T000000Z-2/data-dir" ]
  [ -d "$b/20261201T000000Z-1/data-dir" ]
}

@test "adopt_interrupted: nothing when the last backup is no restore's, or was rolled back" {
  root=$BATS_TEST_TMPDIR/root
  BACKUP_DIR=/var/lib/etcdpack/backups
  DATA_DIR=/var/lib/etcd
  b=$root$BACKUP_DIR
  mkdir -p "$b/20261201T000000Z-1/data-dir" "$b/20261202T000000Z-2" "$b/20261203T000000Z-3.rolled-back/data-dir" "$b/20261204T000000Z-4"
  printf 'data-dir\t/var/lib/etcd\n' >"$b/20261201T000000Z-1/changes"
  printf 'added\t/x\n' >"$b/20261202T000000Z-2/changes"
  printf 'data-dir\t/var/lib/etcd\n' >"$b/20261203T000000Z-3.rolled-back/changes"
  backup=$b/20261204T000000Z-4
  run adopt_interrupted
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  [ ! -e "$backup/data-dir" ]
}

@test "stop_etcd under --root: an etcd that still answers fails the step, none passes" {
  etcd_started() { echo 1733356800.00; }
  METRICS_URL=http://127.0.0.1:2381
  run stop_etcd "$BATS_TEST_TMPDIR/manifest"
  [ "$status" -eq 1 ]
  [[ "$output" == *"etcd of member t still runs (its metrics answer at http://127.0.0.1:2381): stop it"* ]]
  etcd_started() { :; }
  run stop_etcd "$BATS_TEST_TMPDIR/manifest"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
}
