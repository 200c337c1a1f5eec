#!/usr/bin/env bash
# test_config_cli.sh: ternd's command line: --check-config on good and bad files, the embedded
# default, usage errors, and a clear failure when a port is taken.
. "$(dirname "$0")/lib.sh"

expect_out "embedded default is valid" 'configuration ok' "$TERND" --check-config
expect_out "configs/tern.yaml is valid" 'configuration ok' "$TERND" -c "$TERN_SOURCE_DIR/configs/tern.yaml" --check-config
expect_out "configs/minimal.yaml is valid" 'configuration ok' "$TERND" -c "$TERN_SOURCE_DIR/configs/minimal.yaml" --check-config

cat >"$WORK/bad.yaml" <<YAML
server:
  realm: bad.example
  workers: many
relay:
  ports: { min: 70000, max: 60000 }
log: { level: loud }
YAML
rc=0; "$TERND" -c "$WORK/bad.yaml" --check-config >"$WORK/out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && pass "bad config exits non-zero ($rc)" || fail "bad config exits non-zero"
grep -Eq "^$WORK/bad.yaml:3: server.workers: " "$WORK/out" && pass "workers error names file:line: key" || { fail "workers error"; cat "$WORK/out" >&2; }
grep -Eq "^$WORK/bad.yaml:5: relay.ports.min: " "$WORK/out" && pass "ports error names file:line: key" || { fail "ports error"; cat "$WORK/out" >&2; }
grep -Eq "^$WORK/bad.yaml:6: log.level: " "$WORK/out" && pass "log.level error names file:line: key" || { fail "log.level error"; cat "$WORK/out" >&2; }

rc=0; "$TERND" -c "$WORK/missing.yaml" --check-config >"$WORK/out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "missing.yaml" "$WORK/out" && pass "missing file named" || fail "missing file named"

# A configured credential database that does not exist: refuse to start, naming the file.
printf 'listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]\nauth: { database: %s }\nops: { listen: "127.0.0.1:0" }\n' \
    "$WORK/absent.db" >"$WORK/db.yaml"
rc=0; "$TERND" -c "$WORK/db.yaml" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "database_failed.*absent.db: no such database file" "$WORK/out" \
    && pass "missing database: refused, file named" || { fail "missing database (rc=$rc)"; cat "$WORK/out" >&2; }

rc=0; "$TERND" --bogus >"$WORK/out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && pass "unknown option exits 2" || fail "unknown option exits 2 (got $rc)"
expect_out "--version" '^ternd [0-9]' "$TERND" --version

# A taken port: ternd must fail to start, naming the address.
cat >"$WORK/a.yaml" <<YAML
listen: [ { transport: tcp, address: 127.0.0.1, port: 0 } ]
log: { format: json }
YAML
start_ternd "$WORK/a.yaml"
P=$(port_of tcp 127.0.0.1)
cat >"$WORK/b.yaml" <<YAML
listen: [ { transport: udp, address: 127.0.0.1, port: $P }, { transport: tcp, address: 192.0.2.1, port: $P } ]
log: { format: json }
YAML
rc=0; "$TERND" -c "$WORK/b.yaml" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q '"event":"listen_failed".*192.0.2.1' "$WORK/out" && pass "unbindable address fails clearly" \
    || { fail "unbindable address fails clearly (rc=$rc)"; cat "$WORK/out" >&2; }
stop_ternd
finish
