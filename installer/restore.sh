# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, a restore bundle (ROLE restore, after member.sh): brings member MEMBER
# back from a snapshot as a member of a new cluster (RESTORE_TOKEN) of the members in
# INITIAL_CLUSTER. It checks the snapshot against the digest and size the bundle pins,
# refuses where this member's etcd is healthy (part of a quorum: a restore there would lose
# every write since the snapshot), stops etcd, moves the old data dir into the backup,
# restores the snapshot with etcd's own tool (etcdutl; etcdctl of etcd 3.4; the etcd image
# through ctr or nerdctl), installs the member's files, and starts etcd again.

usage() {
  cat <<USAGE
Usage: install.sh [--snapshot FILE] [--pubkey FILE] [--root DIR] [--dry-run] [--force] [--no-restart] [--wait SECONDS] [--allow-older]
       install.sh --rollback [--root DIR] [--dry-run] [--no-restart]

Restores etcd member $MEMBER of cluster $CLUSTER from the snapshot this bundle pins
(revision $SNAPSHOT_REVISION, $SNAPSHOT_SIZE bytes, SHA-256 $SNAPSHOT_SHA256) as a member
of a new cluster (token $RESTORE_TOKEN), with the same certificates. Install the restore
bundle on every member, then the control-plane bundle where it is not installed yet.

Checks that SHA256SUMS is signed by the pinned signing key, verifies this bundle and the
snapshot, refuses where etcd here is healthy, stops etcd, moves the data dir $DATA_DIR
into the backup, restores the snapshot into it, installs the member's files as its member
bundle does, and starts etcd again.

  --snapshot FILE  the snapshot [default: ${SNAPSHOT_IN_BUNDLE:-$SNAPSHOT_NAME beside the bundle folder}]
  --root DIR       restore into DIR (an image or test root): no host checks, no systemctl;
                   etcd must not run (install.sh cannot stop it there)
  --dry-run        print every action, change nothing
  --force          restore even though etcd here answers healthy (a working cluster
                   loses every write since the snapshot), or the address is not local
  --no-restart     do not reload systemd or restart $SERVICE_SAID (a static pod starts
                   again anyway once its manifest is back)
  --wait SECONDS   after the restore, wait until the whole restored cluster is healthy
                   (the last member's install can; the first ones cannot, alone)
  --allow-older    install this bundle even though the host runs a newer one
  --rollback       stop etcd and put the data dir and files from before the restore back
$USAGE_PUBKEY

A second run after a completed restore says so and changes nothing.

Exit codes: 0 done, 1 refused or failed (nothing changed, or the backup was restored),
3 restored but the cluster is not healthy within --wait, 4 restored but starting etcd
failed (run install.sh again once it is fixed).
USAGE
}

# Where the checked copy of the snapshot lies (a private folder, removed at exit), and the
# command that restores it (and its name, for the messages).
work=""
snapshot=""
restore_with=()
restore_tool=

# The snapshot, copied into a folder of its own and checked there: what is restored is what
# was checked, whoever can write where it came from.
check_snapshot() {
  local src sum size
  if [ -n "$snapshot_arg" ]; then
    src=$snapshot_arg
  elif [ -n "$SNAPSHOT_IN_BUNDLE" ]; then
    src=$bundle/$SNAPSHOT_IN_BUNDLE
  else
    src=$(dirname "$bundle")/$SNAPSHOT_NAME
  fi
  if [ ! -f "$src" ]; then
    refuse "the snapshot $src is missing: copy $SNAPSHOT_NAME of the build's output beside the bundle folder, or name it with --snapshot FILE"
    return 0
  fi
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/etcdpack-restore.XXXXXX") || die "cannot make a folder for the snapshot under ${TMPDIR:-/var/tmp}"
  trap 'rm -rf -- "$work"' EXIT
  snapshot=$work/snapshot.db
  if ! cat -- "$src" >"$snapshot" 2>/dev/null; then
    refuse "cannot copy the snapshot $src into $work (space?)"
    return 0
  fi
  size=$(stat -c %s "$snapshot")
  sum=$(sha256sum <"$snapshot")
  sum=${sum%% *}
  if [ "$sum" != "$SNAPSHOT_SHA256" ] || [ "$size" != "$SNAPSHOT_SIZE" ]; then
    refuse "the snapshot $src is not the one this bundle pins (it has SHA-256 $sum and $size bytes; the bundle pins $SNAPSHOT_SHA256 and $SNAPSHOT_SIZE bytes, revision $SNAPSHOT_REVISION): it was altered or cut short, or belongs to another restore; copy the build's $SNAPSHOT_NAME again"
    return 0
  fi
  say "the snapshot $src is the one the bundle pins (revision $SNAPSHOT_REVISION, $size bytes)"
}

# etcd's own restore tool: etcdutl (the bundle's, from etcd.binaryArchive, or the host's),
# etcdctl where only etcd 3.4's is there, else etcdutl (etcdctl for 3.4) in the etcd image
# through ctr or nerdctl. Sets restore_with, or refuses.
find_restore_tool() {
  local shipped=rootfs/usr/local/bin
  if [ -f "$shipped/etcdutl" ]; then
    restore_with=("$bundle/$shipped/etcdutl") restore_tool="the bundle's etcdutl"
  elif command -v etcdutl >/dev/null; then
    restore_with=(etcdutl) restore_tool=etcdutl
  elif [ -f "$shipped/etcdctl" ]; then
    restore_with=(env ETCDCTL_API=3 "$bundle/$shipped/etcdctl") restore_tool="the bundle's etcdctl"
  elif command -v etcdctl >/dev/null; then
    restore_with=(env ETCDCTL_API=3 etcdctl) restore_tool=etcdctl
  elif [ "$host" -eq 1 ] && [ -n "${IMAGE:-}" ] && { command -v ctr >/dev/null || command -v nerdctl >/dev/null; }; then
    local tool=etcdutl
    case "${IMAGE##*:}" in 3.4.* | v3.4.*) tool=etcdctl ;; esac
    restore_tool="$tool of $IMAGE"
    if command -v ctr >/dev/null; then
      restore_with=(ctr -n k8s.io run --rm --mount "type=bind,src=$work,dst=/restore,options=rbind:rw" --env ETCDCTL_API=3 "$IMAGE" "etcdpack-restore-$$" "$tool")
    else
      restore_with=(nerdctl -n k8s.io run --rm -v "$work:/restore" -e ETCDCTL_API=3 "$IMAGE" "$tool")
    fi
  else
    refuse "no etcdutl or etcdctl here to restore the snapshot with (and no ctr or nerdctl to run the etcd image's); install etcd's client tools (Debian: apt-get install etcd-client), or put the etcd release's etcdutl on PATH"
  fi
}

