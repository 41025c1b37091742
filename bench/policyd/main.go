// Command policyd-bench measures dovetail's policy daemon side by side with
// postgrey on the same request stream (see run and ../../docs/benchmarks.md).
//
//	policyd-bench serve -listen 127.0.0.1:PORT -store sqlite -sqlite /tmp/x.db ...
//	policyd-bench load  -addr 127.0.0.1:PORT -stream requests.txt -conns 8 [-rate 5000]
//	policyd-bench null  -listen 127.0.0.1:PORT [-spin | -netpoll]
//
// serve runs policyd alone in its own process (so the load generator does not
// share its scheduler) with greylisting and rate limits on, on the chosen store;
// null is a server that does nothing, the box's ceiling (null.go).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: policyd-bench serve|load|null [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err = runServe(ctx, os.Args[2:])
		stop()
	case "null":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err = runNull(ctx, os.Args[2:])
		stop()
	case "load":
		err = runLoad(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "policyd-bench:", err)
		os.Exit(1)
	}
}
