#!/usr/bin/env bash
# test_admin_api.sh: the admin HTTP API on ops.listen (curl): healthz, bearer token, REST
# credentials that match an independent HMAC (openssl) and relay with turnutils_uclient, users
# and secrets in the database (created, listed, changed, deleted; a user added through the API
# relays within 5 s), error statuses, no secret in the log, and the API off without a token.
. "$(dirname "$0")/lib.sh"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"
CTL="$TERN_BUILD_DIR/ops/ternctl"
[ -x "$CTL" ] || { fail "ternctl not built ($CTL)"; finish; }
command -v curl >/dev/null || { fail "curl missing (Debian package curl)"; finish; }
command -v python3 >/dev/null || { fail "python3 missing"; finish; }
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }

DB="$WORK/tern.db"
TOKEN='admin-token-Zebra-42'
SECRET='api-rest-secret-0123456789'
PW='Api-created-Pw-77'
cd "$WORK" || exit 1

# api METHOD PATH [BODY [TOKEN]]: one call; prints the status, the body lands in $WORK/body
# and the headers in $WORK/headers. TOKEN "-" sends no Authorization header.
api() {
    local method=$1 path=$2 body=${3-} token=${4-$TOKEN}
    local args=(-s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$method")
    [ "$token" != - ] && args+=(-H "Authorization: Bearer $token")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    curl "${args[@]}" "$BASE$path" || echo 000
}

# expect_status DESCRIPTION STATUS METHOD PATH [BODY [TOKEN]]
expect_status() {
    local what=$1 want=$2; shift 2
    local got
    got=$(api "$@")
    if [ "$got" = "$want" ]; then pass "$what ($got)"; else
        fail "$what: status $got, wanted $want"; sed 's/^/    /' "$WORK/body" >&2; echo >&2
    fi
}

# jq_ok EXPRESSION: a Python expression over j (the parsed $WORK/body) that must be true.
jq_ok() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$WORK/body" "$1" 2>/dev/null
}
# jget KEY: a top-level field of $WORK/body.
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/body" "$1"; }

# hmac SECRET TEXT: base64(HMAC-SHA1(SECRET, TEXT)), computed by openssl, not by us.
hmac() { printf '%s' "$2" | openssl dgst -sha1 -hmac "$1" -binary | base64; }


# start_api CONFIG: start ternd and wait for its ops_listening event; sets BASE and U4.
start_api() {
    start_ternd "$1"
    for _ in $(seq 50); do grep -q '"event":"ops_listening"' "$WORK/ternd.log" && break; sleep 0.1; done
    local port
    port=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | tail -1 | sed -E 's/.*"port":([0-9]+).*/\1/' || true)
    [ -n "$port" ] || { echo "no ops_listening event; log:" >&2; cat "$WORK/ternd.log" >&2; exit 1; }
    BASE="http://127.0.0.1:$port"
    U4=$(port_of udp 127.0.0.1)
}

printf '%s\n' "$SECRET" | "$CTL" --db "$DB" secret add --secret-stdin >/dev/null \
    || { fail "ternctl secret add"; finish; }

start_echo_peer

cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 50000, max: 59999 } }
peers: { allow_loopback: true }
auth: { database: $DB }
ops: { listen: "127.0.0.1:0", token: $TOKEN }
log: { level: info, format: json }
YAML
start_api "$WORK/tern.yaml"


# ---- healthz, token, routing ----
expect_status "GET /healthz without a token" 200 GET /healthz "" -
jq_ok 'j == {"status": "ok", "generation": 1, "database": "up"}' && pass "healthz body" || fail "healthz body: $(cat "$WORK/body")"
grep -qi '^content-type: application/json' "$WORK/headers" && pass "Content-Type application/json" \
    || fail "Content-Type: $(grep -i content-type "$WORK/headers")"
expect_status "credentials without a token" 401 POST /api/v1/credentials '{"user":"alice"}' -
grep -qi '^www-authenticate: Bearer realm="tern"' "$WORK/headers" && pass "401 carries WWW-Authenticate" \
    || fail "401 without WWW-Authenticate: $(cat "$WORK/headers")"
jq_ok 'isinstance(j["error"], str)' && pass "401 body is {\"error\": ...}" || fail "401 body: $(cat "$WORK/body")"
expect_status "credentials with a wrong token" 401 POST /api/v1/credentials '{"user":"alice"}' wrong-token
expect_status "credentials with a token prefix" 401 POST /api/v1/credentials '{"user":"alice"}' "${TOKEN%?}"
expect_status "unknown path" 404 GET /api/v1/nothing
expect_status "unknown path outside /api" 404 GET /nothing
expect_status "the ops page at / (open: it holds no data)" 200 GET /
expect_status "wrong method on /api/v1/credentials" 405 GET /api/v1/credentials
grep -qi '^allow: POST' "$WORK/headers" && pass "405 carries Allow: POST" || fail "405 Allow header: $(cat "$WORK/headers")"
expect_status "wrong method on /healthz" 405 POST /healthz '{}' -

