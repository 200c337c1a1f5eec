#!/usr/bin/env bash
# test_store_pg.sh: the credential store's interface tests (tests/unit/test_store_api.c, the
# same cases the unit run makes against SQLite) against a real PostgreSQL server this test
# starts (pglib.sh), with the password in the URI and again kept out of it (PGPASSWORD); then
# on a schema put back to version 1, which the open migrates to 3 (call_quality; the node
# registry, the nonce keys and tern_schema.compat).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pglib.sh"
API_TEST=$TERN_BUILD_DIR/tests/test_store_api
pg_start
check "store API cases on PostgreSQL (password in the URI)" env TERN_STORE_DB="$PG_URI" "$API_TEST"
grep '^# figure' "$WORK/out" || true # the call record batch rate
grep -q "backend: PostgreSQL (postgresql://tern:\*\*\*@/tern" "$WORK/out" &&
    pass "the URI is shown without its password" || fail "display name: $(head -1 "$WORK/out")"
check "store API cases on PostgreSQL (PGPASSWORD)" env PGPASSWORD="$PG_PASSWORD" TERN_STORE_DB="$PG_URI_NOPW" "$API_TEST"
# A database left at schema version 1 (before call_quality) is brought to 3 at open.
pg_sql "DROP TABLE call_quality, tern_nodes, tern_nonce_keys; ALTER TABLE tern_schema DROP COLUMN compat; UPDATE tern_schema SET version = 1" ||
    fail "setting up a version 1 schema"
check "store API cases on a version 1 schema (migrated to 3 at open)" env TERN_STORE_DB="$PG_URI" "$API_TEST"
[ "$(pg_sql "SELECT version, compat FROM tern_schema")" = "3|3" ] &&
    [ "$(pg_sql "SELECT count(*) FROM call_quality")" -gt 0 ] && [ "$(pg_sql "SELECT count(*) FROM tern_nonce_keys")" -gt 0 ] &&
    pass "schema version 1 -> 3: call_quality and the registry tables made, version 3, compat 3" ||
    fail "migration 1 -> 3: $(pg_sql "SELECT version, compat FROM tern_schema")"
finish
