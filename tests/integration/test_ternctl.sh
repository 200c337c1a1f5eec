#!/usr/bin/env bash
# test_ternctl.sh: ternctl manages users and REST secrets in the credential database (created
# 0600, keys only: no password or full secret ever shows), mints REST credentials that match
# an independent HMAC (openssl), exits 0/1/2 as documented; and ternd picks up its changes
# live (users added, deleted, disabled; secrets added) within 5 s, checked with turnutils_uclient.
. "$(dirname "$0")/lib.sh"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"
CTL="$TERN_BUILD_DIR/ops/ternctl"
[ -x "$CTL" ] || { fail "ternctl not built ($CTL)"; finish; }

DB="$WORK/tern.db"
PW='Gl4ss-onion-Wombat-17'
SECRET1='first-rest-secret-0123456789'

# expect_rc DESCRIPTION STATUS COMMAND...: run it, require that exit status; output in $WORK/out.
expect_rc() {
    local what=$1 want=$2; shift 2
    local rc=0
    "$@" >"$WORK/out" 2>&1 || rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$what (exit $rc)"; else
        fail "$what: exit $rc, wanted $want"; sed 's/^/    /' "$WORK/out" >&2
    fi
}

# expect_fail DESCRIPTION STATUS REGEX COMMAND...: that exit status and REGEX in the output.
expect_fail() {
    local what=$1 want=$2 re=$3; shift 3
    local rc=0
    "$@" >"$WORK/out" 2>&1 || rc=$?
    if [ "$rc" -eq "$want" ] && grep -Eq -- "$re" "$WORK/out"; then pass "$what (exit $rc)"; else
        fail "$what: exit $rc, wanted $want and /$re/"; sed 's/^/    /' "$WORK/out" >&2
    fi
}

# ctl ARGS...: ternctl on the test database, realm tern.
ctl() { "$CTL" --db "$DB" --realm tern "$@"; }
# add_user NAME PASSWORD [ARGS...]: user add with the password on stdin.
add_user() { local n=$1 p=$2; shift 2; printf '%s\n' "$p" | ctl user add "$n" --password-stdin "$@"; }

# json_ok FILE: it parses as JSON (python3 when present, else a look at its shape).
json_ok() {
    if command -v python3 >/dev/null; then
        python3 -c 'import json,sys; json.load(sys.stdin)' <"$1"
    else
        grep -Eq '^[[{].*[]}]$' "$1"
    fi
}

# field FILE KEY: a string field of ternctl's one-line JSON (its values here hold no quotes).
field() { { grep -o "\"$2\":\"[^\"]*\"" "$1" || true; } | head -1 | cut -d'"' -f4; }

# hmac ALG SECRET TEXT: base64(HMAC-ALG(SECRET, TEXT)), computed by openssl, not by us.
hmac() { printf '%s' "$3" | openssl dgst "-$1" -hmac "$2" -binary | base64; }

cd "$WORK" || exit 1 # nothing lands in the working directory of the caller

# ---- users ----
expect_rc "--version" 0 "$CTL" --version
expect_rc "--help" 0 "$CTL" --help
expect_rc "user add alice (password on stdin) creates the database" 0 add_user alice "$PW"
[ -f "$DB" ] && [ "$(stat -c %a "$DB")" = 600 ] && pass "database created with mode 0600" \
    || fail "database mode is $(stat -c %a "$DB" 2>/dev/null), wanted 600"
expect_out "user list shows alice" '^tern +alice +default +unlimited +no ' ctl user list
expect_fail "duplicate user add refused" 1 '^ternctl: user alice already exists in realm tern$' \
    add_user alice other-password
expect_fail "user del of a missing user" 1 '^ternctl: no user nobody in realm tern$' ctl user del nobody
expect_fail "user passwd of a missing user" 1 'no user nobody in realm tern' \
    sh -c 'printf "x\n" | "$0" --db "$1" --realm tern user passwd nobody --password-stdin' "$CTL" "$DB"
expect_fail "empty password on stdin refused" 1 'no password' \
    sh -c 'printf "\n" | "$0" --db "$1" user add empty --password-stdin' "$CTL" "$DB"
expect_fail "without a terminal nor --password-stdin: refused, not hung" 1 'password-stdin' \
    setsid -w "$CTL" --db "$DB" user add noterm
