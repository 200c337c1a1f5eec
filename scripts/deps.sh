# deps.sh: install the Debian packages a step needs when they are missing (sourced by run/test).
# Usage: tern_need_packages pkg...   (uses apt-get as root, or sudo when available)

tern_need_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing missing packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then sudo=(sudo); else
            echo "error: need root (or sudo) to install: ${missing[*]}" >&2; return 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq || { echo "error: apt-get update failed" >&2; return 1; }
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || { echo "error: apt-get install ${missing[*]} failed" >&2; return 1; }
}

# What building ternd and its tools needs (libnice and libsrtp: ternprobe, the active
# end-to-end check with a real ICE agent and real SRTP media; libbpf, bpftool and clang: the
# XDP fast path, relay.offload, built from source with clang -target bpf).
TERN_BUILD_PACKAGES=(gcc make cmake pkg-config libssl-dev libyaml-dev zlib1g-dev libidn-dev
                     libsqlite3-dev libpq-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev
                     libnice-dev libglib2.0-dev libsrtp2-dev libbpf-dev bpftool clang)
# What the test suite adds: cmocka, coturn's client tools (turnutils_*), libnice (a real ICE
# agent), clang for the ASan/UBSan build and libFuzzer, openssl for test certificates,
# python3 with a Prometheus text parser (checks /metrics) for the QoS ground-truth tests,
# aiortc (a real WebRTC stack whose getStats the relay's numbers are compared with),
# clang-format and git (the style check), tcpdump (ECN/DSCP on the wire) and systemd
# (systemd-analyze verify of the unit file, which runs man(1) on its Documentation= pages:
# man-db), postgresql (a throw-away server the store and fleet
# tests start themselves: tests/integration/pglib.sh), haproxy (a real PROXY protocol sender in front of
# ternd); ethtool turns off the veth checksum offload of the fast-path test's senders.
TERN_TEST_PACKAGES=(libcmocka-dev clang-format git tcpdump systemd coturn libnice-dev libglib2.0-dev clang libclang-rt-14-dev ethtool
                    openssl iproute2 procps curl python3 python3-prometheus-client python3-aiortc haproxy
                    postgresql chromium man-db)
# The ops page's browser test (test_ops_page): Debian's chromium, driven by playwright-core
# from npm (tests/web/package-lock.json, `npm ci` at test time, no browser download). Node
# and npm from Debian unless a node with npm is installed already (e.g. from NodeSource).
command -v npm >/dev/null 2>&1 || TERN_TEST_PACKAGES+=(nodejs npm)
# What the benchmark (tests/bench/run) adds: coturn and pion/turn as the comparators (pion's
# server, tests/bench/pion, is built offline in GOPATH mode against Debian's Go sources),
# gnuplot for the plot, perf for the profile, liburing for the io_uring probe.
TERN_BENCH_PACKAGES=(coturn golang-go golang-github-pion-turn.v2-dev golang-golang-x-sys-dev
                     gnuplot-nox linux-perf liburing-dev)
# What building the Debian package (scripts/package) and its test (tests/package) add:
# dpkg-dev, debhelper and fakeroot build it; lintian checks it; debootstrap makes the fresh
# Debian 12 root the test installs it into; groff-base renders the man pages to check them.
TERN_PACKAGE_PACKAGES=(dpkg-dev debhelper fakeroot lintian debootstrap groff-base)
