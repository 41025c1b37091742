package milter

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// sendFields sends one message with exactly these header fields (names as
// given, values as after the colon) and returns the deletions requested, as
// "Name index".
func sendFields(t *testing.T, s *gomilter.ClientSession, fields [][2]string) []string {
	t.Helper()
	act, err := s.Mail("sender@remote.test", nil)
	checkContinue(t, act, err)
	act, err = s.Rcpt("alice@example.test", nil)
	checkContinue(t, act, err)
	for _, f := range fields {
		act, err := s.HeaderField(f[0], f[1])
		checkContinue(t, act, err)
	}
	act, err = s.HeaderEnd()
	checkContinue(t, act, err)
	mods, act, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
	if err != nil || act.Code != gomilter.ActAccept {
		t.Fatalf("end of message: %v %v", act, err)
	}
	var dels []string
	for _, m := range mods {
		if m.Code == gomilter.ActChangeHeader && m.HeaderValue == "" {
			dels = append(dels, fmt.Sprintf("%s %d", m.HeaderName, m.HeaderIndex))
		}
	}
	return dels
}

func repeatField(n int, name, value string) [][2]string {
	var out [][2]string
	for i := 0; i < n; i++ {
		out = append(out, [2]string{strings.ReplaceAll(name, "#", fmt.Sprint(i)), value})
	}
	return out
}

// Forged X-Spam-* and Authentication-Results fields are removed however far
// down the header they come, past the limits on what is scanned.
func TestStripsPastHeaderLimits(t *testing.T) {
	h := start(t, nil)
	big := strings.Repeat("b", 60<<10)
	cat := func(parts ...[][2]string) [][2]string { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name   string
		fields [][2]string
		want   []string // among the deletions
		count  int      // number of deletions
	}{
		{"past the field cap", cat(
			repeatField(1, "X-Spam-Flag", " NO"),
			repeatField(maxHeaders, "X-A", " b"),
			repeatField(1, "X-Spam-Flag", " NO"),
			repeatField(1, "X-Spam-Score", " -50.0"),
			repeatField(1, "Authentication-Results", " mx.test; spf=pass"),
		), []string{"X-Spam-Flag 2", "X-Spam-Flag 1", "X-Spam-Score 1", "Authentication-Results 1"}, 4},
		{"past the byte cap", cat(
			repeatField(20, "X-Big", " "+big),
			repeatField(1, "x-spam-status", " No, forged"),
			repeatField(2, "Authentication-Results", " other.example; dkim=pass"),
			repeatField(1, "Authentication-Results", " mx.test; dkim=pass"),
		), []string{"x-spam-status 1", "Authentication-Results 3"}, 2},
		{"after many invented names", cat(
			repeatField(maxSpamNames+500, "X-Spam-Junk#", " x"),
			repeatField(1, "X-Spam-Flag", " NO"),
		), []string{"X-Spam-Flag 1", "X-Spam-Junk0 1"}, maxSpamNames + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dels := sendFields(t, h.session(t), tc.fields)
			for _, w := range tc.want {
				if !slices.Contains(dels, w) {
					t.Errorf("deletion %q missing from %d: %.300q", w, len(dels), dels)
				}
			}
			if len(dels) != tc.count {
				t.Errorf("%d deletions, want %d", len(dels), tc.count)
			}
			// Per name, the highest index goes first.
			last := map[string]int{}
			for _, d := range dels {
				var name string
				var idx int
				fmt.Sscanf(d, "%s %d", &name, &idx)
				if p, ok := last[strings.ToLower(name)]; ok && idx >= p {
					t.Fatalf("%s deleted after index %d", d, p)
				}
				last[strings.ToLower(name)] = idx
			}
		})
	}
}

// An Authentication-Results field is ours when its authserv-id (the first
// token after CFWS, RFC 8601) is, whatever version or comment follows.
func TestAuthservIDMatch(t *testing.T) {
	h := start(t, nil) // the session's j macro is mx.test
	for _, tc := range []struct {
		value string
		id    string
		ours  bool
	}{
		{" mx.test; spf=pass", "mx.test", true},
		{" mx.test 1; dkim=pass header.d=x", "mx.test", true},
		{" mx.test (forged); spf=pass", "mx.test", true},
		{" (comment (nested)) MX.TEST; none", "MX.TEST", true},
		{` "mx.test"; spf=pass`, "mx.test", true},
		{" mx.test;spf=pass", "mx.test", true},
		{"\n\tmx.test\n\t; spf=pass", "mx.test", true},
		{"mx.test", "mx.test", true},
		{" mx.test.evil; spf=pass", "mx.test.evil", false},
		{" xmx.test; spf=pass", "xmx.test", false},
		{" other.example; spf=pass smtp.mailfrom=mx.test", "other.example", false},
		{" (mx.test) other.example; none", "other.example", false},
		{" (unterminated mx.test; none", "", false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			if got := message.AuthservID(tc.value); got != tc.id {
				t.Errorf("AuthservID = %q, want %q", got, tc.id)
			}
			dels := sendFields(t, h.session(t), [][2]string{{"Authentication-Results", tc.value}})
			if got := len(dels) == 1; got != tc.ours {
				t.Errorf("deleted %v, want %v", dels, tc.ours)
			}
		})
	}
}

// Mail from SASL-authenticated clients that is passed without our headers
// (authenticated: skip, outbound) still loses Authentication-Results fields
// claiming our authserv-id (RFC 8601 §5: an MTA MUST delete those it did not
// add): a compromised or hostile account could otherwise send colleagues
// "mx.test; dkim=pass header.d=bank.example" that their MUA trusts. Its
// X-Spam-* fields stay (outbound mail is not edited for them).
func TestAuthenticatedLosesForgedAuthResults(t *testing.T) {
	for _, tc := range []struct {
		policy, body string
		maxSize      int64
	}{
		{AuthSkip, "hello\r\n", 0},
		{AuthOutbound, "hello\r\n", 0},
		{AuthOutbound, "FAIL\r\n", 0},
		{AuthOutbound, strings.Repeat("x", 2000) + "\r\n", 1000},
	} {
		t.Run(tc.policy+"/"+tc.body[:4], func(t *testing.T) {
			h := start(t, func(c *Config) {
				c.Authenticated, c.OnError = tc.policy, OnErrorAccept
				if tc.maxSize > 0 {
					c.MaxSize = config.Size(tc.maxSize)
				}
			})
			m := baseMsg(tc.body)
			m.auth = "mallory"
			m.header = append(m.header, [2]string{"Authentication-Results", " mx.test; dkim=pass header.d=bank.example"},
				[2]string{"Authentication-Results", " other.example; spf=pass"}, [2]string{"X-Spam-Flag", " NO"})
			mods, act := send(t, h.session(t), m)
			if act.Code != gomilter.ActAccept {
				t.Fatalf("action %c", act.Code)
			}
			var got []string
			for _, a := range mods {
				got = append(got, fmt.Sprintf("%c %s %d %q", a.Code, a.HeaderName, a.HeaderIndex, a.HeaderValue))
			}
			want := []string{fmt.Sprintf("%c Authentication-Results 1 %q", gomilter.ActChangeHeader, "")}
			if !slices.Equal(got, want) {
				t.Errorf("edits %q, want %q", got, want)
			}
		})
	}
}
