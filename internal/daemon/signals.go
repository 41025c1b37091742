package daemon

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Signals receives SIGTERM, SIGINT and SIGHUP for a daemon process. Make it
// first thing, before the config is read and the backends are opened: until a
// signal is caught Go applies its default action, which for SIGHUP is to exit,
// so a `systemctl reload` right after a start would kill the daemon.
//
// Until Runtime.Run takes over, SIGTERM and SIGINT cancel the context
// CatchSignals returned (startup gives up) and SIGHUP is held back; Run then
// stops at once for a held stop signal, or reloads once for held SIGHUPs, as
// soon as everything is listening.
//
// The channel is drained all the time, SIGHUPs coalesced into one pending
// reload: the signal package drops a signal when the channel is full, so a
// channel left to fill up with SIGHUPs during a slow reload (a burst from
// config management or logrotate) would lose the SIGTERM after them, and the
// daemon would run on until the service manager's SIGKILL cut off its
// in-flight transactions.
type Signals struct {
	c      chan os.Signal
	cancel context.CancelFunc
	notify bool // c is registered with signal.Notify

	hup       chan struct{} // holds one pending reload
	stop      chan struct{} // closed at the first SIGTERM/SIGINT
	stopWatch chan struct{}
	watchDone chan struct{}

	mu      sync.Mutex
	stopSig os.Signal // the first stop signal
	taken   bool      // Run has taken over: a stop signal no longer cancels the context
	stopped bool      // Stop was called
}

// CatchSignals starts catching the daemon signals. The context it returns ends
// with ctx, on SIGTERM/SIGINT during startup, or at Stop.
func CatchSignals(ctx context.Context) (*Signals, context.Context) {
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	s, ctx := watchSignals(ctx, c)
	s.notify = true
	return s, ctx
}

// watchSignals is CatchSignals on a channel the caller feeds (tests).
func watchSignals(ctx context.Context, c chan os.Signal) (*Signals, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	s := &Signals{c: c, cancel: cancel, hup: make(chan struct{}, 1), stop: make(chan struct{}),
		stopWatch: make(chan struct{}), watchDone: make(chan struct{})}
	go s.watch()
	return s, ctx
}

func (s *Signals) watch() {
	defer close(s.watchDone)
	for {
		select {
		case sig := <-s.c:
			if sig == syscall.SIGHUP {
				select {
				case s.hup <- struct{}{}:
				default: // a reload is pending already
				}
				continue
			}
			s.mu.Lock()
			if s.stopSig == nil {
				s.stopSig = sig
				close(s.stop)
			}
			// After the takeover the context is the backends' and must live
			// through the drain; Run stops on s.stop.
			if !s.taken {
				s.cancel()
			}
			s.mu.Unlock()
		case <-s.stopWatch:
			return
		}
	}
}

// takeOver ends the startup phase: it returns the stop signal received so far
// (nil if none), and the channels on which a pending reload (a SIGHUP held
// during startup, or any since, however many) and a stop are signalled.
func (s *Signals) takeOver() (held os.Signal, hup <-chan struct{}, stop <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = true
	return s.stopSig, s.hup, s.stop
}

// stopSignal is the first stop signal received, nil if none.
func (s *Signals) stopSignal() os.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopSig
}

// Stop stops catching signals (Go's default actions apply again) and ends the
// context.
func (s *Signals) Stop() {
	s.mu.Lock()
	first := !s.stopped
	s.stopped = true
	s.mu.Unlock()
	if first {
		if s.notify {
			signal.Stop(s.c)
		}
		close(s.stopWatch)
		<-s.watchDone
	}
	s.cancel()
}
