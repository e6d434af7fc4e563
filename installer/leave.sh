# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, a leave bundle (ROLE leave): takes this host's member out of the
# cluster through the others, then stops etcd and moves its files into a root-only backup.
# It installs nothing, so it has no rollback.

usage() {
  cat <<USAGE
Usage: install.sh [--pubkey FILE] [--root DIR] [--dry-run]

Takes this host's etcd member out of the cluster: checks that the other members keep a
quorum without it, removes it through a healthy member (etcd's v3 API, with the host's
installed healthcheck-client certificate), then stops etcd (it disables etcd.service, or
moves the static pod manifest away so that the kubelet stops it) and moves the data dir and
the member's keys into a root-only backup under /var/lib/etcdpack/backups. Run it again after an interruption: a member already removed is
only cleaned up. A completed leave cannot be rolled back: the member is gone from the
cluster; add the host back to the topology and install its join bundle instead.

  --root DIR       act on the files under DIR (an image or test root); the cluster steps still
                   reach the members' real URLs
  --dry-run        say what would happen, change nothing
$USAGE_PUBKEY

Exit codes: 0 done (or nothing left to do), 1 refused or failed (what is named changed
nothing, or says what was done).
USAGE
}

# A leader that removes itself drops the proposals in flight, whose clients then time out:
# when member ID (of member list answer LIST) leads, it hands leadership to a remaining voter
# first (MoveLeader, asked of the leader itself). Best effort: a failure is only warned.
hand_over_leadership() {
  local id=$1 list=$2 leader own_url target
  api /v3/maintenance/status '{}' || return 0
  leader=$(printf '%s' "$api_out" | sed -n 's/.*"leader":"\{0,1\}\([0-9]*\).*/\1/p')
  [ "$leader" = "$id" ] || return 0
  own_url=$(tr '{' '\n' <<<"$list" | grep -F "\"$PEER_URL\"" | sed -n 's/.*"clientURLs":\["\([^"]*\)".*/\1/p' | head -n 1) || true
  target=$(tr '{' '\n' <<<"$list" | grep '^"ID"' | grep -vF "\"$PEER_URL\"" | grep -vF '"isLearner":true' | sed -n 's/^"ID":"\{0,1\}\([0-9]*\).*/\1/p' | head -n 1) || true
  if [ -z "$own_url" ] || [ -z "$target" ]; then
    warn "$MEMBER leads $CLUSTER and no other voter was found to hand leadership to; removing it anyway"
    return 0
  fi
  if curl -fsS --max-time 10 -g --cacert "$API_CA" --cert "$API_CRT" --key "$API_KEY" -X POST \
    -H 'Content-Type: application/json' -d "{\"targetID\":\"$target\"}" "$own_url/v3/maintenance/transfer-leadership" >/dev/null 2>&1; then
    say "$MEMBER led $CLUSTER: handed leadership to member $target first"
  else
    warn "$MEMBER leads $CLUSTER and could not hand leadership over; removing it anyway (writes in flight may time out)"
  fi
}

