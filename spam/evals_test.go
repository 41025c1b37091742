package spam_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
)

// msgWith builds a message from header lines (before the blank line) and a
// body; Date, Message-Id and Received default to a plain, consistent sender.
func msgWith(headers, body string) string {
	h := headers
	if !strings.Contains(h, "Date:") {
		h += "Date: Mon, 23 Sep 2002 10:00:00 +0100\n"
	}
	if !strings.Contains(h, "Message-Id:") {
		h += "Message-Id: <20020923.1@mail.example.com>\n"
	}
	if !strings.Contains(h, "Received:") {
		h = "Received: from mail.example.com (mail.example.com [192.0.2.1]) by mx.example.org; Mon, 23 Sep 2002 10:00:05 +0100\n" + h
	}
	if !strings.Contains(h, "From:") {
		h += "From: Alice <alice@example.com>\n"
	}
	if !strings.Contains(h, "To:") {
		h += "To: bob@example.org\n"
	}
	if !strings.Contains(h, "Subject:") {
		h += "Subject: notes\n"
	}
	return h + "\n" + body
}

// TestBulkRules checks each structural rule of 30_bulk.cf fires on the
// pattern it describes and stays quiet on the nearest legitimate form.
func TestBulkRules(t *testing.T) {
	e := newEngine(t, spam.DefaultConfig())
	plain := "Hello Bob,\n\nthe notes are attached.\n"
	tests := []struct {
		name, rule string
		msg        string
		want       bool
	}{
		{"hotmail never in Received", "FORGED_FREEMAIL_RCVD", msgWith("From: x@hotmail.com\n", plain), true},
		{"hotmail relayed by hotmail", "FORGED_FREEMAIL_RCVD", msgWith("Received: from oe12.law9.hotmail.com ([64.4.8.1]) by mx.example.org; Mon, 23 Sep 2002 10:00:05 +0100\nFrom: x@hotmail.com\n", plain), false},
		{"own domain", "FORGED_FREEMAIL_RCVD", msgWith("", plain), false},
		{"Outlook without version", "FORGED_OUTLOOK", msgWith("X-Mailer: Microsoft Outlook Express\n", plain), true},
		{"Outlook with version", "FORGED_OUTLOOK", msgWith("X-Mailer: Microsoft Outlook Express 6.00.2600.0000\n", plain), false},
		{"Outlook Build without comma", "FORGED_OUTLOOK", msgWith("X-Mailer: Microsoft Outlook Build 10.0.2616\n", plain), true},
		{"MS priority, other mailer", "MSMAIL_PRIO_NO_OUTLOOK", msgWith("X-MSMail-Priority: Normal\nX-Mailer: Foo 1.0\n", plain), true},
		{"MS priority, Outlook", "MSMAIL_PRIO_NO_OUTLOOK", msgWith("X-MSMail-Priority: Normal\nX-Mailer: Microsoft Outlook Express 6.00.2600.0000\n", plain), false},
		{"date without zone", "DATE_NO_TZ", msgWith("Date: Mon, 23 Sep 2002 10:00:00\n", plain), true},
		{"date with zone name", "DATE_NO_TZ", msgWith("Date: Mon, 23 Sep 2002 10:00:00 GMT\n", plain), false},
		{"date with offset and comment", "DATE_NO_TZ", msgWith("Date: Mon, 23 Sep 2002 10:00:00 -0400 (EDT)\n", plain), false},
		{"generated local part", "FROM_LOCAL_RANDOM", msgWith("From: xk29dhq7@example.net\n", plain), true},
		{"name with year", "FROM_LOCAL_RANDOM", msgWith("From: johnsmith1975@example.net\n", plain), false},
		{"recipients in many domains", "RCPTS_MANY_DOMAINS", msgWith("To: a@a1.com, b@b2.com, c@c3.com, d@d4.com, e@e5.com, f@f6.com, g@g7.com, h@h8.com\n", plain), true},
		{"recipients in one domain", "RCPTS_MANY_DOMAINS", msgWith("To: a@x.com, b@x.com, c@x.com, d@x.com, e@x.com, f@x.com, g@x.com, h@x.com\n", plain), false},
		{"link to odd port", "URI_ODD_PORT", msgWith("", "Visit http://shop.example.net:8081/offer now\n"), true},
		{"link to port 80", "URI_ODD_PORT", msgWith("", "Visit http://shop.example.net:80/offer now\n"), false},
		{"userinfo link", "URI_USERINFO", msgWith("", "Log in at http://www.bank.example@192.0.2.7/login\n"), true},
		{"shouting", "TEXT_SHOUTING", msgWith("", strings.Repeat("MAKE MONEY FAST WITH THIS AMAZING OFFER today and more ", 8)), true},
		{"normal case", "TEXT_SHOUTING", msgWith("", strings.Repeat("The meeting is moved to Tuesday at the usual place ", 8)), false},
		{"reply with remove", "BODY_REMOVE_REPLY", msgWith("", "To stop, reply to list@example.net with \"remove\" in the subject.\n"), true},
		{"unsubscribe link", "BODY_REMOVE_REPLY", msgWith("", "To unsubscribe visit http://example.net/u\n"), false},
		{"Japanese unsolicited-ad label", "SUBJ_AD_LABEL_JP", msgWith("Subject: =?ISO-2022-JP?B?GyRCTCQ+NUJ6OS05cCIoGyhC?=\n", plain), true},
		{"Message-Id from the recipient's MTA", "MID_FROM_RECIPIENT", msgWith("From: offers@shop.example.net\nTo: bob@example.org\nMessage-Id: <200209231000.g8NA0Ak12345@mx.example.org>\n", plain), true},
		{"Message-Id from a colleague", "MID_FROM_RECIPIENT", msgWith("From: carol@example.org\nTo: bob@example.org\nMessage-Id: <1.2@mail.example.org>\n", plain), false},
		{"zero-padded Outlook-like Message-Id", "MID_RATWARE_HASH", msgWith("Message-Id: <00005e38152b$00001e89$0000326a@mail.example.net>\n", plain), true},
		{"real Outlook Express Message-Id", "MID_RATWARE_HASH", msgWith("Message-Id: <000001c259c0$a8559890$0200a8c0@pc>\n", plain), false},
		{"MiME-Version", "MIME_VERSION_RATWARE", msgWith("MiME-Version: 1.0\n", plain), true},
		{"MIME-Version", "MIME_VERSION_RATWARE", msgWith("MIME-Version: 1.0\n", plain), false},
		{"vowel-less subject tag", "SUBJ_TRAILING_TAG", msgWith("Subject: Low Cost Life Insurance -- FREE Quote wzwjt\n", plain), true},
		{"bracketed subject tag", "SUBJ_TRAILING_TAG", msgWith("Subject: Want help with your debt? [x7k2q]\n", plain), true},
		{"ticket number", "SUBJ_TRAILING_TAG", msgWith("Subject: Backbone problems [TIX106448]\n", plain), false},
		{"ordinary subject", "SUBJ_TRAILING_TAG", msgWith("Subject: Re: rpm build of the HTML tools\n", plain), false},
		{"reply in a thread", "IN_THREAD", msgWith("In-Reply-To: <1@example.org>\n", plain), true},
		{"consistent list headers", "LIST_HEADERS", msgWith("List-Id: Users <users.lists.example.org>\nList-Unsubscribe: <mailto:users-leave@lists.example.org>\n", plain), true},
		{"pasted list id", "LIST_HEADERS", msgWith("List-Id: <users.lists.example.org>\nList-Unsubscribe: <http://other.example.net/u>\n", plain), false},
		{"newsletter from its own domain", "BULK_SENDER_ALIGNED", msgWith("From: News <news@shop.example.com>\nMessage-Id: <abc.123@mta.example.com>\nList-Unsubscribe: <http://example.com/u>\n", plain), true},
		{"bulk with foreign Message-Id", "BULK_SENDER_ALIGNED", msgWith("From: News <news@shop.example.com>\nMessage-Id: <abc.123@elsewhere.example.net>\nPrecedence: bulk\n", plain), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := e.Score(context.Background(), &spam.Input{Raw: strings.NewReader(tc.msg)})
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for _, s := range v.Symbols {
				got = got || s.Name == tc.rule
			}
			if got != tc.want {
				t.Errorf("%s = %v, want %v (symbols %v)", tc.rule, got, tc.want, v.Symbols)
			}
		})
	}
}
