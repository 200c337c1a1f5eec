# pglib.sh: a throw-away PostgreSQL server for a test (sourced after lib.sh). pg_start makes a
# cluster with initdb in the test's work directory, listening only on a Unix socket there
# (no TCP port), with password (SCRAM) authentication for the role tern, creates the database
# tern and sets PG_URI (password in the URI), PG_URI_NOPW and PG_PASSWORD; it is stopped when
# the test exits. Debian's postgresql package provides the server; as root the server runs as
# the postgres user (PostgreSQL refuses to run as root).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_DIR=
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_stop() {
    [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ] &&
        pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
}
pg_start() {
    [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server missing (Debian package postgresql)" >&2; exit 1; }
    PG_DIR=$WORK/pg
    mkdir -p "$PG_DIR"
    chmod 755 "$WORK"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    PG_PASSWORD="pg-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "$PG_PASSWORD" >"$PG_DIR/pw"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR/pw"
    pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U tern --auth=scram-sha-256 --pwfile="$PG_DIR/pw" \
        --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    pg_resume
    PGPASSWORD=$PG_PASSWORD pg_as "$PG_BIN/createdb" -h "$PG_DIR" -U tern tern ||
        { echo "createdb failed" >&2; exit 1; }
    PG_URI_NOPW="postgresql://tern@/tern?host=$PG_DIR"
    PG_URI="postgresql://tern:$PG_PASSWORD@/tern?host=$PG_DIR"
}
# pg_pause / pg_resume: stop and start the same server (a database outage).
pg_pause() { pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null; }
pg_resume() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
        -o "-c listen_addresses='' -k $PG_DIR -c fsync=off" start >/dev/null ||
        { cat "$PG_DIR/server.log" >&2; exit 1; }
}
# pg_sql SQL: run it as the role tern in the database tern; rows unaligned, one per line.
pg_sql() { PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -h "$PG_DIR" -U tern -d tern -XAtqc "$1"; }
CLEANUP_HOOKS+=(pg_stop)