# ---- credentials ----
expect_status "credentials with the token" 200 POST /api/v1/credentials '{"user":"alice","ttl":600}'
jq_ok 'set(j) == {"username","password","ttl","uris"} and j["ttl"] == 600 and isinstance(j["uris"], list)' \
    && pass "credential JSON: username, password, ttl, uris" || fail "credential JSON: $(cat "$WORK/body")"
CU=$(jget username); CP=$(jget password)
now=$(date +%s); exp=${CU%%:*}
[[ "$CU" =~ ^[0-9]+:alice$ ]] && [ "$exp" -ge $((now + 590)) ] && [ "$exp" -le $((now + 610)) ] \
    && pass "username is <now+ttl>:alice ($CU)" || fail "username '$CU'"
[ "$CP" = "$(hmac "$SECRET" "$CU")" ] && pass "password = base64(HMAC-SHA1(secret, username))" \
    || fail "password $CP, openssl says $(hmac "$SECRET" "$CU")"
expect_status "credentials default ttl" 200 POST /api/v1/credentials '{"user":"bob"}'
jq_ok 'j["ttl"] == 86400' && pass "default ttl 86400" || fail "default ttl: $(cat "$WORK/body")"
expect_status "credentials: bad JSON" 400 POST /api/v1/credentials '{"user":'
expect_status "credentials: not an object" 400 POST /api/v1/credentials '["alice"]'
expect_status "credentials: missing user" 400 POST /api/v1/credentials '{"ttl":600}'
jq_ok '"user" in j["error"]' && pass "missing user: the message names it" || fail "message: $(cat "$WORK/body")"
expect_status "credentials: ttl 0" 400 POST /api/v1/credentials '{"user":"alice","ttl":0}'
expect_status "credentials: ttl too long" 400 POST /api/v1/credentials '{"user":"alice","ttl":604801}'
expect_status "credentials: ttl a string" 400 POST /api/v1/credentials '{"user":"alice","ttl":"600"}'
head -c 70000 /dev/zero | tr '\0' ' ' >"$WORK/big.json"
expect_status "credentials: body over 64 KiB" 413 POST /api/v1/credentials "@$WORK/big.json"
within 5 "API-minted REST credential relays ($CU)" relays "$CU" "$CP"

# ---- users ----
expect_status "GET users (empty)" 200 GET /api/v1/users
jq_ok 'j == []' && pass "no users yet" || fail "users: $(cat "$WORK/body")"
expect_status "POST user carol" 201 POST /api/v1/users "{\"name\":\"carol\",\"password\":\"$PW\",\"max_allocations\":5}"
jq_ok 'j == {"name": "carol"}' && pass "201 body names carol" || fail "201 body: $(cat "$WORK/body")"
expect_status "POST carol again" 409 POST /api/v1/users "{\"name\":\"carol\",\"password\":\"$PW\"}"
expect_status "POST user without password" 400 POST /api/v1/users '{"name":"dave"}'
expect_status "POST user with a negative bandwidth" 400 POST /api/v1/users '{"name":"dave","password":"x","bandwidth_bps":-1}'
expect_status "GET users" 200 GET /api/v1/users
jq_ok 'len(j) == 1 and j[0]["name"] == "carol" and j[0]["realm"] == "tern.test" and j[0]["max_allocations"] == 5 and j[0]["bandwidth_bps"] == 0 and j[0]["disabled"] is False and "created" in j[0]' \
    && pass "users list shows carol with her limits" || fail "users list: $(cat "$WORK/body")"
grep -qF -- "$PW" "$WORK/body" && fail "users list shows a password" || pass "users list shows no password"
within 5 "carol (created through the API) relays" relays carol "$PW"
expect_status "PUT carol: disable, bandwidth" 200 PUT /api/v1/users/carol '{"disabled":true,"bandwidth_bps":125000}'
jq_ok 'j["disabled"] is True and j["bandwidth_bps"] == 125000 and j["max_allocations"] == 5' \
    && pass "PUT keeps max_allocations, sets the rest" || fail "PUT body: $(cat "$WORK/body")"
expect_status "PUT carol (percent-encoded name): enable, new password" 200 PUT /api/v1/users/c%61rol \
    "{\"disabled\":false,\"password\":\"$PW-2\"}"
expect_status "PUT: disabled not a boolean" 400 PUT /api/v1/users/carol '{"disabled":"yes"}'
expect_status "PUT missing user" 404 PUT /api/v1/users/nobody '{"disabled":true}'
expect_status "PATCH a user" 405 PATCH /api/v1/users/carol '{}'
within 5 "carol relays with her new password" relays carol "$PW-2"
expect_status "DELETE carol" 204 DELETE /api/v1/users/carol
[ ! -s "$WORK/body" ] && pass "204 has no body" || fail "204 body: $(cat "$WORK/body")"
expect_status "DELETE carol again" 404 DELETE /api/v1/users/carol
expect_status "GET users after delete" 200 GET /api/v1/users
jq_ok 'j == []' && pass "carol is gone" || fail "users: $(cat "$WORK/body")"

