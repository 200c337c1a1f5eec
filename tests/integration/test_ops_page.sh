#!/usr/bin/env bash
# test_ops_page.sh: the ops page (GET / on ops.listen) in a real browser. ternd runs with an ops
# token; tern-mediagen runs a call with 10 % scripted loss on the client leg's audio from 12 to
# 22 s of 28 (so the episode is still open when the page is read), and a clean call by a user named <img src=x onerror=alert(1)>. Headless chromium
# (Debian's, driven by playwright-core from tests/web/package-lock.json; no browser download)
# loads the page, gives it the token, and tests/web/ops_page.cjs checks the list (worst first,
# the filter, the name as text, no dialog), the bad call's intervals and loss chart against the
# API; timelinecheck.py --page checks what the page showed against the generator's truth. The
# screenshot goes to the build tree, or to docs/img/ops-page.png with TERN_OPS_SCREENSHOT=docs.
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"
TLCHECK="$TERN_SOURCE_DIR/tests/qos/timelinecheck.py"
command -v node >/dev/null && command -v npm >/dev/null || { fail "node and npm are needed (Debian: nodejs npm)"; finish; }
[ -x /usr/bin/chromium ] || { fail "/usr/bin/chromium is needed (Debian: chromium)"; finish; }

# playwright-core as the lock file pins it, in the build tree; never a browser download.
PW_DIR="$TERN_BUILD_DIR/web-test"
mkdir -p "$PW_DIR"
cp "$TERN_SOURCE_DIR/tests/web/package.json" "$TERN_SOURCE_DIR/tests/web/package-lock.json" "$PW_DIR/"
# The system's CA bundle when there is one (a registry behind a TLS-inspecting proxy is
# trusted there, not in npm's own bundle); errors are shown, not silenced.
NPM_CA=()
[ -r /etc/ssl/certs/ca-certificates.crt ] && NPM_CA=(--cafile=/etc/ssl/certs/ca-certificates.crt)
if (cd "$PW_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error "${NPM_CA[@]}") >"$WORK/npm.log" 2>&1; then
    pass "npm ci: playwright-core $(cd "$PW_DIR" && node -p 'require("playwright-core/package.json").version')"
else
    fail "npm ci failed"; sed 's/^/    /' "$WORK/npm.log" >&2; finish
fi

XSS_USER='<img src=x onerror=alert(1)>'
TOKEN=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
RECORDS="$WORK/quality.jsonl"
cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 40000, max: 49999 } }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: wonderland }, { name: '$XSS_USER', password: mallory } ] }
qos: { enabled: true, record_file: "$RECORDS" }
ops: { listen: "127.0.0.1:0", token: "$TOKEN" }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1)
OPS_BASE="http://127.0.0.1:$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')"

# The page's files: types, the CSP, no token needed for them; the API still wants it.
curl -s -D "$WORK/h.txt" -o "$WORK/index.html" "$OPS_BASE/"
grep -qi "^content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'" "$WORK/h.txt" &&
    grep -qi '^content-type: text/html' "$WORK/h.txt" && pass "GET /: the page, with a strict CSP" || { fail "GET / headers"; cat "$WORK/h.txt" >&2; }
! grep -qiE '<script>|<style|style=| on[a-z]+=|https?://' "$WORK/index.html" &&
    pass "no inline script or style and no external resource in the page" || fail "index.html has inline code or an external URL"
ct=$(curl -s -o /dev/null -w '%{content_type}' "$OPS_BASE/app.js")
[[ "$ct" == text/javascript* ]] && pass "/app.js: $ct" || fail "/app.js type $ct"
code=$(curl -s -o /dev/null -w '%{http_code}' "$OPS_BASE/api/v1/allocations")
[ "$code" = 401 ] && pass "the API wants the token (401 without it)" || fail "API without token: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$OPS_BASE/")
[ "$code" = 405 ] && pass "POST /: 405" || fail "POST /: $code"

gen_start bad --seed 61 --duration 28 --peer-delay 15 \
    --stream client:audio,seq=1000,drop=10,window=12:22 --stream client:video,seq=2000 \
    --stream peer:audio,seq=3000 --stream peer:video,seq=4000
# (gen_start logs in as alice; this one logs in as the hostile user)
"$MEDIAGEN" --server "127.0.0.1:$U4" --user "$XSS_USER" --password mallory --realm tern.test \
    --log "$WORK/xss.jsonl" --hold 120 --duration 4 --seed 62 --stream client:audio --stream peer:audio \
    >"$WORK/xss.err" 2>&1 &
GEN_PID[xss]=$!
gen_wait_holding xss && gen_wait_holding bad || finish

alloc_of() { # alloc_of LOG: the id of that generator's allocation
    local relayed
    relayed=$(grep '"ev":"alloc"' "$1" | sed -E 's/.*"relayed":"([^"]+)".*/\1/')
    curl -s -H "Authorization: Bearer $TOKEN" "$OPS_BASE/api/v1/allocations" | "$PY" -c '
import json, sys
for e in json.load(sys.stdin)["allocations"]:
    if sys.argv[1] in e["relayed"]: print(e["id"])' "$relayed"
}
BAD_ID=$(alloc_of "$WORK/bad.jsonl")
XSS_ID=$(alloc_of "$WORK/xss.jsonl")
[ -n "$BAD_ID" ] && [ -n "$XSS_ID" ] || { fail "allocations not found ($BAD_ID, $XSS_ID)"; finish; }

if [ "${TERN_OPS_SCREENSHOT:-}" = docs ]; then SHOT="$TERN_SOURCE_DIR/docs/img/ops-page.png"; else SHOT="$TERN_BUILD_DIR/ops-page.png"; fi
mkdir -p "$(dirname "$SHOT")"
t0=$(date +%s%N)
rc=0
PW_DIR="$PW_DIR" OPS_BASE="$OPS_BASE" OPS_TOKEN="$TOKEN" BAD_ID="$BAD_ID" XSS_ID="$XSS_ID" \
    XSS_USER="$XSS_USER" OUT="$WORK/page.json" SHOT="$SHOT" \
    timeout 120 node "$TERN_SOURCE_DIR/tests/web/ops_page.cjs" >"$WORK/page.out" 2>&1 || rc=$?
sed 's/^/    /' "$WORK/page.out"
[ "$rc" = 0 ] && pass "browser: $(grep -c '^ok:' "$WORK/page.out") checks in $((($(date +%s%N) - t0) / 1000000)) ms" ||
    fail "browser: $(grep -c '^FAIL:' "$WORK/page.out") failures (exit $rc)"

curl -s -H "Authorization: Bearer $TOKEN" -o "$WORK/timeline.json" "$OPS_BASE/api/v1/allocations/$BAD_ID/timeline"
rc=0
"$PY" "$TLCHECK" "$WORK/bad.jsonl" "$WORK/timeline.json" "$WORK/ternd.log" --page "$WORK/page.json" --episode-open >"$WORK/tl.out" 2>&1 || rc=$?
sed 's/^/    /' "$WORK/tl.out"
[ "$rc" = 0 ] && pass "the page's numbers equal the generator's truth" || fail "page against the truth (see above)"

gen_release bad
kill -USR1 "${GEN_PID[xss]}" 2>/dev/null || true
wait "${GEN_PID[xss]}" 2>/dev/null || true
unset "GEN_PID[xss]"
stop_ternd
finish
