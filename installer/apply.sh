# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, the install steps of the bundles that install files (members, joining
# members, the control plane): --rollback, preflight, what changes, and the change itself,
# with its backup. What differs between those roles comes from hooks that the role's file
# defines:
#   preflight_host     member checks before the paths (runtime, address, ports)
#   preflight_data     member checks after them (data dir, image import)
#   plan_role          the data dir and image a member needs (need_data_dir, need_image),
#                      and the installed files its bundle no longer ships (retire)
#   nothing_changed    what a run that changes nothing says (and finishes)
#   dir_mode PATH      the mode of a folder it creates
#   before_files       after the backup folder is made, before the files: a restore's
#                      stop of etcd and its new data dir
#   install_extras     after the files: a member's data dir and image
#   after_files        after the files are in place: restart what runs etcd
#   after_done         what the role says once done
#   after_rollback DIR after --rollback restored DIR

# The first steps of every install: options, the bundle folder, the lock, --rollback (which
# ends the run), the signature and every file checked, the preflight, and what changes.
begin_install() {
  parse_args "$@"
  enter_bundle
  take_lock
  [ "$rollback" -eq 0 ] || rollback
  verify_signature
  verify_bundle
  preflight
  plan_changes
}

# The newest backup folder not rolled back (and not $1, if given), or nothing.
last_backup() {
  [ -d "$root$BACKUP_DIR" ] || return 0
  find "$root$BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d ! -name '*.rolled-back' ! -path "${1:-/}" | LC_ALL=C sort | tail -n 1
}

