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
type Signals struct {
	c      chan os.Signal
	cancel context.CancelFunc
	notify bool // c is registered with signal.Notify

	once      sync.Once
	stopWatch chan struct{}
	watchDone chan struct{}
	held      []os.Signal // written by watch until watchDone is closed
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
	s := &Signals{c: c, cancel: cancel, stopWatch: make(chan struct{}), watchDone: make(chan struct{})}
	go s.watch()
	return s, ctx
}

func (s *Signals) watch() {
	defer close(s.watchDone)
	for {
		select {
		case sig := <-s.c:
			s.held = append(s.held, sig)
			if sig != syscall.SIGHUP {
				s.cancel()
			}
		case <-s.stopWatch:
			return
		}
	}
}

// takeOver ends the startup watch and returns the signals it held back, in
// order of arrival, and the channel later ones arrive on. Only the first call
// gets the held signals.
func (s *Signals) takeOver() ([]os.Signal, <-chan os.Signal) {
	var held []os.Signal
	s.once.Do(func() {
		close(s.stopWatch)
		<-s.watchDone
		held = s.held
		s.held = nil
	})
	return held, s.c
}

// Stop stops catching signals (Go's default actions apply again) and ends the
// context.
func (s *Signals) Stop() {
	s.takeOver()
	if s.notify {
		signal.Stop(s.c)
	}
	s.cancel()
}
