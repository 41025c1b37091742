package testenv

import (
	"bytes"
	"sync"
)

// LogBuffer collects what a daemon (or a subprocess) writes while the test
// reads it: Write and String take the same lock, so the race detector stays
// quiet and the test sees whole lines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
