# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals: set by the bundle's data, parse_args and the other parts
# etcdpack install.sh, the part of join and leave bundles that changes the cluster's members.
# It reads the globals MEMBER, MEMBERS (name, client URL, ...) and API_CA, API_CRT, API_KEY
# (a client certificate of the cluster's CA), and the function healthy_at.

# The cluster's membership, through etcd's v3 JSON gateway (curl, no other tool).

# POSTs BODY to PATH on the members of MEMBERS other than this one, the first that answers,
# with the client certificate of API_CA/API_CRT/API_KEY. Sets api_out to the answer and
# api_status to the HTTP status (0 when no member answered, and then fails).
api() {
  local path=$1 body=$2 i out
  api_status=0 api_out=""
  for ((i = 0; i < ${#MEMBERS[@]}; i += 2)); do
    [ "${MEMBERS[i]}" != "$MEMBER" ] || continue
    if out=$(curl -sS --max-time 5 -g --cacert "$API_CA" --cert "$API_CRT" --key "$API_KEY" \
      -X POST -H 'Content-Type: application/json' -d "$body" -w '\n%{http_code}' "${MEMBERS[i + 1]}$path" 2>/dev/null); then
      api_status=${out##*$'\n'}
      [ "$api_status" != 000 ] || continue
      api_out=${out%$'\n'*}
      return 0
    fi
  done
  return 1
}

# api, for a membership change: etcd refuses one while its leader has not been connected to
# every member for a few seconds ("unhealthy cluster", just after a start or a change), so
# that is retried for up to 30 s.
api_change() {
  local tries=0
  while :; do
    api "$@" || return 1
    case "$api_status:$api_out" in
      503:*"unhealthy cluster"*) ;;
      *) return 0 ;;
    esac
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || return 0
    sleep 1
  done
}

# From a member list answer on standard input: "ID learner|voter" of the member whose peer
# URLs hold URL, or nothing.
member_with_url() {
  local chunk
  chunk=$(tr '{' '\n' | grep -F "\"$1\"" | head -n 1) || true
  [ -n "$chunk" ] || return 0
  printf '%s %s\n' "$(printf '%s' "$chunk" | sed -n 's/^"ID":"\{0,1\}\([0-9]*\).*/\1/p')" \
    "$(case "$chunk" in *'"isLearner":true'*) echo learner ;; *) echo voter ;; esac)"
}

# The members of MEMBERS other than this one (and other than the one being replaced) that
# answer healthy, as "healthy asked" and the names of those that did not in `down`.
others_health() {
  local i
  others_healthy=0 others_asked=0 down=()
  for ((i = 0; i < ${#MEMBERS[@]}; i += 2)); do
    [ "${MEMBERS[i]}" != "$MEMBER" ] || continue
    others_asked=$((others_asked + 1))
    if healthy_at "${MEMBERS[i + 1]}" "$API_CA" "$API_CRT" "$API_KEY"; then
      others_healthy=$((others_healthy + 1))
    else
      down+=("${MEMBERS[i]}")
    fi
  done
}
