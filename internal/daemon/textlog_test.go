package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// textPair logs the same records through NewTextHandler and slog's own
// TextHandler.
type textPair struct {
	fast, std       slog.Handler
	fastBuf, stdBuf bytes.Buffer
}

func newTextPair(opts *slog.HandlerOptions) *textPair {
	p := &textPair{}
	p.fast = NewTextHandler(&p.fastBuf, opts)
	p.std = slog.NewTextHandler(&p.stdBuf, opts)
	return p
}

// check logs through both handlers with every record's time set to one
// instant (the two calls would otherwise straddle a millisecond now and then).
func (p *textPair) check(t *testing.T, what string, logf func(l *slog.Logger)) {
	t.Helper()
	p.checkRaw(t, what, func(h slog.Handler) { logf(slog.New(fixedTime{h})) })
}

// checkRaw hands logf each handler itself.
func (p *textPair) checkRaw(t *testing.T, what string, logf func(h slog.Handler)) {
	t.Helper()
	p.fastBuf.Reset()
	p.stdBuf.Reset()
	logf(p.fast)
	logf(p.std)
	if got, want := p.fastBuf.String(), p.stdBuf.String(); got != want {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// fixedTime stamps every record with the same time.
type fixedTime struct{ slog.Handler }

var fixedAt = time.Date(2026, 11, 23, 18, 30, 45, 987654321, time.Local)

func (f fixedTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = fixedAt
	return f.Handler.Handle(ctx, r)
}
func (f fixedTime) WithAttrs(as []slog.Attr) slog.Handler { return fixedTime{f.Handler.WithAttrs(as)} }
func (f fixedTime) WithGroup(name string) slog.Handler    { return fixedTime{f.Handler.WithGroup(name)} }

var textSamples = []string{
	"", "plain", "with space", "a=b", `quote"d`, `back\slash`, `both "\"`, "tab\there", "nl\nx", "cr\r", "nul\x00",
	"del\x7f", "ctl\x1b[0m", "µs", "caf\u00e9", "smile \U0001F600", "\u00a0nbsp", "\u2028ls", "bad\xffutf8", "\xc3",
	"zero\u200bwidth", "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
	"mail.example[192.0.2.1]", "4.7.1 <a@b>", "#", "-", "{}[]()", "ümlaut=x",
}

type textErr struct{}

func (textErr) Error() string { return "custom error" }

type valuer struct{ v slog.Value }

func (v valuer) LogValue() slog.Value { return v.v }

func TestTextHandlerMatchesSlog(t *testing.T) {
	at := time.Date(2026, 11, 23, 18, 30, 45, 123456789, time.UTC)
	for _, opts := range []*slog.HandlerOptions{nil, {Level: slog.LevelDebug}, {Level: slog.LevelWarn}} {
		p := newTextPair(opts)
		for _, s := range textSamples {
			p.check(t, "string "+s, func(l *slog.Logger) { l.Info(s, s, s, "k", s) })
			p.check(t, "key "+s, func(l *slog.Logger) { l.Warn("m", slog.String(s, "v")) })
		}
		values := []slog.Attr{
			slog.Int("int", -42), slog.Int64("min", math.MinInt64), slog.Uint64("u", math.MaxUint64),
			slog.Float64("f", 3.25), slog.Float64("big", 1e21), slog.Float64("nan", math.NaN()), slog.Float64("inf", math.Inf(-1)),
			slog.Bool("b", true), slog.Duration("d", 1500*time.Microsecond), slog.Duration("d0", 0), slog.Duration("dn", -time.Hour),
			slog.Time("t", at), slog.Time("tz", at.In(time.FixedZone("X", 5*3600+1800))), slog.Time("t0", time.Time{}),
			slog.Any("err", errors.New("boom")), slog.Any("cerr", textErr{}), slog.Any("nilerr", nil), slog.Any("bytes", []byte("a b")),
			slog.Any("strs", []string{"a", "b c"}), slog.Any("ip", fmt.Stringer(nil)),
			slog.Group("g", slog.String("a", "x y"), slog.Int("n", 1)), slog.Group("empty"), slog.Group("", slog.String("inl", "i")),
			slog.Any("lv", valuer{slog.StringValue("resolved value")}), slog.Any("lvg", valuer{slog.GroupValue(slog.Int("x", 1))}),
			{}, slog.String("", "empty key"), slog.Any("level", slog.LevelError), slog.Any("dur-any", time.Second),
		}
		for _, a := range values {
			p.check(t, "attr "+a.String(), func(l *slog.Logger) { l.Info("v", a) })
			p.check(t, "with "+a.String(), func(l *slog.Logger) { l.With(a).Error("after with", "x", 1) })
		}
		// Levels, times (zero, monotonic, other zones), groups and chains of With.
		for _, lvl := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn + 2, slog.LevelError, slog.LevelError + 8, -9} {
			p.check(t, "level "+lvl.String(), func(l *slog.Logger) { l.Log(context.Background(), lvl, "lvl", "a", 1) })
		}
		for _, tm := range []time.Time{{}, time.Now(), at, at.In(time.FixedZone("Y", -3600)), time.Unix(0, 999999)} {
			p.checkRaw(t, "time "+tm.String(), func(h slog.Handler) {
				r := slog.NewRecord(tm, slog.LevelInfo, "rec", 0)
				r.AddAttrs(slog.String("a", "b c"))
				_ = h.Handle(context.Background(), r)
			})
		}
		p.check(t, "group", func(l *slog.Logger) { l.WithGroup("grp").Info("m", "a", "b") })
		p.check(t, "with chain", func(l *slog.Logger) {
			l.With("daemon", "policyd").With("x", "y z").Info("policy decision", "queue_id", "", "took", 91594*time.Nanosecond)
		})
		p.check(t, "with then group", func(l *slog.Logger) { l.With("a", 1).WithGroup("g").With("b", 2).Info("m", "c", 3) })
		p.check(t, "with any then more", func(l *slog.Logger) { l.With("err", errors.New("e")).With("s", "t").Info("m", "c", 3) })
	}
}

// TestTextHandlerRandom compares random records of many attributes.
func TestTextHandlerRandom(t *testing.T) {
	p := newTextPair(&slog.HandlerOptions{Level: slog.LevelDebug})
	rnd := rand.New(rand.NewPCG(7, 7))
	str := func() string {
		var b strings.Builder
		for range rnd.IntN(4) {
			b.WriteString(textSamples[rnd.IntN(len(textSamples))])
		}
		if rnd.IntN(8) == 0 {
			b.WriteByte(byte(rnd.IntN(256)))
		}
		return b.String()
	}
	for i := range 3000 {
		var args []any
		for range rnd.IntN(14) {
			switch rnd.IntN(6) {
			case 0:
				args = append(args, slog.Int(str(), rnd.IntN(1000)-500))
			case 1:
				args = append(args, slog.Duration(str(), time.Duration(rnd.Int64N(int64(time.Hour)))))
			default:
				args = append(args, slog.String(str(), str()))
			}
		}
		msg := str()
		p.check(t, fmt.Sprintf("record %d", i), func(l *slog.Logger) { l.With("daemon", "policyd").Info(msg, args...) })
	}
}

func FuzzTextHandler(f *testing.F) {
	for _, s := range textSamples {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, k, v string) {
		if k == "" {
			return
		}
		p := newTextPair(nil)
		p.check(t, "fuzz", func(l *slog.Logger) { l.With(k, v).Info(v, k, v, "n", len(v)) })
	})
}

