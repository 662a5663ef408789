#!/usr/bin/env bash
# Installs schemathesis (PyPI, pinned) into a virtualenv in the tools
# cache, outside the work tree, if it is not there yet. Prints the path of
# its `schemathesis` command on its last line. The public API's
# property-based test (tests/public_api.rs) runs it; it fails, never skips,
# when this cannot install it.
set -euo pipefail

version=${SCHEMATHESIS_VERSION:-4.32.5}
cache=${BACKFILL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backfill-operator}
venv="$cache/schemathesis-$version"
bin="$venv/bin/schemathesis"
if [[ -x $bin ]] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
command -v python3 >/dev/null || { echo "python3 is required to install schemathesis" >&2; exit 1; }
echo "installing schemathesis $version into $venv" >&2
# A half-made venv (an install cut short) is made again.
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
"$bin" --version >&2
echo "$bin"
