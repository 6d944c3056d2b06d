#!/usr/bin/env bash
# Runs ferrule's whole test suite: formatting, lints, unit and integration tests.
# Installs the server binaries the integration tests start (redis-server, memcached, nutcracker) when missing,
# redis-py (Debian's python3-redis for tests/refusals.rs, and redis-py 8 in target/pyenv for the RESP3 and workload
# tests, its asyncio client included), the `memcache` meta client (target/pyenv), node and npm for ioredis
# (target/node_modules), redis-cli (redis-tools, tests/redis_cli.rs), the tools some tests call (prlimit, ss), and the
# C++ compiler the fuzz targets' libFuzzer is built with. FUZZ_SECONDS (default 5) is how long each fuzz target
# runs; 0 only replays the seeds (scripts/fuzz.sh and docs/fuzzing.md have the longer runs).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v memcached >/dev/null || need+=(memcached)
command -v nutcracker >/dev/null || [ -x /usr/sbin/nutcracker ] || need+=(nutcracker)
# The tests look for redis-py in FERRULE_TEST_PYTHON, python3, then /usr/bin/python3 (where apt installs it).
has_redis_py() {
    for py in ${FERRULE_TEST_PYTHON:-} python3 /usr/bin/python3; do
        "$py" -c 'import redis' 2>/dev/null && return 0
    done
    return 1
}
has_redis_py || need+=(python3-redis)
# target/pyenv below: python3 -m venv needs ensurepip, which Debian ships in python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# tests/connections.rs, tests/descriptors.rs and tests/startup.rs run ferrule under prlimit; connections.rs reads
# socket timers with ss.
command -v prlimit >/dev/null || need+=(util-linux)
command -v ss >/dev/null || need+=(iproute2)
command -v c++ >/dev/null || need+=(g++)
# tests/refusals.rs runs libmemcached's memcping/memcstat; tests/deploy.rs runs systemd-analyze verify.
command -v memcping >/dev/null || need+=(libmemcached-tools)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
export PATH="$PATH:/usr/sbin"

# redis-py for tests/redis_py.rs, in a virtualenv of its own under target/ (nothing installed system-wide).
if ! target/pyenv/bin/python -c "import redis" 2>/dev/null; then
    echo "test.sh: installing redis-py into target/pyenv"
    if ! { python3 -m venv target/pyenv && target/pyenv/bin/pip install -q redis; }; then
        echo "test.sh: could not install redis-py. It needs python3 with venv and pip (Debian: apt-get install" \
            "python3-venv python3-pip), then: python3 -m venv target/pyenv && target/pyenv/bin/pip install redis" >&2
        exit 1
    fi
fi

# The `memcache` client (meta commands only) for tests/meta_client.rs, pinned, in the same virtualenv. Checked by
# MetaCommand: Debian's python3-memcache is another client with the same module name.
MEMCACHE_PY_VERSION=0.14.0
if ! target/pyenv/bin/python -c "from memcache import MetaCommand; import importlib.metadata as m; \
        assert m.version('memcache') == '$MEMCACHE_PY_VERSION'" 2>/dev/null; then
    echo "test.sh: installing memcache==$MEMCACHE_PY_VERSION into target/pyenv"
    if ! { [ -x target/pyenv/bin/python ] || python3 -m venv target/pyenv; } \
        || ! target/pyenv/bin/python -m pip install -q "memcache==$MEMCACHE_PY_VERSION"; then
        echo "test.sh: could not install the memcache client. It needs python3 with venv and pip (Debian: apt-get" \
            "install python3-venv python3-pip), then: python3 -m venv target/pyenv &&" \
            "target/pyenv/bin/python -m pip install memcache==$MEMCACHE_PY_VERSION" >&2
        exit 1
    fi
fi

# ioredis for tests/node_client.rs, pinned, into target/node_modules (nothing installed globally).
IOREDIS_VERSION=5.9.3
if ! [ -f target/node_modules/ioredis/package.json ] \
    || ! grep -q "\"version\": \"$IOREDIS_VERSION\"" target/node_modules/ioredis/package.json; then
    echo "test.sh: installing ioredis@$IOREDIS_VERSION into target/node_modules"
    if ! { command -v node >/dev/null && npm install --no-audit --no-fund --no-save --prefix target \
        "ioredis@$IOREDIS_VERSION" >/dev/null; }; then
        echo "test.sh: could not install ioredis. It needs node 18+ and npm (Debian: apt-get install nodejs npm)," \
            "then: npm install --no-save --prefix target ioredis@$IOREDIS_VERSION" >&2
        exit 1
    fi
fi

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
echo "== fuzz (${FUZZ_SECONDS:-5}s per target)"
scripts/fuzz.sh all "${FUZZ_SECONDS:-5}"
echo "test.sh: all passed in $((SECONDS / 60)) min $((SECONDS % 60)) s"
