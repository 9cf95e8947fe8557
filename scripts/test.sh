#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them.
# Used by README.md and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt_get() { apt-get "$@"; }; else apt_get() { sudo apt-get "$@"; }; fi
  apt_get update -qq
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq etcd-server etcd-client >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
python3 -m ruff check petcd tests scripts bench
echo "== mypy --strict"
python3 -m mypy --strict petcd
echo "== import layers (pyproject.toml [tool.importlinter])"
lint-imports
echo "== pytest"
python3 -m pytest "$@"