expect_rc "user add bob with limits" 0 add_user bob "$PW-bob" --max-allocations 3 --bandwidth 125000
expect_rc "user disable bob" 0 ctl user disable bob
expect_out "user list --json: bob's limits and disabled flag" \
    '"name":"bob","max_allocations":3,"bandwidth":125000,"disabled":true' ctl user list --json
json_ok "$WORK/out" && pass "user list --json parses" || fail "user list --json does not parse"
grep -qF -- "$PW" "$WORK/out" && fail "user list --json shows a password" || pass "user list --json shows no password"
expect_rc "user enable bob" 0 ctl user enable bob
expect_out "bob enabled again" '"name":"bob".*"disabled":false' ctl user list --json
expect_rc "user passwd alice" 0 sh -c 'printf "%s\n" "$2" | "$0" --db "$1" --realm tern user passwd alice --password-stdin' \
    "$CTL" "$DB" "$PW-2"
expect_rc "user add in another realm" 0 \
    sh -c 'printf "pw\n" | "$0" --db "$1" --realm other.example user add zoe --password-stdin' "$CTL" "$DB"
expect_out "user list without --realm: every realm" 'other\.example +zoe' "$CTL" --db "$DB" user list
if "$CTL" --db "$DB" --realm tern user list | grep -q zoe; then fail "--realm tern lists zoe"; else pass "--realm filters user list"; fi
expect_rc "user del zoe" 0 "$CTL" --db "$DB" --realm other.example user del zoe
n=0
for f in "$DB"*; do
    c=$(grep -c -a -F -- "$PW" "$f" || true)
    n=$((n + c))
done
[ "$n" -eq 0 ] && pass "no password in the database files" || fail "a password appears $n time(s) in the database files"

# ---- usage errors: exit 2 ----
expect_fail "no command" 2 'Try' "$CTL"
expect_fail "unknown command" 2 "unknown command 'frobnicate'" "$CTL" frobnicate
expect_fail "unknown user subcommand" 2 "unknown command 'user frob'" ctl user frob
expect_fail "unknown global option" 2 "unknown .*--bogus" "$CTL" --bogus user list
expect_fail "unknown command option" 2 "--bogus" ctl user list --bogus
expect_fail "user add without a name" 2 'wants one user NAME' ctl user add
expect_fail "--max-allocations not a number" 2 'max-allocations' ctl user add x --max-allocations lots
expect_rc "--password on the command line refused" 2 ctl user add mallory --password 'cmdline-Secret-9'
grep -q 'cmdline-Secret-9' "$WORK/out" && fail "the refused password was echoed" || pass "the refused password is not echoed"
expect_fail "cred without --user" 2 'user' ctl cred --ttl 60
expect_fail "cred --ttl 0" 2 'ttl' ctl cred --user a --ttl 0
expect_fail "cred --ttl -5" 2 'ttl' ctl cred --user a --ttl -5
expect_fail "cred --ttl 1h" 2 'ttl' ctl cred --user a --ttl 1h
expect_fail "secret del not a number" 2 'ID' ctl secret del first
expect_fail "no database named" 2 'database' "$CTL" user list

# ---- secrets ----
expect_fail "cred with no secret anywhere" 1 'no REST secret' "$CTL" --db "$WORK/none.db" cred --user a --ttl 60
expect_out "secret add --secret-stdin" '^added secret [0-9]+$' \
    sh -c 'printf "%s\n" "$2" | "$0" --db "$1" secret add --secret-stdin' "$CTL" "$DB" "$SECRET1"
ID1=$(grep -oE '[0-9]+$' "$WORK/out" || true)
GEN=$(ctl secret add --generate 2>"$WORK/gen.err") || fail "secret add --generate"
[[ "$GEN" =~ ^[A-Za-z0-9+/]{43}=$ ]] && pass "--generate prints a 32-byte base64 secret" || fail "--generate printed '$GEN'"
ID2=$(grep -oE 'secret [0-9]+' "$WORK/gen.err" | grep -oE '[0-9]+' || true)
expect_out "secret list shows both by prefix" "^ *$ID1 .* firs…$" ctl secret list
grep -qF -- "$SECRET1" "$WORK/out" && fail "secret list shows a whole secret" || pass "secret list hides the secrets"
grep -qF -- "${GEN:0:4}…" "$WORK/out" && pass "generated secret listed by its prefix" || fail "generated secret not listed"
expect_out "secret list --json" "\"id\":$ID1,.*\"secret\":\"firs…\"" ctl secret list --json
json_ok "$WORK/out" && pass "secret list --json parses" || fail "secret list --json does not parse"
expect_fail "duplicate secret refused" 1 'already' \
    sh -c 'printf "%s\n" "$2" | "$0" --db "$1" secret add --secret-stdin' "$CTL" "$DB" "$SECRET1"

