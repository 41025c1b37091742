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
		if d := time.Since(start); d > parseBudget {
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

// TestHTMLInlineHiddenText: text an inline style hides (display:none,
// visibility:hidden, opacity:0, a font size of 0 or 1px) is not part of the
// visible text, as SpamAssassin renders it: spam stuffs such text with
// words for Bayes (poison) that its reader never sees. Only unambiguous
// hiding counts: what a browser could still show stays visible — an
// element never closed, structure that moves the text out of the hidden
// element in a browser, a descendant that restores visibility or size, a
// style sheet that could override the inline style, CSS a simple reading
// could get wrong.
func TestHTMLInlineHiddenText(t *testing.T) {
	for _, tc := range []struct {
		name, html string
		hidden     bool // "POISON" is not in the visible text
	}{
		{"display none", `<div style="display:none">POISON</div>`, true},
		{"display none spaced, upper case, important", `<div style="color:red; DISPLAY : None !important">POISON</div>`, true},
		{"visibility hidden", `<span style="visibility:hidden">POISON</span>`, true},
		{"visibility collapse", `<span style="visibility: collapse">POISON</span>`, true},
		{"opacity 0", `<span style="opacity:0.0">POISON</span>`, true},
		{"font-size 0", `<span style="font-size:0">POISON</span>`, true},
		{"font-size 0px", `<span style="font-size:0px">POISON</span>`, true},
		{"font-size 1px", `<span style="font-size:1px">POISON</span>`, true},
		{"font-size 0pt", `<font style="font-size:0pt">POISON</font>`, true},
		{"nested elements inherit", `<div style="display:none"><p>a <b>POISON</b><br>b</p><table><tr><td>POISON</td></tr></table></div>`, true},
		{"hidden table", `<table style="display:none"><tr><td>POISON</td></tr></table>`, true},
		{"hidden list", `<ul style="display:none"><li>POISON<li>POISON</ul>`, true},
		{"inline style sheet without important", `<style>p{color:red}</style><div style="display:none">POISON</div>`, true},
		{"important inline against an important sheet", `<style>div{display:block!important}</style><div style="display:none !important">POISON</div>`, true},
		{"visible", `<div style="display:block">POISON</div>`, false},
		{"font-size 2px", `<span style="font-size:2px">POISON</span>`, false},
		{"opacity 0.5", `<span style="opacity:.5">POISON</span>`, false},
		{"later declaration wins", `<div style="display:none; display:block">POISON</div>`, false},
		{"important declaration wins", `<div style="display:block!important; display:none">POISON</div>`, false},
		{"in a comment", `<div style="/* display:none */ color:red">POISON</div>`, false},
		{"in a string", `<div style="font-family:'a;display:none'">POISON</div>`, false},
		{"escaped", `<div style="display:no\ne">POISON</div>`, false},
		{"never closed", `<p>a</p><div style="display:none">b<p>POISON`, false},
		{"closed by its parent only", `<table><tr><td><span style="display:none">POISON</td></tr></table>`, false},
		{"self-closing", `<span style="display:none"/>POISON`, false},
		// A browser closes the open <p> (and the hidden span in it) at <div>.
		{"block closes the outer p", `<p>a <span style="display:none">b<div>POISON</div></span></p>`, false},
		{"block closes the hidden p", `<p style="display:none">b<div>POISON</div></p>`, false},
		{"li closes the hidden li", `<ul><li style="display:none">b<li>POISON</li></li></ul>`, false},
		{"td closes the hidden td", `<table><tr><td style="display:none">b<td>POISON</td></td></tr></table>`, false},
		{"a closes the outer a", `<a href="http://x.example/"><span style="display:none">b<a href="http://y.example/">POISON</a></span></a>`, false},
		{"visibility restored", `<div style="visibility:hidden">b <span style="visibility:visible">POISON</span></div>`, false},
		{"font size restored", `<div style="font-size:0">b <span style="font-size:14px">POISON</span></div>`, false},
		{"font size attribute", `<div style="font-size:0">b <font size="3">POISON</font></div>`, false},
		{"style sheet may restore size", `<style>span{font-size:16px}</style><div style="font-size:0"><span>POISON</span></div>`, false},
		{"important sheet overrides", `<style>div{display:block !important}</style><div style="display:none">POISON</div>`, false},
		{"linked style sheet", `<link rel="stylesheet" href="x.css"><div style="display:none">POISON</div>`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Parse([]byte("Subject: x\nContent-Type: text/html\n\n<p>hello</p>"+tc.html+"<p>bye</p>"), Limits{})
			if !strings.Contains(m.Text, "hello") || !strings.Contains(m.Text, "bye") {
				t.Errorf("visible text lost: %q", m.Text)
			}
			if hidden := !strings.Contains(m.Text, "POISON"); hidden != tc.hidden {
				t.Errorf("text %q: POISON hidden %v, want %v", m.Text, hidden, tc.hidden)
			}
		})
	}
	// Links in hidden text are still links (SpamAssassin keeps them too).
	m := Parse([]byte("Subject: x\nContent-Type: text/html\n\n"+
		`<div style="display:none"><a href="http://hidden.example/">POISON</a></div>ok`), Limits{})
	if len(m.URIs) != 1 || m.URIs[0].Host != "hidden.example" || m.Text != "ok" {
		t.Errorf("text %q, URIs %+v", m.Text, m.URIs)
	}
}

