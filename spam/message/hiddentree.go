package message

import (
	"strconv"
	"strings"

	"golang.org/x/net/html"
)

// Markers around a text token's number, put before the token in the source
// handed to the tree builder; a source that has them already is not read.
const (
	markOpen  = "\ue000"
	markClose = "\ue001"
)

// hiddenInTree reports, for each of h.texts, whether HTML's tree
// construction (html.Parse, as browsers build the tree) puts all of the
// token inside an element that hides it beyond doubt: display:none or
// opacity:0 on an ancestor, or visibility or a font size that no element
// between restores (nor magnifies, for a small font above zero), each
// unless a style sheet of the document may override it. text is the text
// the tokens were written to.
func (h *hider) hiddenInTree(src, text string) []bool {
	hidden := make([]bool, len(h.texts))
	if strings.Contains(src, markOpen) || strings.Contains(src, markClose) {
		return hidden
	}
	var b strings.Builder
	b.Grow(len(src) + 8*len(h.texts))
	at := 0
	for i, t := range h.texts {
		b.WriteString(src[at:t.src])
		b.WriteString(markOpen + strconv.Itoa(i) + markClose)
		at = t.src
	}
	b.WriteString(src[at:])
	doc, err := html.Parse(strings.NewReader(b.String()))
	if err != nil {
		return hidden
	}
	seen := make([]bool, len(h.texts))
	type frame struct {
		n *html.Node
		s treeStyle
	}
	stack := []frame{{n: doc}}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch f.n.Type {
		case html.TextNode:
			h.markTokens(f.n.Data, text, f.s.hidden(h), hidden, seen)
			continue
		case html.ElementNode:
			f.s = f.s.enter(f.n)
		}
		for c := f.n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, frame{c, f.s})
		}
	}
	return hidden
}

// markTokens sets hidden for the tokens marked in the text node data: a
// token is hidden when the node holds all of it (and at most white space
// after it, from tokens not marked) and the node is hidden. A token met
// twice is not hidden.
func (h *hider) markTokens(data, text string, nodeHidden bool, hidden, seen []bool) {
	for {
		i := strings.Index(data, markOpen)
		if i < 0 {
			return
		}
		data = data[i+len(markOpen):]
		j := strings.Index(data, markClose)
		if j < 0 {
			return
		}
		k, err := strconv.Atoi(data[:j])
		data = data[j+len(markClose):]
		if err != nil || k < 0 || k >= len(h.texts) {
			continue
		}
		if seen[k] {
			hidden[k] = false
			continue
		}
		seen[k] = true
		seg := data
		if e := strings.Index(seg, markOpen); e >= 0 {
			seg = seg[:e]
		}
		t := h.texts[k]
		tok := text[t.start:t.end]
		hidden[k] = nodeHidden && strings.HasPrefix(seg, tok) && strings.Trim(seg[len(tok):], htmlSpace) == ""
	}
}

// treeStyle is what an element's ancestors make of its text.
type treeStyle struct {
	display    hideKind // hideDisplay or hideImportant from an ancestor
	visibility bool     // hidden by an ancestor's visibility, not restored
	size       bool     // font size zero, not restored
	small      bool     // font size above zero but tiny, not restored
	magnified  bool     // zoom or a transform on an ancestor
	// inSelect: browsers disagree on which tags a <select> keeps (the
	// customizable select's parsing keeps more) and on hidden options.
	inSelect bool
}

func (s treeStyle) hidden(h *hider) bool {
	switch {
	case s.display != notHidden && !h.overridden(s.display):
		return true
	case h.sheet: // it may restore visibility and font size
		return false
	}
	return s.visibility || s.size || s.small && !s.magnified
}

// enter returns the style of n's content.
func (s treeStyle) enter(n *html.Node) treeStyle {
	var style string
	attrs := map[string]string{}
	for _, a := range n.Attr {
		if _, dup := attrs[a.Key]; !dup {
			attrs[a.Key] = a.Val
		}
	}
	style = attrs["style"]
	decls, parsed := parseInlineStyle(style)
	if !parsed {
		// Unread: it may restore anything it could set.
		s.visibility, s.size, s.small, s.magnified = false, false, false, true
		return s
	}
	has := func(k string) bool { _, ok := decls[k]; return ok }
	// Magnification: zoom, transforms (CSS or SVG's attribute), an SVG
	// viewport's scale.
	for k := range decls {
		if k == "zoom" || k == "scale" || strings.HasSuffix(k, "transform") {
			s.magnified = true
		}
	}
	if attrs["transform"] != "" || n.Data == "svg" {
		s.magnified = true
	}
	// A visibility of its own (CSS, all:, SVG's presentation attribute)
	// restores it.
	if d, ok := decls["visibility"]; ok && d.value != "hidden" && d.value != "collapse" || has("all") || attrs["visibility"] != "" {
		s.visibility = false
	}
	// So does a font size of its own: the property, the font shorthand, all:,
	// <font size>, SVG's and MathML's attributes, form controls (the UA sheet
	// sets their font) and a table (quirks mode resets its font size).
	if d, ok := decls["font-size"]; ok && !tinyFontSize(d.value) || has("font") || has("all") ||
		attrs["font-size"] != "" || attrs["mathsize"] != "" || n.Data == "font" && attrs["size"] != "" {
		s.size, s.small = false, false
	}
	switch n.Data {
	case "textarea", "button", "select", "input", "table", "math":
		s.size, s.small = false, false
	}
	if s.inSelect {
		return s
	}
	s.inSelect = n.Data == "select"
	switch kind := hiddenBy(decls); kind {
	case hideDisplay, hideImportant:
		s.display = max(s.display, kind)
	case hideInherited:
		if d, ok := decls["visibility"]; ok && (d.value == "hidden" || d.value == "collapse") {
			s.visibility = true
		} else if v := decls["font-size"].value; isZero(strings.TrimRight(v, "abcdefghijklmnopqrstuvwxyz%")) {
			s.size = true
		} else {
			s.small = true
		}
	}
	return s
}