# The newest secret signs: the generated one, until it is deleted.
"$CTL" --db "$DB" cred --user alice --ttl 600 --json >"$WORK/cred.json" || fail "cred --json"
json_ok "$WORK/cred.json" && pass "cred --json parses" || fail "cred --json does not parse: $(cat "$WORK/cred.json")"
U=$(field "$WORK/cred.json" username); P=$(field "$WORK/cred.json" password)
now=$(date +%s); exp=${U%%:*}
[[ "$U" =~ ^[0-9]+:alice$ ]] && [ "$exp" -ge $((now + 590)) ] && [ "$exp" -le $((now + 610)) ] \
    && pass "REST username is <now+ttl>:alice ($U)" || fail "REST username '$U'"
[ "$P" = "$(hmac sha1 "$GEN" "$U")" ] && pass "password = base64(HMAC-SHA1(newest secret, username))" \
    || fail "password $P, openssl says $(hmac sha1 "$GEN" "$U")"
grep -q '"ttl":600,"uris":\[\]' "$WORK/cred.json" && pass "cred --json: ttl, no uris without -c" || fail "cred --json fields: $(cat "$WORK/cred.json")"
expect_rc "secret del the generated one" 0 ctl secret del "$ID2"
expect_fail "secret del again" 1 "no secret $ID2" ctl secret del "$ID2"
out=$(ctl cred --user alice --ttl 60) || fail "cred"
U=$(sed -n 's/^username: //p' <<<"$out"); P=$(sed -n 's/^password: //p' <<<"$out")
[ -n "$U" ] && [ "$P" = "$(hmac sha1 "$SECRET1" "$U")" ] && pass "plain cred signed by the remaining secret" || fail "plain cred: $out"
out=$(ctl cred --user alice --ttl 60 --sha256) || fail "cred --sha256"
U=$(sed -n 's/^username: //p' <<<"$out"); P=$(sed -n 's/^password: //p' <<<"$out")
[ "$P" = "$(hmac sha256 "$SECRET1" "$U")" ] && pass "--sha256: HMAC-SHA256" || fail "--sha256: $out"

# ---- -c: secrets, separator, realm, database and listener URIs from the config ----
cat >"$WORK/uris.yaml" <<YAML
server: { realm: uris.test }
listen:
  - { transport: udp, address: 127.0.0.1, port: 3478 }
  - { transport: tcp, address: 127.0.0.1, port: 3478 }
  - { transport: tls, address: "::1", port: 5349 }
  - { transport: udp, address: 0.0.0.0, port: 3479 }
tls: { certificate: cert.pem, private_key: key.pem }
auth: { database: $DB, secrets: [old-secret, new-secret], rest_separator: "-" }
YAML
"$CTL" -c "$WORK/uris.yaml" cred --user 'ann"e\x' --ttl 60 --ice-servers >"$WORK/ice.json" || fail "cred --ice-servers"
json_ok "$WORK/ice.json" && pass "cred --ice-servers parses (a user id with a quote and a backslash)" \
    || fail "cred --ice-servers does not parse: $(cat "$WORK/ice.json")"
for uri in 'turn:127.0.0.1:3478?transport=udp' 'turn:127.0.0.1:3478?transport=tcp' \
           'turns:[::1]:5349?transport=tcp' "turn:$(hostname):3479?transport=udp"; do
    grep -qF "\"$uri\"" "$WORK/ice.json" && pass "iceServers lists $uri" || fail "iceServers lacks $uri: $(cat "$WORK/ice.json")"
done
if command -v python3 >/dev/null; then
    python3 - "$WORK/ice.json" <<'PY' && pass "iceServers: username, credential = HMAC-SHA1(last config secret)" || fail "iceServers content"
