package message

import (
	"sort"
	"strconv"
	"strings"
)

// Text hidden by an inline style (display:none, visibility:hidden,
// opacity:0, a font size of 0 or 1px) is not part of the visible text, as
// SpamAssassin renders HTML: spam fills such elements with words for Bayes
// that its reader never sees. Hiding is the one way this can go wrong in the
// spammer's favour (text a mail client shows but the rules do not see), so
// only what is hidden beyond doubt is cut:
//
//   - the hidden element is closed by its own end tag: one left open, or
//     closed by a parent's, would in a browser hide up to somewhere a
//     sanitizing mail client may not agree on, and must not take the rest of
//     the message with it;
//   - nothing inside it makes a browser close it or an element around it
//     early (a block start tag closing an open <p>, a <li> or table cell
//     with no list or table of its own, a nested <a>), which would move the
//     text after it out of the hidden element;
//   - visibility and font size are inherited, so a descendant may restore
//     them: any own visibility, font size or <font size> inside, and any
//     style sheet at all (it may set them on descendants), keep the text;
//   - display:none and opacity:0 cannot be undone below the element, only
//     by a style sheet's !important rule, unless the inline one is
//     !important too;
//   - a style attribute with escapes, braces, unclosed strings or
//     parentheses is not read;
//   - what this reading of the tokens cuts, HTML's tree construction must
//     place inside a hidden element too (hiddenInTree): it moves text out
//     of elements in more ways than a token stream shows.

// maxHideDepth bounds the open-element stack on hostile nesting.
const maxHideDepth = 256

type hideKind int

const (
	notHidden hideKind = iota
	// hideInherited: visibility or font size, which descendants and any
	// style sheet may restore.
	hideInherited
	// hideDisplay: display:none or opacity:0, which only a style sheet's
	// !important rule overrides.
	hideDisplay
	// hideImportant: display:none or opacity:0 !important, final.
	hideImportant
)

type openElem struct {
	tag  string
	kind hideKind // hides its content
	mark int      // length of the text when it opened
	ok   bool     // still hidden beyond doubt
}

type cut struct {
	start, end int
	kind       hideKind
}

// textTok is a text token: its offset in the HTML source and its span in
// the text.
type textTok struct{ src, start, end int }

// hider follows the open elements of an HTML document as its tokens go by
// and records the spans of text that inline styles hide.
type hider struct {
	stack          []openElem
	cuts           []cut
	texts          []textTok // those not white space
	sheet          bool      // a style sheet: it may restore inherited styles
	sheetImportant bool      // one with !important rules (or unknown content)
	deep           bool      // nested past maxHideDepth: nothing is cut
}

// voidElems have no content and no end tag.
var voidElems = map[string]bool{"area": true, "base": true, "br": true, "col": true, "embed": true,
	"hr": true, "img": true, "input": true, "link": true, "meta": true, "param": true, "source": true,
	"track": true, "wbr": true, "keygen": true, "basefont": true, "bgsound": true, "frame": true}

// closesP are the start tags that close an open <p> (HTML tree
// construction, "in body"), and with it anything opened inside it.
var closesP = map[string]bool{"address": true, "article": true, "aside": true, "blockquote": true,
	"center": true, "details": true, "dialog": true, "dir": true, "div": true, "dl": true, "fieldset": true,
	"figcaption": true, "figure": true, "footer": true, "form": true, "h1": true, "h2": true, "h3": true,
	"h4": true, "h5": true, "h6": true, "header": true, "hgroup": true, "hr": true, "main": true, "menu": true,
	"nav": true, "ol": true, "p": true, "pre": true, "listing": true, "section": true, "summary": true,
	"table": true, "ul": true, "li": true, "dd": true, "dt": true, "plaintext": true, "xmp": true}

// needsOwn names, for start tags a browser places by their container, the
// containers that must be open inside the hidden element for the tag to
// stay in it.
var needsOwn = map[string][]string{
	"li": {"ul", "ol", "menu"}, "dd": {"dl"}, "dt": {"dl"},
	"tr": {"table", "tbody", "thead", "tfoot"}, "td": {"tr", "table"}, "th": {"tr", "table"},
	"tbody": {"table"}, "thead": {"table"}, "tfoot": {"table"}, "caption": {"table"},
	"colgroup": {"table"}, "col": {"table", "colgroup"},
}

