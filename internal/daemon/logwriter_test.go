package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateWriter records each write; while gate is set, the first write blocks
// until the gate is closed.
type gateWriter struct {
	mu      sync.Mutex
	writes  []string
	gate    chan struct{}
	passed  bool
	entered chan struct{}
	err     error
}

func (w *gateWriter) Write(p []byte) (int, error) {
	if w.gate != nil && !w.passed {
		w.passed = true // only the first write waits: it is the only one at a time
		close(w.entered)
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *gateWriter) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.writes, "")
}

func TestLogWriterAloneWritesEachLine(t *testing.T) {
	w := &gateWriter{}
	g := NewLogWriter(w, 0)
	for i := range 3 {
		if n, err := fmt.Fprintf(g, "line %d\n", i); err != nil || n != 7 {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if len(w.writes) != 3 {
		t.Fatalf("uncontended lines must each be one write (nothing held back), got %q", w.writes)
	}
}

// Lines arriving during a write are written by that writer, together, before
// it returns; their Writes return at once, and nothing is left queued.
func TestLogWriterBatchesLinesQueuedDuringAWrite(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), entered: make(chan struct{})}
	g := NewLogWriter(w, 0)
	first := make(chan struct{})
	go func() {
		g.Write([]byte("first\n"))
		close(first)
	}()
	<-w.entered
	for i := range 50 {
		fmt.Fprintf(g, "queued %02d\n", i) // must not block behind the stalled write
	}
	select {
	case <-first:
		t.Fatal("the writing goroutine returned while its write was stalled")
	default:
	}
	close(w.gate)
	<-first
	var want strings.Builder
	want.WriteString("first\n")
	for i := range 50 {
		fmt.Fprintf(&want, "queued %02d\n", i)
	}
	if got := w.all(); got != want.String() {
		t.Fatalf("lines lost, reordered or interleaved:\n%s", got)
	}
	if len(w.writes) != 2 {
		t.Fatalf("the 50 queued lines should go out in one write, got %d writes", len(w.writes))
	}
}

// A stalled destination (a full stderr pipe) makes loggers wait once the
// queue is full instead of growing memory without bound.
func TestLogWriterQueueIsBounded(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), entered: make(chan struct{})}
	g := NewLogWriter(w, 0)
	firstDone := make(chan struct{})
	go func() {
		g.Write([]byte("first\n"))
		close(firstDone) // it writes what queued meanwhile before it returns
	}()
	<-w.entered
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	for range maxPendingLog / len(line) {
		g.Write(line)
	}
	blocked := make(chan struct{})
	go func() {
		g.Write(line)
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("a line past the queue's bound was accepted while the write was stalled")
	case <-time.After(50 * time.Millisecond):
	}
	close(w.gate)
	select {
	case <-blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting logger was not released when the queue drained")
	}
	<-firstDone
	if got, want := len(w.all()), len("first\n")+(maxPendingLog/len(line)+1)*len(line); got != want {
		t.Fatalf("wrote %d bytes, want %d", got, want)
	}
}

