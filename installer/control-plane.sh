# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, the control-plane bundle (ROLE control-plane): the etcd CA and the
# node's own apiserver-etcd-client certificate, installed for kube-apiserver; nothing
# restarts (kube-apiserver reads its etcd client certificate only when it starts).

readonly WHAT="the control-plane files of $CLUSTER"

usage() {
  cat <<USAGE
Usage: install.sh [--pubkey FILE] [--root DIR] [--dry-run] [--wait SECONDS] [--allow-older]
       install.sh --rollback [--root DIR] [--dry-run]

Checks that SHA256SUMS is signed by the pinned signing key, verifies this bundle against
it, backs up every file it will replace, and installs what kube-apiserver needs to reach
the external etcd cluster: /etc/kubernetes/pki/etcd/ca.crt and this control plane's own
apiserver-etcd-client certificate and key. It records what it installed,
etcd-external.yaml included, under /etc/etcdpack/control-plane. It restarts nothing:
kube-apiserver reads its etcd client certificate only when it starts.

  --root DIR       install into DIR (an image or test root); a path that a symlink would
                   lead out of DIR is refused
  --dry-run        print every action, change nothing (needs neither root nor an existing
                   --root DIR)
  --wait SECONDS   after installing, poll every etcd member's client URL with the installed
                   client certificate until all of them answer healthy (also with --root)
  --allow-older    install this bundle even though the node has a newer one (a higher
                   GENERATION in bundle.env): a deliberate step back to old certificates
  --rollback       restore the files the last install replaced, and remove those it added
$USAGE_PUBKEY

Exit codes: 0 done, 1 refused or failed (nothing changed, or the backup was restored),
3 installed but not every member answered the certificate within --wait.
USAGE
}

# The hooks of apply.sh: no member checks, no data dir, no restart; only no replay.
preflight_host() {
  local env="$root$RECORD_DIR/bundle.env"
  [ -f "$env" ] || return 0
  read_bundle_env "$env"
  refuse_older
}
preflight_data() { :; }
plan_role() { :; }
install_extras() { :; }
before_files() { :; }
after_files() { :; }
dir_mode() { echo 0755; }

nothing_changed() {
  say "nothing to change: the control-plane files are already installed from this bundle"
}

# What the node needs next: a kube-apiserver restart for a new certificate, or kubeadm init.
after_done() {
  local client_cert=$PKI_DIR/apiserver-etcd-client.crt ca=$PKI_DIR/etcd/ca.crt
  if grep -F "replaced"$'\t'"$ca" "$backup/changes" >/dev/null; then
    say "etcd/ca.crt changed (the CAs kube-apiserver trusts for etcd, a CA rotation): restart kube-apiserver on this node, since it reads the file only when it starts (move /etc/kubernetes/manifests/kube-apiserver.yaml out of the folder, wait 20 s for the kubelet to stop it, move it back), one control-plane node at a time"
  elif grep -F "replaced"$'\t'"$client_cert" "$backup/changes" >/dev/null; then
    say "the etcd client certificate changed: restart kube-apiserver on this node, since it reads the certificate only when it starts (move /etc/kubernetes/manifests/kube-apiserver.yaml out of the folder, wait 20 s for the kubelet to stop it, move it back), one control-plane node at a time"
  elif [ ! -f "$root/etc/kubernetes/manifests/kube-apiserver.yaml" ]; then
    say "next: merge the etcd section of $RECORD_DIR/etcd-external.yaml into the ClusterConfiguration you give kubeadm init --config"
  fi
}

after_rollback() {
  say "restart kube-apiserver if it runs with the certificate that was rolled back"
}

# 6. Optionally wait until every member answers /health to the installed client certificate:
# proof that kube-apiserver can reach the cluster with it.
wait_healthy() {
  if [ -n "$wait_secs" ] && [ "$dry_run" -eq 0 ]; then
    command -v curl >/dev/null || die "--wait needs curl"
    local pki=$root$PKI_DIR deadline i down
    deadline=$((SECONDS + wait_secs))
    say "waiting up to ${wait_secs}s for every member to answer the installed apiserver-etcd-client certificate"
    while :; do
      down=()
      for ((i = 0; i < ${#MEMBERS[@]}; i += 2)); do
        healthy_at "${MEMBERS[i + 1]}" "$pki/etcd/ca.crt" "$pki/apiserver-etcd-client.crt" "$pki/apiserver-etcd-client.key" || down+=("${MEMBERS[i]}")
      done
      [ ${#down[@]} -gt 0 ] || break
      if [ "$SECONDS" -ge "$deadline" ]; then
        printf 'etcdpack[%s]: error: not every member answered the client certificate after %ss (not healthy: %s); check the members (etcdctl endpoint health) and the network from this node\n' "$MEMBER" "$wait_secs" "${down[*]}" >&2
        exit 3
      fi
      sleep 1
    done
    say "all $((${#MEMBERS[@]} / 2)) members of $CLUSTER answer the installed apiserver-etcd-client certificate"
  fi
}
main() {
  begin_install "$@"
  apply_changes
  wait_healthy
  [ "$changed" -eq 1 ] || exit 0
}
