package spam

import (
	"net/netip"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/dovetail-mail/dovetail/spam/message"
)

// listHit is one allow or deny entry that matched.
type listHit struct {
	name string // "network …", "sender …", "domain …"
	// addr is the lower-cased address a sender or domain entry matched, ""
	// for a network entry; header says it came from From, not MAIL FROM.
	addr   string
	header bool
}

func denySymbol(h listHit) Symbol {
	return Symbol{Name: "DENYLIST", Score: 100, Description: "Sender or client is on the deny list", Options: []string{h.name}}
}

func allowSymbol(h listHit) Symbol {
	return Symbol{Name: "ALLOWLIST", Score: -100, Description: "Sender or client is on the allow list", Options: []string{h.name}}
}

// listHits returns the allow (allow=true) or deny entries matching the
// client address, the envelope sender and the From address, networks first.
func (e *Engine) listHits(in *Input, msg *Message, allow bool) []listHit {
	l, nets := e.cfg.Deny, e.denyNet
	if allow {
		l, nets = e.cfg.Allow, e.allowNet
	}
	var hits []listHit
	if in.ClientIP != nil {
		if a, ok := netip.AddrFromSlice(in.ClientIP); ok {
			a = a.Unmap()
			for _, p := range nets {
				if p.Contains(a) {
					hits = append(hits, listHit{name: "network " + p.String()})
					break
				}
			}
		}
	}
	type ident struct {
		addr   string
		header bool
	}
	idents := []ident{{strings.ToLower(in.MailFrom), false}}
	for _, a := range fromAddresses(msg, !allow) {
		idents = append(idents, ident{a, true})
	}
	for _, id := range idents {
		_, dom, ok := strings.Cut(id.addr, "@")
		if !ok {
			continue
		}
		for _, want := range l.Senders {
			if strings.EqualFold(id.addr, want) {
				hits = append(hits, listHit{name: "sender " + id.addr, addr: id.addr, header: id.header})
			}
		}
		for _, want := range l.Domains {
			want = strings.ToLower(strings.TrimPrefix(want, "@"))
			if dom == want || strings.HasSuffix(dom, "."+want) {
				hits = append(hits, listHit{name: "domain " + want, addr: id.addr, header: id.header})
			}
		}
	}
	return hits
}

// fromAddresses returns the From address, lower-cased with any trailing dot
// of the domain dropped. A From that names no single mailbox yields nothing,
// or with anyAddress every address-like word in it: a deny entry is better
// over-matched, while an allow entry must never rest on a guess.
func fromAddresses(msg *Message, anyAddress bool) []string {
	froms := msg.Header.RawValues("From")
	if len(froms) == 1 {
		if a, err := message.ParseMailbox(froms[0]); err == nil {
			return []string{strings.TrimSuffix(strings.ToLower(a), ".")}
		}
	}
	if !anyAddress {
		return nil
	}
	var out []string
	for _, f := range froms {
		for _, w := range strings.FieldsFunc(f, func(r rune) bool { return strings.ContainsRune(" \t\r\n<>\"(),;:[]\\", r) }) {
			if strings.Contains(w, "@") {
				out = append(out, strings.TrimSuffix(strings.ToLower(w), "."))
			}
		}
	}
	return out
}

// authenticatedHit returns the first sender or domain hit whose identity the
// authentication checks confirmed, as SpamAssassin's whitelist_auth does:
// for From, DMARC pass or an SPF pass or valid DKIM signature aligned with its
// domain (relaxed, RFC 7489 §3.1); for MAIL FROM, SPF pass for that address or
// a valid DKIM signature aligned with its domain.
func authenticatedHit(hits []listHit, syms []Symbol) (listHit, bool) {
	for _, h := range hits {
		if h.addr == "" {
			continue
		}
		_, dom, _ := strings.Cut(h.addr, "@")
		for _, s := range syms {
			ok := false
			switch s.Name {
			case "DMARC_PASS":
				ok = h.header && symbolOption(s, "header.from") == dom
			case "DKIM_VALID":
				for _, o := range s.Options {
					if d, found := strings.CutPrefix(o, "header.d="); found && alignedDomains(d, dom) {
						ok = true
					}
				}
			case "SPF_PASS":
				mf := strings.ToLower(symbolOption(s, "smtp.mailfrom"))
				if h.header {
					_, d, found := strings.Cut(mf, "@")
					ok = found && alignedDomains(d, dom)
				} else {
					ok = mf != "" && mf == h.addr
				}
			}
			if ok {
				return h, true
			}
		}
	}
	return listHit{}, false
}

func symbolOption(s Symbol, key string) string {
	for _, o := range s.Options {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return strings.ToLower(v)
		}
	}
	return ""
}

// alignedDomains reports relaxed alignment: the same organizational domain.
func alignedDomains(a, b string) bool {
	a, b = strings.ToLower(strings.TrimSuffix(a, ".")), strings.ToLower(strings.TrimSuffix(b, "."))
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	oa, err1 := publicsuffix.EffectiveTLDPlusOne(a)
	ob, err2 := publicsuffix.EffectiveTLDPlusOne(b)
	return err1 == nil && err2 == nil && oa == ob
}
