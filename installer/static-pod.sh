# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, the static pod runtime (the kubeadm guide): a kubelet that only manages
# etcd runs it from the manifest in MANIFEST_DIR. The runtime hooks the member's steps call:
# preflight_runtime, preflight_runtime_host, plan_runtime, data_dir_ready.

SERVICE=kubelet
SERVICE_SAID="the kubelet"
RUNNER_SAID="the manifest"
CHECK_HINT="journalctl -u kubelet, crictl ps -a --name etcd"
USAGE_INSTALLS="replace, installs the etcd member's PKI, kubelet configuration and static pod manifest,
records what it installed under /etc/etcdpack and restarts the kubelet."
RESTART_CMD=(systemctl restart "$SERVICE")
ENABLE_CMD=(true)

# Refusals of this runtime: etcdpack's etcd.service running etcd here.
preflight_runtime() {
  if [ -f "$root$UNIT" ] && grep -F "installed by etcdpack" "$root$UNIT" >/dev/null; then
    refuse "etcdpack's etcd.service runs etcd here (the systemd runtime), and a static pod would start a second etcd on the same ports and data dir; to switch this member to static pods, run: systemctl disable --now etcd.service, move $UNIT aside, then run install.sh again"
  fi
  etcd_owner=0:0
}

# Refusals of this runtime on a host: a missing kubelet or systemctl.
preflight_runtime_host() {
  [ -x "$KUBELET" ] || refuse "the kubelet binary $KUBELET named in the drop-in is missing; install the kubelet, or set kubelet.path in the topology and rebuild"
  if [ "$restart" -eq 1 ] && ! command -v systemctl >/dev/null; then
    refuse "systemctl is missing, so the kubelet cannot be restarted; pass --no-restart and start it yourself"
  fi
}

# etcd reads its trust file only at start, and the kubelet keeps a pod whose manifest did not
# change: the etcd container is stopped, and the kubelet starts it again from the same
# manifest, which stays exactly kubeadm's.
restart_for_trust() {
  local ids
  if ! command -v crictl >/dev/null; then
    warn "crictl is missing: stop the etcd container yourself so that the kubelet restarts it and etcd reads the new etcd/ca.crt"
    return 0
  fi
  ids=$(crictl ps -q --name '^etcd$' --label io.kubernetes.pod.namespace=kube-system 2>/dev/null) || ids=""
  if [ -z "$ids" ]; then
    warn "no running etcd container found to restart; once etcd runs it reads the new etcd/ca.crt"
    return 0
  fi
  # shellcheck disable=SC2086 # one word per container ID
  if crictl stop $ids >/dev/null; then
    say "stopped the etcd container: the kubelet starts it again, reading the new etcd/ca.crt"
  else
    warn "could not stop the etcd container; stop it yourself (crictl stop $ids) so that etcd reads the new etcd/ca.crt"
  fi
}

# Nothing to add to what changes: the kubelet runs etcd as root.
plan_runtime() { :; }

# The data dir just created: root's, as the kubelet's etcd runs as root.
data_dir_ready() {
  [ "$dry_run" -eq 1 ] || say "created data dir $DATA_DIR (mode 0700)"
}
