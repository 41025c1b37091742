package lmtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dovetail-mail/dovetail/lmtpd/maildir"
	"github.com/emersion/go-smtp"
)

// readLimitedBefore is readLimited as it was before it normalised line ends
// and sized its buffer from SIZE=: the reference readLimited must match after
// maildir.Normalize, which Deliver applied to its result.
func readLimitedBefore(r io.Reader, max int64) ([]byte, error) {
	buf := make([]byte, 0, 16<<10)
	for {
		if int64(len(buf)) > max {
			return nil, smtp.ErrDataTooLarge
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// dataReader behaves like go-smtp's DATA reader as readLimited sees it: at
// most limit bytes in all (then ErrDataTooLarge), each read as long as the
// caller's buffer or shorter (rng), the end either with the last bytes or on
// a read of its own, or a lost connection (fail) instead of the end. Without
// a limit (< 0: readLimited's own check alone decides), the end comes on a
// read of its own, so the outcome does not depend on how the reads fall.
type dataReader struct {
	data  []byte
	limit int64
	rng   *rand.Rand
	fail  bool
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.limit == 0 {
		return 0, smtp.ErrDataTooLarge
	}
	if len(d.data) == 0 {
		if d.fail {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, io.EOF
	}
	n := min(len(p), len(d.data))
	if d.limit > 0 {
		n = min(n, int(d.limit))
	}
	if d.rng.Intn(3) == 0 {
		n = d.rng.Intn(n + 1) // a short read, maybe empty
	}
	copy(p, d.data[:n])
	d.data = d.data[n:]
	if d.limit > 0 {
		d.limit -= int64(n)
	}
	if len(d.data) == 0 && !d.fail && d.limit > 0 && d.rng.Intn(2) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// checkReadLimited compares readLimited with readLimitedBefore + Normalize on
// data sent through a go-smtp-like reader limited to limit (as the server
// sets it up: MaxMessageBytes = max_message_size), or not limited at all.
func checkReadLimited(t *testing.T, data []byte, limit, hint int64, seed int64, fail, unlimited bool) {
	t.Helper()
	rl := limit
	if unlimited {
		rl = -1
	}
	want, werr := readLimitedBefore(&dataReader{data: data, limit: rl, rng: rand.New(rand.NewSource(seed)), fail: fail}, limit)
	if werr == nil {
		want = maildir.Normalize(want)
	}
	got, gerr := readLimited(&dataReader{data: data, limit: rl, rng: rand.New(rand.NewSource(seed + 1)), fail: fail}, limit, hint)
	if !errors.Is(gerr, werr) || !bytes.Equal(got, want) {
		t.Fatalf("%d bytes, limit %d (reader limited: %v), SIZE=%d, seed %d: got %d bytes, %v; want %d bytes, %v",
			len(data), limit, !unlimited, hint, seed, len(got), gerr, len(want), werr)
	}
	if bytes.IndexByte(got, '\r') >= 0 {
		t.Fatalf("a CR is left")
	}
}

// TestReadLimitedAsBefore: readLimited returns what the previous readLimited
// followed by maildir.Normalize returned — the same bytes, the same
// ErrDataTooLarge at max_message_size, the same error for a lost client —
// whatever SIZE= announced, however the reads fall (a CRLF split between two
// reads, a lone CR at the end of one), below, at and above the first chunk.
func TestReadLimitedAsBefore(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	gen := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			switch rng.Intn(12) {
			case 0:
				b[i] = '\r'
			case 1, 2:
				b[i] = '\n'
			default:
				b[i] = byte('a' + rng.Intn(26))
			}
		}
		return b
	}
	for _, n := range []int{0, 1, 2, 100, 16<<10 - 1, 16 << 10, 16<<10 + 1, 40 << 10, 300 << 10} {
		data := gen(n)
		crlf := bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r"), nil), []byte("\n"), []byte("\r\n"))
		for _, d := range [][]byte{data, crlf} {
			size := int64(len(d))
			for _, limit := range []int64{size + 1<<20, size + 1, size, size - 1, size / 2, 1} {
				if limit <= 0 {
					continue
				}
				for _, hint := range []int64{0, size, size * 98 / 100, size + size/50, size / 3, 10, limit} {
					for seed := int64(0); seed < 6; seed++ {
						checkReadLimited(t, d, limit, hint, seed, seed%3 == 2, seed >= 3)
					}
				}
			}
		}
	}
	// A CRLF split between two reads, and a lone CR at the very end.
	for _, msg := range []string{"a\r", "a\r\r", "\r\n\r\n", "x\r\ny", "\r", "\n\r"} {
		for hint := int64(0); hint < 4; hint++ {
			got, err := readLimited(iotest.OneByteReader(strings.NewReader(msg)), 100, hint)
			if want := maildir.Normalize([]byte(msg)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%q one byte a read: %q %v, want %q", msg, got, err, want)
			}
		}
	}
}

// FuzzReadLimited: readLimited against readLimitedBefore + Normalize.
func FuzzReadLimited(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), int64(0), int64(100), int64(1), false, false)
	f.Add([]byte("a\rb\r\r\nc\n\r"), int64(3), int64(8), int64(2), true, true)
	f.Fuzz(func(t *testing.T, data []byte, hint, limit, seed int64, fail, unlimited bool) {
		if limit <= 0 || limit > 1<<20 || hint < 0 || hint > limit {
			t.Skip() // the server refuses SIZE= above max_message_size at MAIL
		}
		checkReadLimited(t, data, limit, hint, seed, fail, unlimited)
	})
}

// toCRLFBefore is how SMTPSender converted a message before it streamed it.
func toCRLFBefore(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// TestCRLFReader: the parts read through crlfReader are the message joined
// and converted as before, in reads of any length, and the reader behaves
// (iotest.TestReader).
func TestCRLFReader(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	alphabet := []byte("ab\n\n\r.")
	for i := 0; i < 500; i++ {
		var parts [][]byte
		for j := rng.Intn(5); j >= 0; j-- {
			p := make([]byte, rng.Intn(40))
			for k := range p {
				p[k] = alphabet[rng.Intn(len(alphabet))]
			}
			parts = append(parts, p)
		}
		want := toCRLFBefore(bytes.Join(parts, nil))
		var got bytes.Buffer
		buf := make([]byte, 1+rng.Intn(7))
		r := &crlfReader{parts: append([][]byte(nil), parts...)}
		for {
			n, err := r.Read(buf[:1+rng.Intn(len(buf))])
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("parts %q: read %q, want %q", parts, got.Bytes(), want)
		}
		if err := iotest.TestReader(&crlfReader{parts: append([][]byte(nil), parts...)}, want); err != nil {
			t.Fatalf("parts %q: %v", parts, err)
		}
	}
}

// TestSendPartsAsBefore: a forward in parts reaches sendmail, and an SMTP
// server, as the joined message did (over SMTP: converted by toCRLFBefore),
// and a Sender without parts support gets them joined.
func TestSendPartsAsBefore(t *testing.T) {
	dir := t.TempDir()
	out := dir + "/out"
	script := dir + "/sendmail"
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat > "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{[]byte("X-Sieve-Redirected-From: a@b\n"), []byte("Subject: x\n"), []byte("\n" + strings.Repeat("body\n", 20000))}
	if err := sendParts(t.Context(), &SendmailSender{Path: script}, "a@b", []string{"c@d"}, parts); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Errorf("sendmail read %d bytes, want %d", len(got), len(bytes.Join(parts, nil)))
	}
	if len(parts[0]) == 0 || len(parts[2]) != 1+5*20000 {
		t.Error("sendParts consumed the caller's parts")
	}
	got := make(chan []byte, 1)
	addr := serveSMTP(t, func(*smtp.Conn) (smtp.Session, error) { return capture(got), nil })
	if err := sendParts(t.Context(), &SMTPSender{Addr: addr}, "a@b", []string{"c@d"}, parts); err != nil {
		t.Fatal(err)
	}
	if b, want := <-got, toCRLFBefore(bytes.Join(parts, nil)); !bytes.Equal(b, want) {
		t.Errorf("the SMTP server got %d bytes, want %d", len(b), len(want))
	}
	fs := &fakeSender{}
	sendParts(t.Context(), fs, "a@b", []string{"c@d"}, parts)
	if want := fmt.Sprintf("from=<a@b> to=[c@d]\n%s", bytes.Join(parts, nil)); len(fs.sent) != 1 || fs.sent[0] != want {
		t.Errorf("a Sender without parts got %d messages", len(fs.sent))
	}
}

// capture is an SMTP session that hands the DATA it got to c.
type capture chan []byte

func (c capture) Mail(string, *smtp.MailOptions) error { return nil }
func (c capture) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (c capture) Reset()                               {}
func (c capture) Logout() error                        { return nil }
func (c capture) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	c <- b
	return err
}