# Restore checks after the paths: the snapshot, the tool, etcd's health here.
preflight_data() {
  preflight_image
  restored_here=0
  # A completed restore of this bundle recorded its token (bundle.env) and left a member.
  if [ -f "$root$RECORD_DIR/bundle.env" ] && [ -d "$root$DATA_DIR/member" ] &&
    [ "$(record_field "$root$RECORD_DIR/bundle.env" RESTORE_TOKEN)" = "$RESTORE_TOKEN" ]; then
    restored_here=1
    return 0
  fi
  check_snapshot
  [ -z "$snapshot" ] || find_restore_tool
  local pki=rootfs$PKI_DIR/etcd
  if command -v curl >/dev/null && healthy_at "$CLIENT_URL" "$pki/ca.crt" "$pki/healthcheck-client.crt" "$pki/healthcheck-client.key"; then
    if [ "$force" -eq 1 ]; then
      warn "etcd member $MEMBER answers healthy at $CLIENT_URL: restoring anyway because of --force (every write since revision $SNAPSHOT_REVISION is lost)"
    else
      refuse "etcd member $MEMBER answers healthy at $CLIENT_URL: it is part of a working quorum, and a restore would lose every write since the snapshot (revision $SNAPSHOT_REVISION); restore only a cluster that lost its quorum (repair a lost member with a join bundle instead), or pass --force"
    fi
  fi
  if [ "$host" -eq 0 ] && [ "$dry_run" -eq 0 ] && [ -n "$(etcd_started)" ]; then
    refuse "etcd of member $MEMBER still runs (its metrics answer at $METRICS_URL), and install.sh does not stop it under --root: stop it, then run again"
  fi
}

# The member's files, then the restore (need_restore) unless this bundle's restore is done.
plan_role() {
  plan_member
  fresh_dir=0
  if [ "$restored_here" -eq 0 ]; then
    need_restore=1
    # The restore makes the data dir; a restored cluster is new, as at a first install.
    need_data_dir=0
    fresh_dir=1
  fi
}

