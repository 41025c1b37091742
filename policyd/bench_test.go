package policyd

import (
	"bufio"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// BenchmarkServer measures request/reply round trips over loopback TCP with
// greylisting and two rate limits on an in-memory store (the store backends
// have their own benchmarks; bench/policyd compares SQLite/Redis with postgrey).
func BenchmarkServer(b *testing.B) {
	cfg := testConfig()
	cfg.Checks = []string{CheckRateLimit, CheckGreylist}
	cfg.Greylist.Enabled = true
	cfg.Greylist.ExemptNetworks = nil
	cfg.RateLimit.Enabled = true
	cfg.RateLimit.Limits = []RateLimit{
		{Name: "ip", Key: KeyClientAddress, Messages: 1 << 40, Window: config.Duration(time.Hour), Action: "DEFER x"},
		{Name: "sender", Key: KeySender, Recipients: 1 << 40, Window: config.Duration(time.Hour), Action: "DEFER x"},
	}
	s, err := New(cfg, Deps{Store: mem.New(), Log: discardLog()})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
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
			i := seq.Add(1)
			req := encodeRequest("client_address", fmt.Sprintf("10.%d.%d.1", i%200, i/200%200),
				"sender", fmt.Sprintf("n%d@x.example", i%1000), "instance", fmt.Sprint(i))
			if _, err := nc.Write([]byte(req)); err != nil {
				b.Error(err)
				return
			}
			if _, err := readReplyForBench(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func readReplyForBench(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	_, err = br.ReadString('\n')
	return line, err
}
