// Command milter-bench measures whole message transactions through the milter
// protocol (what Postfix's smtpd does per message: macros, MAIL, RCPT, each
// header, body chunks, end of message) against dovetail's milter and,
// optionally, rspamd's milter (rspamd_proxy with milter = yes, self_scan),
// with the same go-milter client, the same corpus messages and 1 and 2
// concurrent MTA connections. It prints one JSON line per run.
//
//	go run ./bench/milter -corpus ../shared/corpus -n 1000 [-rspamd-addr 127.0.0.1:PORT]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-message/textproto"
	gomilter "github.com/emersion/go-milter"
	"github.com/miekg/dns"

	"github.com/dovetail-mail/dovetail/milter"
	"github.com/dovetail-mail/dovetail/spam"
)

type msg struct {
	hdr  textproto.Header
	body []byte
}

type result struct {
	Target      string         `json:"target"`
	Connections int            `json:"connections"`
	Messages    int            `json:"messages"`
	WallS       float64        `json:"wall_s"`
	MsgsPerS    float64        `json:"msgs_per_s"`
	P50Ms       float64        `json:"p50_ms"`
	P99Ms       float64        `json:"p99_ms"`
	Actions     map[string]int `json:"actions"`
	Errors      int            `json:"errors,omitempty"`
	// MaxRSSMiB is the driver process's peak RSS (client and, without
	// -dovetail-addr, the in-process milter); run.sh measures the daemons.
	MaxRSSMiB float64 `json:"driver_max_rss_mib"`
}

func main() {
	corpus := flag.String("corpus", "../shared/corpus", "corpus dir with ham/ and spam/")
	n := flag.Int("n", 1000, "messages per run")
	distinct := flag.Int("distinct", 1000, "distinct corpus messages to cycle through")
	dovetailAddr := flag.String("dovetail-addr", "", "a running dovetail milter; empty runs one in-process")
	rspamdAddr := flag.String("rspamd-addr", "", "rspamd milter (proxy) address; empty skips rspamd")
	conns := flag.String("conns", "1,2", "connection counts")
	warm := flag.Int("warmup", 50, "messages sent before each measured run")
	repeat := flag.Int("repeat", 3, "runs per target and connection count (interleaved); a median line follows")
	sink := flag.String("dns-sink", "", "only serve a DNS sink answering REFUSED on this UDP/TCP address (for rspamd)")
	flag.Parse()
	if *sink != "" {
		serveSink(*sink)
		return
	}

	msgs := load(*corpus, *distinct)
	if len(msgs) == 0 {
		log.Fatalf("no messages under %s", *corpus)
	}
	log.Printf("%d corpus messages, GOMAXPROCS %d", len(msgs), runtime.GOMAXPROCS(0))

	addr := *dovetailAddr
	if addr == "" {
		addr = inProcess()
	}
	targets := [][2]string{{"dovetail", addr}}
	if *rspamdAddr != "" {
		targets = append(targets, [2]string{"rspamd", *rspamdAddr})
	}
	var cs []int
	for _, c := range []int{1, 2} {
		if bytes.Contains([]byte(*conns), []byte(fmt.Sprint(c))) {
			cs = append(cs, c)
		}
	}

	out := json.NewEncoder(os.Stdout)
	for _, t := range targets {
		run(t[0], t[1], 1, msgs, *warm) // warm-up: rule caches, worker start
	}
	// Targets and connection counts are interleaved within each repetition so
	// the load of a shared machine hits all of them alike.
	rates := map[string][]float64{}
	for r := 0; r < *repeat; r++ {
		for _, c := range cs {
			for _, t := range targets {
				res := run(t[0], t[1], c, msgs, *n)
				out.Encode(res)
				key := fmt.Sprintf("%s/%d", t[0], c)
				rates[key] = append(rates[key], res.MsgsPerS)
			}
		}
	}
	for _, c := range cs {
		for _, t := range targets {
			key := fmt.Sprintf("%s/%d", t[0], c)
			v := rates[key]
			sort.Float64s(v)
			out.Encode(map[string]any{"median": true, "target": t[0], "connections": c, "msgs_per_s": v[len(v)/2], "runs": v})
		}
	}
}

