#!/usr/bin/env bash
# Runs every Sluice test: Rust unit and end-to-end tests (the real binaries against the
# mock provider, over loopback) and the compatibility tests that drive the gateway with
# the official `openai` and `anthropic` Python SDKs.
#
# Works on a fresh Debian/Ubuntu machine with the Rust toolchain and python3: it creates
# .venv/ and installs the pinned SDKs from PyPI (installing python3-venv via apt if the
# system Python lacks venv and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else
    echo "python3 venv support is missing: install python3-venv" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt

# The Rust end-to-end tests build what they start (sluice-tests' own binaries, the gateway
# among them as sluice-gateway-under-test); the Python tests start target/debug's
# sluice-gateway and sluice-mock-provider (or $CARGO_TARGET_DIR's), built here.
cargo test --workspace
cargo build --workspace --bins
.venv/bin/python -m pytest -q tests/python
