package maildir

import "bytes"

// Normalize converts CRLF and lone CR line ends to LF (Dovecot's mail_save_crlf=no
// storage form). A lone CR becomes a line break rather than staying in the file:
// IMAP clients mis-render it, and Dovecot's own LF-converting input stream would
// leave the file inconsistent with its W= size. The input is not modified.
func Normalize(in []byte) []byte {
	if bytes.IndexByte(in, '\r') < 0 {
		return in
	}
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c == '\r' {
			if i+1 < len(in) && in[i+1] == '\n' {
				continue
			}
			c = '\n'
		}
		out = append(out, c)
	}
	return out
}
