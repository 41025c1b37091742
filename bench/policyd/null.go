package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
)

// runNull serves the policy protocol doing no work at all: it reads up to each
// blank line and answers action=DUNNO, on a locked OS thread per connection
// with plain system calls (no netpoller, nothing parsed, nothing logged or
// stored). It measures the ceiling this box and this client put on any policy
// server: at one connection a request's time is mostly two wake-ups (the
// server's and the client's), not the server's work.
//
// With -netpoll it serves as policyd does instead: a goroutine per connection
// reading through bufio from a net.Conn, sleeping in Go's netpoller, whose
// idle threads spin a few µs for work before they sleep. It bounds what any
// Go server written the usual way could reach here.
//
// With -spin the thread never sleeps: it polls the socket with non-blocking
// reads, burning a CPU per connection, so the server's wake-up is gone and
// only the client's remains. No production daemon should do that; it bounds
// what any server could reach against a client that blocks, as Postfix's
// smtpd does.
func runNull(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("null", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:10040", "address to listen on")
	spin := fs.Bool("spin", false, "poll with non-blocking reads instead of sleeping in read(2)")
	netpoll := fs.Bool("netpoll", false, "a goroutine per connection sleeping in Go's netpoller, as policyd serves")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	mode := nullBlock
	switch {
	case *spin && *netpoll:
		return errors.New("-spin and -netpoll exclude each other")
	case *spin:
		mode = nullSpin
	case *netpoll:
		mode = nullNetpoll
	}
	return serveNull(ctx, ln, mode)
}

type nullMode int

const (
	nullBlock   nullMode = iota // a locked thread sleeping in read(2)
	nullSpin                    // a locked thread polling with non-blocking reads
	nullNetpoll                 // a goroutine on Go's netpoller
)

func serveNull(ctx context.Context, ln net.Listener, mode nullMode) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if mode == nullNetpoll {
			go func() {
				defer c.Close()
				if err := nullNetpollConn(c); err != nil {
					fmt.Println("policyd-bench null:", err)
				}
			}()
			continue
		}
		spin := mode == nullSpin
		f, err := c.(*net.TCPConn).File() // a dup the netpoller does not own
		c.Close()
		if err != nil {
			return err
		}
		fd := int(f.Fd())
		if err := syscall.SetNonblock(fd, spin); err != nil {
			return err
		}
		// A P for every connection's thread, as the load generator does, so
		// returning from a blocking read never waits for one.
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
		go func() {
			runtime.LockOSThread()
			defer f.Close()
			if err := nullConn(fd, spin); err != nil {
				fmt.Println("policyd-bench null:", err)
			}
		}()
	}
}

var dunno = []byte("action=DUNNO\n\n")

func nullConn(fd int, spin bool) error {
	buf := make([]byte, 64<<10)
	n := 0
	for {
		m, err := syscall.Read(fd, buf[n:])
		switch {
		case err == syscall.EAGAIN && spin, err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case m == 0:
			return nil
		}
		n += m
		for {
			end := bytes.Index(buf[:n], []byte("\n\n"))
			if end < 0 {
				break
			}
			if _, err := syscall.Write(fd, dunno); err != nil {
				return err
			}
			n = copy(buf, buf[end+2:n])
		}
		if n == len(buf) {
			return errors.New("request longer than 64 KiB")
		}
	}
}

// nullNetpollConn answers each request as policyd's connection loop does: one
// buffered read per request when it arrives whole, the reply in one write.
func nullNetpollConn(c net.Conn) error {
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, io.EOF) && len(line) == 0:
			return nil
		case err != nil:
			return err
		case len(line) > 1:
			continue
		}
		if _, err := c.Write(dunno); err != nil {
			return err
		}
	}
}