// inProcess starts a dovetail milter in this process (rules only, like the
// untrained rspamd it is compared with) and returns its address.
func inProcess() string {
	cfg := spam.DefaultConfig()
	cfg.Bayes.Enabled = false
	e, err := spam.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := milter.New(milter.DefaultConfig(), e, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	return ln.Addr().String()
}

// serveSink answers every DNS query REFUSED at once, so a peer configured to
// use it never waits on a timeout (the machine has no working resolver).
func serveSink(addr string) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		w.WriteMsg(m)
	})
	errc := make(chan error, 2)
	for _, netw := range []string{"udp", "tcp"} {
		go func() { errc <- (&dns.Server{Addr: addr, Net: netw, Handler: h}).ListenAndServe() }()
	}
	log.Fatal(<-errc)
}

func load(dir string, n int) []msg {
	var files []string
	for _, sub := range []string{"ham", "spam"} {
		fs, _ := filepath.Glob(filepath.Join(dir, sub, "*.eml"))
		sort.Strings(fs)
		files = append(files, fs...)
	}
	step := max(1, len(files)/max(n, 1))
	var out []msg
	for i := 0; i < len(files) && len(out) < n; i += step {
		raw, err := os.ReadFile(files[i])
		if err != nil {
			log.Fatal(err)
		}
		if bytes.HasPrefix(raw, []byte("From ")) { // mbox separator line
			if i := bytes.IndexByte(raw, '\n'); i >= 0 {
				raw = raw[i+1:]
			}
		}
		raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		br := bufio.NewReader(bytes.NewReader(raw))
		h, err := textproto.ReadHeader(br)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(br)
		out = append(out, msg{h, body})
	}
	return out
}

func session(addr string) (*gomilter.ClientSession, error) {
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		return nil, err
	}
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 25000, "192.0.2.10"); err != nil {
		return nil, err
	}
	if _, err := s.Helo("client.test"); err != nil {
		return nil, err
	}
	return s, nil
}

func send(s *gomilter.ClientSession, m msg, id int) (*gomilter.Action, error) {
	if err := s.Macros(gomilter.CodeMail, "{mail_addr}", "sender@remote.test", "i", fmt.Sprintf("Q%08X", id)); err != nil {
		return nil, err
	}
	if act, err := s.Mail("sender@remote.test", nil); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if act, err := s.Rcpt("alice@example.com", nil); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if act, err := s.Header(m.hdr); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	_, act, err := s.BodyReadFrom(bytes.NewReader(m.body))
	return act, err
}

func run(name, addr string, conns int, msgs []msg, n int) result {
	res := result{Target: name, Connections: conns, Messages: n, Actions: map[string]int{}}
	sessions := make([]*gomilter.ClientSession, conns)
	for i := range sessions {
		s, err := session(addr)
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		sessions[i] = s
	}
	lat := make([]time.Duration, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := c; i < n; i += conns {
				t0 := time.Now()
				act, err := send(sessions[c], msgs[i%len(msgs)], i)
				lat[i] = time.Since(t0)
				mu.Lock()
				if err != nil {
					res.Errors++
					mu.Unlock()
					log.Printf("%s: message %d: %v", name, i, err)
					return
				}
				res.Actions[fmt.Sprintf("%c", act.Code)]++
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	res.WallS = time.Since(start).Seconds()
	res.MsgsPerS = float64(n) / res.WallS
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.P50Ms = float64(lat[n/2].Microseconds()) / 1000
	res.P99Ms = float64(lat[n*99/100].Microseconds()) / 1000
	for _, s := range sessions {
		s.Close()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.MaxRSSMiB = float64(ru.Maxrss) / 1024
	}
	return res
}
