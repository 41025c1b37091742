package message

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFindTextURIs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"see http://a.example/x and HTTPS://B.example.", []string{"http://a.example/x", "HTTPS://B.example."}},
		{"www.c.example, xwww.d.example and (www.e.example)", []string{"www.c.example,", "www.e.example)"}},
		{"mailto:x@f.example ftp://g.example", []string{"mailto:x@f.example", "ftp://g.example"}},
		{"http:// alone, then Www.h.example", []string{"Www.h.example"}},
		{"İİİ http://i.example ſ www.j.example", []string{"http://i.example", "www.j.example"}},
		{"nothing here", nil},
	} {
		if got := findTextURIs(tc.in, 100); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := findTextURIs(strings.Repeat("http://k.example ", 10), 3); len(got) != 3 {
		t.Errorf("limit: %d URIs", len(got))
	}
}

// Text full of openings that do not start a URI used to cost quadratic time
// (976 KiB of "xwww." took 13 s), outside any scan timeout.
func TestFindTextURIsLinear(t *testing.T) {
	for _, unit := range []string{"xwww.", "http:", "m", "wwwwww"} {
		body := strings.Repeat(unit, 1<<20/len(unit))
		start := time.Now()
		m := Parse([]byte("Subject: x\n\n"+body), Limits{ScanSize: 2 << 20})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%q × %d: parse took %v", unit, len(body)/len(unit), d)
		}
		if len(m.URIs) != 0 {
			t.Errorf("%q: %d URIs", unit, len(m.URIs))
		}
	}
}

// TestTextURIsAnyCase: findTextURIs matches openings in any case, and so must
// the gate in front of it: "wWw." and "Mailto:" links in plain text were
// never collected, so no uri rule or URI blocklist saw them.
func TestTextURIsAnyCase(t *testing.T) {
	m := Parse([]byte("Subject: x\n\nvisit wWw.Evil.example/buy or write Mailto:sales@evil.example\n"), Limits{})
	var got []string
	for _, u := range m.URIs {
		got = append(got, u.Host)
	}
	if want := []string{"www.evil.example", "evil.example"}; !reflect.DeepEqual(got, want) {
		t.Errorf("URI hosts %q, want %q", got, want)
	}
}

// TestHTMLTextURIs: an address written as text in an HTML part ("copy
// www.x.example into your browser", a shown link text naming another host)
// is a URI as in plain text, as SpamAssassin finds URIs in the rendered text
// of every part: HTML-only spam that wrote its domain unlinked escaped every
// uri rule and URI blocklist.
func TestHTMLTextURIs(t *testing.T) {
	m := Parse([]byte("Subject: x\nContent-Type: text/html\n\n"+
		`<p>Copy this into your browser: www.evil.example/buy</p>`+
		`<a href="http://link.example/">http://link.example/</a> <a href="http://track.example/c">http://shown.example/</a>`), Limits{})
	var got []string
	for _, u := range m.URIs {
		got = append(got, u.Raw)
	}
	want := []string{"http://link.example/", "http://track.example/c", "www.evil.example/buy", "http://shown.example/"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("URIs %q, want %q", got, want)
	}
}

// TestObfuscatedIPv4Hosts: a numeric host written in decimal, hexadecimal or
// octal (which browsers accept) is the dotted quad it means, as in
// SpamAssassin's canonical URIs: written so, a link to a bare IP escaped
// URI_NUMERIC_IP and was looked up in domain lists as a name.
func TestObfuscatedIPv4Hosts(t *testing.T) {
	for in, want := range map[string]string{
		"http://1249763353/x":          "74.125.224.25",
		"http://0x4a.0x7d.0xe0.0x19/":  "74.125.224.25",
		"http://0112.0175.0340.031/":   "74.125.224.25",
		"http://74.125.57369/":         "74.125.224.25",
		"http://0x4A7DE019/":           "74.125.224.25",
		"http://user@1249763353:8080/": "74.125.224.25",
		"http://74.125.224.25./":       "74.125.224.25",
		"http://256.1.1.1/":            "256.1.1.1",
		"http://4294967296/":           "4294967296",
		"http://08.1.1.1/":             "08.1.1.1",
		"http://123.example/":          "123.example",
		"http://0x.example/":           "0x.example",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHTMLSelfClosingRawTextHidden: "<style/>" starts a style element in
// HTML (the slash means nothing on a non-void element), so a browser hides
// what follows up to "</style>", and the tokenizer reads it as the element's
// raw text too. It used to count as visible text: words the reader never
// sees (Bayes poison) reached the rules and Bayes as the message's text.
func TestHTMLSelfClosingRawTextHidden(t *testing.T) {
	m := Parse([]byte("Subject: x\nContent-Type: text/html\n\n"+
		`<p>hello</p><style/>hidden words</style><script src="x.js"/>more hidden</script><p>bye</p>`), Limits{})
	if m.Text != "hello\n\nbye" {
		t.Errorf("text %q, want only the visible hello and bye", m.Text)
	}
}

// TestHostOfAsBrowsers: the host of a link is the one a browser connects to
// (WHATWG URL parsing): tabs and newlines inside the URL are dropped, '\'
// is '/' in http(s) and ftp URLs, slashes after the scheme are optional, and
// a percent-encoded host is decoded. net/url refused these, and the salvage
// took the part after the last '@' or kept the junk, so a URI blocklist was
// asked about a decoy ("good.example") or a name that cannot be listed.
func TestHostOfAsBrowsers(t *testing.T) {
	for in, want := range map[string]string{
		`http://evil.example\@good.example/`: "evil.example",
		`https://evil.example\path`:          "evil.example",
		`http:\\evil.example\x`:              "evil.example",
		`http:/evil.example/`:                "evil.example",
		`http:evil.example`:                  "evil.example",
		"http://ev\nil.exa\tmple/":           "evil.example",
		"\x01 http://evil.example/":          "evil.example",
		`http://%65vil.example/`:             "evil.example",
		`http://user:pw@a@evil.example:81/`:  "evil.example",
		`http://[2001:db8::1]:8080/`:         "2001:db8::1",
		`HTTP://Evil.Example./`:              "evil.example",
		`http://evil.example?q`:              "evil.example",
		`http://evil.example#f`:              "evil.example",
		`mailto:x@evil.example?subject=a`:    "evil.example",
		`www.evil.example\x`:                 "www.evil.example",
		`javascript:alert(1)`:                "",
		`cid:part1@example`:                  "",
		`custom://host.example/`:             "host.example",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}