func TestTextHandlerOptionsFallBack(t *testing.T) {
	rep := func(_ []string, a slog.Attr) slog.Attr { return a }
	for _, opts := range []*slog.HandlerOptions{{ReplaceAttr: rep}, {AddSource: true}} {
		if _, ok := NewTextHandler(&bytes.Buffer{}, opts).(*slog.TextHandler); !ok {
			t.Errorf("options %+v: not slog's own handler", opts)
		}
	}
}

func BenchmarkTextHandler(b *testing.B) {
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "policy decision", 0)
	rec.AddAttrs(slog.String("queue_id", ""), slog.String("state", "RCPT"), slog.String("client", "mail8.host15455.ch[217.32.130.25]"),
		slog.String("helo", "mail8.host15455.ch"), slog.String("sender", "info@host15455.ch"), slog.String("recipient", "user249@example.com"),
		slog.String("action", "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/help/example.com.html"),
		slog.String("check", "greylist"), slog.String("reason", "greylist: new triplet"), slog.Duration("took", 91594*time.Nanosecond))
	for _, tc := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog", slog.NewTextHandler(discard{}, nil).WithAttrs([]slog.Attr{slog.String("daemon", "policyd")})},
		{"daemon", NewTextHandler(discard{}, nil).WithAttrs([]slog.Attr{slog.String("daemon", "policyd")})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = tc.h.Handle(context.Background(), rec)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestTextHandlerFastPath makes sure the common records do not fall back to
// slog's handler (the differential tests pass either way).
func TestTextHandlerFastPath(t *testing.T) {
	var buf bytes.Buffer
	h := NewTextHandler(&buf, nil).(*textHandler)
	h.slow = failHandler{t}
	l := slog.New(h).With("daemon", "policyd")
	l.Info("policy decision", "queue_id", "", "client", "mx.example[192.0.2.1]", "action", "DEFER_IF_PERMIT 4.7.1 Greylisted, see x",
		"n", 3, "took", time.Millisecond, "ok", true, "at", time.Unix(0, 0))
	if !strings.Contains(buf.String(), `msg="policy decision" daemon=policyd queue_id="" client=mx.example[192.0.2.1] action="DEFER_IF_PERMIT`) {
		t.Errorf("output: %s", buf.String())
	}
}

type failHandler struct{ t *testing.T }

func (f failHandler) Enabled(context.Context, slog.Level) bool { return true }
func (f failHandler) Handle(context.Context, slog.Record) error {
	f.t.Error("fell back to slog's handler")
	return nil
}
func (f failHandler) WithAttrs([]slog.Attr) slog.Handler { return f }
func (f failHandler) WithGroup(string) slog.Handler      { return f }
