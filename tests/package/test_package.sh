#!/usr/bin/env bash
# test_package.sh: the Debian package, installed the way an admin would. It builds
# tern_<version>_<arch>.deb with scripts/package, makes a fresh Debian 12 root (debootstrap
# --variant=minbase, cached in the build directory), installs the package there with apt (so
# its Depends must pull in every library the binaries need), then checks inside that root:
# the package state, the conffile, the tern user, owners and modes, --check-config of the
# installed config, the versions, the man pages (rendered with groff -ww: no warnings), the
# unit enabled by deb-systemd-helper; starts the installed ternd on loopback with a test
# config (server.user tern, the packaged database) and has tern-stunc (outside the root) get
# a Binding answer and tern-turnc an allocation for a user added with the installed ternctl;
# stops it cleanly; and purges the package. Needs root (debootstrap, chroot, mount).
. "$(dirname "$0")/../integration/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
: "${TERN_SOURCE_DIR:?TERN_SOURCE_DIR must be set (by CTest)}"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must be set (by CTest)}"

T0=$(date +%s)
step() { echo "==> $* (at +$(($(date +%s) - T0)) s)"; }

# Everything lives in the build directory, so a fresh clone (a fresh build dir) starts clean.
# Kept between runs: the debootstrapped base and apt's download caches (lists and .debs);
# the root the package is installed into is a fresh copy of the base every run.
CACHE=$TERN_BUILD_DIR/package-test
BASE=$CACHE/bookworm-minbase
ROOT=$CACHE/root
MOUNTS=()

# mounted_under DIR: every mount point at or below DIR, deepest first.
mounted_under() {
    findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1' | sort -r
}

# unmount_root: undo every mount under the root (ours, or a killed run's), then check none is
# left. Only then may the root be deleted: rm -rf through a live /proc mount would be a mess.
unmount_root() {
    local m
    for m in $(mounted_under "$ROOT"); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    MOUNTS=()
    if [ -n "$(mounted_under "$ROOT")" ]; then
        echo "FAIL: still mounted under $ROOT:" >&2
        mounted_under "$ROOT" >&2
        return 1
    fi
}

pkg_cleanup() {
    local rc=$?
    if [ -n "$TERND_PID" ] && kill -0 "$TERND_PID" 2>/dev/null; then kill -KILL "$TERND_PID"; fi
    TERND_PID=
    if unmount_root; then
        rm -rf --one-file-system "$ROOT"
        echo "nothing left mounted under $ROOT"
    else
        rc=1
    fi
    cleanup # lib.sh: the work directory
    exit "$rc"
}
trap pkg_cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "FAIL: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
. "$TERN_SOURCE_DIR/scripts/deps.sh"
tern_need_packages "${TERN_PACKAGE_PACKAGES[@]}"

# in_root CMD...: run a command inside the root, with a clean environment.
in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        chroot "$ROOT" "$@"
}

# ---- the package ----
step "build the package (scripts/package)"
"$TERN_SOURCE_DIR/scripts/package" --out "$CACHE/deb" >"$WORK/package.out" 2>&1 ||
    { cat "$WORK/package.out" >&2; echo "FAIL: scripts/package" >&2; exit 1; }
sed 's/^/    /' "$WORK/package.out" | grep -v '^    N:' || true
DEB=$(tail -1 "$WORK/package.out")
VERSION=$(sed -n 's/^project(tern VERSION \([0-9][0-9.]*\) .*/\1/p' "$TERN_SOURCE_DIR/CMakeLists.txt")
[ -f "$DEB" ] && [ "$(basename "$DEB")" = "tern_${VERSION}_$(dpkg --print-architecture).deb" ] &&
    pass "scripts/package made $(basename "$DEB") ($(stat -c %s "$DEB") bytes)" ||
    { fail "no tern_${VERSION}_<arch>.deb (got '$DEB')"; exit 1; }

