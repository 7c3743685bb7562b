# Starts a throwaway PostgreSQL cluster on a free loopback port and exports
# DATABASE_URL for it. Source this file, then call start_postgres; the
# cluster is stopped and deleted by stop_postgres (set up as an EXIT trap by
# the caller).

postgres_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as the postgres user when we are root (initdb refuses root).
as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start_postgres() {
    local bin
    bin=$(postgres_bin) || { echo "PostgreSQL's server binaries are not installed" >&2; return 1; }
    BERTH_PG_DIR=$(mktemp -d /tmp/berth-pg.XXXXXX)
    chmod 755 "$BERTH_PG_DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$BERTH_PG_DIR"; fi
    local port
    port=$(free_port)
    as_postgres "$bin/initdb" -D "$BERTH_PG_DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    as_postgres "$bin/pg_ctl" -D "$BERTH_PG_DIR/data" -l "$BERTH_PG_DIR/log" -w -t 60 \
        -o "-p $port -k $BERTH_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=500 -c shared_buffers=256MB" \
        start >/dev/null
    export BERTH_PG_BIN="$bin"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') running at $DATABASE_URL" >&2
}

stop_postgres() {
    if [ -n "${BERTH_PG_DIR:-}" ] && [ -d "$BERTH_PG_DIR/data" ]; then
        as_postgres "$BERTH_PG_BIN/pg_ctl" -D "$BERTH_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$BERTH_PG_DIR"
    fi
}
