// tern-pion-bench: a TURN server built on pion/turn (Debian's golang-github-pion-turn.v2-dev),
// the third comparator of tests/bench/run and tests/bench/netns beside ternd and coturn.
//
// UDP only: one listening socket per core (runtime.NumCPU(), i.e. the CPUs of the affinity
// mask, so 1 when the bench pins the server to CPU 0), all bound to the same address and port
// with SO_REUSEPORT, each handed to pion as its own PacketConnConfig (its own read loop and
// allocation manager; the kernel hashes a client's address to one socket, so a client always
// lands on the same one). Long-term credentials for one user, one realm; relayed addresses from
// a list of IPs in a port range (round robin over the IPs, a random free port on each).
//
//	tern-pion-bench -listen 127.0.0.1:3478 -relay 127.0.0.1[,127.0.0.2...] \
//	    [-min-port 49152] [-max-port 65535] [-realm tern] [-user bench] [-pass benchpw] \
//	    [-listeners N] [-log-level error]
//
// Built offline in GOPATH mode against Debian's sources (tests/bench/pion/build).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/pion/logging"
	"github.com/pion/turn/v2"
	"golang.org/x/sys/unix"
)

// relayGen hands out relayed addresses over several IPs: the next IP in turn, then up to
// tries random ports of [min, max] on it (the next IP when none is free).
type relayGen struct {
	ips      []net.IP
	min, max int
	tries    int
	next     uint32
}

func (g *relayGen) Validate() error {
	if len(g.ips) == 0 || g.min <= 0 || g.max < g.min || g.max > 65535 {
		return fmt.Errorf("relay: need IPs and 0 < min-port <= max-port <= 65535")
	}
	return nil
}

func (g *relayGen) listen(ip net.IP, port int) (net.PacketConn, net.Addr, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, nil, err
	}
	return c, c.LocalAddr(), nil
}

func (g *relayGen) AllocatePacketConn(network string, requested int) (net.PacketConn, net.Addr, error) {
	first := int(atomic.AddUint32(&g.next, 1))
	if requested != 0 { // EVEN-PORT / RESERVATION-TOKEN: that port on some IP
		var err error
		for k := 0; k < len(g.ips); k++ {
			var c net.PacketConn
			var a net.Addr
			if c, a, err = g.listen(g.ips[(first+k)%len(g.ips)], requested); err == nil {
				return c, a, nil
			}
		}
		return nil, nil, err
	}
	span := g.max - g.min + 1
	for k := 0; k < len(g.ips); k++ {
		ip := g.ips[(first+k)%len(g.ips)]
		for t := 0; t < g.tries; t++ {
			if c, a, err := g.listen(ip, g.min+rand.Intn(span)); err == nil {
				return c, a, nil
			}
		}
	}
	return nil, nil, fmt.Errorf("relay: no free port in %d-%d on %d addresses", g.min, g.max, len(g.ips))
}

func (g *relayGen) AllocateConn(network string, requested int) (net.Conn, net.Addr, error) {
	return nil, nil, fmt.Errorf("relay: TCP allocations not supported")
}

// reusePort: SO_REUSEPORT on the socket before bind, so that every listener can bind the
// same address and port.
func reusePort(network, address string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

func main() {
	listen := flag.String("listen", "127.0.0.1:3478", "UDP address:port to listen on")
	relays := flag.String("relay", "127.0.0.1", "relay IPs, comma-separated (relayed addresses are bound there)")
	minPort := flag.Int("min-port", 49152, "lowest relay port")
	maxPort := flag.Int("max-port", 65535, "highest relay port")
	realm := flag.String("realm", "tern", "realm")
	user := flag.String("user", "bench", "long-term credential user name")
	pass := flag.String("pass", "benchpw", "long-term credential password")
	listeners := flag.Int("listeners", 0, "listening sockets (SO_REUSEPORT); 0: one per CPU the process may run on")
	level := flag.String("log-level", "error", "pion log level: disabled, error, warn, info, debug, trace")
	flag.Parse()

	n := *listeners
	if n <= 0 {
		n = runtime.NumCPU()
	}
	gen := &relayGen{min: *minPort, max: *maxPort, tries: 16}
	for _, s := range strings.Split(*relays, ",") {
		ip := net.ParseIP(strings.TrimSpace(s)).To4()
		if ip == nil {
			log.Fatalf("bad relay IP %q", s)
		}
		gen.ips = append(gen.ips, ip)
	}

	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = os.Stderr // pion's default is stdout
	switch strings.ToLower(*level) {
	case "disabled":
		lf.DefaultLogLevel = logging.LogLevelDisabled
	case "error":
		lf.DefaultLogLevel = logging.LogLevelError
	case "warn":
		lf.DefaultLogLevel = logging.LogLevelWarn
	case "info":
		lf.DefaultLogLevel = logging.LogLevelInfo
	case "debug":
		lf.DefaultLogLevel = logging.LogLevelDebug
	case "trace":
		lf.DefaultLogLevel = logging.LogLevelTrace
	default:
		log.Fatalf("bad -log-level %q", *level)
	}

	key := turn.GenerateAuthKey(*user, *realm, *pass)
	lc := net.ListenConfig{Control: reusePort}
	var conns []turn.PacketConnConfig
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp4", *listen)
		if err != nil {
			log.Fatalf("listen %s (socket %d of %d): %v", *listen, i+1, n, err)
		}
		conns = append(conns, turn.PacketConnConfig{PacketConn: pc, RelayAddressGenerator: gen})
	}

	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         *realm,
		LoggerFactory: lf,
		AuthHandler: func(username, r string, src net.Addr) ([]byte, bool) {
			if username == *user && r == *realm {
				return key, true
			}
			return nil, false
		},
		PacketConnConfigs: conns,
	})
	if err != nil {
		log.Fatalf("turn.NewServer: %v", err)
	}
	fmt.Fprintf(os.Stderr, "tern-pion-bench: listening on %s with %d socket(s) (SO_REUSEPORT), GOMAXPROCS %d, relay %s ports %d-%d\n",
		*listen, n, runtime.GOMAXPROCS(0), *relays, *minPort, *maxPort)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	fmt.Fprintf(os.Stderr, "tern-pion-bench: %d allocations at exit\n", srv.AllocationCount())
	if err := srv.Close(); err != nil {
		log.Printf("close: %v", err)
	}
}
