# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, shared part: what every bundle's installer does the same way, whatever
# its role (member, join, leave, control plane) and etcd runtime. It reads the bundle's data
# (ROLE, MEMBER, ...) and keeps the options in the globals below: root (the --root folder,
# empty on a host), host (1 on a host), dry_run (1 with --dry-run), force, restart,
# wait_secs, rollback, allow_older.

root=""
host=1
dry_run=0
# shellcheck disable=SC2034 # a member's options, read by member.sh
{
  force=0
  restart=1
  allow_older=0
}
wait_secs=""
rollback=0
# What an earlier install recorded (read by the roles' preflight, checked by refuse_older).
was_cluster="" was_member="" was_ca="" was_peer="" was_generation=""
pubkey=""
snapshot_arg=""
# The lock's folder on a host: root's alone, never a world-writable one such as /run/lock,
# where any user could hold the lock (and stop every install) or plant a link.
LOCK_DIR=/run/etcdpack

# The end of every role's --help: the signature check's option, and help itself.
readonly USAGE_PUBKEY="  --pubkey FILE    check SHA256SUMS's signature against this key (the build's
                   signing-key.pub) instead of the one pinned in /etc/etcdpack at the
                   host's first install; without either, the first install trusts the
                   key the bundle carries and pins it
  -h, --help       show this help"

# Messages: every line names the member.
say() { printf 'etcdpack[%s]: %s\n' "$MEMBER" "$*"; }
warn() { printf 'etcdpack[%s]: warning: %s\n' "$MEMBER" "$*" >&2; }
die() { printf 'etcdpack[%s]: error: %s\n' "$MEMBER" "$*" >&2; exit 1; }

i_am_root() { [ "$(id -u)" -eq 0 ]; }

