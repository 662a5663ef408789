#!/usr/bin/env bash
# Builds the operator's container image without a container engine: the
# release binary, linked statically against glibc so it needs no shared
# library, alone in one layer, run as 65532:65532. Written as an OCI image
# layout tarball by hack/oci-archive.py.
#
#   hack/image.sh          the image, <target dir>/image/backfill-operator-<version>.tar
#   hack/image.sh binary   only the static binary (the Dockerfile's build stage)
#
# IMAGE_REPOSITORY names the image (default ghcr.io/backfill-dev/backfill-operator;
# the tag is the crate's version). SOURCE_DATE_EPOCH sets its creation
# time, by default the time of the commit checked out.
#
# Prints the path of the archive (or binary) on its last line.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$root/target}
repository=${IMAGE_REPOSITORY:-ghcr.io/backfill-dev/backfill-operator}

host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  x86_64-unknown-linux-gnu) arch=amd64 ;;
  aarch64-unknown-linux-gnu) arch=arm64 ;;
  *) echo "image: no static build for host $host (needs x86_64 or aarch64 Linux with glibc)" >&2; exit 1 ;;
esac

# crt-static needs glibc's libc.a (Debian: libc6-dev). With --target,
# RUSTFLAGS reach only the binary, not build scripts and proc macros, which
# cannot be static.
if [[ ! -e $(cc -print-file-name=libc.a) ]]; then
  echo "image: the C toolchain has no static libc.a (Debian: apt-get install libc6-dev)" >&2
  exit 1
fi
RUSTFLAGS="-C target-feature=+crt-static${RUSTFLAGS:+ $RUSTFLAGS}" \
  CARGO_PROFILE_RELEASE_STRIP=symbols \
  "$cargo" build --release --locked --target "$host" --bin backfill-operator >&2
binary="$target_dir/$host/release/backfill-operator"

if [[ ${1:-} == binary ]]; then
  echo "$binary"
  exit 0
fi

created=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
revision=$(git rev-parse HEAD 2>/dev/null || true)
"$cargo" metadata --no-deps --format-version 1 --locked |
  python3 "$root/hack/oci-archive.py" --binary "$binary" --package backfill-operator \
    --repository "$repository" --arch "$arch" --user 65532:65532 \
    --created "$created" --revision "$revision" --out-dir "$target_dir/image"
