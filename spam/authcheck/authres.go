package authcheck

import (
	"sort"
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"github.com/dovetail-mail/dovetail/spam"
)

// dmarcComment is the policy comment of a failing DMARC result whose pct=
// sampling applied a less strict policy than the one published, written as
// OpenDMARC and Google do: "dmarc=fail (p=reject dis=quarantine)". When the
// published policy applied, the result stays as it was (the symbol's
// options still carry p= and dis=).
func dmarcComment(opts []string) string {
	var p, dis string
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		// Both come from a closed set (none, quarantine, reject): nothing
		// the sender wrote reaches the header.
		if !dmarcPolicyWord(v) {
			continue
		}
		switch k {
		case "p":
			p = v
		case "dis":
			dis = v
		}
	}
	if p == "" || dis == "" || p == dis {
		return ""
	}
	return "(p=" + p + " dis=" + dis + ")"
}

// dmarcPolicyWord reports whether v is a DMARC policy (of p=, sp= or np=).
func dmarcPolicyWord(v string) bool {
	return v == "none" || v == "quarantine" || v == "reject"
}

// AuthResults renders the SPF/DKIM/DMARC symbols of a verdict as an
// Authentication-Results value (RFC 8601) for authservID (the MTA's host
// name). It returns "" when the verdict has no authentication symbols, so
// the header is only added when checks ran.
func AuthResults(authservID string, syms []spam.Symbol) string {
	var results []authres.Result
	var dmarcFail string // the failing DMARC result's comment
	for _, s := range syms {
		method, value, ok := strings.Cut(s.Name, "_")
		if !ok {
			continue
		}
		v := authres.ResultValue(strings.ToLower(value))
		opt := func(key string) string {
			for _, o := range s.Options {
				if k, val, ok := strings.Cut(o, "="); ok && k == key {
					return pvalue(key, val)
				}
			}
			return ""
		}
		switch method {
		case "SPF":
			results = append(results, &authres.SPFResult{Value: v, From: opt("smtp.mailfrom"), Helo: opt("smtp.helo")})
		case "DKIM":
			switch value {
			case "VALID":
				v = authres.ResultPass
			case "INVALID":
				v = authres.ResultFail
			case "BODY_LENGTH":
				// RFC 8601 §2.7.1: signed, but the signature is not acceptable.
				v = authres.ResultPolicy
			case "TESTING":
				// A failure the signer asked not to be held against it.
				v = authres.ResultNeutral
			}
			ds := domains(s.Options)
			if len(ds) == 0 {
				results = append(results, &authres.DKIMResult{Value: v})
			}
			for _, d := range ds {
				results = append(results, &authres.DKIMResult{Value: v, Domain: d})
			}
		case "DMARC":
			switch value {
			case "PASS", "NONE", "TEMPERROR", "PERMERROR":
			default: // REJECT, QUARANTINE, POLICY_NONE
				v = authres.ResultFail
				dmarcFail = dmarcComment(s.Options)
			}
			results = append(results, &authres.DMARCResult{Value: v, From: opt("header.from")})
		}
	}
	if len(results) == 0 {
		return ""
	}
	// Conventional order (SPF, DKIM, DMARC), whatever order the verdict's
	// symbols are in.
	rank := func(r authres.Result) int {
		switch r.(type) {
		case *authres.SPFResult:
			return 0
		case *authres.DKIMResult:
			return 1
		}
		return 2
	}
	sort.SliceStable(results, func(i, j int) bool { return rank(results[i]) < rank(results[j]) })
	// go-msgauth leaves a space before ';' after a result without properties.
	v := authres.Format(authservID, results)
	v = strings.TrimSpace(strings.ReplaceAll(v, " ;", ";"))
	if dmarcFail != "" {
		// go-msgauth writes no comments. DMARC sorts last and property
		// values cannot hold ';' or spaces (pvalue), so the last
		// "; dmarc=fail" is the result to annotate.
		if i := strings.LastIndex(v, "; dmarc=fail"); i >= 0 {
			i += len("; dmarc=fail")
			v = v[:i] + " " + dmarcFail + v[i:]
		}
	}
	return v
}

func domains(opts []string) []string {
	var out []string
	for _, o := range opts {
		if d, ok := strings.CutPrefix(o, "header.d="); ok {
			out = append(out, pvalue("header.d", d))
		}
	}
	return out
}

// pvalue makes a property value safe to render. Values come from the
// envelope (MAIL FROM, HELO) and the message (d=), so the client chooses
// them: control characters would break the header line, and quoting cannot
// be trusted to contain the rest, since go-msgauth escapes '"' but not '\'
// (`a\"; dkim=pass header.d=bank.example` closed its quoted string early and
// the remainder parsed as a result of ours), and naive readers split on ';'
// anyway. A value with a quote, backslash, ';', parenthesis or white space
// is therefore reduced to its domain, which is what SPF checked and what the
// pvalue ABNF allows alone (RFC 8601 §2.2: [[local-part] "@"] domain-name),
// or left out when that is no host name either.
func pvalue(key, v string) string {
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
	if !strings.ContainsAny(v, "\"\\;() ") {
		return v
	}
	if key == "smtp.mailfrom" {
		if d := strings.ToLower(v[strings.LastIndexByte(v, '@')+1:]); hostLike(d) {
			return d
		}
	}
	return ""
}
