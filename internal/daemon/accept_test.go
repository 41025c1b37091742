package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
)

// flakyListener fails with the queued errors before accepting for real.
type flakyListener struct {
	net.Listener
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

func TestAccept(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", syscall.EMFILE)}
	for _, tc := range []struct {
		name    string
		errs    []error
		closing bool
		wantErr error
	}{
		{"accepts", nil, false, nil},
		{"retries EMFILE and ECONNABORTED", []error{emfile, syscall.ECONNABORTED}, false, nil},
		{"permanent error returned", []error{errors.New("broken")}, false, errAny},
		{"closing ends retrying", []error{emfile}, true, syscall.EMFILE},
		{"closed listener", []error{net.ErrClosed}, false, net.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
					defer c.Close()
					_, _ = c.Read(make([]byte, 1))
				}
			}()
			fl := &flakyListener{Listener: ln, errs: tc.errs}
			nc, err := Accept(fl, log, func() bool { return tc.closing })
			if nc != nil {
				nc.Close()
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Accept: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Accept error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")
