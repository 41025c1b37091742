package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits bound the memory and work spent on one message. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	// SpillThreshold is how many bytes are kept in memory before the raw message
	// is written to a temporary file instead (default 1 MiB).
	SpillThreshold int64
	// MaxSize is the hard cap on stored bytes; the rest is counted but dropped
	// and the message is marked Truncated (default 50 MiB).
	MaxSize int64
	// ScanSize is how much of the message is parsed and scanned (default 1 MiB,
	// like SpamAssassin's and rspamd's scan limits: spam is small).
	ScanSize int64
	// MaxParts caps the MIME parts parsed (default 500).
	MaxParts int
	// MaxDepth caps multipart nesting (default 20).
	MaxDepth int
	// MaxURIs caps the URIs collected (default 1000).
	MaxURIs int
	// TempDir is where spill files go ("" = os.TempDir()).
	TempDir string
}

// DefaultLimits returns the defaults documented on Limits.
func DefaultLimits() Limits {
	return Limits{SpillThreshold: 1 << 20, MaxSize: 50 << 20, ScanSize: 1 << 20, MaxParts: 500, MaxDepth: 20, MaxURIs: 1000}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.SpillThreshold <= 0 {
		l.SpillThreshold = d.SpillThreshold
	}
	if l.MaxSize <= 0 {
		l.MaxSize = d.MaxSize
	}
	if l.ScanSize <= 0 {
		l.ScanSize = d.ScanSize
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxURIs <= 0 {
		l.MaxURIs = d.MaxURIs
	}
	return l
}

// Builder receives a message in chunks (the milter writes header fields and body
// chunks as they arrive) and parses it on Finish. Memory use is bounded by
// max(SpillThreshold, ScanSize): past the threshold the raw bytes go to a
// temporary file, past MaxSize they are dropped.
type Builder struct {
	lim    Limits
	mem    bytes.Buffer // raw bytes while below SpillThreshold
	head   []byte       // first ScanSize bytes, always in memory
	file   *os.File     // spill file, once past SpillThreshold
	stored int64
	size   int64
	err    error
	done   bool
}

// NewBuilder returns an empty Builder.
func NewBuilder(l Limits) *Builder { return &Builder{lim: l.withDefaults()} }

// ErrFinished is returned when a Builder is used after Finish or Abort.
var ErrFinished = errors.New("message: builder already finished")

// Write appends raw message bytes. It only fails when the spill file cannot be
// written; bytes past MaxSize are silently counted and dropped.
func (b *Builder) Write(p []byte) (int, error) {
	if b.done {
		return 0, ErrFinished
	}
	if b.err != nil {
		return 0, b.err
	}
	n := len(p)
	b.size += int64(n)
	if room := b.lim.ScanSize - int64(len(b.head)); room > 0 {
		b.head = append(b.head, p[:min(int64(len(p)), room)]...)
	}
	if room := b.lim.MaxSize - b.stored; room < int64(len(p)) {
		p = p[:max(room, 0)]
	}
	if len(p) == 0 {
		return n, nil
	}
	b.stored += int64(len(p))
	if b.file == nil && int64(b.mem.Len()+len(p)) <= b.lim.SpillThreshold {
		b.mem.Write(p)
		return n, nil
	}
	if b.file == nil {
		f, err := os.CreateTemp(b.lim.TempDir, "dovetail-msg-*")
		if err != nil {
			b.err = fmt.Errorf("message: spill to disk: %w", err)
			return 0, b.err
		}
		// Unlinked at once (the descriptor keeps the data): a crash, or a
		// session the MTA drops without a word, leaves nothing behind.
		os.Remove(f.Name())
		b.file = f
		if _, err := f.Write(b.mem.Bytes()); err != nil {
			b.err = fmt.Errorf("message: spill to disk: %w", err)
			return 0, b.err
		}
		b.mem = bytes.Buffer{}
	}
	if _, err := b.file.Write(p); err != nil {
		b.err = fmt.Errorf("message: spill to disk: %w", err)
		return 0, b.err
	}
	return n, nil
}

// WriteString is Write for a string.
func (b *Builder) WriteString(s string) (int, error) { return b.Write([]byte(s)) }

// Size returns the number of bytes written so far.
func (b *Builder) Size() int64 { return b.size }

// Finish parses what was written. Parsing never fails on content: broken MIME
// becomes anomalies. The error is only an I/O error from spilling.
func (b *Builder) Finish() (*Message, error) {
	if b.done {
		return nil, ErrFinished
	}
	b.done = true
	if b.err != nil {
		b.Abort()
		return nil, b.err
	}
	m := parse(b.head, b.lim)
	m.Size = b.size
	if b.size > b.lim.MaxSize {
		m.Truncated = true
		m.addAnomaly(AnomalySizeCap)
	}
	if b.size > b.lim.ScanSize {
		m.Partial = true
	}
	m.mem = b.mem.Bytes()
	m.file = b.file
	m.stored = b.stored
	b.file = nil
	return m, nil
}

// Abort discards the Builder and any spill file.
func (b *Builder) Abort() {
	b.done = true
	if b.file != nil {
		b.file.Close() // unlinked when created
		b.file = nil
	}
}

// Read builds a Message from r with limits l.
func Read(r io.Reader, l Limits) (*Message, error) {
	b := NewBuilder(l)
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := b.Write(buf[:n]); werr != nil {
				b.Abort()
				return nil, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Abort()
			return nil, fmt.Errorf("message: read: %w", err)
		}
	}
	return b.Finish()
}

// Parse builds a Message from raw bytes held in memory (no spill).
func Parse(raw []byte, l Limits) *Message {
	l = l.withDefaults()
	scan := raw
	if int64(len(scan)) > l.ScanSize {
		scan = scan[:l.ScanSize]
	}
	m := parse(scan, l)
	m.Size = int64(len(raw))
	m.Partial = int64(len(raw)) > l.ScanSize
	m.mem = raw
	m.stored = int64(len(raw))
	return m
}
