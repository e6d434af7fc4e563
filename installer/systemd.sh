# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, the systemd runtime (etcd.runtime: systemd): etcd.service runs etcd as
# ETCD_USER, who owns the files etcd reads (ETCD_OWNED) and the data dir. The runtime hooks
# the member's steps call: preflight_runtime, preflight_runtime_host, plan_runtime, data_dir_ready.

SERVICE=etcd.service
SERVICE_SAID=etcd.service
RUNNER_SAID=etcd.service
CHECK_HINT="journalctl -u etcd.service"
USAGE_INSTALLS="replace, installs the etcd member's PKI and etcd.service, records what it installed under
/etc/etcdpack, and enables and restarts etcd.service."
# A member of a new cluster is ready only once a quorum runs: the restart does not wait.
RESTART_CMD=(systemctl restart --no-block "$SERVICE")
ENABLE_CMD=(systemctl enable --quiet "$SERVICE")

# uid:gid of ETCD_USER: from the root's own /etc/passwd (an image) if it has the user, else
# from this machine's users. Fails when neither knows it.
etcd_ids() {
  local line="" uid gid
  if [ "$host" -eq 0 ] && [ -f "$root/etc/passwd" ]; then
    line=$(grep -m 1 "^$ETCD_USER:" "$root/etc/passwd") || line=""
  fi
  [ -n "$line" ] || line=$(getent passwd "$ETCD_USER") || return 1
  IFS=: read -r _ _ uid gid _ <<<"$line"
  printf '%s:%s' "$uid" "$gid"
}

# Refusals of this runtime: a static pod manifest running etcd here, a missing etcd.user.
# Sets etcd_owner.
preflight_runtime() {
  if [ -f "$root$MANIFEST" ]; then
    refuse "$MANIFEST is here: etcd runs as a static pod of the kubelet, and etcd.service would start a second etcd on the same ports and data dir; to switch this member to the systemd runtime, move the manifest out of $MANIFEST_DIR (the kubelet stops etcd), then run install.sh again"
  fi
  etcd_owner=0:0
  if ! etcd_owner=$(etcd_ids); then
    refuse "user $ETCD_USER (etcd.user) does not exist${root:+ in $root/etc/passwd or} on this machine; create it (useradd --system --home-dir $DATA_DIR --shell /usr/sbin/nologin $ETCD_USER), or set etcd.user in the topology and rebuild"
  fi
}

# Refusals of this runtime on a host: a missing etcd binary or systemctl.
preflight_runtime_host() {
  if [ ! -x "$ETCD_BINARY" ] && ! ships "$ETCD_BINARY"; then
    refuse "the etcd binary $ETCD_BINARY that etcd.service runs is missing; install etcd there (Debian: apt-get install etcd-server), or set etcd.binary or etcd.binaryArchive in the topology and rebuild"
  fi
  if [ "$restart" -eq 1 ] && ! command -v systemctl >/dev/null; then
    refuse "systemctl is missing, so etcd.service cannot be started; pass --no-restart and start etcd yourself"
  fi
}

# A data dir etcd cannot write as ETCD_USER (a static pod's, say) changes owner.
plan_runtime() {
  if [ -d "$root$DATA_DIR" ] && i_am_root && [ "$(stat -c '%u:%g' "$root$DATA_DIR")" != "$etcd_owner" ]; then
    need_data_dir=1
  fi
}

# The data dir just created (or taken over): ETCD_USER's, all of it.
data_dir_ready() {
  if [ "$dry_run" -eq 1 ]; then
    say "would give data dir $DATA_DIR to $ETCD_USER ($etcd_owner)"
  else
    ! i_am_root || chown -R "$etcd_owner" "$root$DATA_DIR"
    say "data dir $DATA_DIR (mode 0700) belongs to $ETCD_USER"
  fi
}

# etcd.service restarts with every install, and so reads a new trust file.
restart_for_trust() { :; }
