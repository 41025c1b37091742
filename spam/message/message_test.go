package message

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

func TestBadInput(t *testing.T) {
	many := &strings.Builder{}
	many.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
	for i := 0; i < 50000; i++ {
		many.WriteString("--b\n\nx\n")
	}
	cases := []struct {
		name, raw string
		anomaly   string
	}{
		{"truncated multipart", "Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\nhello", AnomalyUnterminated},
		{"no boundary", "Content-Type: multipart/mixed\n\nbody", AnomalyMissingBoundary},
		{"50000 parts", many.String(), AnomalyTooManyParts},
		{"nul", "Subject: x\n\nab\x00cd", AnomalyBodyNUL},
		{"header injection", "Subject: a\rBcc: victim@example.com\n\nx", AnomalyHeaderNUL},
		{"bad charset", "Content-Type: text/plain; charset=x-nonsense-42\n\n\xff\xfe text", AnomalyBadCharset},
		{"bad base64", "Content-Transfer-Encoding: base64\n\n!!!!****", AnomalyBadBase64},
		{"bad header line", "Subject: x\nthis is not a header\n\nbody", AnomalyBadHeader},
		{"no header", "just text without any header separator", AnomalyNoHeader},
	}
	for _, c := range cases {
		m := Parse([]byte(c.raw), Limits{})
		if !m.Has(c.anomaly) {
			t.Errorf("%s: anomaly %s missing, got %v", c.name, c.anomaly, m.Anomalies)
		}
	}
}

func TestHugeLineBoundedMemory(t *testing.T) {
	b := NewBuilder(Limits{SpillThreshold: 1 << 16, ScanSize: 1 << 16, MaxSize: 1 << 20, TempDir: t.TempDir()})
	b.WriteString("Subject: big\n\n")
	chunk := bytes.Repeat([]byte("A"), 1<<20)
	for i := 0; i < 100; i++ { // 100 MB in one line
		if _, err := b.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	m, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Truncated || !m.Partial || !m.Has(AnomalyLongLine) || m.Size != 100<<20+14 {
		t.Errorf("truncated=%v partial=%v size=%d anomalies=%v", m.Truncated, m.Partial, m.Size, m.Anomalies)
	}
}

func TestHTMLAndURIs(t *testing.T) {
	raw := "Content-Type: multipart/alternative; boundary=x\nMIME-Version: 1.0\n\n--x\nContent-Type: text/plain\n\nvisit http://plain.example.com/a.\n" +
		"--x\nContent-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n" +
		"<html><style>p{}</style><p>Caf=E9 <a href=3D\"http://evil.example.net/x\">http://bank.example.com</a></p></html>\n--x--\n"
	m := Parse([]byte(raw), Limits{})
	if !strings.Contains(m.Text, "Café http://bank.example.com") || strings.Contains(m.Text, "p{}") {
		t.Errorf("text %q", m.Text)
	}
	hosts := map[string]string{}
	for _, u := range m.URIs {
		hosts[u.Host] = u.Shown
	}
	if hosts["evil.example.net"] != "http://bank.example.com" {
		t.Errorf("uris %+v", m.URIs)
	}
	if _, ok := hosts["plain.example.com"]; !ok {
		t.Errorf("text uri missing: %+v", m.URIs)
	}
}

func TestCharsets(t *testing.T) {
	cases := []struct{ cs, raw, want string }{
		{"shift_jis", "\x93\xfa\x96\x7b", "日本"},
		{"euc-jp", "\xc6\xfc\xcb\xdc", "日本"},
		{"gb2312", "\xd6\xd0\xce\xc4", "中文"},
		{"big5", "\xa4\xa4\xa4\xe5", "中文"},
		{"koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", "Привет"},
		{"iso-2022-jp", "\x1b$BF|K\\\x1b(B", "日本"},
	}
	for _, c := range cases {
		m := Parse([]byte("Content-Type: text/plain; charset="+c.cs+"\n\n"+c.raw), Limits{})
		if strings.TrimSpace(m.Text) != c.want {
			t.Errorf("%s: %q, want %q", c.cs, m.Text, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("Subject: x\n\nbody"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n<a href=x>y</a>\n--b--"))
	f.Add([]byte("Content-Type: message/rfc822\n\nSubject: inner\n\ntext"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := Parse(raw, Limits{MaxParts: 50})
		if len(m.Parts) > 50 {
			t.Fatalf("%d parts", len(m.Parts))
		}
	})
}

// A spill file is unlinked as soon as it is made: a crash or a session the MTA
// drops without a word leaves nothing in TempDir.
func TestSpillFileUnlinkedAtOnce(t *testing.T) {
	dir := t.TempDir()
	b := NewBuilder(Limits{SpillThreshold: 1 << 10, ScanSize: 1 << 16, MaxSize: 1 << 20, TempDir: dir})
	b.WriteString("Subject: big\n\n")
	if _, err := b.Write(bytes.Repeat([]byte("A\n"), 4<<10)); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spill file visible while building: %v", ents)
	}
	m, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(r)
	r.Close()
	if len(raw) != 14+8<<10 {
		t.Errorf("read back %d bytes, want %d", len(raw), 14+8<<10)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
