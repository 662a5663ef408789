#!/usr/bin/env bash
# Builds gitops-health (hack/gitops): Argo CD's and Flux's own health
# checks, which tests/gitops.rs runs against the README's snippets. Built
# into a cache outside the work tree, keyed by the module's go.mod, go.sum
# and sources: only the first build is slow (a few minutes: it compiles
# much of Argo CD), later runs find the binary and exit.
#
# Prints the path of the binary on its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/gitops"

key=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
cache=${BACKFILL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backfill-operator}
bin="$cache/gitops-$key/bin/gitops-health"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

echo "building gitops-health into $(dirname "$bin") (first build takes a few minutes)" >&2
mkdir -p "$(dirname "$bin")"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
start=$SECONDS
# A temporary name, then a rename: a build that is interrupted, or runs
# twice at once, never leaves a broken binary under the final name.
tmp=$(mktemp "$bin.XXXXXX")
trap 'rm -f "$tmp"' EXIT
(cd "$src" && go build -trimpath -ldflags "-s -w" -o "$tmp" .)
mv "$tmp" "$bin"
echo "built gitops-health in $((SECONDS - start))s" >&2
echo "$bin"