# --rollback: undo the last install from its backup.
rollback() {
  last=$(last_backup "") || true
  [ -n "$last" ] || die "nothing to roll back: no install by etcdpack is recorded under $root$BACKUP_DIR"
  if grep -q '^left' "$last/changes" 2>/dev/null; then
    die "the last change on this host was the leave of a member ($(basename "$last")): it was removed from the cluster, which a rollback cannot undo; to bring this host back, add it to the topology again and install its join bundle (its files stay in $last)"
  fi
  say "rolling back the install of $(basename "$last")"
  # The --rollback of a restore puts the old data dir back: not under a running etcd.
  if grep -q "^data-dir"$'\t' "$last/changes" 2>/dev/null; then
    stop_etcd "$last/manifest.stopped" || die "etcd runs on the restored data dir; stop it, then run --rollback again; nothing changed"
  fi
  restore_from "$last" || die "rollback incomplete: fix what is named above and run --rollback again"
  if [ "$dry_run" -eq 1 ]; then
    say "dry run: nothing changed"
    exit 0
  fi
  mv "$last" "$last.rolled-back"
  after_rollback "$last.rolled-back"
  say "rolled back: $(basename "$last")"
  exit 0
}
# 2. Preflight: every refusal happens here, before anything on the host changes.
preflight() {
  problems=()
  refuse() { problems+=("$*"); }

  if [ "$host" -eq 1 ] && [ "$dry_run" -eq 0 ] && ! i_am_root; then
    refuse "must run as root (try: sudo ./install.sh)"
  fi
  preflight_host

  # With --root, no path may lead out of the root through a symlink: name the first link.
  escapes() {
    local path=$1 p="" part real
    local IFS=/
    for part in ${path#/}; do
      p="$p/$part"
      if [ -L "$root$p" ]; then
        real=$(realpath -m -- "$root$p")
        case "$real" in
          "$root" | "$root"/*) ;;
          *) printf '%s -> %s' "$p" "$(readlink -- "$root$p")"; return 0 ;;
        esac
      fi
    done
    return 1
  }
  for ((i = 1; i < ${#FILES[@]}; i += 3)); do
    if [ -L "$root${FILES[i]}" ]; then
      refuse "${FILES[i]} is a symlink: etcdpack installs files, not through links; remove it"
    elif [ -d "$root${FILES[i]}" ]; then
      refuse "${FILES[i]} is a folder where a file belongs; move it aside"
    fi
  done
  if [ "$host" -eq 0 ]; then
    for ((i = 1; i < ${#FILES[@]}; i += 3)); do
      if link=$(escapes "${FILES[i]}"); then
        refuse "$root${FILES[i]} would be written outside --root $root: the symlink $link leaves it; remove the link or choose another root"
      fi
    done
    guarded=("$BACKUP_DIR" "$RECORD_DIR")
    case "$ROLE" in member | join | restore) guarded=("$DATA_DIR" "${guarded[@]}") ;; esac
    for path in "${guarded[@]}"; do
      if link=$(escapes "$path"); then
        refuse "$root$path lies outside --root $root: the symlink $link leaves it; remove the link or choose another root"
      fi
    done
  fi
  preflight_data
  if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do
      printf 'etcdpack[%s]: error: %s\n' "$MEMBER" "$p" >&2
    done
    die "refused (${#problems[@]} problem(s) above); nothing on the host changed"
  fi
  say "preflight passed"
}

# 3. Decide what changes: files that differ in bytes, mode or owner.
plan_changes() {
  owner_ok() { ! i_am_root || [ "$(stat -c '%u:%g' "$1")" = "$2" ]; }
  # Without root (a dry run) an unreadable installed file counts as different.
  same_bytes() { [ -r "$2" ] && cmp -s "$1" "$2"; }
  todo=()
  for ((i = 0; i < ${#FILES[@]}; i += 3)); do
    src=${FILES[i]} dest=$root${FILES[i + 1]} mode=${FILES[i + 2]}
    if [ -f "$dest" ] && same_bytes "$src" "$dest" && [ "$(stat -c '%a' "$dest")" = "${mode#0}" ] && owner_ok "$dest" "$(owner_of "${FILES[i + 1]}")"; then
      continue
    fi
    todo+=("$i")
  done
  need_data_dir=0
  need_image=0
  need_restore=0
  retire=()
  plan_role
}

# 4 and 5. Back up, install, restart: or say there is nothing to change.
apply_changes() {
  if [ ${#todo[@]} -eq 0 ] && [ ${#retire[@]} -eq 0 ] && [ "$need_data_dir" -eq 0 ] && [ "$need_image" -eq 0 ] && [ "$need_restore" -eq 0 ]; then
    changed=0
    nothing_changed
    pin_signing_key
  else
    changed=1
    # 4. Back up, then install; a failure while installing restores the backup.
    # Nanoseconds, so that backups sort in the order they were made.
    stamp=$(date -u +%Y%m%dT%H%M%S.%NZ)-$$
    backup="$root$BACKUP_DIR/$stamp"
    if [ "$dry_run" -eq 0 ]; then
      # Backups hold private keys: every level is root-only.
      install -d -m 0700 "$root${BACKUP_DIR%/*}" "$root$BACKUP_DIR" "$backup" "$backup/files"
      : >"$backup/changes"
      printf 'cluster=%s member=%s bundle=%s\n' "$CLUSTER" "$MEMBER" "$bundle" >"$backup/about"
    fi
    note() { [ "$dry_run" -eq 1 ] || printf '%s\t%s\n' "$1" "$2" >>"$backup/changes"; }
    declare -gA made=()
    # Creates a folder and its missing parents, each with its own mode, noting each for rollback.
    make_dir() {
      local path=$1 missing=() p mode
      p=$path
      while [ "$p" != / ] && [ ! -d "$root$p" ] && [ -z "${made[$p]:-}" ]; do
        missing=("$p" "${missing[@]}")
        p=$(dirname "$p")
      done
      for p in "${missing[@]}"; do
        mode=$(dir_mode "$p")
        made[$p]=1
        if [ "$dry_run" -eq 1 ]; then
          say "would create folder $p (mode $mode)"
          continue
        fi
        mkdir -m "$mode" "$root$p"
        note dir "$p"
      done
    }
    pending=""
    # shellcheck disable=SC2317 # run by the trap below
    on_failure() {
      trap - ERR INT TERM
      [ -z "$pending" ] || rm -f "$pending"
      warn "install failed; restoring the files it had changed"
      if ! restore_from "$backup"; then
        die "install of $WHAT failed and could not be undone completely; fix what is named above, then run install.sh --rollback"
      fi
      mv "$backup" "$backup.rolled-back"
      die "install of $WHAT failed and was undone; see the messages above"
    }
    # An error or an interruption while files are being replaced puts the old ones back.
    [ "$dry_run" -eq 1 ] || trap on_failure ERR INT TERM
    before_files

    for i in "${todo[@]}"; do
      src=${FILES[i]} path=${FILES[i + 1]} mode=${FILES[i + 2]}
      dest=$root$path
      make_dir "$(dirname "$path")"
      if [ "$dry_run" -eq 1 ]; then
        if [ -f "$dest" ]; then say "would back up and replace $path (mode $mode$(owner_said "$path"))"; else say "would install $path (mode $mode$(owner_said "$path"))"; fi
        continue
      fi
      if [ -f "$dest" ]; then
        mkdir -p "$backup/files$(dirname "$path")"
        cp -p "$dest" "$backup/files$path"
        note replaced "$path"
      else
        note added "$path"
      fi
      put_file "$src" "$dest" "$mode" "$(owner_of "$path")"
      say "installed $path (mode $mode$(owner_said "$path"))"
    done
    # Files an earlier bundle installed that this one does not ship (the CA key of a member
    # that no longer holds it) go into the backup, from where --rollback puts them back.
    for path in "${retire[@]}"; do
      if [ "$dry_run" -eq 1 ]; then
        say "would move $path into the backup: this bundle does not ship it"
        continue
      fi
      mkdir -p "$backup/files$(dirname "$path")"
      cp -p "$root$path" "$backup/files$path"
      note replaced "$path"
      rm -f "$root$path"
      say "moved $path into the backup: this bundle does not ship it"
    done
    # A first install pins the key that signed the bundle; its rollback unpins it.
    if [ "${pin_wanted:-0}" -eq 1 ] && [ ! -e "$root$SIGNING_KEY_PIN" ]; then
      make_dir "${SIGNING_KEY_PIN%/*}"
      if [ "$dry_run" -eq 1 ]; then
        say "would pin the signing key $signer in $SIGNING_KEY_PIN"
      else
        note added "$SIGNING_KEY_PIN"
        pin_signing_key
      fi
    fi
    install_extras
    trap - ERR INT TERM

    # 5. Restart what runs etcd, where a member's bundle says so.
    after_files
    if [ "$dry_run" -eq 1 ]; then
      say "dry run: ${#todo[@]} file(s) would change; nothing changed"
      exit 0
    fi
    say "done: ${#todo[@]} file(s) changed for $WHAT; backup in $BACKUP_DIR/$stamp (undo with --rollback)"
    after_done
  fi
}