# Reads the options into the globals above. --force and --no-restart are a member's (and a
# joining member's) only: nothing else restarts etcd.
parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
      --root=*) root=${1#--root=}; shift ;;
      --dry-run) dry_run=1; shift ;;
      --allow-older)
        case "$ROLE" in member | join | restore | control-plane) allow_older=1 ;; *) die "unknown option '$1' (see --help)" ;; esac
        shift
        ;;
      --force | --no-restart)
        case "$ROLE" in member | join | restore) ;; *) die "unknown option '$1' (see --help)" ;; esac
        # shellcheck disable=SC2034 # read by member.sh
        if [ "$1" = --force ]; then force=1; else restart=0; fi
        shift
        ;;
      --wait) [ $# -ge 2 ] || die "--wait needs a number of seconds"; wait_secs=$2; shift 2 ;;
      --wait=*) wait_secs=${1#--wait=}; shift ;;
      --rollback) rollback=1; shift ;;
      --snapshot | --snapshot=*)
        [ "$ROLE" = restore ] || die "unknown option '$1' (see --help)"
        if [ "$1" = --snapshot ]; then
          [ $# -ge 2 ] || die "--snapshot needs the snapshot's file"
          snapshot_arg=$2
          shift 2
        else
          snapshot_arg=${1#--snapshot=}
          shift
        fi
        ;;
      --pubkey) [ $# -ge 2 ] || die "--pubkey needs the signing key's file"; pubkey=$2; shift 2 ;;
      --pubkey=*) pubkey=${1#--pubkey=}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option '$1' (see --help)" ;;
    esac
  done
  case "$wait_secs" in
    "" | *[!0-9]*) [ -z "$wait_secs" ] || die "--wait takes a whole number of seconds, not '$wait_secs'" ;;
  esac

  # The key file (and a restore's snapshot) is read after install.sh enters the bundle
  # folder: made absolute here.
  case "$pubkey" in "" | /*) ;; *) pubkey=$PWD/$pubkey ;; esac
  case "$snapshot_arg" in "" | /*) ;; *) snapshot_arg=$PWD/$snapshot_arg ;; esac

  host=1
  if [ -n "$root" ]; then
    if [ -d "$root" ]; then
      root=$(cd "$root" && pwd -P)
    elif [ "$dry_run" -eq 1 ]; then
      # A dry run into a root that does not exist yet: everything would be created.
      case "$root" in /*) ;; *) root=$PWD/$root ;; esac
      root=${root%/}
    else
      die "--root $root is not a directory; create it first"
    fi
    host=0
  fi
}

# Finds the bundle folder and works from it; only root changes a host.
enter_bundle() {
  bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cd "$bundle" || die "cannot enter the bundle folder $bundle"

  if [ "$host" -eq 1 ] && [ "$dry_run" -eq 0 ]; then
    i_am_root || die "must run as root (try: sudo ./install.sh); --dry-run works without"
  fi
}

# One install.sh at a time per host (or per --root): a second run stops at once instead of
# interleaving its backup and install with the first. A dry run changes nothing, so it takes
# no lock.
take_lock() {
  [ "$dry_run" -eq 0 ] || return 0
  if ! command -v flock >/dev/null; then
    warn "flock is missing (util-linux): cannot keep two runs of install.sh apart"
    return 0
  fi
  if [ "$host" -eq 1 ]; then
    [ -e "$LOCK_DIR" ] || [ -L "$LOCK_DIR" ] || mkdir -m 0700 "$LOCK_DIR" 2>/dev/null || true
    if [ -L "$LOCK_DIR" ] || [ ! -d "$LOCK_DIR" ] || [ "$(stat -c '%u %a' "$LOCK_DIR")" != "0 700" ]; then
      die "$LOCK_DIR is not a root-only folder (owner root, mode 0700): someone else made it; look at what it holds, remove it, then run again"
    fi
    exec 9>"$LOCK_DIR/install.lock"
  else
    exec 9<"$root"
  fi
  flock -n 9 || die "another install.sh is running on ${root:-this host}; wait for it to finish, then run again"
}

# SHA256:<hex> of the public key in PEM file $1 (its DER, as etcdpack prints it).
key_fingerprint() {
  local d
  d=$(
    set -o pipefail
    openssl pkey -pubin -in "$1" -outform DER 2>/dev/null | sha256sum
  ) || return 1
  printf 'SHA256:%s' "${d%% *}"
}

# 0. The bundle is the build's, before any other file is read: SHA256SUMS (which covers
# every file) is signed by the key given with --pubkey, else by the key pinned on this host at
# its first install. A host with no pinned key trusts the bundle's own key once, says so
# with its fingerprint; either way a host with no pinned key gets the key that signed the
# bundle pinned by the install (pin_signing_key). Sets signer and pin_wanted.
verify_signature() {
  local f key trust=""
  command -v openssl >/dev/null || die "openssl is missing, so the bundle's signature cannot be checked; install openssl"
  for f in SHA256SUMS SHA256SUMS.sig signing-key.pub; do
    if [ -L "$f" ] || [ ! -f "$f" ]; then
      die "the bundle holds no signed SHA256SUMS ($f is missing or not a file): it was not made by this etcdpack or was altered; unpack the build's bundle again"
    fi
  done
  pin_wanted=0
  [ -f "$root$SIGNING_KEY_PIN" ] || pin_wanted=1
  if [ -n "$pubkey" ]; then
    key=$pubkey trust="the key given with --pubkey"
  elif [ "$pin_wanted" -eq 0 ]; then
    key=$root$SIGNING_KEY_PIN trust="the key pinned in $SIGNING_KEY_PIN"
  else
    key=signing-key.pub
  fi
  signer=$(key_fingerprint "$key") || die "$key is not a public key in PEM; give the build's signing-key.pub"
  if ! openssl dgst -sha256 -verify "$key" -signature SHA256SUMS.sig SHA256SUMS >/dev/null 2>&1; then
    die "SHA256SUMS is not signed by ${trust:-the key the bundle carries} ($signer): the bundle was altered, or made by another signer; nothing changed"
  fi
  if [ -z "$trust" ]; then
    warn "no signing key is pinned on this host: this first install trusts the key the bundle carries, $signer; compare it with the fingerprint the build printed (or pass --pubkey with the build's signing-key.pub); it is pinned in $SIGNING_KEY_PIN once the install succeeds"
    return 0
  fi
  [ "$(key_fingerprint signing-key.pub)" = "$signer" ] || die "the bundle carries another key than $trust ($signer): it comes from another build; nothing changed"
  say "SHA256SUMS is signed by $trust ($signer)"
}

# 1. Verify every file before anything else: each matches SHA256SUMS, nothing else is there,
# and nothing is a symlink, a device or a pipe.
verify_bundle() {
  command -v sha256sum >/dev/null || die "sha256sum is missing; install coreutils"
  [ -f SHA256SUMS ] || die "SHA256SUMS is missing: the bundle is incomplete; unpack it again"
  # Before any file is read: sha256sum would follow a symlink, and block on a pipe forever.
  odd=$(find . ! -type d ! -type f | sed -e 's|^\./||' | tr '\n' ' ')
  [ -z "$odd" ] || die "the bundle holds entries that are not regular files: ${odd}; unpack a verified copy again"
  if ! sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1; then
    sha256sum --quiet -c SHA256SUMS >&2 || true
    die "the bundle does not match SHA256SUMS: it was altered or damaged; unpack a verified copy again"
  fi
  # SHA256SUMS and its signature (checked by verify_signature) are the two files it cannot list.
  listed=$( (sed -e 's/^[0-9a-f]\{64\}  //' SHA256SUMS; echo SHA256SUMS; [ ! -f SHA256SUMS.sig ] || echo SHA256SUMS.sig) | LC_ALL=C sort)
  present=$(find . -type f | sed -e 's|^\./||' | LC_ALL=C sort)
  if [ "$listed" != "$present" ]; then
    extra=$(LC_ALL=C comm -13 <(printf '%s\n' "$listed") <(printf '%s\n' "$present") | tr '\n' ' ')
    die "files not listed in SHA256SUMS: ${extra}; remove them or unpack the bundle again"
  fi
  say "verified $(wc -l <SHA256SUMS) files against SHA256SUMS"
}

# No replay: refuses (through preflight's refuse) a bundle older than the one recorded in
# was_cluster, was_ca, was_member, was_generation (of the same cluster, CA and member): it
# would put retired certificates, and perhaps an older etcd, back. --allow-older goes on.
refuse_older() {
  local ours
  ours=$(record_field bundle.env GENERATION)
  case "$ours$was_generation" in "" | *[!0-9]*) return 0 ;; esac
  [ -n "$ours" ] && [ -n "$was_generation" ] || return 0
  if [ "$was_cluster" = "$CLUSTER" ] && ours_ca "$was_ca" &&
    [ "$was_member" = "$MEMBER" ] && [ "$ours" -lt "$was_generation" ]; then
    if [ "$allow_older" -eq 1 ]; then
      warn "this bundle is generation $ours, older than generation $was_generation installed here; going on because of --allow-older"
    else
      refuse "this bundle is generation $ours, older than generation $was_generation installed here: install the newest bundle of $MEMBER, or pass --allow-older to go back on purpose"
    fi
  fi
}

# Whether CA digest $1 is this bundle's CA: the one that signs it, or, during a CA rotation,
# the other one its etcd/ca.crt trusts (TRUSTED_CA_SHA256), so that a host recorded with
# the old CA takes the new one's bundles.
ours_ca() {
  [ -n "$1" ] || return 1
  [ "$1" != "$(record_field bundle.env CA_SHA256)" ] || return 0
  case ",$(record_field bundle.env TRUSTED_CA_SHA256)," in
    *",$1,"*) return 0 ;;
  esac
  return 1
}

# What an earlier install recorded in bundle.env FILE: was_cluster, was_member, was_ca,
# was_peer, was_generation (each empty where the record has no such line).
read_bundle_env() {
  was_cluster=$(record_field "$1" CLUSTER)
  was_member=$(record_field "$1" MEMBER)
  was_ca=$(record_field "$1" CA_SHA256)
  # shellcheck disable=SC2034 # read by leave.sh
  was_peer=$(record_field "$1" PEER_URL)
  was_generation=$(record_field "$1" GENERATION)
}

# One KEY=value line of a bundle.env.
record_field() { sed -n "s/^$2=//p" "$1"; }

# GET URL/health with the client certificate CRT/KEY of CA; true when etcd says healthy.
healthy_at() {
  local url=$1 ca=$2 crt=$3 key=$4
  case "$url" in
    https:*) curl -fsS --max-time 3 -g --cacert "$ca" --cert "$crt" --key "$key" "$url/health" 2>/dev/null ;;
    *) curl -fsS --max-time 3 -g "$url/health" 2>/dev/null ;;
  esac | grep -F '"health":"true"' >/dev/null
}

# The quorum of a cluster of N voting members: a majority, N/2 + 1.
quorum_of() { printf '%s' $(($1 / 2 + 1)); }