func TestLogWriterConcurrentLinesIntact(t *testing.T) {
	w := &gateWriter{}
	g := NewLogWriter(w, 0)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				fmt.Fprintf(g, "g%d line %03d\n", i, j)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(w.all(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("got %d lines, want 1600", len(lines))
	}
	next := map[string]int{}
	for _, l := range lines {
		var gid string
		var j int
		if _, err := fmt.Sscanf(l, "%s line %d", &gid, &j); err != nil || j != next[gid] {
			t.Fatalf("line %q out of order or damaged (want line %d of %s)", l, next[gid], gid)
		}
		next[gid]++
	}
}

func TestLogWriterReportsItsWriteError(t *testing.T) {
	boom := errors.New("disk full")
	g := NewLogWriter(&gateWriter{err: boom}, 0)
	if _, err := g.Write([]byte("x\n")); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
}

// panicOnceWriter's first write waits for gate and then panics; later writes
// are recorded.
type panicOnceWriter struct {
	gateWriter    // records the later writes (its own gate unused)
	gate, entered chan struct{}
	panicked      bool
}

func (w *panicOnceWriter) Write(p []byte) (int, error) {
	if !w.panicked {
		w.panicked = true
		close(w.entered)
		<-w.gate
		panic("writer broke")
	}
	return w.gateWriter.Write(p)
}

// A write that panics (and is recovered by its caller, as a handler may) must
// not leave the writer taken for good: the lines queued behind it and every
// later one still go out, in order — with a plain mutex, a deferred unlock
// gave that.
func TestLogWriterSurvivesAPanickingWrite(t *testing.T) {
	w := &panicOnceWriter{gate: make(chan struct{}), entered: make(chan struct{})}
	g := NewLogWriter(w, 0)
	done := make(chan any)
	go func() {
		defer func() { done <- recover() }()
		g.Write([]byte("lost\n"))
	}()
	<-w.entered
	g.Write([]byte("queued\n"))
	close(w.gate)
	if v := <-done; v == nil {
		t.Fatal("the writer's panic did not reach its caller")
	}
	g.Write([]byte("after\n"))
	if got := w.all(); got != "queued\nafter\n" {
		t.Fatalf("after a panicking write, wrote %q, want the queued line and the later one", got)
	}
}

// A lingering writer holds lines until its linger passes, then writes them
// in one write; Flush writes them at once.
func TestLogWriterLingers(t *testing.T) {
	w := &gateWriter{}
	g := NewLogWriter(w, time.Hour)
	for i := range 3 {
		fmt.Fprintf(g, "line %d\n", i)
	}
	if got := w.all(); got != "" {
		t.Fatalf("lingering lines written before their time: %q", got)
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 1 || w.writes[0] != "line 0\nline 1\nline 2\n" {
		t.Fatalf("Flush wrote %q, want the three lines in one write", w.writes)
	}

	w = &gateWriter{}
	g = NewLogWriter(w, 5*time.Millisecond)
	fmt.Fprintf(g, "a\n")
	fmt.Fprintf(g, "b\n")
	deadline := time.Now().Add(5 * time.Second)
	for w.all() == "" && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.writes) != 1 || w.writes[0] != "a\nb\n" {
		t.Fatalf("after the linger: %q, want both lines in one write", w.writes)
	}
}

// The line that takes what lingers past lingerBytes is written at once,
// after the lines before it.
func TestLogWriterLingerIsBounded(t *testing.T) {
	w := &gateWriter{}
	g := NewLogWriter(w, time.Hour)
	line := strings.Repeat("x", 1023) + "\n"
	n := 0
	for w.all() == "" {
		if n++; n > lingerBytes/len(line)+1 {
			t.Fatalf("%d lines (%d bytes) still lingering", n-1, (n-1)*len(line))
		}
		g.Write([]byte(line))
	}
	if got := w.all(); got != strings.Repeat(line, n) {
		t.Fatalf("wrote %d bytes, want all %d lines", len(got), n)
	}
}

// FlushOnWarn: an Info line lingers, a warning is written at once with
// everything before it, in order, through handlers derived with attributes.
func TestFlushOnWarn(t *testing.T) {
	w := &gateWriter{}
	lw := NewLogWriter(w, time.Hour)
	log := slog.New(FlushOnWarn(NewTextHandler(lw, nil), lw)).With("daemon", "policyd")
	log.Info("decision")
	if got := w.all(); got != "" {
		t.Fatalf("info line written at once: %q", got)
	}
	log.Warn("store down")
	got := w.all()
	if i, j := strings.Index(got, "msg=decision"), strings.Index(got, `msg="store down"`); i < 0 || j < i || !strings.Contains(got, "daemon=policyd") {
		t.Fatalf("after the warning: %q", got)
	}
}

// The linger's timer writes on a goroutine of its own, where no handler can
// recover a panicking write: it must not take the daemon down, and later
// lines still go out.
func TestLogWriterTimerSurvivesAPanickingWrite(t *testing.T) {
	w := &panicOnceWriter{gate: make(chan struct{}), entered: make(chan struct{})}
	close(w.gate)
	g := NewLogWriter(w, time.Millisecond)
	g.Write([]byte("lost\n"))
	<-w.entered
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.Write([]byte("after\n"))
		if strings.Contains(w.all(), "after\n") || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := w.all(); !strings.HasPrefix(got, "after\n") {
		t.Fatalf("after a panicking timed write, wrote %q, want the later lines", got)
	}
}
