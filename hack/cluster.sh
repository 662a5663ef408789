#!/usr/bin/env bash
# The local test control plane: real etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok, on loopback.
#
#   hack/cluster.sh up      start it (idempotent); kubeconfig in .cluster/kubeconfig
#   hack/cluster.sh down    stop exactly the processes it started, remove their data
#   hack/cluster.sh status  exit 0 when it is up and healthy
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir="$root/.cluster"
run="$dir/run"     # pids, ports
data="$dir/data"   # etcd
pki="$dir/pki"
logs="$dir/logs"
kubeconfig="$dir/kubeconfig"
# shellcheck source=versions.sh
source "$root/hack/versions.sh"

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# A pid file holds "PID BINARY"; a process is ours only if it still runs
# that binary, so a recycled pid is never killed.
ours() { # name
  local f="$run/$1.pid" pid bin
  [[ -f $f ]] || return 1
  read -r pid bin <"$f"
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1 | grep -qxF "$bin"
}

stop_one() { # name
  local f="$run/$1.pid" pid bin
  if ours "$1"; then
    read -r pid bin <"$f"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

components=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)

down() {
  for c in "${components[@]}"; do stop_one "$c"; done
  rm -rf "$run" "$data" "$pki" "$kubeconfig" "$dir/kwok.yaml" "$dir/node.yaml" "$dir/audit-policy.yaml" "$logs/audit.log"
  log "stopped"
}

healthy() {
  [[ -f $kubeconfig ]] || return 1
  for c in "${components[@]}"; do ours "$c" || return 1; done
  "$dir/bin/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1
}

start() { # name binary args...
  local name=$1 bin=$2
  shift 2
  setsid "$bin" "$@" >"$logs/$name.log" 2>&1 </dev/null &
  echo "$! $bin" >"$run/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "timed out after ${secs}s waiting for $what; last lines of its log:"
      tail -n 30 "$logs/$what.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

free_ports() { # count
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

make_pki() {
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=backfill-test-ca" 2>/dev/null
    sign() { # name subject extensions
      openssl req -new -nodes -newkey rsa:2048 -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
        -days 3650 -extfile "$1.ext" 2>/dev/null
    }
    sign apiserver "/CN=kube-apiserver" \
      "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
    sign admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

up() {
  if healthy; then
    log "already up ($kubeconfig)"
    return 0
  fi
  down >/dev/null 2>&1 || true

  local bin
  bin=$("$root/hack/build-tools.sh" | tail -n1)
  mkdir -p "$dir/bin" "$run" "$data" "$logs"
  for b in "$bin"/*; do ln -sfn "$b" "$dir/bin/$(basename "$b")"; done

  local etcd_port peer_port api_port kcm_port sched_port kwok_port
  read -r etcd_port peer_port api_port kcm_port sched_port kwok_port < <(free_ports 6)
  echo "$api_port" >"$run/apiserver.port"
  make_pki

  log "starting etcd on 127.0.0.1:$etcd_port"
  start etcd "$bin/etcd" --name test --data-dir "$data/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn \
    --quota-backend-bytes 8589934592
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

  # AUDIT_LOG=1 (make bench): an audit log of the requests on the kinds
  # the benchmarks compare, with each one's user agent, so the operator's
  # requests are told from the CronJob controller's.
  local audit=()
  if [[ -n ${AUDIT_LOG:-} ]]; then
    cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources:
  - group: batch
    resources: [jobs, jobs/status, cronjobs, cronjobs/status]
  - group: backfill.dev
  - group: coordination.k8s.io
    resources: [leases]
  - group: ""
    resources: [events]
  - group: events.k8s.io
- level: None
EOF
    audit=(--audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$logs/audit.log"
      --audit-log-format json --audit-log-maxbackup 1 --audit-log-maxsize 2000)
  fi
  echo "$kcm_port" >"$run/kcm.port"

  log "starting kube-apiserver on 127.0.0.1:$api_port"
  start kube-apiserver "$bin/kube-apiserver" "${audit[@]}" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --allow-privileged=true \
    --disable-admission-plugins ServiceAccount,TaintNodesByCondition \
    --max-requests-inflight 1000 --max-mutating-requests-inflight 500 \
    --event-ttl 1h

  cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: backfill-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: backfill-test
  context: {cluster: backfill-test, user: admin}
current-context: backfill-test
EOF
  local k=("$dir/bin/kubectl" --kubeconfig "$kubeconfig")
  wait_for kube-apiserver 120 "${k[@]}" get --raw /readyz

  log "starting kube-controller-manager and kube-scheduler"
  start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$kubeconfig" \
    --controllers job-controller,garbage-collector-controller,namespace-controller,ttl-after-finished-controller,cronjob-controller,deployment-controller,replicaset-controller \
    --leader-elect=false --use-service-account-credentials=false \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --kube-api-qps 500 --kube-api-burst 1000 --concurrent-job-syncs 20 --concurrent-gc-syncs 20
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$sched_port" \
    --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --kube-api-qps 500 --kube-api-burst 1000

  log "starting kwok"
  local kwok_mod
  # The Stage CRD ships in kwok's module, which build-tools.sh downloaded.
  kwok_mod=$(cd / && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  "${k[@]}" apply --server-side -f "$kwok_mod/kustomize/crd/bases/kwok.x-k8s.io_stages.yaml" >/dev/null
  wait_for kube-apiserver 60 "${k[@]}" get stages.kwok.x-k8s.io
  "${k[@]}" apply --server-side -f "$root/hack/kwok/stages.yaml" >/dev/null
  cat >"$dir/kwok.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  enableCRDs: [Stage]
  manageNodesWithLabelSelector: type=kwok
  serverAddress: 127.0.0.1:$kwok_port
  nodeIP: 10.0.1.1
  cidr: 10.0.2.0/16
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 2
EOF
  start kwok "$bin/kwok" --kubeconfig "$kubeconfig" --config "$dir/kwok.yaml"
  "${k[@]}" apply --server-side -f "$root/hack/kwok/node.yaml" >/dev/null
  wait_for kwok 120 "${k[@]}" wait --for=condition=Ready node/kwok-node-0 --timeout=2s
  log "up: export KUBECONFIG=$kubeconfig PATH=$dir/bin:\$PATH"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) healthy ;;
  *) die "usage: $0 up|down|status" ;;
esac
