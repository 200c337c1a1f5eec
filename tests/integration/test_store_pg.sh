#!/usr/bin/env bash
# test_store_pg.sh: the credential store's interface tests (tests/unit/test_store_api.c, the
# same cases the unit run makes against SQLite) against a real PostgreSQL server this test
# starts (pglib.sh), with the password in the URI and again kept out of it (PGPASSWORD); then
# on a schema put back to version 1, which the open migrates to 2 (call_quality).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pglib.sh"
API_TEST=$TERN_BUILD_DIR/tests/test_store_api
pg_start
check "store API cases on PostgreSQL (password in the URI)" env TERN_STORE_DB="$PG_URI" "$API_TEST"
grep '^# figure' "$WORK/out" || true # the call record batch rate
grep -q "backend: PostgreSQL (postgresql://tern:\*\*\*@/tern" "$WORK/out" &&
    pass "the URI is shown without its password" || fail "display name: $(head -1 "$WORK/out")"
check "store API cases on PostgreSQL (PGPASSWORD)" env PGPASSWORD="$PG_PASSWORD" TERN_STORE_DB="$PG_URI_NOPW" "$API_TEST"
# A database left at schema version 1 (before call_quality) is brought to 2 at open.
sql() { PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -h "$PG_DIR" -U tern -d tern -XAtqc "$1"; }
sql "DROP TABLE call_quality; UPDATE tern_schema SET version = 1" || fail "setting up a version 1 schema"
check "store API cases on a version 1 schema (migrated to 2 at open)" env TERN_STORE_DB="$PG_URI" "$API_TEST"
[ "$(sql "SELECT version FROM tern_schema")" = 2 ] && [ "$(sql "SELECT count(*) FROM call_quality")" -gt 0 ] &&
    pass "schema version 1 -> 2: call_quality made, version 2" || fail "migration 1 -> 2"
finish
