#!/usr/bin/env bash
# Install what the test suite needs, then run it. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# The rate-limit tests run a real Redis server (Debian's redis-server).
if ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "scripts/test.sh: redis-server is not installed; the Redis tests will be skipped" >&2
    fi
fi
# The deployment tests (tests/test_deploy.py) run Debian's nginx in front of
# two replicas; nginx-light is enough. Without it they skip with a message.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    else
        echo "scripts/test.sh: nginx is not installed; the deployment tests will be skipped" >&2
    fi
fi
# A packaged redis-server may start as a service; the tests start their own
# on free ports and do not need it. The same goes for nginx.

# The page tests drive Debian's headless Chromium with Playwright for Python
# (never a downloaded browser); without it they skip with a message.
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "scripts/test.sh: chromium is not installed; the page tests will be skipped" >&2
    fi
fi

# The locked set (requirements-test.lock, made by scripts/lock.sh), then the
# package alone: CI tests exactly the versions the lock names.
python3 -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-test.lock
python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
exec python3 -m pytest "$@"
