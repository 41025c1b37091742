// Command lmtpd-bench is the LMTP load generator for the lmtpd benchmark: it sends N
// messages of exactly 4,096 bytes over C persistent LMTP connections (released
// together), each to R distinct recipients u000..u<U-1>@example.com round-robin, and
// prints one JSON line: deliveries/s (message-recipients per second), msgs/s, and
// p50/p99 per-transaction latency (MAIL FROM .. last per-recipient reply). The
// message mix is the one of ../shared/peers/lmtp/lmtp_bench.py (20 % List-Id, 10 %
// X-Spam-Flag, 20 % partner.example.net, 50 % plain), so the same Sieve script
// files the same share of mail on both servers.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

const filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod " +
	"tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim.\r\n"

func makeMsg(i int, rcpts []string) (string, []byte) {
	var sender, extra string
	switch b := i % 100; {
	case b < 20:
		sender, extra = "list-bounces@lists.example.org", "List-Id: <dev.lists.example.org>\r\nPrecedence: list\r\n"
	case b < 30:
		sender, extra = "offers@spam.example.com", "X-Spam-Flag: YES\r\nX-Spam-Score: 9.1\r\n"
	case b < 50:
		sender = "someone@partner.example.net"
	default:
		sender = "friend@example.org"
	}
	hdr := fmt.Sprintf("Return-Path: <%s>\r\n"+
		"Received: from mx.example.org (mx.example.org [192.0.2.10])\r\n"+
		"\tby mail.example.com with ESMTP id BENCH%06d; Mon, 23 Nov 2026 10:00:00 +0000\r\n"+
		"From: Sender %d <%s>\r\nTo: %s\r\nSubject: benchmark message %d\r\n"+
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench-%d@example.org>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n%s\r\n",
		sender, i, i, sender, strings.Join(rcpts, ", "), i, i, extra)
	body := strings.Repeat(filler, (4096-len(hdr))/len(filler)+1)
	msg := (hdr + body)[:4096-2] + "\r\n"
	return sender, []byte(msg)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:46024", "LMTP server (host:port or unix:/path)")
	n := flag.Int("n", 1000, "messages")
	conns := flag.Int("conns", 1, "concurrent connections")
	rcpts := flag.Int("rcpts", 1, "recipients per message")
	users := flag.Int("users", 100, "users u000..")
	flag.Parse()
	if *rcpts > *users {
		fmt.Fprintln(os.Stderr, "rcpts > users")
		os.Exit(2)
	}
	lat := make([][]time.Duration, *conns)
	errs := make([]error, *conns)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for c := 0; c < *conns; c++ {
		ready.Add(1)
		done.Add(1)
		go func(c int) {
			defer done.Done()
			network, a := "tcp", *addr
			if strings.HasPrefix(a, "unix:") {
				network, a = "unix", a[5:]
			}
			conn, err := net.Dial(network, a)
			if err != nil {
				errs[c] = err
				ready.Done()
				return
			}
			cl := smtp.NewClientLMTP(conn)
			defer cl.Close()
			if err := cl.Hello("bench.example.org"); err != nil {
				errs[c] = err
				ready.Done()
				return
			}
			ready.Done()
			<-start
			for i := c; i < *n; i += *conns {
				var to []string
				for k := 0; k < *rcpts; k++ {
					to = append(to, fmt.Sprintf("u%03d@example.com", (i*(*rcpts)+k)%*users))
				}
				sender, msg := makeMsg(i, to)
				t0 := time.Now()
				if err := tx(cl, sender, to, msg); err != nil {
					errs[c] = fmt.Errorf("message %d: %w", i, err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
			cl.Quit()
		}(c)
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	wall := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000
	}
	out, _ := json.Marshal(map[string]any{
		"messages": *n, "connections": *conns, "rcpts_per_msg": *rcpts,
		"seconds":          wall.Seconds(),
		"deliveries_per_s": float64(*n**rcpts) / wall.Seconds(),
		"msgs_per_s":       float64(*n) / wall.Seconds(),
		"p50_ms":           pct(0.50), "p99_ms": pct(0.99),
	})
	fmt.Println(string(out))
}

func tx(cl *smtp.Client, from string, to []string, msg []byte) error {
	if err := cl.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := cl.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	_, err = w.CloseWithLMTPResponse()
	return err
}
