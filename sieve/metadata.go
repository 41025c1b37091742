package sieve

import "strings"

// mboxmetadata and servermetadata (RFC 5490 section 3): tests over the IMAP
// METADATA (RFC 5464) entries of the user's mailboxes and of the server.

// MetadataStore answers the metadata tests. Entry names are full RFC 5464
// names such as "/private/comment"; ok is false when the entry is not set.
type MetadataStore interface {
	MailboxMetadata(mailbox, entry string) (value string, ok bool)
	ServerMetadata(entry string) (value string, ok bool)
}

// validMetadataEntry checks an RFC 5464 entry name: "/private/..." or
// "/shared/...", no empty components, no '*' or '%', no control characters.
func validMetadataEntry(name string) bool {
	lower := strings.ToLower(name)
	if !strings.HasPrefix(lower, "/private/") && !strings.HasPrefix(lower, "/shared/") {
		return false
	}
	if strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '*' || c == '%' {
			return false
		}
	}
	return validUTF8(name)
}

// metadataTest is metadata (mailbox != nil) or servermetadata.
type metadataTest struct {
	mailbox *strv
	entry   strv
	m       *matcher
}

func (r *run) metadataValue(mailbox *strv, entry string) (string, bool) {
	if r.env.Metadata == nil || !validMetadataEntry(entry) {
		return "", false
	}
	if mailbox == nil {
		return r.env.Metadata.ServerMetadata(entry)
	}
	mb := r.expand(mailbox)
	if !validUTF8(mb) {
		return "", false
	}
	return r.env.Metadata.MailboxMetadata(mb, entry)
}

func (t *metadataTest) eval(r *run) (bool, error) {
	v, ok := r.metadataValue(t.mailbox, r.expand(&t.entry))
	if !ok {
		return false, nil
	}
	return t.m.match(r, []string{v})
}

// metadataExistsTest is metadataexists (mailbox != nil) or
// servermetadataexists: true when every named entry is set.
type metadataExistsTest struct {
	mailbox *strv
	entries []strv
}

func (t *metadataExistsTest) eval(r *run) (bool, error) {
	for _, e := range r.expandList(t.entries) {
		if _, ok := r.metadataValue(t.mailbox, e); !ok {
			return false, nil
		}
	}
	return true, nil
}

func compileMetadata(server bool) func(c *compiler, n *testNode, a *argp) test {
	return func(c *compiler, n *testNode, a *argp) test {
		var ms matchSpec
		for t, ok := a.tag(); ok; t, ok = a.tag() {
			if !c.stdTag(a, t, &ms, stdMatch) {
				a.unknownTag(t)
			}
		}
		t := &metadataTest{}
		if !server {
			mb, _ := a.str("mailbox")
			t.mailbox = &mb
		}
		t.entry, _ = a.str("annotation name")
		keys := a.strList("key list")
		if a.failed {
			return nil
		}
		if t.m = c.finishMatch(a, &ms, keys); t.m == nil {
			return nil
		}
		return t
	}
}

func compileMetadataExists(server bool) func(c *compiler, n *testNode, a *argp) test {
	return func(c *compiler, n *testNode, a *argp) test {
		t := &metadataExistsTest{}
		if !server {
			mb, _ := a.str("mailbox")
			t.mailbox = &mb
		}
		t.entries = a.strList("annotation names")
		if a.failed {
			return nil
		}
		return t
	}
}

func registerMetadata() {
	tests["metadata"] = testDef{exts: []string{"mboxmetadata"}, fn: compileMetadata(false)}
	tests["metadataexists"] = testDef{exts: []string{"mboxmetadata"}, fn: compileMetadataExists(false)}
	tests["servermetadata"] = testDef{exts: []string{"servermetadata"}, fn: compileMetadata(true)}
	tests["servermetadataexists"] = testDef{exts: []string{"servermetadata"}, fn: compileMetadataExists(true)}
	positionalCount["metadata"] = 3
	positionalCount["metadataexists"] = 2
	positionalCount["servermetadata"] = 2
	positionalCount["servermetadataexists"] = 1
}
