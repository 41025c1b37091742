package daemon

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// NewTextHandler returns a handler whose output is byte for byte that of
// slog.NewTextHandler(w, opts), only cheaper for the records daemons log per
// request: it formats string, number, boolean, duration and time attributes
// itself, quoting printable ASCII without strconv's rune-by-rune escaping
// (which, with the quoting test, was half of the text handler's cost on
// policyd's decision line). Records carrying anything else (groups, Any
// values such as errors, empty keys) and handlers with ReplaceAttr, AddSource
// or a group are formatted by slog.TextHandler itself, so the output never
// differs; a differential test holds the two together.
func NewTextHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	if opts.ReplaceAttr != nil || opts.AddSource {
		return slog.NewTextHandler(w, opts)
	}
	// One writer for both paths, so lines never interleave: w's own if it
	// is a LogWriter (which may linger), else one that writes at once.
	gw, ok := w.(*LogWriter)
	if !ok {
		gw = NewLogWriter(w, 0)
	}
	return &textHandler{level: opts.Level, w: gw, slow: slog.NewTextHandler(gw, opts)}
}

// FlushOnWarn wraps h, which writes to w, so that a record at Warn or above
// is on w when it has been handled, with every line before it: what goes
// wrong right before a crash is what its log must not lose.
func FlushOnWarn(h slog.Handler, w *LogWriter) slog.Handler { return &flushOnWarn{Handler: h, w: w} }

type flushOnWarn struct {
	slog.Handler
	w *LogWriter
}

func (h *flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		_ = h.w.Flush() // a failed write is the handler's error already
	}
	return err
}

func (h *flushOnWarn) WithAttrs(as []slog.Attr) slog.Handler {
	return &flushOnWarn{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *flushOnWarn) WithGroup(name string) slog.Handler {
	return &flushOnWarn{Handler: h.Handler.WithGroup(name), w: h.w}
}

type textHandler struct {
	level slog.Leveler
	w     *LogWriter
	pre   []byte       // WithAttrs attributes, formatted, each preceded by a space
	slow  slog.Handler // slog.TextHandler with the same attributes
}

var textBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool {
	minLevel := slog.LevelInfo
	if h.level != nil {
		minLevel = h.level.Level()
	}
	return l >= minLevel
}

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	pre, ok := appendTextAttrs(append([]byte(nil), h.pre...), as)
	if !ok {
		return h.slow.WithAttrs(as)
	}
	return &textHandler{level: h.level, w: h.w, pre: pre, slow: h.slow.WithAttrs(as)}
}

func (h *textHandler) WithGroup(name string) slog.Handler { return h.slow.WithGroup(name) }

func (h *textHandler) Handle(ctx context.Context, r slog.Record) error {
	bp := textBufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 16<<10 {
			textBufPool.Put(bp)
		}
	}()
	b := (*bp)[:0]
	if !r.Time.IsZero() {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, r.Time.Round(0))
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = appendTextString(b, r.Level.String())
	b = append(b, " msg="...)
	b = appendTextString(b, r.Message)
	b = append(b, h.pre...)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendTextAttr(b, a)
		return ok
	})
	if !ok {
		return h.slow.Handle(ctx, r)
	}
	b = append(b, '\n')
	*bp = b
	_, err := h.w.Write(b)
	return err
}

// appendTextAttrs appends each attribute as " key=value"; false when one is of
// a kind this handler leaves to slog.TextHandler.
func appendTextAttrs(b []byte, as []slog.Attr) ([]byte, bool) {
	for _, a := range as {
		var ok bool
		if b, ok = appendTextAttr(b, a); !ok {
			return b, false
		}
	}
	return b, true
}

func appendTextAttr(b []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value.Resolve()
	if a.Key == "" {
		return b, false // slog elides or quotes these; not worth copying
	}
	b = append(b, ' ')
	b = appendTextString(b, a.Key)
	b = append(b, '=')
	switch v.Kind() {
	case slog.KindString:
		b = appendTextString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		b = strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = append(b, v.Duration().String()...)
	case slog.KindTime:
		b = appendRFC3339Millis(b, v.Time())
	default:
		return b, false
	}
	return b, true
}

// appendTextString is slog.TextHandler's string form: as is, or quoted with
// strconv.Quote when empty or containing a space, '=', '"', a control or
// non-printable character or invalid UTF-8. Printable ASCII, by far the common
// case, is quoted by escaping '"' and '\' only, which is what strconv does for it.
func appendTextString(b []byte, s string) []byte {
	quote, escape := len(s) == 0, false
	for i := 0; i < len(s); i++ {
		switch textByte[s[i]] {
		case tbPlain:
		case tbQuote:
			quote = true
		case tbQuoteEscape:
			quote, escape = true, true
		case tbEscape:
			escape = true
		default: // control, DEL or non-ASCII: slog's own rules
			if needsQuoting(s) {
				return strconv.AppendQuote(b, s)
			}
			return append(b, s...)
		}
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	for escape {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		b = append(b, s[:i]...)
		b = append(b, '\\', s[i])
		s = s[i+1:]
	}
	b = append(b, s...)
	return append(b, '"')
}

// Byte classes for appendTextString.
const (
	tbPlain       = iota // printable ASCII written as is
	tbQuote              // space and '=': the value is quoted
	tbQuoteEscape        // '"': quoted, and escaped inside the quotes
	tbEscape             // '\': escaped when quoted for another reason
	tbSlow               // control characters, DEL, non-ASCII bytes
)

var textByte = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c < 0x20 || c >= 0x7f:
			t[c] = tbSlow
		case c == ' ' || c == '=':
			t[c] = tbQuote
		case c == '"':
			t[c] = tbQuoteEscape
		case c == '\\':
			t[c] = tbEscape
		}
	}
	return t
}()

// needsQuoting is log/slog's rule for text values.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			// Anything JSON would escape except '\', plus space and '='.
			if b != '\\' && (b == ' ' || b == '=' || b == '"' || b < 0x20) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// appendRFC3339Millis is log/slog's time format: RFC 3339 with exactly three
// digits of milliseconds, truncated.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the 4th digit
}
