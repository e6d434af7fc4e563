#!/usr/bin/env bats
# installer/cluster-api.sh: reading etcd's member list and the other members' health.

load helpers

setup() {
  load_installer common cluster-api
}

# A member list answer of etcd's v3 JSON gateway (POST /v3/cluster/member/list).
LIST='{"header":{"cluster_id":"1","member_id":"2","raft_term":"3"},"members":[{"ID":"10276657743932975437","name":"infra0","peerURLs":["https://10.0.0.6:2380"],"clientURLs":["https://10.0.0.6:2379"]},{"ID":"1","name":"infra3","peerURLs":["https://10.0.0.9:2380"],"isLearner":true}]}'

@test "member_with_url finds a voter, a learner, or nothing" {
  [ "$(member_with_url https://10.0.0.6:2380 <<<"$LIST")" = "10276657743932975437 voter" ]
  [ "$(member_with_url https://10.0.0.9:2380 <<<"$LIST")" = "1 learner" ]
  [ -z "$(member_with_url https://10.0.0.7:2380 <<<"$LIST")" ]
}

@test "others_health counts the other members that answer healthy" {
  local m
  for m in a b c; do mkdir -p "$BATS_TEST_TMPDIR/$m"; done
  printf '{"health":"true"}' >"$BATS_TEST_TMPDIR/a/health"
  printf '{"health":"true"}' >"$BATS_TEST_TMPDIR/b/health"
  MEMBER=a
  MEMBERS=(a "file://$BATS_TEST_TMPDIR/a" b "file://$BATS_TEST_TMPDIR/b" c "file://$BATS_TEST_TMPDIR/c")
  API_CA=ca API_CRT=crt API_KEY=key
  others_health
  [ "$others_healthy" -eq 1 ]
  [ "$others_asked" -eq 2 ]
  [ "${down[*]}" = c ]
  [ "$(quorum_of "$others_asked")" -eq 2 ]
}
