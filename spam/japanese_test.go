package spam_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/bayes"
	"github.com/dovetail-mail/dovetail/spam/message"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// jpMessage builds an ISO-2022-JP message (7bit body, RFC 2047 B subject) as
// Japanese mailers send it.
func jpMessage(t *testing.T, subject, body string) []byte {
	t.Helper()
	enc := japanese.ISO2022JP.NewEncoder()
	subj, err := enc.String(subject)
	if err != nil {
		t.Fatal(err)
	}
	b, err := japanese.ISO2022JP.NewEncoder().String(body)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(fmt.Sprintf("From: sender@example.jp\r\nTo: user@example.org\r\nDate: Mon, 23 Nov 2026 10:00:00 +0900\r\n"+
		"Message-ID: <%d@example.jp>\r\nSubject: =?ISO-2022-JP?B?%s?=\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n%s\r\n",
		// Bayes identifies a message by its Message-ID: one per text.
		crc32.ChecksumIEEE([]byte(subject+body)), base64.StdEncoding.EncodeToString([]byte(subj)), b))
}

var (
	jpSpam = []string{
		"今すぐ無料で登録！高収入の副業をご紹介します。簡単に稼げる方法です。",
		"出会い系サイトに無料登録で高収入！今すぐクリックしてください。",
		"副業で月収百万円！無料登録は今すぐ。限定のご案内です。",
		"無料で今すぐ登録！限定の副業案内で高収入を実現しましょう。",
		"高収入の副業を無料でご紹介。今すぐ登録するだけで簡単に稼げます。",
		"簡単に稼げる副業の無料案内。今すぐ登録して高収入を手に入れよう。",
	}
	jpHam = []string{
		"明日の会議の資料を添付しました。ご確認をお願いします。",
		"会議の議事録を共有します。次回の打ち合わせは来週の水曜日です。",
		"資料の修正版をお送りします。ご確認のほどよろしくお願いいたします。",
		"議事録と資料を確認しました。来週の会議でご相談させてください。",
		"打ち合わせの資料について、修正点をご確認のほどお願いします。",
		"来週の打ち合わせの日程について、ご都合をお知らせください。",
	}
)

func TestJapaneseISO2022JP(t *testing.T) {
	ctx := context.Background()
	cfg := spam.DefaultConfig()
	cfg.Bayes.MinSpam, cfg.Bayes.MinHam = 1, 1
	e, err := spam.New(cfg, spam.WithStore(mem.New()))
	if err != nil {
		t.Fatal(err)
	}
	// The model decodes ISO-2022-JP in body and Subject and tokenises into bigrams.
	m := message.Parse(jpMessage(t, "会議の資料", jpHam[0]), message.Limits{})
	if m.Subject() != "会議の資料" || !strings.Contains(m.Text, "明日の会議") {
		t.Fatalf("decoding: subject %q text %q", m.Subject(), m.Text)
	}
	toks := bayes.Tokens(m)
	for _, want := range []string{"会議", "議の", "資料", "SUBJECT:会議"} {
		if !slices.Contains(toks, want) {
			t.Errorf("token %q missing from %q", want, toks)
		}
	}
	for i := range jpSpam[:len(jpSpam)-1] {
		for _, c := range []struct {
			text string
			spam bool
		}{{jpSpam[i], true}, {jpHam[i], false}} {
			subj := "ご案内"
			if !c.spam {
				subj = "打ち合わせ"
			}
			msg := message.Parse(jpMessage(t, subj, c.text), message.Limits{})
			if err := e.Learn(ctx, msg, c.spam, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The last message of each class was not trained on.
	for _, c := range []struct {
		text string
		spam bool
	}{{jpSpam[len(jpSpam)-1], true}, {jpHam[len(jpHam)-1], false}} {
		v, err := e.Score(ctx, &spam.Input{Raw: strings.NewReader(string(jpMessage(t, "お知らせ", c.text)))})
		if err != nil {
			t.Fatal(err)
		}
		p := v.Bayes.Probability
		if c.spam && p < 0.9 || !c.spam && p > 0.1 {
			t.Errorf("spam=%v: Bayes probability %.3f (%s)", c.spam, p, v.Bayes.Skipped)
		}
	}
}
