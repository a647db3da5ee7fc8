#!/usr/bin/env bash
# Install the crawler into ./.venv on Debian/Ubuntu. With --test, also what the test suite needs:
# redis-server, chromium (Playwright drives the system browser), docker-compose and promtool (Debian's
# `prometheus` package: the tests check configs/prometheus.yml with it) and the test extras.
# Python packages come from the lock files (scripts/lock.sh writes them), at the exact versions and
# hashes the tests passed with; the project itself is then installed on top without dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "Python 3.11 or newer is needed (found $(python3 --version 2>&1))" >&2; exit 1; }

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=("python3-venv")
if [ "$with_tests" = 1 ]; then
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Two calls because pip's hash-checking mode (on for a lock with hashes) cannot check a local project.
if [ "$with_tests" = 1 ]; then
  .venv/bin/python -m pip install -q -r requirements-test.lock
  .venv/bin/python -m pip install -q --no-deps -e .
else
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps .
fi
