package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/dovetail-mail/dovetail/bench/internal/rawconn"
)

// loadResult is one JSON line, with the fields of the peers' policy_bench.py.
type loadResult struct {
	Target       string  `json:"target"`
	Requests     int     `json:"requests"`
	Connections  int     `json:"connections"`
	TargetRate   float64 `json:"target_rate,omitempty"`
	WallS        float64 `json:"wall_s"`
	RequestsPerS float64 `json:"requests_per_s"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	MeanMs       float64 `json:"mean_ms"`
	// Share of all the requests' waiting spent in the slowest 1 %: how much a
	// tail of stalls, rather than the typical round trip, sets the throughput.
	SlowestPctShare float64 `json:"slowest_1pct_share"`
	// With -rate: latency from the moment the request was actually written
	// (the figures above count from its scheduled time, so they include a late
	// send, whether the server or this client's own scheduling made it late).
	SentP50Ms float64 `json:"sent_p50_ms,omitempty"`
	SentP99Ms float64 `json:"sent_p99_ms,omitempty"`
	// With -rate: latency from the scheduled time when the connection was still
	// waiting for its previous reply then (the server made this send late), else
	// from the actual write. It leaves out only this client's own wake-up
	// lateness (tens of µs with clock_nanosleep; up to a millisecond when this
	// client slept in Go's netpoller).
	CorrP50Ms      float64        `json:"corr_p50_ms,omitempty"`
	CorrP99Ms      float64        `json:"corr_p99_ms,omitempty"`
	CorrP999Ms     float64        `json:"corr_p999_ms,omitempty"`
	Actions        map[string]int `json:"actions"`
	ClientCPUS     float64        `json:"client_cpu_s"` // this load generator's CPU time (user+system)
	ConnectErrors  int            `json:"connect_errors,omitempty"`
	ProtocolErrors int            `json:"protocol_errors,omitempty"`
}

// runLoad replays a request stream over persistent connections, one request in
// flight per connection, round-robin like policy_bench.py (request i goes to
// connection i mod c). With -rate each connection paces its sends on a fixed
// schedule (open loop) and latency is measured from the scheduled send time, so
// a stall shows up in the percentiles instead of silently lowering the rate.
func runLoad(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:10040", "policy server address")
	streamFile := fs.String("stream", "", "request stream file (requests separated by blank lines)")
	conns := fs.Int("conns", 1, "concurrent connections")
	n := fs.Int("n", 0, "requests to send (0 = the whole stream)")
	rate := fs.Float64("rate", 0, "total requests/s (0 = as fast as possible)")
	target := fs.String("target", "", "label for the JSON output")
	dist := fs.Bool("dist", false, "also print latency deciles to stderr (where between the median and p99 the time goes)")
	_ = fs.Parse(args)
	reqs, err := readStream(*streamFile)
	if err != nil {
		return err
	}
	if *n > 0 && *n < len(reqs) {
		reqs = reqs[:*n]
	}
	c := *conns
	per := make([][][]byte, c)
	for i, r := range reqs {
		per[i%c] = append(per[i%c], r)
	}
	// Every connection gets its own OS thread doing blocking system calls
	// (rawconn: the netpoller's wake-ups cost this client ~27 µs of CPU per
	// request on the server's CPUs, and its sleeps were whole milliseconds).
	rawconn.Reserve(c)
	rcs := make([]*rawconn.Conn, c)
	for i := range rcs {
		if rcs[i], err = rawconn.Dial("tcp", *addr); err != nil {
			return err
		}
		defer rcs[i].Close()
	}
	type out struct {
		lat     []time.Duration
		sent    []time.Duration // from the actual write (paced runs)
		corr    []time.Duration // from the schedule if the server held the connection then (paced runs)
		actions map[string]int
		err     error
	}
	results := make([]out, c)
	var ready, wg sync.WaitGroup
	startGate := make(chan struct{})
	ready.Add(c)
	wg.Add(c)
	var start int64 // CLOCK_MONOTONIC ns
	for i := 0; i < c; i++ {
		go func(i int) {
			defer wg.Done()
			runtime.LockOSThread()
			rc := rcs[i]
			buf := make([]byte, 4096)
			o := out{actions: map[string]int{}, lat: make([]time.Duration, 0, len(per[i])), sent: make([]time.Duration, 0, len(per[i])),
				corr: make([]time.Duration, 0, len(per[i]))}
			var prevDone int64
			var interval int64
			if *rate > 0 {
				interval = int64(float64(c) / *rate * 1e9)
			}
			ready.Done()
			<-startGate
			// Stagger the connections' schedules across one interval.
			base := start + interval*int64(i)/int64(c)
			for k, r := range per[i] {
				var t0 int64
				if interval > 0 {
					t0 = base + interval*int64(k)
					rawconn.SleepUntil(t0)
				}
				ts := rawconn.Mono()
				if interval == 0 {
					t0 = ts
				}
				if _, err := rc.Write(r); err != nil {
					o.err = err
					break
				}
				action, err := readReply(rc, buf)
				if err != nil {
					o.err = err
					break
				}
				now := rawconn.Mono()
				o.lat = append(o.lat, time.Duration(now-t0))
				o.sent = append(o.sent, time.Duration(now-ts))
				if prevDone > t0 {
					o.corr = append(o.corr, time.Duration(now-t0))
				} else {
					o.corr = append(o.corr, time.Duration(now-ts))
				}
				prevDone = now
				verb, _, _ := bytes.Cut(action, []byte(" "))
				o.actions[string(verb)]++
			}
			results[i] = o
		}(i)
	}
	ready.Wait()
	start = rawconn.Mono()
	close(startGate)
	wg.Wait()
	wall := time.Duration(rawconn.Mono() - start)
	var lat, sent, corr []time.Duration
	res := loadResult{Target: *target, Connections: c, TargetRate: *rate, Actions: map[string]int{}}
	for _, o := range results {
		if o.err != nil {
			return fmt.Errorf("connection failed: %w", o.err)
		}
		lat = append(lat, o.lat...)
		sent = append(sent, o.sent...)
		corr = append(corr, o.corr...)
		for k, v := range o.actions {
			res.Actions[k] += v
		}
	}
	slices.Sort(lat)
	res.Requests = len(lat)
	res.WallS = round(wall.Seconds(), 3)
	res.RequestsPerS = round(float64(len(lat))/wall.Seconds(), 1)
	res.P50Ms = ms(pct(lat, 50))
	res.P99Ms = ms(pct(lat, 99))
	res.P999Ms = ms(pct(lat, 99.9))
	res.MaxMs = ms(lat[len(lat)-1])
	var total, tail time.Duration
	for i, l := range lat {
		total += l
		if i >= len(lat)*99/100 {
			tail += l
		}
	}
	res.MeanMs = ms(total / time.Duration(len(lat)))
	if *dist {
		for _, q := range []float64{10, 25, 50, 60, 70, 75, 80, 90, 95, 99} {
			fmt.Fprintf(os.Stderr, "p%g=%.0fµs ", q, pct(lat, q).Seconds()*1e6)
		}
		fmt.Fprintln(os.Stderr)
	}
	res.SlowestPctShare = round(float64(tail)/float64(total), 3)
	if *rate > 0 {
		slices.Sort(sent)
		res.SentP50Ms, res.SentP99Ms = ms(pct(sent, 50)), ms(pct(sent, 99))
		slices.Sort(corr)
		res.CorrP50Ms, res.CorrP99Ms, res.CorrP999Ms = ms(pct(corr, 50)), ms(pct(corr, 99)), ms(pct(corr, 99.9))
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		res.ClientCPUS = round(time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds(), 3)
	}
	return json.NewEncoder(stdout).Encode(res)
}

// readReply reads "action=...\n" and the blank line into buf and returns the
// action's value (valid until the next call).
func readReply(rc *rawconn.Conn, buf []byte) ([]byte, error) {
	n := 0
	for n < 2 || !bytes.HasSuffix(buf[:n], []byte("\n\n")) {
		if n == len(buf) {
			return nil, fmt.Errorf("reply longer than %d bytes: %q", len(buf), buf[:64])
		}
		m, err := rc.Read(buf[n:])
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		n += m
	}
	line := buf[:n-2]
	if !bytes.HasPrefix(line, []byte("action=")) || bytes.IndexByte(line, '\n') >= 0 {
		return nil, fmt.Errorf("bad reply %q", buf[:n])
	}
	return line[len("action="):], nil
}

// readStream splits a file of requests, each ending with an empty line.
func readStream(path string) ([][]byte, error) {
	if path == "" {
		return nil, errors.New("-stream is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	var reqs [][]byte
	for len(data) > 0 {
		i := bytes.Index(data, []byte("\n\n"))
		if i < 0 {
			return nil, fmt.Errorf("%s: trailing data without a blank line", path)
		}
		reqs = append(reqs, data[:i+2])
		data = data[i+2:]
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("%s: no requests", path)
	}
	return reqs, nil
}

// pct is the nearest-rank percentile, as policy_bench.py computes it.
func pct(v []time.Duration, p float64) time.Duration {
	k := int(p/100*float64(len(v))+0.5) - 1
	k = max(0, min(len(v)-1, k))
	return v[k]
}

func ms(d time.Duration) float64 { return round(float64(d)/1e6, 3) }

func round(f float64, places int) float64 {
	m := 1.0
	for range places {
		m *= 10
	}
	return float64(int64(f*m+0.5)) / m
}