# ---- secrets ----
expect_status "GET secrets" 200 GET /api/v1/secrets
jq_ok 'len(j) == 1 and j[0]["prefix"] == "api-" and set(j[0]) == {"id","created","prefix"}' \
    && pass "secret listed by its prefix" || fail "secrets: $(cat "$WORK/body")"
grep -qF -- "$SECRET" "$WORK/body" && fail "secrets list shows a whole secret" || pass "secrets list hides the secret"
expect_status "POST secrets {} generates one" 201 POST /api/v1/secrets '{}'
GEN=$(jget secret); GID=$(jget id)
[[ "$GEN" =~ ^[A-Za-z0-9+/]{43}=$ ]] && pass "generated a 32-byte base64 secret (id $GID)" || fail "generated '$GEN'"
expect_status "POST a given secret" 201 POST /api/v1/secrets '{"secret":"given-secret-abcdef"}'
jq_ok 'set(j) == {"id"}' && pass "a given secret is not echoed" || fail "body: $(cat "$WORK/body")"
SID=$(jget id)
expect_status "POST the same secret again" 409 POST /api/v1/secrets '{"secret":"given-secret-abcdef"}'
expect_status "POST secret: not a string" 400 POST /api/v1/secrets '{"secret":42}'
expect_status "GET secrets: three" 200 GET /api/v1/secrets
jq_ok 'len(j) == 3' && pass "three secrets listed" || fail "secrets: $(cat "$WORK/body")"
expect_status "credentials signed by the newest secret" 200 POST /api/v1/credentials '{"user":"erin","ttl":60}'
CU=$(jget username); CP=$(jget password)
[ "$CP" = "$(hmac given-secret-abcdef "$CU")" ] && pass "newest database secret signs" || fail "password $CP"
expect_status "DELETE the given secret" 204 DELETE "/api/v1/secrets/$SID"
expect_status "DELETE it again" 404 DELETE "/api/v1/secrets/$SID"
expect_status "DELETE the generated secret" 204 DELETE "/api/v1/secrets/$GID"
expect_status "DELETE secret: bad id" 400 DELETE /api/v1/secrets/first

# ---- the log: every admin call, no secret ----
n=$(grep -c '"event":"admin_call"' "$WORK/ternd.log" || true)
[ "$n" -ge 30 ] && pass "admin calls logged ($n)" || fail "admin_call events: $n"
grep -q '"event":"admin_call","method":"DELETE","path":"/api/v1/users/carol","status":204,"remote":"127.0.0.1:' \
    "$WORK/ternd.log" && pass "admin_call has method, path, status, remote" || fail "admin_call fields"
for s in "$TOKEN" "$SECRET" "$PW" "$GEN" given-secret-abcdef; do
    grep -qF -- "$s" "$WORK/ternd.log" && fail "the log contains a secret (${s:0:4}...)"
done
pass "no token, secret or password in the log"
stop_ternd

# ---- without ops.token: the admin API is off, healthz still answers ----
sed -i "s/token: $TOKEN/token: null/" "$WORK/tern.yaml"
start_api "$WORK/tern.yaml"
expect_status "no token configured: healthz" 200 GET /healthz "" -
expect_status "no token configured: credentials" 401 POST /api/v1/credentials '{"user":"alice"}'
jq_ok '"disabled" in j["error"]' && pass "the 401 says the admin API is disabled" || fail "body: $(cat "$WORK/body")"
expect_status "no token configured: users" 401 GET /api/v1/users
expect_status "no token configured: secrets" 401 GET /api/v1/secrets "" -
stop_ternd

# ---- ops.listen taken: ternd stops naming the address ----
port=${BASE##*:}
python3 -c 'import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(5)' "$port" &
HOLD=$!
sleep 0.3
sed -i "s/listen: \"127.0.0.1:0\"/listen: \"127.0.0.1:$port\"/" "$WORK/tern.yaml"
rc=0; timeout 10 "$TERND" -c "$WORK/tern.yaml" 2>"$WORK/busy.log" || rc=$?
kill "$HOLD" 2>/dev/null; wait "$HOLD" 2>/dev/null || true
[ "$rc" -eq 1 ] && grep -q "\"event\":\"ops_listen_failed\",\"address\":\"127.0.0.1:$port\"" "$WORK/busy.log" \
    && pass "ops.listen in use: exit 1 with ops_listen_failed naming 127.0.0.1:$port" \
    || { fail "ops.listen in use: rc=$rc"; tail -3 "$WORK/busy.log" >&2; }
finish
