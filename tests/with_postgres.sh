#!/usr/bin/env bash
# Usage: tests/with_postgres.sh CMD [ARGS...]
#
# Runs CMD with a throwaway PostgreSQL server and STEERSEARCH_TEST_POSTGRES set to
#   postgresql://steersearch:<random password>@127.0.0.1:<free port>/steersearch_test
# The server is a fresh Debian cluster (pg_createcluster, run as the `postgres` OS user) listening on
# 127.0.0.1 only, with password (scram-sha-256) auth over TCP; it is stopped and dropped when this
# script exits, also when CMD fails or is interrupted. Exits with CMD's status.
#
# Needs root (to install PostgreSQL if missing and to create clusters). Where that cannot be done it says
# so in one line and runs CMD without the variable: tests marked `postgres` then skip (they fail under CI=true).
# If STEERSEARCH_TEST_POSTGRES is already set, CMD runs against that server and nothing is started.
set -euo pipefail

say() { echo "with_postgres: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

if [[ -n "${STEERSEARCH_TEST_POSTGRES:-}" ]]; then
    exec "$@"
fi

# --- PostgreSQL installed? ------------------------------------------------------------------------------
if [[ $(id -u) -ne 0 ]]; then
    say "not root, cannot create a PostgreSQL cluster; the postgres tests will be skipped"
    exec "$@"
fi
if ! command -v pg_createcluster >/dev/null 2>&1; then
    say "installing PostgreSQL (apt-get install postgresql)"
    t0=$(now)
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 postgresql \
            >/dev/null 2>&1; then
        say "installed PostgreSQL in $(since "$t0")s"
    else
        say "could not install PostgreSQL; the postgres tests will be skipped"
        exec "$@"
    fi
fi
PG_VERSION=${PG_VERSION:-15}
if [[ ! -x /usr/lib/postgresql/$PG_VERSION/bin/postgres ]]; then
    # Another Debian release ships another major version: use the newest one installed.
    PG_VERSION=$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/postgres' 2>/dev/null |
        awk -F/ '{ print $5 }' | sort -n | tail -n 1)
    if [[ -z "$PG_VERSION" ]]; then
        say "no PostgreSQL server binaries under /usr/lib/postgresql; the postgres tests will be skipped"
        exec "$@"
    fi
fi

# Stops and removes cluster VERSION NAME and whatever part of it exists (also one half created when interrupted).
drop_cluster() {
    pg_ctlcluster "$1" "$2" stop -m immediate >/dev/null 2>&1 || true
    pg_dropcluster "$1" "$2" >/dev/null 2>&1 || true
    rm -rf "/etc/postgresql/$1/$2" "/var/lib/postgresql/$1/$2" "/var/log/postgresql/postgresql-$1-$2.log"
}

# --- Stale clusters of runs that were killed (SIGKILL leaves no chance to clean up) ----------------------
# A cluster is named steersearch_<pid of its script>_<random>; it is stale once that process is gone (or a zombie).
alive() { [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
for dir in /etc/postgresql/*/steersearch_* /var/lib/postgresql/*/steersearch_*; do
    [[ -d "$dir" ]] || continue
    name=${dir##*/}
    ver=${dir%/*}
    ver=${ver##*/}
    [[ "$name" =~ ^steersearch_([0-9]+)_[0-9]+$ ]] || continue
    if [[ -d "$dir" ]] && ! alive "${BASH_REMATCH[1]}"; then
        drop_cluster "$ver" "$name"
        say "dropped stale cluster $ver/$name"
    fi
done

# --- The throwaway cluster ------------------------------------------------------------------------------
CLUSTER="steersearch_$$_${RANDOM}"
CREATED=0
SETUP_LOG=$(mktemp)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ $CREATED -eq 1 ]]; then
        local t
        t=$(now)
        drop_cluster "$PG_VERSION" "$CLUSTER"
        say "stopped and dropped $PG_VERSION/$CLUSTER in $(since "$t")s"
    fi
    rm -f "$SETUP_LOG"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_port() {
    if command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
            2>/dev/null; then
        return
    fi
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

t0=$(now)
PORT=""
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    CREATED=1 # from here on, cleanup removes whatever part of the cluster exists
    if pg_createcluster "$PG_VERSION" "$CLUSTER" --port "$port" --start-conf manual \
        -o ssl=off -o fsync=off -o synchronous_commit=off -o full_page_writes=off \
        -- --auth-local=peer --auth-host=scram-sha-256 --no-sync >>"$SETUP_LOG" 2>&1; then
        # TCP on loopback only; the last setting in the file wins. (Not through -o: pg_createcluster writes
        # 127.0.0.1 unquoted, a syntax error. Not in conf.d: pg_dropcluster would leave that file behind.)
        echo "listen_addresses = '127.0.0.1'" >>"/etc/postgresql/$PG_VERSION/$CLUSTER/postgresql.conf"
        if pg_ctlcluster "$PG_VERSION" "$CLUSTER" start >>"$SETUP_LOG" 2>&1; then
            PORT=$port
            break
        fi
        # Most likely another process took the port between picking and binding: try another one.
        cat "/var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log" >>"$SETUP_LOG" 2>/dev/null || true
    fi
    drop_cluster "$PG_VERSION" "$CLUSTER"
    CREATED=0
    echo "--- attempt $attempt on port $port failed" >>"$SETUP_LOG"
done
if [[ -z "$PORT" ]]; then
    say "could not start a PostgreSQL $PG_VERSION cluster; setup log:"
    tail -n 40 "$SETUP_LOG" >&2
    exit 1
fi

for _ in $(seq 1 300); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.1
done
if ! pg_isready -q -h 127.0.0.1 -p "$PORT"; then
    say "cluster $CLUSTER on 127.0.0.1:$PORT does not accept connections after 30 s"
    tail -n 20 "/var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log" >&2 || true
    exit 1
fi

PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Setup as the postgres superuser over the Unix socket (peer auth); the password goes through stdin, not argv.
if ! runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres >>"$SETUP_LOG" 2>&1 <<SQL; then
CREATE ROLE steersearch WITH LOGIN PASSWORD '$PASSWORD';
CREATE DATABASE steersearch_test OWNER steersearch;
SQL
    say "could not create the role and database; setup log:"
    tail -n 20 "$SETUP_LOG" >&2
    exit 1
fi

export STEERSEARCH_TEST_POSTGRES="postgresql://steersearch:$PASSWORD@127.0.0.1:$PORT/steersearch_test"
if ! PGPASSWORD=$PASSWORD psql -X -q -At -h 127.0.0.1 -p "$PORT" -U steersearch -d steersearch_test -c 'select 1' \
    >/dev/null 2>>"$SETUP_LOG"; then
    say "cannot log in as steersearch over TCP; setup log:"
    tail -n 20 "$SETUP_LOG" >&2
    exit 1
fi
say "PostgreSQL $PG_VERSION cluster $CLUSTER on 127.0.0.1:$PORT, database steersearch_test, user steersearch" \
    "(STEERSEARCH_TEST_POSTGRES; ready in $(since "$t0")s)"

set +e
"$@"
status=$?
set -e
exit "$status"