# The leave: quorum without this member, removal through the API, then the host's files
# into a root-only backup (a leave is recorded so that --rollback refuses it).
leave_cluster() {
  [ "$host" -eq 0 ] || [ "$dry_run" -eq 1 ] || i_am_root || die "must run as root (try: sudo ./install.sh)"
  command -v curl >/dev/null || die "leaving the cluster needs curl; install curl"
  local env="$root$RECORD_DIR/bundle.env" list mine need
  if [ -f "$env" ]; then
    read_bundle_env "$env"
  fi
  if [ -z "$was_member" ] && [ ! -d "$root$DATA_DIR/member" ] && [ ! -f "$root$MANIFEST" ] && [ ! -f "$root$UNIT" ]; then
    say "no etcd member is installed here (no record under $RECORD_DIR, no data dir, no manifest or etcd.service): nothing to do"
    exit 0
  fi
  if [ "$was_member" != "$MEMBER" ] || [ "$was_cluster" != "$CLUSTER" ]; then
    die "this host holds ${was_member:-an unrecorded member} of ${was_cluster:-an unknown cluster}, not $MEMBER of $CLUSTER: this leave bundle is for another host; nothing changed"
  fi
  # A member of that name re-added at a new address is another member: an older leave
  # bundle must not take it out (nor move its data and keys away).
  if [ -n "$was_peer" ] && [ "$was_peer" != "$PEER_URL" ]; then
    die "this host holds $MEMBER at $was_peer, but this leave bundle takes it out at $PEER_URL: it is older than the member installed here (re-added at a new address); nothing changed"
  fi
  # Re-added at the same address: the host installed a bundle newer than the member's last
  # one when this leave was made.
  case "$was_generation:$LEFT_AT_GENERATION" in
    *[!0-9:]* | :* | *: | *:0) ;;
    *)
      if [ "$was_generation" -gt "$LEFT_AT_GENERATION" ]; then
        die "this host holds $MEMBER from a bundle of generation $was_generation, newer than its last one when this leave bundle was made ($LEFT_AT_GENERATION): it was added again since; nothing changed"
      fi
      ;;
  esac
  readonly API_CA=$root$PKI_DIR/etcd/ca.crt API_CRT=$root$PKI_DIR/etcd/healthcheck-client.crt API_KEY=$root$PKI_DIR/etcd/healthcheck-client.key
  if [ -f "$API_CRT" ]; then
    api /v3/cluster/member/list '{}' || die "no other member of $CLUSTER answered; nothing changed (a dead cluster cannot remove a member)"
    list=$api_out
    mine=$(member_with_url "$PEER_URL" <<<"$list")
  else
    mine=""
  fi
  if [ -n "$mine" ]; then
    others_health
    need=$(quorum_of "$others_asked")
    if [ "$others_healthy" -lt "$need" ]; then
      die "without $MEMBER, only $others_healthy of the $others_asked remaining members answer healthy (not healthy: ${down[*]}), fewer than their quorum of $need; bring them back first; nothing changed"
    fi
    if [ "$dry_run" -eq 1 ]; then
      say "would remove $MEMBER (ID ${mine%% *}) from $CLUSTER"
    else
      hand_over_leadership "${mine%% *}" "$list"
      api_change /v3/cluster/member/remove "{\"ID\":\"${mine%% *}\"}" || true
      [ "$api_status" = 200 ] || die "removing $MEMBER failed (HTTP $api_status); nothing changed; run again"
      say "removed $MEMBER (ID ${mine%% *}) from $CLUSTER: $((others_asked)) member(s) remain"
    fi
  else
    say "$PEER_URL is not a member of $CLUSTER (already removed): cleaning up the host"
  fi
  local stamp backup path moved=0
  stamp=$(date -u +%Y%m%dT%H%M%S.%NZ)-$$
  backup="$root$BACKUP_DIR/$stamp"
  if [ "$dry_run" -eq 0 ]; then
    install -d -m 0700 "$root${BACKUP_DIR%/*}" "$root$BACKUP_DIR" "$backup" "$backup/files"
    printf 'cluster=%s member=%s bundle=%s\n' "$CLUSTER" "$MEMBER" "$bundle" >"$backup/about"
    printf 'left\t%s\n' "$PEER_URL" >"$backup/changes"
  fi
  # etcd.service (systemd runtime) stops here; a static pod when its manifest moves away.
  if [ "$host" -eq 1 ] && [ -f "$UNIT" ]; then
    if [ "$dry_run" -eq 1 ]; then
      say "would run: systemctl disable --now etcd.service"
    else
      systemctl disable --now etcd.service || die "stopping etcd.service failed; $MEMBER is already out of $CLUSTER: stop it yourself, then run again to move its files away"
      say "stopped and disabled etcd.service"
    fi
  fi
  # What runs etcd first (the kubelet stops it); then the data, the keys and the records.
  for path in "$MANIFEST" "$UNIT" "$DATA_DIR" "$PKI_DIR/etcd" "$PKI_DIR/apiserver-etcd-client.crt" "$PKI_DIR/apiserver-etcd-client.key" "$RECORD_DIR/bundle.json" "$RECORD_DIR/bundle.env" "$RECORD_DIR/kubeadmcfg.yaml"; do
    [ -e "$root$path" ] || continue
    if [ "$dry_run" -eq 1 ]; then
      say "would move $path into the backup"
      continue
    fi
    mkdir -p "$backup/files$(dirname "$path")"
    mv "$root$path" "$backup/files$path"
    printf 'moved\t%s\n' "$path" >>"$backup/changes"
    moved=$((moved + 1))
  done
  if [ "$dry_run" -eq 1 ]; then
    say "dry run: nothing changed"
    exit 0
  fi
  if [ "$host" -eq 1 ] && command -v systemctl >/dev/null; then
    systemctl disable --now etcdpack-expiry.timer etcdpack-snapshot.timer >/dev/null 2>&1 || true
    systemctl daemon-reload || true
  fi
  say "done: $MEMBER left $CLUSTER; $moved path(s) moved into $BACKUP_DIR/$stamp (root only; delete it once the data is no longer wanted)"
}

main() {
  parse_args "$@"
  enter_bundle
  take_lock
  [ "$rollback" -eq 0 ] || die "a leave has no rollback: once the member is removed, the cluster cannot take it back; add the host to the topology again and install its join bundle"
  verify_signature
  verify_bundle
  leave_cluster
}
