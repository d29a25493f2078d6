#!/usr/bin/env bash
# A throwaway PostgreSQL server for the shared-study tests, from Debian's packages:
#   eval "$(scripts/postgres_server.sh start)"     # sets DLLAB_PG_DIR and DLLAB_PG_URL
#   scripts/postgres_server.sh stop "$DLLAB_PG_DIR"
# It listens on 127.0.0.1 only, on a free port, with its socket and data in a temporary dir,
# trusts every local connection and does not sync to disk: for tests, never for real studies.
# As root (CI) the server runs as the postgres user, since PostgreSQL refuses to run as root.
set -euo pipefail

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PG_USER=dllab
PG_DB=dllab

as_server_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        echo "postgres_server.sh: no PostgreSQL server installed (apt-get install postgresql)" >&2
        exit 3
    fi
    local dir port
    # as root: in /tmp, since the postgres user may not reach $TMPDIR (e.g. one under /root)
    if [ "$(id -u)" = 0 ]; then dir=$(mktemp -d /tmp/dllab-pg.XXXXXX); else dir=$(mktemp -d "${TMPDIR:-/tmp}/dllab-pg.XXXXXX"); fi
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    as_server_user "$PG_BIN/initdb" --pgdata="$dir/data" --username="$PG_USER" --auth=trust \
        --encoding=UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1; }
    for _ in 1 2 3 4 5; do  # a free port, taken by someone else between the check and the start: retry
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        if as_server_user "$PG_BIN/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            start >/dev/null; then
            as_server_user "$PG_BIN/createdb" --host=127.0.0.1 --port="$port" --username="$PG_USER" "$PG_DB"
            echo "export DLLAB_PG_DIR=$dir; export DLLAB_PG_URL=postgresql://$PG_USER@127.0.0.1:$port/$PG_DB"
            return 0
        fi
    done
    cat "$dir/server.log" >&2
    stop "$dir"
    exit 1
}

stop() {
    local dir=${1:?usage: postgres_server.sh stop <DLLAB_PG_DIR>} pid=""
    [ -d "$dir/data" ] || { echo "postgres_server.sh: $dir is not a server's dir" >&2; exit 1; }
    [ -f "$dir/data/postmaster.pid" ] && pid=$(head -n 1 "$dir/data/postmaster.pid")
    # only the server of this dir: its command line names the dir
    if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/data"; then
        kill -INT "$pid"  # fast shutdown: ends the sessions still open, then the server
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
*) echo "usage: $0 start | stop <DLLAB_PG_DIR>" >&2; exit 2 ;;
esac
