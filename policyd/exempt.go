package policyd

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// exemptions are the greylist allowlists: client networks, client host names
// (postgrey's whitelist_clients) and recipients (whitelist_recipients).
type exemptions struct {
	nets        netList
	clientNames map[string]bool // a host name or a domain (matches its subdomains)
	clientRE    *patternSet     // the /regex/ entries; nil if none
	rcptFull    map[string]bool // user@domain, also user+ext@domain
	rcptLocal   map[string]bool // "user@": any domain, also user+ext@
	rcptDomain  map[string]bool // domain and its subdomains
	rcptRE      *patternSet
	delim       string // recipient_delimiter: where a +extension starts
}

func newExemptions(c GreylistConfig) (*exemptions, error) {
	x := &exemptions{clientNames: map[string]bool{}, rcptFull: map[string]bool{}, rcptLocal: map[string]bool{}, rcptDomain: map[string]bool{},
		delim: c.RecipientDelimiter}
	var err error
	if x.nets, err = newNetList(c.ExemptNetworks); err != nil {
		return nil, err
	}
	var clientRE, rcptRE []string
	addClient := func(e string) error {
		switch {
		case isRegexEntry(e):
			clientRE = append(clientRE, e[1:len(e)-1])
		case looksLikeAddress(e):
			p, err := postgreyPrefix(e)
			if err != nil {
				return err
			}
			x.nets = append(x.nets, p)
		default:
			x.clientNames[strings.ToLower(strings.TrimSuffix(e, "."))] = true
		}
		return nil
	}
	addRcpt := func(e string) error {
		e = strings.ToLower(e)
		switch {
		case isRegexEntry(e):
			rcptRE = append(rcptRE, e[1:len(e)-1])
		case strings.HasSuffix(e, "@"):
			x.rcptLocal[e] = true
		case strings.Contains(e, "@"):
			x.rcptFull[e] = true
		default:
			x.rcptDomain[e] = true
		}
		return nil
	}
	for _, e := range c.ExemptClients {
		if err := addClient(e); err != nil {
			return nil, err
		}
	}
	for _, e := range c.ExemptRecipients {
		_ = addRcpt(e)
	}
	if err := readList(c.ExemptClientsFile, addClient); err != nil {
		return nil, err
	}
	if err := readList(c.ExemptRecipientsFile, addRcpt); err != nil {
		return nil, err
	}
	if x.clientRE, err = newPatternSet(clientRE); err != nil {
		return nil, fmt.Errorf("exempt clients: %w", err)
	}
	if x.rcptRE, err = newPatternSet(rcptRE); err != nil {
		return nil, fmt.Errorf("exempt recipients: %w", err)
	}
	return x, nil
}

// match returns why the request is exempt, or "".
func (x *exemptions) match(r *Request) string {
	if x.nets.contains(r.ClientAddr) {
		return "client network"
	}
	if name := strings.ToLower(r.ClientName); name != "" && name != "unknown" {
		if d, ok := inDomains(x.clientNames, name); ok {
			return "client " + d
		}
		if x.clientRE.match(name) {
			return "client name pattern"
		}
	}
	if rcpt := canonicalAddr(r.Recipient); rcpt != "" {
		return x.matchRecipient(rcpt)
	}
	return ""
}

// matchRecipient matches a canonical recipient as postgrey reads its
// whitelist_recipients, in access(5) syntax: "user@domain" and "user@" also
// match user+extension, and "domain" matches its subdomains too.
func (x *exemptions) matchRecipient(rcpt string) string {
	for addr := rcpt; ; {
		at := strings.LastIndexByte(addr, '@')
		switch {
		case x.rcptFull[addr]:
			return "recipient " + addr
		case at >= 0 && x.rcptLocal[addr[:at+1]]:
			return "recipient " + addr[:at+1]
		}
		// Only a recipient with an extension costs a second round.
		base := stripDetail(addr, x.delim)
		if base == addr {
			break
		}
		addr = base
	}
	if at := strings.LastIndexByte(rcpt, '@'); at >= 0 {
		if d, ok := inDomains(x.rcptDomain, rcpt[at+1:]); ok {
			return "recipient domain " + d
		}
	}
	if x.rcptRE.match(rcpt) {
		return "recipient pattern"
	}
	return ""
}

// inDomains returns the entry of set that is name or one of its parent
// domains, nearest first.
func inDomains(set map[string]bool, name string) (string, bool) {
	for d := name; d != ""; {
		if set[d] {
			return d, true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return "", false
}

func isRegexEntry(e string) bool { return len(e) >= 2 && e[0] == '/' && e[len(e)-1] == '/' }

func looksLikeAddress(e string) bool {
	return strings.Contains(e, ":") || strings.Trim(e, "0123456789./") == ""
}

// postgreyPrefix reads an address, a CIDR network, or postgrey's partial
// dotted form ("192.168" = 192.168.0.0/16).
func postgreyPrefix(e string) (netip.Prefix, error) {
	if !strings.ContainsAny(e, "/:") {
		parts := strings.Split(strings.TrimSuffix(e, "."), ".")
		if n := len(parts); n < 4 {
			for len(parts) < 4 {
				parts = append(parts, "0")
			}
			return parsePrefix(strings.Join(parts, ".") + "/" + strconv.Itoa(8*n))
		}
	}
	return parsePrefix(e)
}

// readList reads a postgrey-style list file: one entry per line (the first
// word), # comments, blank lines ignored. Errors name file and line.
func readList(path string, add func(string) error) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("list file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if err := add(fields[0]); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
