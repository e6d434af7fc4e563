# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, an etcd member's bundle (ROLE member, and join with join.sh): its
# usage, the hooks of apply.sh, restarting what runs etcd (through the runtime file), the
# quorum guard, --wait, and main.

readonly WHAT="member $MEMBER"

usage() {
  cat <<USAGE
Usage: install.sh [--pubkey FILE] [--root DIR] [--dry-run] [--force] [--no-restart] [--wait SECONDS] [--allow-older]
       install.sh --rollback [--root DIR] [--dry-run] [--no-restart]

Checks that SHA256SUMS is signed by the pinned signing key, verifies this bundle against
it, checks the host, backs up every file it will
$USAGE_INSTALLS

  --root DIR       install into DIR (an image or test root): no host checks, no systemctl,
                   no image import; a path that a symlink would lead out of DIR is refused
  --dry-run        print every action, change nothing (needs neither root nor an existing
                   --root DIR)
  --force          install even if the member's address is not on a local interface, no
                   container runtime client can import the image archive, or the quorum
                   guard finds too few healthy members to restart this one
  --no-restart     do not reload systemd or restart $SERVICE_SAID
  --wait SECONDS   after installing, poll etcd's metrics endpoint and its client URL (with
                   the healthcheck-client certificate) until both are healthy, then every
                   member of the cluster, then prove that the member serves the installed
                   server and peer certificates (openssl s_client)
  --allow-older    install this bundle even though the host runs a newer one (a higher
                   GENERATION in bundle.env): a deliberate step back, with old
                   certificates and perhaps an older etcd
  --rollback       restore the files the last install replaced, and remove those it added
$USAGE_PUBKEY

Replacing $RUNNER_SAID of a running member restarts etcd there. Before it does, the quorum
guard asks every other member for its health (client URL, healthcheck-client certificate)
and refuses when fewer than a quorum of the cluster would stay up. The cluster steps (the
guard, --wait) run against the members' real URLs even with --root.

Exit codes: 0 done, 1 refused or failed (nothing changed, or the backup was restored),
3 installed but not healthy, or not serving the installed certificates, within --wait,
4 installed but restarting $SERVICE_SAID failed (run install.sh again once it is fixed:
it restarts it).
USAGE
}

# A restart that failed is remembered here, so that the next run finishes it.
restart_marker() { printf '%s' "$root$RECORD_DIR/restart-pending"; }

