#!/usr/bin/env bash
# test_store_pg.sh: the credential store's interface tests (tests/unit/test_store_api.c, the
# same cases the unit run makes against SQLite) against a real PostgreSQL server this test
# starts (pglib.sh), with the password in the URI and again kept out of it (PGPASSWORD).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pglib.sh"
API_TEST=$TERN_BUILD_DIR/tests/test_store_api
pg_start
check "store API cases on PostgreSQL (password in the URI)" env TERN_STORE_DB="$PG_URI" "$API_TEST"
grep '^# figure' "$WORK/out" || true # the call record batch rate
grep -q "backend: PostgreSQL (postgresql://tern:\*\*\*@/tern" "$WORK/out" &&
    pass "the URI is shown without its password" || fail "display name: $(head -1 "$WORK/out")"
check "store API cases on PostgreSQL (PGPASSWORD)" env PGPASSWORD="$PG_PASSWORD" TERN_STORE_DB="$PG_URI_NOPW" "$API_TEST"
finish
