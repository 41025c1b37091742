package daemon

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"
)

// Accept waits for the next connection on ln. Failures that pass — timeouts,
// running out of file descriptors (EMFILE, ENFILE), a client that aborted its
// handshake — are logged and retried with a backoff from 5 ms to 1 s: a server
// must neither spin on them nor stop serving. Any other error is returned, and
// so is the first error after closing() reports true (the listener was closed
// by a shutdown), which the caller treats as the normal end.
func Accept(ln net.Listener, log *slog.Logger, closing func() bool) (net.Conn, error) {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err == nil {
			return nc, nil
		}
		if closing() || !temporaryAccept(err) {
			return nil, err
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		log.Warn("accept failed, retrying", "addr", ln.Addr().String(), "err", err, "in", backoff)
		time.Sleep(backoff)
	}
}

func temporaryAccept(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
