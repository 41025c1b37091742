package sieve

import (
	"context"
	"testing"
	"time"
)

// TestDateObsoleteZones: a Date field with an RFC 5322 obsolete zone name
// (section 4.3: EST is -0500, PDT -0700, ...) is read with that offset. It was
// parsed by time.Parse, which gives a zone abbreviation the offset the
// server's local zone uses for it and zero otherwise: "10:00 EST" was 10:00
// UTC on a UTC server (15:00 on one in New York), so date :zone tests and
// :originalzone "zone" depended on where the server ran and were wrong on
// most. Other alphabetic zones carry no offset information ("-0000").
func TestDateObsoleteZones(t *testing.T) {
	// on a server whose local zone gives CST another offset (+0800) too
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		saved := time.Local
		time.Local = loc
		defer func() { time.Local = saved }()
	}
	for _, tc := range []struct{ date, utc, zone string }{
		{"Mon, 1 Jan 2024 10:00:00 EST", "15:00:00", "-0500"},
		{"Mon, 1 Jan 2024 10:00:00 EDT", "14:00:00", "-0400"},
		{"Mon, 1 Jan 2024 10:00:00 CST (Central)", "16:00:00", "-0600"},
		{"Mon, 1 Jan 2024 10:00 PDT", "17:00:00", "-0700"},
		{"1 Jan 2024 10:00:00 GMT", "10:00:00", "+0000"},
		{"Mon, 1 Jan 2024 10:00:00 UT", "10:00:00", "+0000"},
		{"Mon, 1 Jan 2024 10:00:00 CET", "10:00:00", "+0000"},
		{"Mon, 1 Jan 2024 10:00:00 Z", "10:00:00", "+0000"},
		{"Mon, 1 Jan 2024 10:00:00 +0130 (EST)", "08:30:00", "+0130"},
	} {
		msg := "Date: " + tc.date + "\r\nSubject: x\r\n\r\nbody\r\n"
		src := `require ["date","variables"];
			if date :zone "+0000" :matches "date" "time" "*" { set "utc" "${1}"; }
			if date :originalzone :matches "date" "zone" "*" { set "zone" "${1}"; }
			if string :is "${utc} ${zone}" "` + tc.utc + ` ` + tc.zone + `" { keep; } else { discard; }`
		res, err := mustCompile(t, src).Execute(context.Background(), &Env{Message: NewMessage([]byte(msg))})
		if err != nil {
			t.Fatal(err)
		}
		if got := actSummary(res); len(got) != 1 || got[0] != "keep:INBOX" {
			t.Errorf("%q: not read as %s UTC, zone %s", tc.date, tc.utc, tc.zone)
		}
	}
}