nothing_changed() {
  say "nothing to change: member $MEMBER is already restored from this bundle's snapshot (revision $SNAPSHOT_REVISION, token $RESTORE_TOKEN)"
  finish_restart
}

# Before the files: stop etcd, move the old data dir into the backup, restore the snapshot
# in its place. Each step is noted first, so that a failure (on_failure) or --rollback undoes
# it: the data dir comes back, the stopped manifest too.
before_files() {
  [ "$need_restore" -eq 1 ] || return 0
  local i j found=0 log
  stop_etcd "$backup/files$MANIFEST"
  if [ "$stopped_manifest" -eq 1 ]; then
    note set-aside "$MANIFEST"
    # The manifest comes back with the files, last.
    for ((i = 0; i < ${#FILES[@]}; i += 3)); do
      [ "${FILES[i + 1]}" != "$MANIFEST" ] || break
    done
    for j in "${todo[@]}"; do [ "$j" != "$i" ] || found=1; done
    [ "$found" -eq 1 ] || todo+=("$i")
  fi
  # The restore writes beside the data dir (in the image, into the snapshot's folder) and is
  # moved into place once complete: an interrupted one leaves no half data dir behind.
  local target=$root$DATA_DIR.etcdpack-restoring args=() tool=$restore_tool made
  made=$target
  case "${restore_with[0]}" in
    ctr | nerdctl) target=/restore/data made=$work/data args=(snapshot restore /restore/snapshot.db) ;;
    *) args=(snapshot restore "$snapshot") ;;
  esac
  args+=(--name "$MEMBER" --initial-cluster "$INITIAL_CLUSTER" --initial-cluster-token "$RESTORE_TOKEN"
    --initial-advertise-peer-urls "$PEER_URL" --data-dir "$target")
  # A database copied from a data dir has no digest appended (the build pinned the file's).
  [ "$SNAPSHOT_HASHED" = 1 ] || args+=(--skip-hash-check)
  if [ "$dry_run" -eq 1 ]; then
    [ ! -d "$root$DATA_DIR" ] || say "would move the data dir $DATA_DIR into the backup"
    say "would restore the snapshot into $DATA_DIR with $tool (member $MEMBER, token $RESTORE_TOKEN)"
    return 0
  fi
  note data-dir "$DATA_DIR"
  if [ -e "$root$DATA_DIR" ]; then
    mv -T "$root$DATA_DIR" "$backup/data-dir"
    say "moved the data dir $DATA_DIR into the backup ($BACKUP_DIR/$stamp/data-dir)"
  else
    adopt_interrupted
  fi
  make_dir "$(dirname "$DATA_DIR")"
  rm -rf -- "$made"
  # The image's tool needs the image: the bundle's archive is imported first.
  case "${restore_with[0]}" in
    ctr | nerdctl) [ "$need_image" -eq 0 ] || import_image "for the restore" ;;
  esac
  log=$work/restore.log
  if ! "${restore_with[@]}" "${args[@]}" >"$log" 2>&1; then
    sed -e 's/^/  /' "$log" >&2
    rm -rf -- "$made"
    warn "$tool snapshot restore failed (its output is above)"
    return 1
  fi
  mv -T "$made" "$root$DATA_DIR"
  chmod 0700 "$root$DATA_DIR"
  say "restored the snapshot (revision $SNAPSHOT_REVISION) into $DATA_DIR with $tool: member $MEMBER of a new cluster, token $RESTORE_TOKEN"
  [ "$RUNTIME" != systemd ] || data_dir_ready
}

# No data dir, because a restore that was killed (no trap ran) had moved it into its own
# backup, the last one: this run's backup takes it over, so that --rollback of this run puts
# the data dir from before the restores back.
adopt_interrupted() {
  local last
  last=$(last_backup "$backup") || true
  [ -n "$last" ] && [ -d "$last/data-dir" ] && grep -q "^data-dir"$'\t'"$DATA_DIR\$" "$last/changes" 2>/dev/null || return 0
  mv -T "$last/data-dir" "$backup/data-dir"
  say "took over the data dir from before the interrupted restore of $(basename "$last") into this install's backup"
}

after_done() {
  say "member $MEMBER is restored; once every member's restore bundle is installed, the cluster runs again from revision $SNAPSHOT_REVISION (then install the control-plane bundle where it is not installed yet: same certificates)"
}

main() {
  begin_install "$@"
  apply_changes
  wait_healthy
  [ "$changed" -eq 1 ] || exit 0
}
