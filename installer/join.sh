# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, a joining member's bundle (ROLE join, with member.sh): before its files
# are installed it is added to the running cluster as a learner (after the member it
# replaces, at REPLACES, is removed), and promoted once it has caught up.

# Join, before any file is installed: the cluster must have a quorum; a replaced member is
# removed first; then this member is added as a learner, unless an earlier run did.
join_cluster() {
  command -v curl >/dev/null || die "joining the cluster needs curl; install curl"
  readonly API_CA=rootfs$PKI_DIR/etcd/ca.crt API_CRT=rootfs$PKI_DIR/etcd/healthcheck-client.crt API_KEY=rootfs$PKI_DIR/etcd/healthcheck-client.key
  local list mine old need
  others_health
  need=$(quorum_of "$others_asked")
  if [ "$others_healthy" -lt "$need" ]; then
    die "cannot join $CLUSTER: only $others_healthy of its $others_asked other members answered healthy (not healthy: ${down[*]}), fewer than its quorum of $need; bring them back first, then run again; nothing on the host changed"
  fi
  api /v3/cluster/member/list '{}' || die "no member of $CLUSTER answered the member list; nothing on the host changed"
  list=$api_out
  if [ -n "$REPLACES" ]; then
    old=$(member_with_url "$REPLACES" <<<"$list")
    if [ -n "$old" ]; then
      if [ "$dry_run" -eq 1 ]; then
        say "would remove the member at $REPLACES (ID ${old%% *}) from $CLUSTER"
      else
        api_change /v3/cluster/member/remove "{\"ID\":\"${old%% *}\"}" || true
        [ "$api_status" = 200 ] || die "removing the member at $REPLACES failed (HTTP $api_status); nothing on the host changed; run again"
        say "removed the member at $REPLACES (ID ${old%% *}): $MEMBER moves to $PEER_URL"
        api /v3/cluster/member/list '{}' || die "no member of $CLUSTER answered the member list after the removal; run again"
        list=$api_out
      fi
    else
      say "the member at $REPLACES is no longer in $CLUSTER"
    fi
  fi
  mine=$(member_with_url "$PEER_URL" <<<"$list")
  if [ -n "$mine" ]; then
    say "$PEER_URL is already in $CLUSTER (ID ${mine%% *}, ${mine#* }): resuming the join"
  elif [ "$dry_run" -eq 1 ]; then
    say "would add $MEMBER ($PEER_URL) to $CLUSTER as a learner"
  else
    local answer
    api_change /v3/cluster/member/add "{\"peerURLs\":[\"$PEER_URL\"],\"isLearner\":true}" || true
    [ "$api_status" = 200 ] || die "adding $PEER_URL as a learner failed (HTTP $api_status: ${api_out:-no answer}); nothing on the host changed; run again"
    mine=$(member_with_url "$PEER_URL" <<<"$api_out")
    say "added $MEMBER ($PEER_URL) to $CLUSTER as a learner (ID ${mine%% *})"
  fi
}

# After the install: once the learner has caught up with the leader, promote it (etcd refuses
# while it lags; that is retried). Waits up to --wait seconds, or 300.
promote_learner() {
  [ "$dry_run" -eq 0 ] || return 0
  local deadline list mine answer
  deadline=$((SECONDS + ${wait_secs:-300}))
  say "waiting for the learner $MEMBER to catch up, to promote it"
  while :; do
    list=""
    ! api /v3/cluster/member/list '{}' || list=$api_out
    mine=$(member_with_url "$PEER_URL" <<<"$list")
    if [ -n "$mine" ] && [ "${mine#* }" = voter ]; then
      say "$MEMBER is a voting member of $CLUSTER"
      return 0
    fi
    if [ -n "$mine" ]; then
      api /v3/cluster/member/promote "{\"ID\":\"${mine%% *}\"}" || true
      answer=$api_out
      if [ "$api_status" = 200 ]; then
        say "promoted $MEMBER (ID ${mine%% *}) to a voting member of $CLUSTER"
        return 0
      fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'etcdpack[%s]: error: %s was not promoted within %ss (%s); is etcd running here (journalctl -u %s)? run install.sh again to resume: it promotes the learner once it has caught up\n' \
        "$MEMBER" "$MEMBER" "${wait_secs:-300}" "${answer:-no member listed it}" "$SERVICE" >&2
      exit 3
    fi
    sleep 1
  done
}
