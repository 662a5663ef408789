#!/usr/bin/env bash
# make demo: the operator at work on the local control plane. Starts the
# control plane, installs the CRDs, applies the example minutely Schedule
# in namespace `demo`, and runs the operator in the foreground (Ctrl-C
# stops it; `make cluster-down` stops the control plane).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash hack/cluster.sh up
export KUBECONFIG="$root/.cluster/kubeconfig" PATH="$root/.cluster/bin:$PATH"

cargo build --quiet --bin backfill-operator
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/schedules.backfill.dev crd/backfills.backfill.dev --timeout=60s >/dev/null
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n demo -f examples/schedule-minutely.yaml

cat <<MSG

The operator runs below; a Job starts at every minute boundary. In another terminal:

  export KUBECONFIG=$KUBECONFIG PATH=$root/.cluster/bin:\$PATH
  kubectl get jobs -n demo -w
  kubectl get sched -n demo
  kubectl describe sched -n demo minutely

Ctrl-C stops the operator; make cluster-down stops the control plane.

MSG
exec target/debug/backfill-operator run --namespace demo
