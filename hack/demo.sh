#!/usr/bin/env bash
# make demo: the operator at work on the local control plane. Starts the
# control plane, installs the CRDs, applies in namespace `demo` the example
# minutely Schedule and the example nightly Schedule with its January
# Backfill, and runs the operator in the foreground (Ctrl-C stops it;
# `make cluster-down` stops the control plane).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash hack/cluster.sh up
export KUBECONFIG="$root/.cluster/kubeconfig" PATH="$root/.cluster/bin:$PATH"

cargo build --quiet --bin backfill-operator
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/schedules.backfill.dev crd/backfills.backfill.dev --timeout=60s >/dev/null
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n demo -f examples/schedule-minutely.yaml -f examples/schedule.yaml
# On kwok a pod ends at once; three seconds each lets the Backfill's
# progress be watched.
kubectl patch -n demo schedule nightly-report --type merge \
  -p '{"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"annotations":{"testenv.backfill.dev/run-for":"3s"}}}}}}}' >/dev/null
kubectl apply -n demo -f examples/backfill.yaml

cat <<MSG

The operator runs below. The minutely Schedule starts a Job at every minute
boundary; the Backfill january-2026 runs the 31 January sessions of
nightly-report, 4 at a time. In another terminal:

  export KUBECONFIG=$KUBECONFIG PATH=$root/.cluster/bin:\$PATH
  kubectl get bf -n demo -w
  kubectl get jobs -n demo -l backfill.dev/backfill=january-2026
  kubectl get jobs -n demo -l backfill.dev/schedule=minutely -w
  kubectl get sched -n demo
  kubectl describe bf -n demo january-2026

Ctrl-C stops the operator; make cluster-down stops the control plane.

MSG
exec target/debug/backfill-operator run --namespace demo