import base64, hashlib, hmac, json, re, sys
s = json.load(open(sys.argv[1]))["iceServers"][0]
assert re.fullmatch(r'[0-9]+-ann"e\\x', s["username"]), s["username"]
want = base64.b64encode(hmac.new(b"new-secret", s["username"].encode(), hashlib.sha1).digest()).decode()
assert s["credential"] == want, (s["credential"], want)
PY
fi
sed -i 's/^auth:/relay: { external_address: 203.0.113.7 }\nauth:/' "$WORK/uris.yaml"
expect_out "relay.external_address names the host in every URI" \
    '"uris":\["turn:203\.0\.113\.7:3478\?transport=udp","turn:203\.0\.113\.7:3478\?transport=tcp","turns:203\.0\.113\.7:5349\?transport=tcp","turn:203\.0\.113\.7:3479\?transport=udp"\]' \
    "$CTL" -c "$WORK/uris.yaml" cred --user x --ttl 60 --json
expect_out "-c takes the realm and database (no users in uris.test)" '^\[\]$' "$CTL" -c "$WORK/uris.yaml" user list --json
expect_fail "a missing config is a failure naming it" 1 'uris.yaml' "$CTL" -c "$WORK/uris.yaml.missing" user list

# ---- end to end: ternd follows the database while it runs ----
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }
start_echo_peer

E2E_DB="$WORK/e2e.db"
# unauthenticated_rate 0: refused() below retries turnutils_uclient from 127.0.0.1, which
# answers a refused credential with ~32 requests in 10 ms, more than one /32's burst of 401s.
cat >"$WORK/e2e.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 50000, max: 59999 } }
peers: { allow_loopback: true }
auth: { database: $E2E_DB, users: [], unauthenticated_rate: 0 }
log: { level: info, format: json }
YAML
ectl() { "$CTL" -c "$WORK/e2e.yaml" "$@"; }
e2e_add() { printf '%s\n' "$2" | ectl user add "$1" --password-stdin; }
expect_rc "ternctl -c creates the database ternd will read (user dave)" 0 e2e_add dave "dave-$PW"
start_ternd "$WORK/e2e.yaml"
U4=$(port_of udp 127.0.0.1)

# refused USER PASSWORD: the allocation fails. A refusal comes at once; an allocation that
# succeeds would go on relaying for seconds, so cut it short to retry soon.
refused() {
    local rc=0
    timeout 1 turnutils_uclient -c -z 5 -n 5 -m 1 -u "$1" -w "$2" -e 127.0.0.1 -r "$PEER_PORT" \
        -p "$U4" 127.0.0.1 >"$WORK/uc.log" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] && grep -q "Cannot complete Allocation" "$WORK/uc.log"
}

within 5 "database user present at start relays" relays dave "dave-$PW"
expect_rc "user add carol while ternd runs" 0 e2e_add carol "$PW"
within 5 "carol relays with zero loss" relays carol "$PW"
expect_rc "user del carol while ternd runs" 0 ectl user del carol
within 5 "deleted carol is refused" refused carol "$PW"
expect_rc "user disable dave while ternd runs" 0 ectl user disable dave
within 5 "disabled dave is refused" refused dave "dave-$PW"
expect_rc "user enable dave" 0 ectl user enable dave
within 5 "enabled dave relays again" relays dave "dave-$PW"
expect_rc "secret add while ternd runs" 0 \
    sh -c 'printf "live-secret-42\n" | "$0" -c "$1" secret add --secret-stdin' "$CTL" "$WORK/e2e.yaml"
out=$(ectl cred --user frank --ttl 600) || fail "cred -c (database secret)"
RU=$(sed -n 's/^username: //p' <<<"$out"); RP=$(sed -n 's/^password: //p' <<<"$out")
within 5 "REST credential minted by ternctl relays ($RU)" relays "$RU" "$RP"
stop_ternd

# ---- API mode: the same commands through ternd's admin HTTP API (--url) ----
# Runs only when this ternd serves the API (it logs "ops_listening"); until then it is skipped.
API_DB="$WORK/api.db"
API_TOKEN='api-token-0123456789abcdef'
printf 'seed-pw\n' | "$CTL" --db "$API_DB" --realm api.test user add seed --password-stdin >/dev/null \
    || fail "API mode: creating its database"
cat >"$WORK/api.yaml" <<YAML
server: { realm: api.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 50000, max: 59999 } }
auth: { database: $API_DB, users: [] }
ops: { listen: "127.0.0.1:0", token: "$API_TOKEN" }
log: { level: info, format: json }
YAML
start_ternd "$WORK/api.yaml"
API_PORT=
for _ in $(seq 30); do
    API_PORT=$({ grep '"event":"ops_listening"' "$WORK/ternd.log" || true; } | head -1 |
        sed -nE 's/.*"port":([0-9]+).*/\1/p')
    [ -n "$API_PORT" ] && break
    sleep 0.1
