# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, the part of every bundle that installs files (all but leave bundles):
# writing a file with its mode and owner, a command or only its words with --dry-run, and
# restoring a backup. It reads the globals MEMBER, root, dry_run, ETCD_OWNED (the install
# paths etcd.user owns) and etcd_owner, and sets pending (the temporary file being written,
# for the cleanup of an interrupted run).

# The systemd runtime's etcd.user as uid:gid, once its preflight found it.
etcd_owner=0:0

# The owner (uid:gid) an installed PATH gets: etcd_owner (the systemd runtime's etcd.user,
# found by preflight) for the files etcd itself reads (ETCD_OWNED), root for the rest.
owner_of() {
  local p
  for p in "${ETCD_OWNED[@]}"; do
    if [ "$p" = "$1" ]; then
      printf '%s' "$etcd_owner"
      return 0
    fi
  done
  printf '0:0'
}

# ", owner USER" for a PATH that is not root's, for the messages.
owner_said() {
  [ "$(owner_of "$1")" = 0:0 ] || printf ', owner %s' "$ETCD_USER"
}

# After a host's first install, the key that signed its bundle (checked by verify_signature)
# is the one the host trusts from now on: kept as it is by every later install.
pin_signing_key() {
  if [ "$dry_run" -eq 1 ] || [ "${pin_wanted:-0}" -eq 0 ] || [ -e "$root$SIGNING_KEY_PIN" ]; then
    return 0
  fi
  [ -d "$root${SIGNING_KEY_PIN%/*}" ] || mkdir -p "$root${SIGNING_KEY_PIN%/*}"
  put_file signing-key.pub "$root$SIGNING_KEY_PIN" 0644
  say "pinned the signing key $signer in $SIGNING_KEY_PIN: later bundles must be signed by it"
}

# Runs a command, or only prints it with --dry-run.
do_or_say() {
  if [ "$dry_run" -eq 1 ]; then
    say "would run: $*"
  else
    "$@"
  fi
}

# Writes SRC to DEST with MODE (and OWNER, uid:gid, default root, when run as root) through
# a temporary file that mktemp creates exclusively beside DEST, then one rename: nothing
# planted at a predictable name (a symlink, say) is ever written through, and DEST is never
# half-written.
put_file() {
  local src=$1 dest=$2 mode=$3 owner=${4:-0:0} tmp
  tmp=$(mktemp "$dest.etcdpack-XXXXXX") || return 1
  pending=$tmp
  # Each step is checked here: in a condition (restore_from) set -e does not apply.
  { cat "$src" >"$tmp" && chmod "$mode" "$tmp" && { ! i_am_root || chown "$owner" "$tmp"; } && mv -f "$tmp" "$dest"; } || return 1
  pending=""
}

# Restores what a backup folder recorded: replaced files come back byte for byte with their
# modes and owners, added files and created (still empty) folders go away. It restores
# everything it can and then names exactly what it could not; it fails only then.
restore_from() {
  local backup=$1 kind path failed=()
  [ -f "$backup/changes" ] || die "$backup has no list of changes; restore by hand"
  while IFS=$'\t' read -r kind path; do
    case "$kind" in
      replaced)
        if [ "$dry_run" -eq 1 ]; then say "would restore $path"; continue; fi
        if put_file "$backup/files$path" "$root$path" "$(stat -c '%a' "$backup/files$path")" 2>/dev/null &&
          { ! i_am_root || chown --reference="$backup/files$path" "$root$path"; }; then
          say "restored $path"
        else
          [ -z "$pending" ] || rm -f "$pending"
          pending=""
          failed+=("$path")
        fi
        ;;
      set-aside)
        # Renamed into the backup from a folder another user may write: renamed back, so
        # that nothing is written through a name that user controls.
        if [ "$dry_run" -eq 1 ]; then say "would put back $path"; continue; fi
        if mv -fT "$backup/files$path" "$root$path" 2>/dev/null; then say "put back $path"; else failed+=("$path"); fi
        ;;
      added)
        if [ "$dry_run" -eq 1 ]; then say "would remove $path"; continue; fi
        if rm -f "$root$path" 2>/dev/null; then say "removed $path"; else failed+=("$path"); fi
        ;;
      data-dir)
        # A restore's: the restored data dir goes into the backup, the old one comes back.
        if [ "$dry_run" -eq 1 ]; then say "would put the data dir $path from before the restore back"; continue; fi
        if [ -e "$root$path" ] && ! mv -T "$root$path" "$backup/data-dir.restored.$$" 2>/dev/null; then
          failed+=("$path")
        elif [ ! -d "$backup/data-dir" ]; then
          say "moved the restored data dir $path into $backup (there was none before the restore)"
        elif mv -T "$backup/data-dir" "$root$path" 2>/dev/null; then
          say "put back the data dir $path from before the restore (the restored one is in $backup)"
        else
          failed+=("$path")
        fi
        ;;
      dir)
        if [ "$dry_run" -eq 1 ]; then say "would remove folder $path if empty"; continue; fi
        if rmdir "$root$path" 2>/dev/null; then say "removed folder $path"; fi
        ;;
    esac
  done < <(tac "$backup/changes")
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'etcdpack[%s]: error: could not restore: %s; the backup in %s holds them\n' \
      "$MEMBER" "${failed[*]}" "$backup" >&2
    return 1
  fi
}
