package policyd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocol states Postfix sends in protocol_state.
const (
	StateConnect = "CONNECT"
	StateEHLO    = "EHLO"
	StateHELO    = "HELO"
	StateMail    = "MAIL"
	StateRcpt    = "RCPT"
	StateData    = "DATA"
	StateEOM     = "END-OF-MESSAGE"
	StateVRFY    = "VRFY"
	StateETRN    = "ETRN"
)

// Request is one parsed policy request. Every attribute Postfix sends up to 3.12
// has a field; numeric attributes are parsed (Postfix sends "" or "0" when a value
// is unavailable, both read as 0). Attributes this package does not know are kept
// in Extra so that newer Postfix versions and custom clients work.
type Request struct {
	Request       string // always "smtpd_access_policy"
	ProtocolState string // CONNECT, EHLO, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, VRFY, ETRN
	ProtocolName  string // SMTP, ESMTP
	HeloName      string
	QueueID       string
	Sender        string // envelope sender; "" for the null sender <>
	Recipient     string // only at RCPT (and at DATA/EOM with exactly one recipient)
	// RecipientCount is non-zero only at DATA and END-OF-MESSAGE.
	RecipientCount    int
	ClientAddress     string
	ClientAddr        netip.Addr // parsed ClientAddress; invalid when absent or "unknown"
	ClientName        string
	ReverseClientName string
	// Instance is constant for one message and changes for the next one on the
	// same connection.
	Instance string

	// Postfix 2.2
	SASLMethod       string
	SASLUsername     string
	SASLSender       string
	Size             int64 // MAIL FROM SIZE=, the actual size at END-OF-MESSAGE
	CCertSubject     string
	CCertIssuer      string
	CCertFingerprint string

	// Postfix 2.3
	EncryptionProtocol string
	EncryptionCipher   string
	EncryptionKeysize  int
	ETRNDomain         string

	// Postfix 2.5 .. 3.12
	Stress                 string // "yes" when smtpd is under stress
	CCertPubkeyFingerprint string
	ClientPort             int
	PolicyContext          string
	ServerAddress          string
	ServerPort             int
	CompatibilityLevel     string
	MailVersion            string
	TLSSNI                 string

	// Extra holds attributes not listed above, in the order received.
	Extra []Attr
}

// Attr is one name=value pair.
type Attr struct{ Name, Value string }

// Authenticated reports whether the client authenticated with SASL.
func (r *Request) Authenticated() bool { return r.SASLUsername != "" }

// Get returns the value of an attribute by its protocol name (known or extra).
func (r *Request) Get(name string) string {
	if p := r.field(name); p != nil {
		return *p
	}
	switch name {
	case "recipient_count":
		return strconv.Itoa(r.RecipientCount)
	case "size":
		return strconv.FormatInt(r.Size, 10)
	case "encryption_keysize":
		return strconv.Itoa(r.EncryptionKeysize)
	case "client_port":
		return strconv.Itoa(r.ClientPort)
	case "server_port":
		return strconv.Itoa(r.ServerPort)
	}
	for _, a := range r.Extra {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// field maps a string attribute name to its field. A switch compiles to a fast
// string dispatch and allocates nothing, which matters at tens of thousands of
// requests per second.
func (r *Request) field(name string) *string {
	switch name {
	case "request":
		return &r.Request
	case "protocol_state":
		return &r.ProtocolState
	case "protocol_name":
		return &r.ProtocolName
	case "helo_name":
		return &r.HeloName
	case "queue_id":
		return &r.QueueID
	case "sender":
		return &r.Sender
	case "recipient":
		return &r.Recipient
	case "client_address":
		return &r.ClientAddress
	case "client_name":
		return &r.ClientName
	case "reverse_client_name":
		return &r.ReverseClientName
	case "instance":
		return &r.Instance
	case "sasl_method":
		return &r.SASLMethod
	case "sasl_username":
		return &r.SASLUsername
	case "sasl_sender":
		return &r.SASLSender
	case "ccert_subject":
		return &r.CCertSubject
	case "ccert_issuer":
		return &r.CCertIssuer
	case "ccert_fingerprint":
		return &r.CCertFingerprint
	case "ccert_pubkey_fingerprint":
		return &r.CCertPubkeyFingerprint
	case "encryption_protocol":
		return &r.EncryptionProtocol
	case "encryption_cipher":
		return &r.EncryptionCipher
	case "etrn_domain":
		return &r.ETRNDomain
	case "stress":
		return &r.Stress
	case "policy_context":
		return &r.PolicyContext
	case "server_address":
		return &r.ServerAddress
	case "compatibility_level":
		return &r.CompatibilityLevel
	case "mail_version":
		return &r.MailVersion
	case "tls_sni":
		return &r.TLSSNI
	}
	return nil
}

// set stores one attribute. Repeated attributes: the last one wins, as in
// Postfix's own attr_scan (a client sending two is buggy, not hostile).
func (r *Request) set(name, value string) error {
	if p := r.field(name); p != nil {
		*p = value
		if name == "client_address" {
			r.ClientAddr = netip.Addr{}
			if a, err := netip.ParseAddr(value); err == nil {
				r.ClientAddr = a.Unmap()
			}
		}
		return nil
	}
	var err error
	switch name {
	case "recipient_count":
		r.RecipientCount, err = atoi(value)
	case "encryption_keysize":
		r.EncryptionKeysize, err = atoi(value)
	case "client_port":
		r.ClientPort, err = atoiPort(value)
	case "server_port":
		r.ServerPort, err = atoiPort(value)
	case "size":
		var n int
		n, err = atoi(value)
		r.Size = int64(n)
	default:
		r.Extra = append(r.Extra, Attr{name, value})
		return nil
	}
	if err != nil {
		return fmt.Errorf("attribute %s: %w", name, err)
	}
	return nil
}

// atoiPort reads a port; Postfix sends "unknown" when it has none (an
// XCLIENT PORT=[UNAVAILABLE], smtpd_peer.c's CLIENT_PORT_UNKNOWN), read as 0.
func atoiPort(s string) (int, error) {
	if s == "unknown" {
		return 0, nil
	}
	return atoi(s)
}

// atoi reads a non-negative decimal; "" is 0 (Postfix's "unavailable").
func atoi(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative number", truncate(s, 32))
	}
	return n, nil
}

// reset clears r for reuse on the next request of a connection.
func (r *Request) reset() {
	extra := r.Extra[:0]
	*r = Request{Extra: extra}
}

// check validates the request as a whole once the blank line was read.
func (r *Request) check() error {
	if r.Request != "smtpd_access_policy" {
		if r.Request == "" {
			return fmt.Errorf("missing request=smtpd_access_policy")
		}
		return fmt.Errorf("unsupported request=%s", truncate(r.Request, 64))
	}
	return nil
}

// truncate shortens s for logs and error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// domainOf returns the lower-cased domain of an address, "" when there is none.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