# ---- a fresh Debian 12 root ----
# The mirror this machine's apt uses (deb822 or one-line sources), so it is one we can reach.
MIRROR=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v security | head -1 || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" && $3 ~ /^bookworm/ {print $2; exit}' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(grep -ho 'http[^ ]*debian-security' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 || true)

unmount_root # a run killed by CTest's timeout may have left its mounts
rm -rf --one-file-system "$ROOT" "$BASE.tmp"
if [ ! -f "$BASE/.tern-base-ready" ]; then
    step "debootstrap --variant=minbase bookworm from $MIRROR (first run in this build dir)"
    rm -rf --one-file-system "$BASE"
    t=$(date +%s)
    debootstrap --variant=minbase bookworm "$BASE.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap.log" >&2; echo "FAIL: debootstrap (log: $CACHE/debootstrap.log)" >&2; exit 1; }
    {
        echo "deb $MIRROR bookworm main"
        echo "deb $MIRROR bookworm-updates main"
        [ -z "$SECURITY" ] || echo "deb $SECURITY bookworm-security main"
    } >"$BASE.tmp/etc/apt/sources.list"
    # policy-rc.d 101: no maintainer script may start a service inside this root.
    printf '#!/bin/sh\nexit 101\n' >"$BASE.tmp/usr/sbin/policy-rc.d"
    chmod 0755 "$BASE.tmp/usr/sbin/policy-rc.d"
    # apt's caches move out of the base: they are kept, the root is not.
    mkdir -p "$CACHE/apt-lists" "$CACHE/apt-archives"
    cp -a "$BASE.tmp/var/lib/apt/lists/." "$CACHE/apt-lists/"
    cp -a "$BASE.tmp/var/cache/apt/archives/." "$CACHE/apt-archives/"
    rm -f "$CACHE/apt-archives"/*.deb
    touch "$BASE.tmp/.tern-base-ready"
    mv "$BASE.tmp" "$BASE"
    echo "    debootstrap took $(($(date +%s) - t)) s ($(du -sh "$BASE" | cut -f1))"
else
    step "debootstrap: reusing the base root in $BASE"
fi
step "fresh root: a copy of the base"
cp -a "$BASE" "$ROOT"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# /dev: debootstrap made the device nodes apt and ternd need (null, zero, urandom...).
mount -t proc proc "$ROOT/proc" && MOUNTS+=("$ROOT/proc")
mount --bind "$CACHE/apt-lists" "$ROOT/var/lib/apt/lists" && MOUNTS+=("$ROOT/var/lib/apt/lists")
mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives" &&
    MOUNTS+=("$ROOT/var/cache/apt/archives")

step "apt-get install ./$(basename "$DEB") inside the root"
cp "$DEB" "$ROOT/tmp/"
APT=(apt-get -q -y -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false)
if in_root "${APT[@]}" update >"$WORK/apt.log" 2>&1 &&
    in_root "${APT[@]}" install "/tmp/$(basename "$DEB")" >>"$WORK/apt.log" 2>&1; then
    pass "apt-get install of the package and its Depends into a minbase root"
    echo "    apt fetched $(grep -c '^Get:' "$WORK/apt.log" || true) files (the rest from its cache)"
else
    fail "apt-get install"; tail -30 "$WORK/apt.log" >&2; exit 1
fi
grep -Ei 'warning|error' "$WORK/apt.log" | grep -v '^Get' | sed 's/^/    apt: /' || true

# ---- what the package installed ----
step "checks inside the root"
expect_out "dpkg -s tern: installed" "^Status: install ok installed" in_root dpkg -s tern
expect_out "dpkg -s tern: version $VERSION" "^Version: $VERSION\$" in_root dpkg -s tern
expect_out "/etc/tern/tern.yaml is a conffile" '^ /etc/tern/tern.yaml [0-9a-f]{32}$' \
    in_root dpkg-query -W -f='${Conffiles}\n' tern
expect_out "the tern system user: home /var/lib/tern, no login shell" \
    '^tern:x:[0-9]+:[0-9]+:[^:]*:/var/lib/tern:/usr/sbin/nologin$' in_root getent passwd tern
expect_out "the tern group" '^tern:x:[0-9]+:' in_root getent group tern
TERN_UID=$(in_root id -u tern)
[ "$TERN_UID" -lt 1000 ] && pass "tern is a system user (uid $TERN_UID)" || fail "tern has uid $TERN_UID"
expect_out "/var/lib/tern: tern:tern 750" '^tern:tern 750$' in_root stat -c '%U:%G %a' /var/lib/tern
expect_out "/var/lib/tern/tern.db: tern:tern 600 (empty until first use)" '^tern:tern 600 0$' \
    in_root stat -c '%U:%G %a %s' /var/lib/tern/tern.db
expect_out "/etc/tern/tern.yaml: root:tern 640" '^root:tern 640$' \
    in_root stat -c '%U:%G %a' /etc/tern/tern.yaml
expect_out "ternd --check-config -c /etc/tern/tern.yaml exits 0" "configuration ok" \
    in_root /usr/sbin/ternd --check-config -c /etc/tern/tern.yaml
grep -q '^  user: tern$' "$ROOT/etc/tern/tern.yaml" && grep -q '^  database: /var/lib/tern/' "$ROOT/etc/tern/tern.yaml" &&
    pass "the installed config runs as tern with its database in /var/lib/tern" ||
    fail "the installed config lacks server.user tern or the database"
expect_out "/usr/sbin/ternd --version is $VERSION" "^ternd $VERSION\$" in_root /usr/sbin/ternd --version
expect_out "/usr/bin/ternctl runs (its libraries are there)" "^ternctl $VERSION\$" in_root ternctl --version
expect_out "/usr/bin/ternprobe runs (libnice, libsrtp2 are there)" "^ternprobe $VERSION\$" in_root ternprobe --version
check "the unit is /lib/systemd/system/ternd.service" test -f "$ROOT/lib/systemd/system/ternd.service"
check "the unit was enabled by deb-systemd-helper (multi-user.target.wants)" \
    test -L "$ROOT/etc/systemd/system/multi-user.target.wants/ternd.service"
check "copyright and README in /usr/share/doc/tern" \
    test -f "$ROOT/usr/share/doc/tern/copyright" -a -f "$ROOT/usr/share/doc/tern/README.md.gz"
for page in man8/ternd.8 man8/ternctl.8 man5/tern.yaml.5 man1/ternprobe.1; do
    f=$ROOT/usr/share/man/$page.gz
    if [ ! -f "$f" ]; then fail "no /usr/share/man/$page.gz"; continue; fi
    # groff -ww: every warning; -z: no output, only the diagnostics.
    warn=$(zcat "$f" | groff -man -Tutf8 -ww -z 2>&1)
    lines=$(man -l "$f" 2>/dev/null | wc -l)
    [ -z "$warn" ] && [ "$lines" -gt 20 ] && pass "/usr/share/man/$page.gz renders ($lines lines, no groff warning)" ||
        { fail "$page: groff warnings or empty"; echo "$warn" | sed 's/^/    /' >&2; }
done

# ---- an upgrade over an admin's edit: the conffile is kept ----
step "reinstall over an edited /etc/tern/tern.yaml"
echo "# edited by the admin" >>"$ROOT/etc/tern/tern.yaml"
if in_root dpkg -i "/tmp/$(basename "$DEB")" </dev/null >"$WORK/reinstall.log" 2>&1; then
    pass "dpkg -i over the installed package (postinst run again, for an upgrade)"
else
    fail "dpkg -i over the installed package"; sed 's/^/    /' "$WORK/reinstall.log" >&2
fi
grep -q '^# edited by the admin$' "$ROOT/etc/tern/tern.yaml" &&
    pass "the admin's edit of the conffile is kept" || fail "the edited conffile was replaced"
expect_out "... and it is still root:tern 640" '^root:tern 640$' \
    in_root stat -c '%U:%G %a' /etc/tern/tern.yaml

# ---- the installed ternd relays ----
step "start the installed /usr/sbin/ternd in the root (server.user tern)"
cat >"$ROOT/tmp/test.yaml" <<'EOF'
server: { realm: tern.test, workers: 1, user: tern }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
auth: { database: /var/lib/tern/tern.db }
ops: { listen: "127.0.0.1:0" }
log: { level: info, format: json }
EOF
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" /usr/sbin/ternd -c /tmp/test.yaml \
    2>"$WORK/ternd.log" &
TERND_PID=$!
for _ in $(seq 100); do
    grep -q '"event":"started"' "$WORK/ternd.log" 2>/dev/null && break
    kill -0 "$TERND_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q '"event":"started"' "$WORK/ternd.log" ||
    { fail "the installed ternd did not start"; cat "$WORK/ternd.log" >&2; exit 1; }
U4=$(port_of udp 127.0.0.1)
expect_out "a STUN Binding to the installed ternd (udp 127.0.0.1:$U4) is answered" "class=success" \
    "$STUNC" 127.0.0.1 "$U4"
uid=$(awk '/^Uid:/ {print $2 " " $3 " " $4 " " $5}' "/proc/$TERND_PID/status")
[ "$uid" = "$TERN_UID $TERN_UID $TERN_UID $TERN_UID" ] &&
    grep -q '"event":"privileges_dropped"' "$WORK/ternd.log" &&
    pass "it runs as the package's tern user (uid $TERN_UID) after binding" ||
    fail "after the drop: Uid $uid (tern is $TERN_UID)"
# The empty database the package made got its schema from ternd; a user added with the
# installed ternctl (as root, while ternd runs as tern) can allocate within a second or so.
echo alice-pass | in_root ternctl -c /etc/tern/tern.yaml --realm tern.test user add alice --password-stdin \
    >"$WORK/ctl.out" 2>&1 && pass "ternctl user add on the packaged database" ||
    { fail "ternctl user add"; cat "$WORK/ctl.out" >&2; }
ok=
for _ in $(seq 30); do
    "$TURNC" -s "127.0.0.1:$U4" -p 127.0.0.1:9 -u alice -P alice-pass -n 1 -w 200 -d \
        >"$WORK/turnc.out" 2>&1 || true
    if grep -q '^allocated' "$WORK/turnc.out"; then ok=1; break; fi
    sleep 0.2
done
[ -n "$ok" ] && pass "TURN Allocate as alice (from the database) through the installed ternd" ||
    { fail "no allocation for alice"; cat "$WORK/turnc.out" >&2; }
expect_out "the database's WAL file is tern's too (SQLite gives it the database's owner)" '^tern /var/lib/tern/tern\.db-wal$' \
    in_root stat -c '%U %n' /var/lib/tern/tern.db-wal
step "stop it (SIGTERM)"
before=$FAILS
stop_ternd
if [ "$FAILS" = "$before" ]; then pass "the installed ternd stopped cleanly (exit 0, stopped logged)"; fi

# ---- purge ----
step "dpkg --purge tern inside the root"
if in_root dpkg --purge tern >"$WORK/purge.log" 2>&1; then pass "dpkg --purge tern"; else
    fail "dpkg --purge tern"; sed 's/^/    /' "$WORK/purge.log" >&2
fi
expect_out "purged: dpkg no longer knows tern" "no packages found|not installed" \
    sh -c "chroot '$ROOT' dpkg-query -W -f='\${Status}\n' tern 2>&1 || true"
left=0
for p in /usr/sbin/ternd /usr/bin/ternctl /etc/tern /var/lib/tern /lib/systemd/system/ternd.service \
    /etc/systemd/system/multi-user.target.wants/ternd.service; do
    if [ -e "$ROOT$p" ] || [ -L "$ROOT$p" ]; then fail "$p is left after the purge"; left=1; fi
done
if [ "$left" = 0 ]; then
    pass "binaries, config, state and the unit's enablement are gone (the tern user stays, by Debian custom)"
fi

step "done in $(($(date +%s) - T0)) s"
finish
