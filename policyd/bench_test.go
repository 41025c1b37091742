package policyd

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/daemon"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
	"github.com/dovetail-mail/dovetail/store/sqlite"
)

// benchStream is a request stream shaped like the postgrey peer's
// (../shared/peers/policy/policy_bench.py): per 100 requests 50 new triplets,
// 40 repeats of an earlier one and 10 from an exempt client domain, each with
// the full attribute set Postfix 3.7 sends at RCPT.
var benchStream = sync.OnceValue(func() [][]byte { return makeBenchStream(1 << 15) })

func makeBenchStream(n int) [][]byte {
	rnd := rand.New(rand.NewPCG(1, 1))
	type triplet struct{ ip, name, sender, rcpt string }
	var news []triplet
	out := make([][]byte, n)
	for i := range out {
		var t triplet
		switch r := rnd.Float64(); {
		case r < 0.10:
			t = triplet{fmt.Sprintf("198.51.%d.%d", rnd.IntN(256), 1+rnd.IntN(254)), fmt.Sprintf("mx%d.debian.org", rnd.IntN(40)),
				fmt.Sprintf("bounce-%d@debian.org", rnd.IntN(1e6)), fmt.Sprintf("user%d@example.com", rnd.IntN(500))}
		case r < 0.50 && len(news) > 0:
			t = news[rnd.IntN(len(news))]
		default:
			dom := fmt.Sprintf("host%d.example", rnd.IntN(1e5))
			t = triplet{fmt.Sprintf("%d.%d.%d.%d", 1+rnd.IntN(223), rnd.IntN(256), rnd.IntN(256), 1+rnd.IntN(254)), "mail." + dom,
				fmt.Sprintf("news%d@%s", rnd.IntN(1000), dom), fmt.Sprintf("user%d@example.com", rnd.IntN(500))}
			news = append(news, t)
		}
		out[i] = []byte(encodeRequest("client_address", t.ip, "client_name", t.name, "reverse_client_name", t.name,
			"helo_name", t.name, "sender", t.sender, "recipient", t.rcpt, "instance", fmt.Sprintf("%04X.%04X.0", i>>16, i&0xffff),
			"queue_id", "", "recipient_count", "0", "sasl_method", "", "sasl_username", "", "sasl_sender", "", "size", "4096",
			"ccert_subject", "", "ccert_issuer", "", "ccert_fingerprint", "", "ccert_pubkey_fingerprint", "",
			"encryption_protocol", "TLSv1.3", "encryption_cipher", "TLS_AES_256_GCM_SHA384", "encryption_keysize", "256",
			"etrn_domain", "", "stress", "", "server_address", "127.0.0.1", "server_port", "25",
			"compatibility_level", "3.6", "mail_version", "3.7.11"))
	}
	return out
}

// benchServerConfig is bench/policyd's configuration: a per-client rate limit
// on every request, then greylisting with postgrey's settings.
func benchServerConfig() Config {
	cfg := testConfig()
	cfg.Checks = []string{CheckRateLimit, CheckGreylist}
	cfg.Greylist.Enabled = true
	cfg.Greylist.ExemptNetworks = nil
	cfg.Greylist.ExemptClients = []string{"debian.org"}
	cfg.RateLimit.Enabled = true
	cfg.RateLimit.Limits = []RateLimit{
		{Name: "ip-hour", Key: KeyClientAddress, Messages: 1000, Window: config.Duration(time.Hour), Action: "DEFER 4.7.1 Rate limit exceeded"},
	}
	return cfg
}

// BenchmarkServer measures request/reply round trips over loopback TCP with
// greylisting and a rate limit on, on the in-memory store and on SQLite
// (bench/policyd compares SQLite and Redis with postgrey as separate processes).
func BenchmarkServer(b *testing.B) {
	stores := map[string]func(b *testing.B) store.Store{
		"mem": func(*testing.B) store.Store { return mem.New() },
		// The default: write-behind (store.write_behind).
		"sqlite": func(b *testing.B) store.Store {
			return openSQLite(b, store.DefaultConfig().WriteBehind.D())
		},
		"sqlite-write-through": func(b *testing.B) store.Store { return openSQLite(b, 0) },
	}
	reqs := benchStream()
	for _, name := range []string{"mem", "sqlite", "sqlite-write-through"} {
		b.Run(name, func(b *testing.B) {
			st := stores[name](b)
			defer st.Close()
			s, err := New(benchServerConfig(), Deps{Store: st, Log: benchLog()})
			if err != nil {
				b.Fatal(err)
			}
			replayParallel(b, s, reqs, "")
		})
	}
}