// allocated returns the bytes fn allocated (runtime.MemStats.TotalAlloc).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestReadLimitedTrustsSIZEAsItComes: SIZE= is believed only as far as the
// client backs it up. One that announces max_message_size and sends 20 KiB
// costs about what it sent, not the announced size; an honest 10 MB message
// still gets its buffer once, not grown by copying (about 1+1/hintTrust times
// the message in all).
func TestReadLimitedTrustsSIZEAsItComes(t *testing.T) {
	const maxSize = 64 << 20
	small := bytes.Repeat([]byte("lie\r\n"), 4<<10) // 20 KiB
	if n := allocated(func() {
		if _, err := readLimited(bytes.NewReader(small), maxSize, maxSize); err != nil {
			t.Fatal(err)
		}
	}); n > 1<<20 {
		t.Errorf("SIZE=%d with %d bytes sent allocated %d bytes", maxSize, len(small), n)
	}
	msg := largeMessage(10<<20, "0")
	var got []byte
	n := allocated(func() {
		var err error
		if got, err = readLimited(bytes.NewReader(msg), maxSize, int64(len(msg))); err != nil {
			t.Fatal(err)
		}
	})
	if !bytes.Equal(got, maildir.Normalize(msg)) {
		t.Fatal("the message read is not the message sent")
	}
	// The same bytes as before through the doubling chunks, whether SIZE=
	// was right, too small or too large, however the reads fall.
	rng := rand.New(rand.NewSource(11))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = "ab\r\n"[rng.Intn(4)]
	}
	for _, hint := range []int64{int64(len(data)), int64(len(data)) / 3, 3 * int64(len(data))} {
		for seed := int64(0); seed < 2; seed++ {
			checkReadLimited(t, data, maxSize, hint, seed, false, seed == 1)
		}
	}
	x := float64(n) / float64(len(msg))
	t.Logf("an honest SIZE= for %d bytes: %.3f times the message allocated", len(msg), x)
	if x > 1.3 {
		t.Errorf("an honest SIZE= for %d bytes allocated %.2f times the message", len(msg), x)
	}
}
