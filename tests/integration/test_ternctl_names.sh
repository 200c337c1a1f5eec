#!/usr/bin/env bash
# test_ternctl_names.sh: user names cannot spoof an admin's terminal. Names with control
# characters are refused by ternctl (user add, cred) and by the admin API (400 naming the
# reason); a name already in the database with an ANSI escape and a newline (put there with
# sqlite3) prints escaped in `ternctl user list`, from the database and through --url, so it
# adds no row. A JSON body with an unknown field (a typo such as max_allocation) is answered
# 400 naming the field on every endpoint that takes a body.
. "$(dirname "$0")/lib.sh"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"
CTL="$TERN_BUILD_DIR/ops/ternctl"
command -v curl >/dev/null || { fail "curl missing (Debian package curl)"; finish; }
command -v sqlite3 >/dev/null || { fail "sqlite3 missing (Debian package sqlite3)"; finish; }

DB="$WORK/tern.db"
TOKEN=names-test-token
ESC=$'\e'
EVIL="mallory${ESC}[31m"$'\n'"root      yes"

printf 'pw-for-alice\n' | "$CTL" --db "$DB" --realm names.test user add alice --password-stdin >/dev/null ||
    { fail "ternctl user add alice"; finish; }
printf 'names-secret-0123456789\n' | "$CTL" --db "$DB" secret add --secret-stdin >/dev/null ||
    { fail "ternctl secret add"; finish; }

# ternctl refuses a control character in a new name, with a message saying so.
if printf 'pw\n' | "$CTL" --db "$DB" --realm names.test user add "$EVIL" --password-stdin >"$WORK/out" 2>&1; then
    fail "ternctl user add accepted a name with an escape and a newline"
else
    grep -q "control character" "$WORK/out" && pass "ternctl user add refuses a control character" ||
        fail "ternctl user add: no clear message: $(cat "$WORK/out")"
fi
if "$CTL" --db "$DB" cred --user "a${ESC}b" --ttl 60 >"$WORK/out" 2>&1; then
    fail "ternctl cred accepted a user with an escape"
else
    grep -q "control character" "$WORK/out" && pass "ternctl cred refuses a control character" ||
        fail "ternctl cred: no clear message: $(cat "$WORK/out")"
fi

# The name put in directly, as an older release or another tool could have.
sqlite3 "$DB" "INSERT OR REPLACE INTO users (realm, name, key_md5, key_sha256, userhash, created)
    VALUES ('names.test', CAST(X'$(printf '%s' "$EVIL" | od -An -tx1 | tr -d ' \n')' AS TEXT),
    zeroblob(16), zeroblob(32), zeroblob(32), 0);" || { fail "sqlite3 insert"; finish; }

# check_list DESCRIPTION ARGS...: user list prints 3 lines (header, alice, the escaped name),
# no ESC byte, and the escape spelled out.
check_list() {
    local what=$1; shift
    "$CTL" "$@" user list >"$WORK/list" 2>&1 || { fail "$what: user list failed: $(cat "$WORK/list")"; return; }
    if [ "$(wc -l <"$WORK/list")" = 3 ] && ! grep -q "$ESC" "$WORK/list" &&
        grep -qF 'mallory\x1B[31m\nroot      yes' "$WORK/list"; then
        pass "$what: the name prints escaped, no spoofed row"
    else
        fail "$what: the name is not escaped:"; cat -A "$WORK/list" | sed 's/^/    /' >&2
    fi
}
check_list "user list from the database" --db "$DB" --realm names.test

cat >"$WORK/tern.yaml" <<YAML
server: { realm: names.test, workers: 1 }
listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]
relay: { addresses: [127.0.0.1], ports: { min: 40000, max: 44999 } }
auth: { database: $DB }
ops: { listen: "127.0.0.1:0", token: $TOKEN }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
API="http://127.0.0.1:$OPS"
printf '%s\n' "$TOKEN" >"$WORK/token"
check_list "user list through --url" --url "$API" --token-file "$WORK/token"

# expect_400 DESCRIPTION METHOD PATH BODY REGEX: a 400 whose error matches REGEX.
expect_400() {
    local what=$1 method=$2 path=$3 body=$4 re=$5 code
    code=$(curl -s -o "$WORK/body" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' --data-binary "$body" "$API$path")
    if [ "$code" = 400 ] && grep -Eq -- "$re" "$WORK/body"; then pass "$what (400)"; else
        fail "$what: $code $(cat "$WORK/body") (wanted 400 /$re/)"
    fi
}
expect_400 "POST users: a name with a newline" POST /api/v1/users '{"name":"bob\nroot","password":"pw-1"}' 'control character'
expect_400 "POST users: a name with an escape" POST /api/v1/users '{"name":"bob\u001b[2J","password":"pw-1"}' 'control character'
expect_400 "POST users: a name with a C1 control" POST /api/v1/users '{"name":"bob\u009b2J","password":"pw-1"}' 'control character'
expect_400 "POST credentials: a user with an escape" POST /api/v1/credentials '{"user":"x\u001by","ttl":600}' 'control character'
expect_400 "POST users: unknown field max_allocation" POST /api/v1/users '{"name":"carol","password":"pw-2","max_allocation":3}' 'unknown field \\"max_allocation\\"'
expect_400 "PUT user: unknown field disable" PUT /api/v1/users/alice '{"disable":true}' 'unknown field \\"disable\\"'
expect_400 "POST credentials: unknown field tll" POST /api/v1/credentials '{"user":"dave","tll":600}' 'unknown field \\"tll\\"'
expect_400 "POST secrets: unknown field secrt" POST /api/v1/secrets '{"secrt":"abcdefghijklmnop"}' 'unknown field \\"secrt\\"'
code=$(curl -s -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$API/api/v1/users")
grep -q carol "$WORK/body" && fail "the body with a typo still created carol" || pass "nothing created by the refused bodies"
stop_ternd
finish
