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
echo "setup: ready (.venv, node_modules)"
