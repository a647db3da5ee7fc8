#!/usr/bin/env bash
# Regenerate requirements.lock (runtime) and requirements-test.lock (runtime + the `test` extra) from
# pyproject.toml. Run it after changing a dependency or to take upgrades, then run the whole suite
# (tests/test_dependencies.py first: it fails when an upgraded dependency changed an internal we use).
#
# Why uv (`uv pip compile`) rather than pip-tools: pip-tools drives pip through pip's own internals and
# breaks on pip releases, which is the very fragility this lock is meant to remove; uv is one pinned
# binary from a wheel, resolves in seconds, and with --universal writes one lock that holds for every
# platform and Python >= 3.11 (markers where they differ), so the Docker image, CI and laptops share it.
# Installing needs no uv: the files are plain requirements that `pip install -r` reads (scripts/install.sh).
#
# Why hashes (--generate-hashes): pip then refuses any file whose hash is not in the lock, so a
# re-uploaded or tampered release cannot slip in. Hash-checking mode cannot cover an editable or local
# project (there is no single file to hash), which is why install.sh installs the lock first and the
# project itself in a second `pip install --no-deps` call; the lock never names the project.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
uv=$(command -v uv || true)
if [ -z "$uv" ] || [ "$("$uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  tools="${XDG_CACHE_HOME:-$HOME/.cache}/polite-crawler/uv-$UV_VERSION"
  if [ ! -x "$tools/bin/uv" ]; then
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
  fi
  uv="$tools/bin/uv"
fi

common=(--universal --generate-hashes --quiet --custom-compile-command scripts/lock.sh)
# The test lock first; the runtime lock is then constrained by it, so both pin the same versions.
"$uv" pip compile pyproject.toml --extra test "${common[@]}" -o requirements-test.lock
"$uv" pip compile pyproject.toml -c requirements-test.lock "${common[@]}" -o requirements.lock
echo "wrote requirements.lock and requirements-test.lock" >&2
