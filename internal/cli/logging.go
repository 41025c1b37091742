package cli

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// logSwitch lets a reload change the log level and format of the loggers
// already handed out: every daemon keeps the logger it was built with.
type logSwitch struct {
	w     *daemon.LogWriter // may linger: Flush before exit (App.Close)
	level slog.LevelVar
	cur   atomic.Pointer[logGen]
}

// logGen is one configuration of the switch; gen tells derived handlers
// (With) that theirs is out of date.
type logGen struct {
	gen uint64
	h   slog.Handler
}

// newLogSwitch logs to w; linger > 0 lets Info lines wait that long to go
// out with others (daemon.LogWriter).
func newLogSwitch(w io.Writer, c LogConfig, linger time.Duration) *logSwitch {
	s := &logSwitch{w: daemon.NewLogWriter(w, linger)}
	s.set(c)
	return s
}

// set applies c to every logger made by logger(), from their next record on.
func (s *logSwitch) set(c LogConfig) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated with the config
	s.level.Set(lvl)
	opts := &slog.HandlerOptions{Level: &s.level}
	var h slog.Handler
	if c.Format == "json" {
		h = slog.NewJSONHandler(s.w, opts)
	} else {
		h = daemon.NewTextHandler(s.w, opts) // slog's text format, cheaper per line
	}
	h = daemon.FlushOnWarn(h, s.w)
	var gen uint64 = 1
	if old := s.cur.Load(); old != nil {
		gen = old.gen + 1
	}
	s.cur.Store(&logGen{gen: gen, h: h})
}

// flush writes the lines still lingering.
func (s *logSwitch) flush() { _ = s.w.Flush() }

func (s *logSwitch) logger() *slog.Logger { return slog.New(&switchHandler{sw: s}) }

// switchHandler sends records to the switch's current handler, with the
// attributes and groups added by With and WithGroup applied on top; the
// derived handler is built once per configuration, not per record.
type switchHandler struct {
	sw    *logSwitch
	ops   []func(slog.Handler) slog.Handler
	cache atomic.Pointer[logGen]
}

func (h *switchHandler) handler() slog.Handler {
	cur := h.sw.cur.Load()
	if len(h.ops) == 0 {
		return cur.h
	}
	if c := h.cache.Load(); c != nil && c.gen == cur.gen {
		return c.h
	}
	d := cur.h
	for _, op := range h.ops {
		d = op(d)
	}
	h.cache.Store(&logGen{gen: cur.gen, h: d})
	return d
}

func (h *switchHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.handler().Enabled(ctx, l)
}

func (h *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}

func (h *switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &switchHandler{sw: h.sw, ops: append(slices.Clip(h.ops), func(d slog.Handler) slog.Handler { return d.WithAttrs(as) })}
}

func (h *switchHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &switchHandler{sw: h.sw, ops: append(slices.Clip(h.ops), func(d slog.Handler) slog.Handler { return d.WithGroup(name) })}
}