// TestHTMLHiddenTextHostile: hiding costs little on hostile HTML and gives
// up (nothing cut) rather than guess past a nesting depth it cannot follow.
func TestHTMLHiddenTextHostile(t *testing.T) {
	for name, tc := range map[string]struct {
		html    string
		visible bool // "POISON" stays visible
	}{
		"deep nesting":             {strings.Repeat("<span>", 300) + `<b style="display:none">POISON</b>` + strings.Repeat("</span>", 300), true},
		"unclosed hidden elements": {strings.Repeat(`<span style="display:none"><td>`, 50000) + "POISON", true},
		"many hidden elements":     {strings.Repeat(`<span style="display:none">POISON</span>`, 50000), false},
	} {
		start := time.Now()
		m := Parse([]byte("Subject: x\nContent-Type: text/html\n\n"+tc.html), Limits{ScanSize: 4 << 20})
		if d := time.Since(start); d > parseBudget {
			t.Errorf("%s: parse took %v", name, d)
		}
		if visible := strings.Contains(m.Text, "POISON"); visible != tc.visible {
			t.Errorf("%s: POISON visible %v, want %v", name, visible, tc.visible)
		}
	}
}

// TestHTMLHiddenTextAsBrowsersPlaceIt: text is only left out when a browser
// puts it inside the hidden element and keeps it hidden there. HTML's tree
// construction moves text out of an element the markup seems to put it in
// (foster parenting out of a table, a heading or button closing its like, a
// start tag a browser ignores, an HTML tag breaking out of SVG, formatting
// elements rebuilt); a style sheet may override an inline style through
// escapes, imports or animations; a descendant may restore a font size or
// visibility in ways beyond a plain declaration; and magnification makes a
// 1px font readable. Each of these showed spam text to the reader that the
// rules did not see.
func TestHTMLHiddenTextAsBrowsersPlaceIt(t *testing.T) {
	for _, tc := range []struct{ name, html string }{
		{"foster parented out of a hidden table", `<table style="display:none">POISON<tr><td>x</td></tr></table>`},
		{"foster parented out of a hidden row", `<table><tr style="display:none"><td>x</td><b>POISON</b></tr></table>`},
		{"heading closes a hidden heading", `<h1 style="display:none">x<h2>POISON</h2></h1>`},
		{"any heading's end tag closes a hidden heading", `<h1 style="display:none">x</h2>POISON</h1>`},
		{"button closes a hidden button", `<button style="display:none">x<button>POISON</button></button>`},
		{"HTML breaks out of SVG", `<svg><g style="display:none">x<p>POISON</p></g></svg>`},
		{"cell outside a table is ignored", `<p><td style="display:none">POISON</td></p>`},
		{"image is a void img", `<image style="display:none">POISON</image>`},
		{"nested form is ignored", `<form>a<form style="display:none">POISON</form></form>`},
		{"second body's style is ignored", `<body style="margin:0">a<body style="display:none">POISON</body>`},
		{"rebuilt formatting element closes a hidden span", `<p><b>x</p><span style="display:none">y</b>POISON</span>`},
		{"span in a select is ignored", `<select><option><span style="display:none">POISON</span></option></select>`},
		{"escaped important in a sheet", `<style>div{display:block!\69mportant}</style><div style="display:none">POISON</div>`},
		{"imported sheet", `<style>@import url(http://x.example/a.css);</style><div style="display:none">POISON</div>`},
		{"animation overrides opacity", `<style>@keyframes a{to{opacity:1}} span{animation:a 1s forwards}</style><span style="opacity:0">POISON</span>`},
		{"font shorthand restores size", `<div style="font-size:0">b <span style="font:16px serif">POISON</span></div>`},
		{"all:initial restores visibility", `<div style="visibility:hidden">b <span style="all:initial">POISON</span></div>`},
		{"SVG attribute restores visibility", `<div style="visibility:hidden"><svg><text visibility="visible">POISON</text></svg></div>`},
		{"textarea has its own font size", `<div style="font-size:0">b <textarea>POISON</textarea></div>`},
		{"button has its own font size", `<div style="font-size:0">b <button>POISON</button></div>`},
		{"a quirks-mode table has its own font size", `<div style="font-size:0"><table><tr><td>POISON</td></tr></table></div>`},
		{"1px magnified by an ancestor", `<div style="transform:scale(20)"><span style="font-size:1px">POISON</span></div>`},
		{"1px magnified by a descendant", `<span style="font-size:1px"><b style="display:inline-block;zoom:20">POISON</b></span>`},
		{"1px magnified by itself", `<div style="font-size:1px;zoom:20">POISON</div>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Parse([]byte("Subject: x\nContent-Type: text/html\n\n<p>hello</p>"+tc.html+"<p>bye</p>"), Limits{})
			if !strings.Contains(m.Text, "POISON") {
				t.Errorf("text %q: POISON hidden, a browser shows it", m.Text)
			}
		})
	}
}