// start handles a start tag; textLen is the length of the text so far.
func (h *hider) start(tag string, attrs map[string]string, selfClosing bool, textLen int) {
	if tag == "link" && strings.Contains(strings.ToLower(attrs["rel"]), "stylesheet") {
		h.sheet, h.sheetImportant = true, true
	}
	decls, parsed := parseInlineStyle(attrs["style"])
	if in := h.innermost(); in >= 0 {
		if h.escapes(tag, in) {
			h.cancel(hideImportant)
		}
		if restoresInherited(tag, attrs, decls, parsed) {
			h.cancel(hideInherited)
		}
	}
	if voidElems[tag] {
		return
	}
	if len(h.stack) >= maxHideDepth {
		// Hostile nesting: the end tags can no longer be matched.
		h.deep = true
		return
	}
	e := openElem{tag: tag}
	// "<span style=display:none/>" opens a span in HTML but closes it in
	// SVG and MathML: not beyond doubt.
	if parsed && !selfClosing {
		e.kind = hiddenBy(decls)
		e.mark, e.ok = textLen, e.kind != notHidden
	}
	h.stack = append(h.stack, e)
}

// end handles an end tag: it closes the nearest open element of that name
// and everything opened after it (left open inside it). Only the element
// named is closed by its own end tag: hidden elements closed along with it
// are not cut (their text is, when inside the one closed).
func (h *hider) end(tag string, textLen int) {
	i := len(h.stack) - 1
	for i >= 0 && h.stack[i].tag != tag {
		i--
	}
	if i < 0 {
		return
	}
	if e := h.stack[i]; e.ok {
		h.cuts = append(h.cuts, cut{e.mark, textLen, e.kind})
	}
	h.stack = h.stack[:i]
}

// text notes a text token at src in the HTML source, written to the text
// at start.
func (h *hider) text(src, start int, t string) {
	if strings.Trim(t, htmlSpace) != "" && !h.deep {
		h.texts = append(h.texts, textTok{src, start, start + len(t)})
	}
}

// htmlSpace is HTML's white space.
const htmlSpace = "\t\n\f\r "

// styleSheet notes the text of a <style> element. Besides an !important
// rule, an imported sheet (unknown), an animation (its keyframes override
// inline styles) and an escape (which spells "important" unseen) may
// override display:none and opacity:0.
func (h *hider) styleSheet(css string) {
	if strings.TrimSpace(css) != "" {
		h.sheet = true
	}
	if css = strings.ToLower(css); strings.Contains(css, "import") || strings.Contains(css, "keyframes") || strings.Contains(css, "\\") {
		h.sheetImportant = true // "import" covers !important and @import
	}
}

// innermost returns the stack index of the innermost hidden element, -1.
func (h *hider) innermost() int {
	for i := len(h.stack) - 1; i >= 0; i-- {
		if h.stack[i].ok {
			return i
		}
	}
	return -1
}

// escapes reports whether a browser would place what follows the start
// tag outside the hidden element at stack index in (or one inside it): it
// closes that element or one around it, or belongs to a container outside.
func (h *hider) escapes(tag string, in int) bool {
	if closesP[tag] {
		for i := len(h.stack) - 1; i >= 0; i-- {
			if h.stack[i].tag == "p" {
				if i <= in {
					return true
				}
				break
			}
		}
	}
	if tag == "a" || tag == "nobr" {
		for i := in; i >= 0; i-- {
			if h.stack[i].tag == tag {
				return true
			}
		}
	}
	if own, ok := needsOwn[tag]; ok {
		for _, e := range h.stack[in:] {
			for _, c := range own {
				if e.tag == c {
					return false
				}
			}
		}
		return true
	}
	return false
}

// cancel stops the open hidden elements of kind up to max from hiding.
func (h *hider) cancel(max hideKind) {
	for i := range h.stack {
		if h.stack[i].kind <= max {
			h.stack[i].ok = false
		}
	}
}

