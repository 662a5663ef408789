#!/usr/bin/env bash
# Builds the real Kubernetes components the tests run against, from Go
# modules pinned in hack/tools/go.mod, into a cache outside the work tree.
# Only the first build is slow; later runs find the binaries and exit.
#
# Prints the directory holding the binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
source "$here/versions.sh"

key=$(cat "$here/tools/go.mod" "$here/tools/go.sum" "$here/versions.sh" | sha256sum | cut -c1-12)
cache=${BACKFILL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backfill-operator}
bin="$cache/k8s-$KUBE_VERSION-$key/bin"
mkdir -p "$bin"

want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)
missing=()
for b in "${want[@]}"; do
  [[ -x "$bin/$b" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$bin"
  exit 0
fi

echo "building ${missing[*]} into $bin (first build takes a while)" >&2
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build_k8s() { # name package
  (cd "$here/tools" && go build -trimpath -ldflags "$ldflags" -o "$bin/$1.tmp" "$2") && mv "$bin/$1.tmp" "$bin/$1"
}
install_tool() { # name module@version path
  local gobin
  gobin=$(mktemp -d)
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w $3" "$2"
  mv "$gobin/$1" "$bin/$1"
  rmdir "$gobin"
}

for b in "${missing[@]}"; do
  start=$SECONDS
  case "$b" in
    etcd) build_k8s etcd ./cmd/etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl)
      build_k8s "$b" "k8s.io/kubernetes/cmd/$b" ;;
    kwok) install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
      "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" ;;
    helm) install_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
      "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
  esac
  echo "built $b in $((SECONDS - start))s" >&2
done
echo "$bin"
