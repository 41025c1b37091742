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
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/miekg/dns"

	"github.com/dovetail-mail/dovetail/internal/miltertest"
	"github.com/dovetail-mail/dovetail/milter"
	"github.com/dovetail-mail/dovetail/spam"
)

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

	msgs, err := miltertest.LoadCorpus(*corpus, *distinct)
	if err != nil {
		log.Fatal(err)
	}
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

func run(name, addr string, conns int, msgs []miltertest.Message, n int) result {
	res := result{Target: name, Connections: conns, Messages: n, Actions: map[string]int{}}
	sessions := make([]*gomilter.ClientSession, conns)
	for i := range sessions {
		s, err := miltertest.Session(addr, 60*time.Second)
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
				act, err := miltertest.Send(sessions[c], msgs[i%len(msgs)], i)
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