// visible returns text without the spans hidden beyond doubt; src is the
// HTML source it was read from.
func (h *hider) visible(src, text string) string {
	if h.deep {
		return text
	}
	var keep []cut
	for _, c := range h.cuts {
		if h.overridden(c.kind) {
			continue
		}
		keep = append(keep, c)
	}
	if len(keep) == 0 {
		return text
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].start < keep[j].start })
	// A text token is cut only where the tree puts it out of sight too.
	inTree := h.hiddenInTree(src, text)
	var b strings.Builder
	at, tok := 0, 0
	for _, c := range keep {
		if c.start > at {
			b.WriteString(text[at:c.start])
			at = c.start
		}
		for ; tok < len(h.texts) && h.texts[tok].start < c.end; tok++ {
			if t := h.texts[tok]; t.start >= at && !inTree[tok] {
				b.WriteString(text[t.start:t.end])
			}
		}
		at = max(at, c.end)
	}
	b.WriteString(text[at:])
	return b.String()
}

// overridden reports whether a style sheet may undo hiding of kind.
func (h *hider) overridden(kind hideKind) bool {
	return kind == hideInherited && h.sheet || kind == hideDisplay && h.sheetImportant
}

type decl struct {
	value     string
	important bool
}

// parseInlineStyle reads a style attribute into its declarations, lower
// case, the one that wins for each property (the last, unless an earlier one
// is !important and it is not). parsed is false when the attribute has
// anything this simple reading could get wrong (escapes, blocks, unclosed
// strings, comments or parentheses).
func parseInlineStyle(s string) (decls map[string]decl, parsed bool) {
	if s == "" {
		return nil, true
	}
	if strings.ContainsAny(s, "\\{}") {
		return nil, false
	}
	s = strings.ToLower(s)
	// Comments, then declarations split at ';' outside strings and
	// parentheses.
	var plain strings.Builder
	for {
		i := strings.Index(s, "/*")
		if i < 0 {
			plain.WriteString(s)
			break
		}
		plain.WriteString(s[:i])
		j := strings.Index(s[i+2:], "*/")
		if j < 0 {
			return nil, false
		}
		plain.WriteByte(' ')
		s = s[i+2+j+2:]
	}
	s = plain.String()
	var parts []string
	var quote byte
	depth, from := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, false
			}
		case c == ';' && depth == 0:
			parts = append(parts, s[from:i])
			from = i + 1
		}
	}
	if quote != 0 || depth != 0 {
		return nil, false
	}
	parts = append(parts, s[from:])
	decls = map[string]decl{}
	for _, p := range parts {
		k, v, ok := strings.Cut(p, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		d := decl{value: v}
		if i := strings.LastIndexByte(v, '!'); i >= 0 && strings.TrimSpace(v[i+1:]) == "important" {
			d = decl{value: strings.TrimSpace(v[:i]), important: true}
		}
		if old, seen := decls[k]; seen && old.important && !d.important {
			continue
		}
		decls[k] = d
	}
	return decls, true
}

// hiddenBy returns how the declarations hide the element's content.
func hiddenBy(decls map[string]decl) hideKind {
	kind := notHidden
	for _, p := range []string{"display", "opacity"} {
		d, ok := decls[p]
		if !ok || p == "display" && d.value != "none" || p == "opacity" && !isZero(d.value) {
			continue
		}
		if d.important {
			return hideImportant
		}
		kind = hideDisplay
	}
	if kind != notHidden {
		return kind
	}
	if d, ok := decls["visibility"]; ok && (d.value == "hidden" || d.value == "collapse") {
		return hideInherited
	}
	if d, ok := decls["font-size"]; ok && tinyFontSize(d.value) {
		return hideInherited
	}
	return notHidden
}

// restoresInherited reports an element that may show text its hidden
// parent's visibility or font size would hide.
func restoresInherited(tag string, attrs map[string]string, decls map[string]decl, parsed bool) bool {
	if !parsed || tag == "font" && attrs["size"] != "" {
		return true
	}
	if d, ok := decls["visibility"]; ok && d.value != "hidden" && d.value != "collapse" {
		return true
	}
	if d, ok := decls["font-size"]; ok && !tinyFontSize(d.value) {
		return true
	}
	return false
}

// isZero reports a CSS number or percentage that is zero.
func isZero(v string) bool {
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	return err == nil && f == 0
}

// tinyFontSize reports a font size no one can read: zero in any unit, at
// most 1px or 1pt.
func tinyFontSize(v string) bool {
	num := strings.TrimRight(v, "abcdefghijklmnopqrstuvwxyz%")
	unit := v[len(num):]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return false
	}
	switch {
	case f == 0:
		return unit == "" || unit == "px" || unit == "pt" || unit == "em" || unit == "rem" || unit == "%"
	case unit == "px" || unit == "pt":
		return f <= 1
	}
	return false
}