# Whether this bundle installs a file at PATH.
ships() {
  local i
  for ((i = 1; i < ${#FILES[@]}; i += 3)); do
    [ "${FILES[i]}" != "$1" ] || return 0
  done
  return 1
}

# The timers a member bundle may ship, each with what it does and the metric it writes: the
# expiry check (as a user of its own) and the snapshot job.
TIMERS=("$EXPIRY_TIMER" "a daily certificate expiry check" "$EXPIRY_METRIC"
  "$SNAPSHOT_TIMER" "scheduled snapshots" "$SNAPSHOT_METRIC")

# Each job writes its metric into its own runtime folder (METRIC); where node_exporter's
# textfile folder exists, a link there lets the collector read it. That folder may be another
# user's, so nothing is written through a name in it: what is there (a metric an earlier
# release wrote as root) is renamed into the backup, and the link is made with ln -T, which
# follows nothing; --rollback renames it back.
link_metric() {
  local metric=$1 what=$2 dir=$root$TEXTFILE_DIR name=${1##*/}
  [ -d "$dir" ] && [ ! -L "$dir" ] || return 0
  [ "$(readlink "$dir/$name" 2>/dev/null)" != "$metric" ] || return 0
  if [ -e "$dir/$name" ] || [ -L "$dir/$name" ]; then
    mkdir -p "$backup/files$TEXTFILE_DIR"
    mv -fT "$dir/$name" "$backup/files$TEXTFILE_DIR/$name" 2>/dev/null || {
      warn "could not move $TEXTFILE_DIR/$name aside; node_exporter will not see the metric of $what"
      return 0
    }
    note set-aside "$TEXTFILE_DIR/$name"
  fi
  if ln -snT "$metric" "$dir/$name" 2>/dev/null; then
    note added "$TEXTFILE_DIR/$name"
    say "linked $TEXTFILE_DIR/$name to $metric (the metric of $what)"
  else
    warn "could not link $TEXTFILE_DIR/$name to $metric; node_exporter will not see the metric of $what"
  fi
}

# Restarts what runs etcd: the kubelet (static pod), or etcd.service, enabled first and
# restarted without waiting for it to report ready (a member of a new cluster is ready only
# once a quorum runs; --wait waits for that).
restart_service() {
  if [ "$host" -eq 1 ] && [ "$restart" -eq 1 ]; then
    local restart_cmd=("${RESTART_CMD[@]}") enable_cmd=("${ENABLE_CMD[@]}")
    if [ "$dry_run" -eq 1 ]; then
      say "would run: systemctl daemon-reload"
      [ "${enable_cmd[0]}" = true ] || say "would run: ${enable_cmd[*]}"
      say "would run: ${restart_cmd[*]}"
      for ((i = 0; i < ${#TIMERS[@]}; i += 3)); do
        ! ships "${TIMERS[i]}" || say "would run: systemctl enable --now ${TIMERS[i]##*/}"
      done
      return 0
    fi
    local rc=0 i unit
    systemctl daemon-reload && "${enable_cmd[@]}" && "${restart_cmd[@]}" || rc=$?
    if [ "$rc" -ne 0 ]; then
      mkdir -p "$root$RECORD_DIR"
      date -u +%Y-%m-%dT%H:%M:%SZ >"$(restart_marker)"
      printf 'etcdpack[%s]: error: the files are installed, but restarting %s failed (systemctl exit %s); see journalctl -u %s, fix it, then run install.sh again: it will restart %s (or --rollback to undo)\n' "$MEMBER" "$SERVICE_SAID" "$rc" "$SERVICE" "$SERVICE_SAID" >&2
      exit 4
    fi
    rm -f "$(restart_marker)"
    say "restarted $SERVICE_SAID"
    [ "$trust_changed" -eq 0 ] || restart_for_trust
    for ((i = 0; i < ${#TIMERS[@]}; i += 3)); do
      [ -f "${TIMERS[i]}" ] || continue
      unit=${TIMERS[i]##*/}
      if systemctl enable --now "$unit" >/dev/null 2>&1; then
        say "enabled $unit (${TIMERS[i + 1]})"
      else
        warn "could not enable $unit; run: systemctl enable --now $unit"
      fi
    done
  elif [ "$host" -eq 0 ] && [ "$dry_run" -eq 0 ] && [ "$trust_changed" -eq 1 ]; then
    say "etcd/ca.crt now trusts other CAs, and etcd reads it only at start: restart etcd here with whatever runs it${wait_secs:+ (--wait waits until it has)}"
  elif [ "$host" -eq 0 ] && [ "$dry_run" -eq 0 ]; then
    local i
    for ((i = 0; i < ${#TIMERS[@]}; i += 3)); do
      [ ! -f "$root${TIMERS[i]}" ] || say "in an image, enable ${TIMERS[i + 1]} with: systemctl --root $root enable ${TIMERS[i]##*/}"
    done
  fi
}
# What an earlier install recorded under /etc/etcdpack: was_cluster, was_member, was_ca,
# was_generation (empty before generations). Installs by releases before bundle.env recorded
# only bundle.json, which is read the one way those releases wrote it. Fails when there is
# no record at all.
read_record() {
  local env="$root$RECORD_DIR/bundle.env" json="$root$RECORD_DIR/bundle.json"
  was_generation=""
  if [ -f "$env" ]; then
    read_bundle_env "$env"
  elif [ -f "$json" ]; then
    was_cluster=$(sed -n 's/^  "cluster": "\(.*\)",$/\1/p' "$json")
    was_member=$(sed -n 's/^  "member": "\(.*\)",$/\1/p' "$json")
    was_ca=$(sed -n 's/^  "caSha256": "\(.*\)",$/\1/p' "$json")
  else
    return 1
  fi
}

# A CA rotation's phase 2 issues every certificate from the new CA, which the members must
# already trust (phase 1, installed everywhere first): a host whose installed etcd/ca.crt does
# not hold the CA that signs this bundle skipped phase 1, and its peers likely did too.
refuse_skipped_phase() {
  local ca=$root$PKI_DIR/etcd/ca.crt signer
  [ -n "$(record_field bundle.env TRUSTED_CA_SHA256)" ] && [ -f "$ca" ] || return 0
  signer=$(record_field bundle.env CA_SHA256)
  ! cert_set "$ca" | grep -Fx -- "$signer" >/dev/null || return 0
  if [ "$force" -eq 1 ]; then
    warn "the installed etcd/ca.crt does not trust the CA that signs this bundle; going on because of --force"
  else
    refuse "this bundle's certificates come from a CA that the installed etcd/ca.crt does not trust yet: install the CA rotation's phase-1 bundles on every member first (or pass --force)"
  fi
}

# Member checks before the paths: the runtime, the address, the ports.
preflight_host() {
  read_record && refuse_older
  refuse_skipped_phase
  # One etcd per host: a member does not change runtime under a running etcd.
  preflight_runtime
  # Whoever listens on a TCP port, as "name (pid N)", or nothing.
  port_owner() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
  }

  if [ "$host" -eq 1 ]; then
    if ! command -v ip >/dev/null; then
      if [ "$force" -eq 0 ]; then
        refuse "ip (iproute2) is missing, so the member's address cannot be checked; install iproute2, or pass --force"
      fi
    elif ! ip -o addr show 2>/dev/null | awk '{print $4}' | sed -e 's|/.*||' | grep -Fx -- "$ADDRESS" >/dev/null; then
      if [ "$force" -eq 1 ]; then
        warn "$ADDRESS is not on a local interface; going on because of --force"
      else
        refuse "$ADDRESS is not on any local interface: this bundle is for member $MEMBER; run the bundle made for this host, or pass --force"
      fi
    fi
    preflight_runtime_host
    if command -v ss >/dev/null; then
      for port in "$CLIENT_PORT" "$PEER_PORT"; do
        for pid in $(port_owner "$port"); do
          comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo unknown)
          if [ "$comm" = etcd ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -Fx -- "--name=$MEMBER" >/dev/null; then
            continue
          fi
          refuse "port $port is taken by $comm (pid $pid), not by etcd member $MEMBER; stop it or free the port"
        done
      done
    else
      warn "ss is missing: cannot check that ports $CLIENT_PORT and $PEER_PORT are free"
    fi
  fi
}

# Member checks after the paths: a data dir of another member or cluster, the image import.
preflight_data() {
  preflight_data_dir
  preflight_image
}

# A data dir that holds another member, or another cluster's.
preflight_data_dir() {
  if [ -d "$root$DATA_DIR/member" ]; then
    if ! read_record; then
      refuse "$DATA_DIR already holds an etcd member that etcdpack did not install; move $DATA_DIR aside if it is not needed"
    else
      if [ "$was_cluster" != "$CLUSTER" ] || ! ours_ca "$was_ca"; then
        refuse "$DATA_DIR holds member $was_member of cluster $was_cluster (another CA), not of $CLUSTER; move $DATA_DIR aside before joining this host to $CLUSTER"
      elif [ "$was_member" != "$MEMBER" ]; then
        refuse "$DATA_DIR holds member $was_member of $CLUSTER, not $MEMBER; this bundle is for another host, or move $DATA_DIR aside"
      fi
    fi
  fi
}

# The tool that imports the image archive (sets import_tool).
preflight_image() {
  import_tool=""
  if [ -n "$IMAGE_ARCHIVE" ] && [ "$host" -eq 1 ]; then
    if command -v ctr >/dev/null; then
      import_tool=ctr
    elif command -v nerdctl >/dev/null; then
      import_tool=nerdctl
    elif [ "$force" -eq 1 ]; then
      warn "no ctr or nerdctl to import images/$IMAGE_ARCHIVE; going on because of --force"
    else
      refuse "no ctr or nerdctl to import images/$IMAGE_ARCHIVE into the container runtime; install one, or pass --force if $IMAGE is already present"
    fi
  fi
}

# The data dir and the image a member needs.
plan_role() { plan_member; }

plan_member() {
  # A first install of a bootstrapping member (see wait_healthy); a joining member's data
  # dir is never fresh in that sense: the cluster it joins runs.
  # The CA key stays with the member that holds it: a bundle that does not carry it takes
  # an earlier one's away (into the backup), so it is on one host only.
  if ! ships "$PKI_DIR/etcd/ca.key" && [ -f "$root$PKI_DIR/etcd/ca.key" ]; then
    retire+=("$PKI_DIR/etcd/ca.key")
  fi
  fresh_dir=0
  if [ ! -d "$root$DATA_DIR" ]; then
    need_data_dir=1
    [ "$ROLE" = join ] || fresh_dir=1
  fi
  plan_runtime

  image_present() {
    case "$import_tool" in
      ctr) ctr -n k8s.io images ls -q 2>/dev/null | grep -Fx -- "$IMAGE" >/dev/null ;;
      nerdctl) nerdctl -n k8s.io image inspect "$IMAGE" >/dev/null 2>&1 ;;
      *) return 0 ;;
    esac
  }
  if [ -n "$import_tool" ] && ! image_present; then need_image=1; fi
}

# Nothing changed: but a restart an earlier run could not finish is finished now.
nothing_changed() {
  say "nothing to change: member $MEMBER is already installed from this bundle"
  finish_restart
}

# A restart an earlier run could not finish is finished now.
finish_restart() {
  if [ -f "$(restart_marker)" ]; then
    say "a restart of $SERVICE_SAID is pending from an earlier run"
    restart_service
  fi
}

# Each folder's own mode, as kubeadm creates them: the manifest folder and the data dir
# 0700, every other folder (their parents included) 0755.
dir_mode() {
  case "$1" in
    "$MANIFEST_DIR" | "$DATA_DIR") echo 0700 ;;
    *) echo 0755 ;;
  esac
}

# Imports the bundle's image archive with import_tool (a dry run only says it would); the
# image is present from then on. $1, if given, says what for.
import_image() {
  case "$import_tool" in
    ctr) do_or_say ctr -n k8s.io images import "images/$IMAGE_ARCHIVE" ;;
    nerdctl) do_or_say nerdctl -n k8s.io load -i "images/$IMAGE_ARCHIVE" ;;
  esac
  need_image=0
  [ "$dry_run" -eq 1 ] || say "imported $IMAGE with $import_tool${1:+, $1}"
}

# After the files: the data dir and the image.
install_extras() {
  if [ "$need_data_dir" -eq 1 ]; then
    make_dir "$DATA_DIR"
    data_dir_ready
  fi
  if [ "$need_image" -eq 1 ]; then
    import_image ""
  elif [ -n "$IMAGE_ARCHIVE" ] && [ "$host" -eq 1 ] && [ -n "$import_tool" ]; then
    say "image $IMAGE is already present"
  fi
  local i
  for ((i = 0; i < ${#TIMERS[@]}; i += 3)); do
    if ships "${TIMERS[i]}" && [ "$dry_run" -eq 0 ]; then
      link_metric "${TIMERS[i + 2]}" "${TIMERS[i + 1]}"
    fi
  done
}

# Before the files: nothing to stop (a restore stops etcd).
before_files() { :; }

# Restart what runs etcd so that it picks up the new files.
after_files() { restart_service; }

after_done() { :; }

# After --rollback: the timers an undone install added go out of systemd too, and etcd
# restarts with the restored files.
after_rollback() {
  local undone=$1 i unit
  for ((i = 0; i < ${#TIMERS[@]}; i += 3)); do
    unit=${TIMERS[i]##*/}
    if [ "$host" -eq 1 ] && [ "$restart" -eq 1 ] && [ ! -f "${TIMERS[i]}" ] && grep -F "added"$'\t'"${TIMERS[i]}" "$undone/changes" >/dev/null; then
      systemctl disable --now "$unit" >/dev/null 2>&1 || warn "could not disable $unit; run: systemctl disable $unit"
    fi
  done
  restart_service
}

# 3b. The quorum guard: replacing the manifest of a running member restarts etcd there, so
# the other members that answer healthy must be a quorum of the cluster on their own.
# The CA certificates a trust file holds, whatever their order (etcd puts them all in one
# pool): the SHA-256 of each PEM block, sorted.
cert_set() {
  awk '
    /-----BEGIN CERTIFICATE-----/ { block = "" }
    { block = block $0 "\n" }
    /-----END CERTIFICATE-----/ { printf "%s", block | "sha256sum"; close("sha256sum") }
  ' "$1" | cut -d' ' -f1 | LC_ALL=C sort
}

# Whether this install changes the CAs the running member trusts (a CA rotation's first and
# last phase): etcd reads etcd/ca.crt only at start, so it must restart. Sets trust_changed.
trust_changed=0
find_trust_change() {
  local i ca=$PKI_DIR/etcd/ca.crt
  for i in "${todo[@]}"; do
    if [ "${FILES[i + 1]}" = "$ca" ] && [ -f "$root$ca" ] && [ "$(cert_set "${FILES[i]}")" != "$(cert_set "$root$ca")" ]; then
      trust_changed=1
    fi
  done
  # The running etcd's start, to tell its restart (empty when it does not answer).
  [ "$trust_changed" -eq 0 ] || running_since=$(etcd_started)
}

quorum_guard() {
  local i manifest_changes=0 size=$((${#MEMBERS[@]} / 2)) quorum healthy=0 asked=() down=()
  for i in "${todo[@]}"; do
    # What runs etcd: the manifest or unit, or (systemd runtime) the etcd binary it starts.
    [ "${FILES[i + 1]}" != "$RUNNER" ] || manifest_changes=1
    [ "${FILES[i + 1]}" != "${ETCD_BINARY:-}" ] || manifest_changes=1
  done
  find_trust_change
  [ "$trust_changed" -eq 0 ] || manifest_changes=1
  # A first install (no manifest yet) starts a member; it stops none.
  [ "$manifest_changes" -eq 1 ] && [ -f "$root$RUNNER" ] || return 0
  quorum=$(quorum_of "$size")
  if [ "$force" -eq 1 ]; then
    warn "quorum guard skipped because of --force: $MEMBER restarts whatever the other members' health"
    return 0
  fi
  if [ "$size" -eq 1 ]; then
    warn "single-member cluster: etcd is unavailable while it restarts with the new manifest"
    return 0
  fi
  if ! command -v curl >/dev/null; then
    die "the quorum guard needs curl to ask the other members for their health; install curl, or pass --force to restart $MEMBER unguarded"
  fi
  local pki=rootfs$PKI_DIR
  for ((i = 0; i < ${#MEMBERS[@]}; i += 2)); do
    [ "${MEMBERS[i]}" != "$MEMBER" ] || continue
    asked+=("${MEMBERS[i]}")
    if healthy_at "${MEMBERS[i + 1]}" "$pki/etcd/ca.crt" "$pki/etcd/healthcheck-client.crt" "$pki/etcd/healthcheck-client.key"; then
      healthy=$((healthy + 1))
    else
      down+=("${MEMBERS[i]}")
    fi
  done
  if [ "$healthy" -ge "$quorum" ]; then
    say "quorum guard: $healthy of ${#asked[@]} other members are healthy (quorum of $size is $quorum): $MEMBER may restart"
    return 0
  fi
  die "quorum guard: only $healthy of the ${#asked[@]} other members answered healthy (not healthy: ${down[*]}); a cluster of $size needs $quorum up, so restarting $MEMBER now would stop the cluster; bring those members back first (then run again), or pass --force; nothing on the host changed"
}
# The SHA-256 fingerprint of the first certificate in a PEM stream on standard input.
fingerprint() { openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed -e 's/^.*=//'; }

# The fingerprint of the certificate served at URL's host and port, showing CRT/KEY as the
# client certificate (the peer port asks for one).
served_fingerprint() {
  local url=$1 crt=$2 key=$3 hostport
  hostport=${url#https://}
  timeout 10 openssl s_client -connect "$hostport" -CAfile "$root$PKI_DIR/etcd/ca.crt" -cert "$crt" -key "$key" </dev/null 2>/dev/null | fingerprint
}

# 6. Optionally wait until etcd answers healthy on both endpoints, then the whole cluster,
# then until the member serves the installed certificates.
wait_healthy() {
  if [ -n "$wait_secs" ] && [ "$dry_run" -eq 0 ]; then
    command -v curl >/dev/null || die "--wait needs curl"
    local pki=$root$PKI_DIR deadline i down
    deadline=$((SECONDS + wait_secs))
    # Gives up with exit 3 once the time is over: WHAT after N s (DETAIL).
    late() {
      if [ "$SECONDS" -ge "$deadline" ]; then
        printf 'etcdpack[%s]: error: %s after %ss (%s); check: %s\n' "$MEMBER" "$1" "$wait_secs" "$2" "$CHECK_HINT" >&2
        exit 3
      fi
      sleep 1
    }
    mine() { healthy_at "$1" "$pki/etcd/ca.crt" "$pki/etcd/healthcheck-client.crt" "$pki/etcd/healthcheck-client.key"; }
    # A member of a new cluster is healthy only once a quorum runs: installing the members one
    # after the other (Ansible's serial: 1), the first ones cannot wait for that.
    if [ "${fresh_dir:-0}" -eq 1 ]; then
      local others_up=0
      for ((i = 0; i < ${#MEMBERS[@]}; i += 2)); do
        [ "${MEMBERS[i]}" = "$MEMBER" ] || ! mine "${MEMBERS[i + 1]}" || others_up=$((others_up + 1))
      done
      if [ "$others_up" -eq 0 ] && [ ${#MEMBERS[@]} -gt 2 ]; then
        say "a new cluster: no other member answers yet, so $MEMBER becomes healthy only once a quorum of $CLUSTER is installed; not waiting (install the others; the last install's --wait waits for all)"
        return 0
      fi
    fi
    if [ "$trust_changed" -eq 1 ] && [ -n "${running_since:-}" ]; then
      say "waiting up to ${wait_secs}s for etcd to restart and read the new trust file"
      local now_since
      while now_since=$(etcd_started); [ -z "$now_since" ] || [ "$now_since" = "$running_since" ]; do
        late "etcd did not restart, so it still trusts the old CAs" "it runs since $running_since, from before the install"
      done
    fi
    say "waiting up to ${wait_secs}s for etcd at $METRICS_URL and $CLIENT_URL"
    until mine "$METRICS_URL" && mine "$CLIENT_URL"; do
      late "etcd is not healthy" "$METRICS_URL, $CLIENT_URL"
    done
    say "etcd member $MEMBER is healthy"
    while :; do
      down=()
      for ((i = 0; i < ${#MEMBERS[@]}; i += 2)); do
        mine "${MEMBERS[i + 1]}" || down+=("${MEMBERS[i]}")
      done
      [ ${#down[@]} -gt 0 ] || break
      late "cluster $CLUSTER is not healthy" "not healthy: ${down[*]}"
    done
    say "all $((${#MEMBERS[@]} / 2)) members of $CLUSTER are healthy"
    if ! command -v openssl >/dev/null; then
      warn "openssl is missing: cannot check which certificates etcd serves"
      return 0
    fi
    local want_server want_peer got_server got_peer
    want_server=$(fingerprint <"$pki/etcd/server.crt")
    want_peer=$(fingerprint <"$pki/etcd/peer.crt")
    while :; do
      got_server=$(served_fingerprint "$CLIENT_URL" "$pki/etcd/healthcheck-client.crt" "$pki/etcd/healthcheck-client.key") || got_server=""
      got_peer=$(served_fingerprint "$PEER_URL" "$pki/etcd/peer.crt" "$pki/etcd/peer.key") || got_peer=""
      [ "$got_server" != "$want_server" ] || [ "$got_peer" != "$want_peer" ] || break
      late "etcd does not serve the installed certificates" "client port: ${got_server:-nothing}, want $want_server; peer port: ${got_peer:-nothing}, want $want_peer"
    done
    say "serves the installed certificates: server $want_server on $CLIENT_URL, peer $want_peer on $PEER_URL"
  fi
}
# Stops etcd here before its data dir changes (a restore, or the --rollback of one):
# etcd.service stops; a static pod's manifest moves to $1 (the kubelet then stops the pod),
# and stopped_manifest says so. Then it waits until etcd's metrics no longer answer. With
# --root nothing runs etcd for install.sh: an etcd that still answers fails the step.
stopped_manifest=0
stop_etcd() {
  local moved_to=$1 deadline
  if [ "$dry_run" -eq 1 ]; then
    [ "$host" -eq 0 ] || say "would stop etcd ($([ "$RUNTIME" = systemd ] && echo "systemctl stop $SERVICE" || echo "move $MANIFEST out; the kubelet stops the pod"))"
    return 0
  fi
  if [ "$host" -eq 1 ]; then
    if [ "$RUNTIME" = systemd ]; then
      systemctl stop "$SERVICE" || { warn "systemctl stop $SERVICE failed"; return 1; }
    elif [ -f "$root$MANIFEST" ]; then
      mkdir -p "${moved_to%/*}"
      mv -fT "$root$MANIFEST" "$moved_to"
      # shellcheck disable=SC2034 # read by restore.sh
      stopped_manifest=1
    fi
  fi
  deadline=$((SECONDS + 120))
  while [ -n "$(etcd_started)" ]; do
    if [ "$host" -eq 0 ] || [ "$SECONDS" -ge "$deadline" ]; then
      if [ "$host" -eq 1 ]; then
        warn "etcd of member $MEMBER still runs 120 s after it was told to stop (its metrics answer at $METRICS_URL); see $CHECK_HINT"
      else
        warn "etcd of member $MEMBER still runs (its metrics answer at $METRICS_URL): stop it, then run install.sh again"
      fi
      return 1
    fi
    sleep 1
  done
  [ "$host" -eq 0 ] || say "stopped etcd"
}

# When the running etcd started (seconds since the epoch, from its metrics, to the hundredth),
# or nothing.
etcd_started() {
  { curl -sf --max-time 2 "$METRICS_URL/metrics" 2>/dev/null || true; } |
    awk '$1 == "process_start_time_seconds" { printf "%.2f\n", $2 }'
}

main() {
  begin_install "$@"
  quorum_guard
  [ "$ROLE" != join ] || join_cluster
  apply_changes
  [ "$ROLE" != join ] || promote_learner
  wait_healthy
  [ "$changed" -eq 1 ] || exit 0
}