done
if [ -z "$API_PORT" ]; then
    fail "API mode: ternd logged no ops_listening event (admin API not serving)"
else
    API_URL="http://127.0.0.1:$API_PORT"
    # actl ARGS...: ternctl through the API, the token from the environment.
    actl() { TERN_TOKEN=$API_TOKEN "$CTL" --url "$API_URL" "$@"; }
    api_add() { printf '%s\n' "$2" | actl user add "$1" --password-stdin "${@:3}"; }
    expect_out "API: user add alice" '^added user alice( to realm api\.test)?$' \
        api_add alice "$PW" --max-allocations 3
    expect_fail "API: duplicate user add: 409 and the server's message" 1 \
        "^ternctl: $API_URL/api/v1/users: 409: user alice already exists" api_add alice "$PW"
    expect_out "API: user list shows alice" '^api\.test +alice +3 +unlimited +no ' actl user list
    expect_out "API: user list --json" '"name":"alice","max_allocations":3,"bandwidth":0,"disabled":false' \
        actl user list --json
    json_ok "$WORK/out" && pass "API: user list --json parses" || fail "API: user list --json does not parse"
    expect_rc "API: user disable alice" 0 actl user disable alice
    expect_out "API: alice disabled" '"name":"alice".*"disabled":true' actl user list --json
    expect_rc "API: user del alice" 0 actl user del alice
    if actl user list | grep -q alice; then fail "API: alice still listed"; else pass "API: alice deleted"; fi
    expect_fail "API: user del of a missing user: 404" 1 "^ternctl: $API_URL/api/v1/users/alice: 404: " \
        actl user del alice
    expect_out "API: secret add --secret-stdin" '^added secret [0-9]+$' \
        sh -c 'printf "%s\n" "$1" | TERN_TOKEN=$2 "$0" --url "$3" secret add --secret-stdin' \
        "$CTL" "api-rest-secret-42" "$API_TOKEN" "$API_URL"
    actl cred --user alice --ttl 600 --json >"$WORK/cred.json" || fail "API: cred --json"
    json_ok "$WORK/cred.json" && pass "API: cred --json parses" || fail "API: cred --json: $(cat "$WORK/cred.json")"
    U=$(field "$WORK/cred.json" username); P=$(field "$WORK/cred.json" password)
    [[ "$U" =~ ^[0-9]+:alice$ ]] && [ "$P" = "$(hmac sha1 "api-rest-secret-42" "$U")" ] \
        && pass "API: cred --json is HMAC-SHA1(the secret, $U)" || fail "API: cred --json: $(cat "$WORK/cred.json")"
    grep -q '"ttl":600,"uris":\[' "$WORK/cred.json" && pass "API: cred --json ttl and uris" \
        || fail "API: cred --json fields: $(cat "$WORK/cred.json")"
    printf '%s\n' "$API_TOKEN" >"$WORK/token"
    expect_out "API: --token-file" '^api\.test +seed ' env -u TERN_TOKEN "$CTL" --url "$API_URL" \
        --token-file "$WORK/token" user list
    expect_fail "API: a wrong token: 401" 1 \
        "^ternctl: $API_URL/api/v1/users: 401: the token was refused \(wrong token\? it must be ternd.s ops.token\)$" \
        env TERN_TOKEN=wrong-token "$CTL" --url "$API_URL" user list
    expect_fail "API: no token: 401" 1 '401: the API wants a token and none was given' env -u TERN_TOKEN "$CTL" --url "$API_URL" user list
    expect_fail "API: an unreachable URL names it" 1 '^ternctl: http://127\.0\.0\.1:1/api/v1/users: ' \
        env TERN_TOKEN=x "$CTL" --url http://127.0.0.1:1 user list
    expect_fail "API: --url not http(s)" 2 'http://' "$CTL" --url ftp://127.0.0.1 user list
    expect_fail "API: --token without --url" 2 'for --url' "$CTL" --db "$API_DB" --token x user list
    expect_fail "API: cred --sha256 refused" 2 'sha256' actl cred --user a --ttl 60 --sha256
fi
stop_ternd
finish
