#!/usr/bin/env bash
# Builds the release asset of the kubectl plugin that plugins/backfill.yaml
# (the krew manifest) points at, for this machine's platform:
#
#   <target dir>/krew/kubectl-backfill_v<version>_<os>_<arch>.tar.gz
#
# holding `kubectl-backfill` (linked statically against glibc, so it runs on
# any Linux of its architecture) and README.md. The
# tarball is reproducible for a given binary: sorted entries, owner 0, and
# the time of the last commit that changed what goes into it (the sources,
# Cargo.lock and the README; SOURCE_DATE_EPOCH overrides it), so a
# commit of the manifest alone keeps the tarball, and its sha256, the same.
#
#   hack/krew-archive.sh            build it; print its path and sha256
#   hack/krew-archive.sh --manifest also write that sha256 into
#                                   plugins/backfill.yaml, for its platform
#
# Upload the tarball to the GitHub release v<version>, under its own name.
# Install from it without a release:
#   kubectl krew install --manifest=plugins/backfill.yaml --archive=<tarball>
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$root/target}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  x86_64-unknown-linux-gnu) platform=linux_amd64 ;;
  aarch64-unknown-linux-gnu) platform=linux_arm64 ;;
  *) echo "krew-archive: no static build for host $host (needs x86_64 or aarch64 Linux with glibc)" >&2; exit 1 ;;
esac
if [[ ! -e $(cc -print-file-name=libc.a) ]]; then
  echo "krew-archive: the C toolchain has no static libc.a (Debian: apt-get install libc6-dev)" >&2
  exit 1
fi

RUSTFLAGS="-C target-feature=+crt-static${RUSTFLAGS:+ $RUSTFLAGS}" \
  CARGO_PROFILE_RELEASE_STRIP=symbols \
  "$cargo" build --release --locked --target "$host" --bin kubectl-backfill >&2

name="kubectl-backfill_v${version}_${platform}.tar.gz"
out="$target_dir/krew"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out" "$stage"
cp "$target_dir/$host/release/kubectl-backfill" "$stage/"
cp README.md "$stage/"

epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct -- src Cargo.toml Cargo.lock README.md 2>/dev/null || echo 0)}
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  -C "$stage" -cf - kubectl-backfill README.md | gzip -n -9 >"$out/$name"
sum=$(sha256sum "$out/$name" | cut -d' ' -f1)

if [[ ${1:-} == --manifest ]]; then
  # The sha256 line follows the uri line of this platform's asset.
  python3 - "$root/plugins/backfill.yaml" "$name" "$sum" <<'EOF'
import re, sys
path, name, digest = sys.argv[1:]
text = open(path).read()
pattern = re.compile(r"(uri: \S*/" + re.escape(name) + r"\n\s*sha256: )[0-9a-f]{64}")
new, n = pattern.subn(lambda m: m.group(1) + digest, text)
if n != 1:
    sys.exit(f"krew-archive: no platform with uri .../{name} and a sha256 in {path}")
open(path, "w").write(new)
EOF
  echo "plugins/backfill.yaml: sha256 of $name is $sum" >&2
fi
echo "$sum  $out/$name"
