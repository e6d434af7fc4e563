#!/usr/bin/env bats
# installer/leave.sh: a leave bundle acts only on the member it was built for.

load helpers

setup() {
  load_installer common leave cluster-api
  ROLE=leave
  CLUSTER=c
  MEMBER=infra1
  PEER_URL=https://10.0.0.7:2380
  RECORD_DIR=/etc/etcdpack
  BACKUP_DIR=/var/lib/etcdpack/backups
  PKI_DIR=/etc/kubernetes/pki
  DATA_DIR=/var/lib/etcd
  MANIFEST=/etc/kubernetes/manifests/etcd.yaml
  UNIT=/etc/systemd/system/etcd.service
  MEMBERS=(infra0 https://10.0.0.6:2379 infra1 https://10.0.0.7:2379)
  LEFT_AT_GENERATION=4
  root=$BATS_TEST_TMPDIR/root
  mkdir -p "$root$RECORD_DIR" "$root$DATA_DIR/member"
}

record() {
  printf 'FORMAT=1\nCLUSTER=%s\nMEMBER=%s\nPEER_URL=%s\n' "$1" "$2" "$3" >"$root$RECORD_DIR/bundle.env"
  if [ -n "${4:-}" ]; then printf 'GENERATION=%s\n' "$4" >>"$root$RECORD_DIR/bundle.env"; fi
}

@test "a stale leave bundle does not take out the member re-added at a new address" {
  record c infra1 https://10.0.1.7:2380
  run leave_cluster
  [ "$status" -eq 1 ]
  [[ "$output" == *"holds infra1 at https://10.0.1.7:2380, but this leave bundle takes it out at https://10.0.0.7:2380"* ]]
  [ -d "$root$DATA_DIR/member" ]
}

@test "a leave bundle of another member or cluster changes nothing" {
  record c infra2 https://10.0.0.8:2380
  run leave_cluster
  [ "$status" -eq 1 ]
  [[ "$output" == *"this leave bundle is for another host; nothing changed"* ]]
  record other infra1 https://10.0.0.7:2380
  run leave_cluster
  [ "$status" -eq 1 ]
  [ -d "$root$DATA_DIR/member" ]
}

@test "a stale leave bundle does not take out the member re-added at the same address" {
  # The member left at generation 4; the host now runs a bundle of generation 6.
  record c infra1 https://10.0.0.7:2380 6
  run leave_cluster
  [ "$status" -eq 1 ]
  [[ "$output" == *"holds infra1 from a bundle of generation 6, newer than its last one when this leave bundle was made (4): it was added again since; nothing changed"* ]]
  [ -d "$root$DATA_DIR/member" ]
}

@test "a leave bundle goes past the generation check for the bundle it was made after" {
  # Generation 4 (its last bundle) or older, or no generation recorded: the leave goes on
  # to the cluster (which no member answers here).
  for g in 4 3 ""; do
    record c infra1 https://10.0.0.7:2380 "$g"
    run leave_cluster
    [[ "$output" != *"added again since"* ]]
  done
  LEFT_AT_GENERATION=0
  record c infra1 https://10.0.0.7:2380 9
  run leave_cluster
  [[ "$output" != *"added again since"* ]]
}