func openSQLite(b *testing.B, writeBehind time.Duration) store.Store {
	st, err := sqlite.Open(b.Context(), sqlite.Options{Path: filepath.Join(b.TempDir(), "state.db"), WriteBehind: writeBehind})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// benchLog formats decision lines as the daemon does (its text handler), to nowhere.
func benchLog() *slog.Logger {
	return slog.New(daemon.NewTextHandler(io.Discard, nil)).With("daemon", "policyd")
}

func readReplyForBench(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	_, err = br.ReadString('\n')
	return line, err
}

// BenchmarkGreylistKnown measures the common steady state of a greylisting MX:
// every request is a triplet that passed before (refreshed in the store, its
// client network credited at most once per interval), on SQLite.
func BenchmarkGreylistKnown(b *testing.B) {
	st, err := sqlite.Open(b.Context(), sqlite.Options{Path: filepath.Join(b.TempDir(), "state.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cfg := benchServerConfig()
	cfg.Checks = []string{CheckGreylist}
	cfg.RateLimit.Enabled = false
	s, err := New(cfg, Deps{Store: st, Log: benchLog()})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1000
	reqs := make([][]byte, n)
	now := time.Now().Unix()
	for i := range reqs {
		ip, sender, rcpt := fmt.Sprintf("192.0.%d.%d", i/250, 1+i%250), fmt.Sprintf("news@host%d.example", i), "user@example.com"
		net := fmt.Sprintf("192.0.%d.0/24", i/250)
		if err := st.Set(b.Context(), tripletKey(net, sender, rcpt), pair(now-3600, now-60), time.Hour); err != nil {
			b.Fatal(err)
		}
		reqs[i] = []byte(encodeRequest("request", "smtpd_access_policy", "protocol_state", "RCPT", "client_address", ip,
			"client_name", "mail.example", "sender", sender, "recipient", rcpt, "instance", fmt.Sprintf("I%d", i)))
	}
	replayParallel(b, s, reqs, "action=DUNNO\n")
}

// replayParallel serves s on loopback and replays reqs round-robin from
// GOMAXPROCS client connections, one request in flight on each (as Postfix
// does); a non-empty want is checked against every reply's action line.
func replayParallel(b *testing.B, s *Server, reqs [][]byte, want string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(b.Context())
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		for pb.Next() {
			if _, err := nc.Write(reqs[int(seq.Add(1))%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			line, err := readReplyForBench(br)
			if err != nil || want != "" && line != want {
				b.Errorf("reply %q, %v", line, err)
				return
			}
		}
	})
}

// BenchmarkServeConn measures the server's own work per request — reading and
// parsing, the checks on the in-memory store, the reply, metrics and the
// decision log line (text, to io.Discard) — without sockets: one connection
// whose reads return the bench stream one request at a time and whose writes
// go nowhere. Syscalls, deadlines and scheduling are what it leaves out.
func BenchmarkServeConn(b *testing.B) {
	s, err := New(benchServerConfig(), Deps{Store: mem.New(), Log: benchLog()})
	if err != nil {
		b.Fatal(err)
	}
	c := &conn{nc: &streamConn{reqs: benchStream(), left: b.N}}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	s.serveConn(c)
}

// streamConn is a net.Conn whose reads deliver left requests from reqs, one
// request per read at most, then io.EOF; writes are discarded.
type streamConn struct {
	reqs [][]byte
	next int
	cur  []byte
	left int
}

func (c *streamConn) Read(p []byte) (int, error) {
	if len(c.cur) == 0 {
		if c.left == 0 {
			return 0, io.EOF
		}
		c.left--
		c.cur = c.reqs[c.next%len(c.reqs)]
		c.next++
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *streamConn) Close() error                { return nil }
func (c *streamConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10040}
}
func (c *streamConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
