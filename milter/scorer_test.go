package milter

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// spammyBody is scored as spam by the integration scorer.
const spammyBody = "CLICK HERE to claim your FREE prize now!!! Limited offer, viagra and casino bonus.\r\n"

// integrationScorer is used with real Postfix until the engine is wired in:
// GTUBE rejects, the spam words add the header.
func integrationScorer(t *testing.T) Scorer { return keywordScorer{} }

type keywordScorer struct{}

func (keywordScorer) NewBuilder() *message.Builder {
	return message.NewBuilder(message.DefaultLimits())
}

func (keywordScorer) Score(ctx context.Context, in *spam.Input) (spam.Verdict, error) {
	rc, err := in.Message.Open()
	if err != nil {
		return spam.Verdict{}, err
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	v := spam.Verdict{Required: 5, Action: spam.NoAction, Autolearn: "no"}
	switch s := string(raw); {
	case strings.Contains(s, gtube):
		v.Score, v.Action, v.Symbols = 1000, spam.Reject, []spam.Symbol{{Name: "GTUBE", Score: 1000}}
	case strings.Contains(s, "viagra"):
		v.Score, v.Action, v.Symbols = 8, spam.AddHeader, []spam.Symbol{{Name: "SPAM_WORDS", Score: 8}}
	}
	v.IsSpam = v.Score >= v.Required
	return v, nil
}
