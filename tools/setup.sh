#!/usr/bin/env bash
# Set up everything on a fresh machine, idempotently: a virtualenv with the pinned Python
# packages (requirements.txt, torch==2.13.0 CPU) and the pinned npm toolchain (package.json pins
# exact versions; package-lock.json records them for every platform, and `npm ci` installs from it
# without rewriting it: solc-js, OpenZeppelin Contracts, Solady, anvil, cast). Re-running it is
# fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi

py_stamp=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-64)
if [ "$(cat .venv/.fl-setup 2>/dev/null || true)" != "$py_stamp" ]; then
    echo "setup: installing Python packages (pinned in requirements.txt)"
    .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt 2>&1 \
        | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . 2>&1 \
        | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, web3, eth_tester, solcx, fl_client" \
        || { echo "setup: the Python environment is incomplete" >&2; exit 1; }
    echo "$py_stamp" > .venv/.fl-setup
fi

npm_stamp=$(sha256sum package-lock.json | cut -c1-64)
if [ "$(cat node_modules/.fl-setup 2>/dev/null || true)" != "$npm_stamp" ]; then
    echo "setup: installing the npm toolchain (pinned in package-lock.json)"
    # The platform packages carry the anvil and cast binaries; their postinstall scripts are not needed.
    # `npm ci` installs exactly the lock and never rewrites it (a fresh clone stays clean).
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
    node_modules/.bin/anvil --version >/dev/null \
        || { echo "setup: anvil did not install" >&2; exit 1; }
    echo "$npm_stamp" > node_modules/.fl-setup
fi
# Debian's Chromium for the dashboard's browser tests (tests/test_dashboard.py): Playwright drives
# it headless and never downloads a browser of its own. Skipped when /usr/bin/chromium exists; the
# package lists are refreshed only when apt does not know the package or the install fails.
if [ ! -x /usr/bin/chromium ]; then
    echo "setup: installing Debian's chromium (headless browser for the dashboard tests)"
    as_root=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null \
            || { echo "setup: chromium is missing; install it as root: apt-get install chromium" >&2; exit 1; }
        as_root=(sudo)
    fi
    apt_install() {
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends chromium >/dev/null
    }
    if ! apt-cache policy chromium 2>/dev/null | grep -q "Candidate: [0-9]"; then
        "${as_root[@]}" apt-get update -q >/dev/null
    fi
    apt_install || { "${as_root[@]}" apt-get update -q >/dev/null && apt_install; }
    [ -x /usr/bin/chromium ] || { echo "setup: chromium did not install" >&2; exit 1; }
fi
echo "setup: ready (.venv, node_modules, chromium)"
