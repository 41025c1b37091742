package spam

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dovetail-mail/dovetail/spam/bayes"
)

// bayesBand maps a spam probability to a symbol. The bands follow
// SpamAssassin's BAYES_* names; the weights are ours: strong enough that a
// confident classifier decides alone at the extremes (BAYES_999 alone reaches the
// add-header threshold of 6), mild in the middle, where
// the rules must agree.
type bayesBand struct {
	min   float64
	name  string
	score float64
	desc  string
}

var bayesBands = []bayesBand{
	{0.9999, "BAYES_9999", 6.0, "Bayes spam probability is 99.99 to 100%"},
	{0.999, "BAYES_999", 5.0, "Bayes spam probability is 99.9 to 99.99%"},
	{0.99, "BAYES_99", 4.5, "Bayes spam probability is 99 to 99.9%"},
	{0.95, "BAYES_95", 3.5, "Bayes spam probability is 95 to 99%"},
	{0.80, "BAYES_80", 2.0, "Bayes spam probability is 80 to 95%"},
	{0.60, "BAYES_60", 0.8, "Bayes spam probability is 60 to 80%"},
	{0.40, "BAYES_50", 0, "Bayes spam probability is 40 to 60%"},
	{0.20, "BAYES_40", -0.2, "Bayes spam probability is 20 to 40%"},
	{0.05, "BAYES_20", -0.5, "Bayes spam probability is 5 to 20%"},
	{0.01, "BAYES_05", -1.0, "Bayes spam probability is 1 to 5%"},
	{-1, "BAYES_00", -2.0, "Bayes spam probability is 0 to 1%"},
}

func bayesSymbol(p float64) Symbol {
	for _, b := range bayesBands {
		if p >= b.min {
			return Symbol{Name: b.name, Score: b.score, Description: b.desc, Options: []string{fmt.Sprintf("%.4f", p)}}
		}
	}
	return Symbol{}
}

// userTable names a user's token table. The milter files a message under its
// envelope recipient's address, lower-cased (Input.User); Learn and Forget
// take the same key from every caller, whatever its case.
func userTable(user string) string { return "user:" + strings.ToLower(user) }

// classify runs Bayes on the user's table when it has enough training, else
// on the global one. A store that cannot be read is an error unless
// bayes.on_unavailable is skip.
func (e *Engine) classify(ctx context.Context, in *Input, msg *Message, v *Verdict) ([]Symbol, error) {
	if e.bayes == nil {
		v.Bayes.Skipped = "disabled"
		return nil, nil
	}
	tokens := e.tokenizer.Tokens(msg)
	tables := []string{"global"}
	if e.cfg.Bayes.PerUser && in.User != "" {
		tables = []string{userTable(in.User), "global"}
	}
	for _, t := range tables {
		res, err := e.bayes.Classify(ctx, t, tokens)
		if err != nil {
			if e.cfg.Bayes.OnUnavailable != BayesSkip {
				return nil, fmt.Errorf("spam: Bayes store: %w", err)
			}
			e.log.Warn("bayes unavailable, scoring without it", "queue_id", in.QueueID, "err", err)
			v.Bayes.Skipped = "store unavailable"
			return []Symbol{{Name: "BAYES_UNAVAILABLE", Description: "Bayes store unavailable"}}, nil
		}
		if res.NSpam < e.cfg.Bayes.MinSpam || res.NHam < e.cfg.Bayes.MinHam {
			v.Bayes.Skipped = fmt.Sprintf("not enough training in %s (%d spam, %d ham)", t, res.NSpam, res.NHam)
			continue
		}
		v.Bayes = BayesResult{Probability: res.Prob, Tokens: len(res.Clues), Table: t}
		return []Symbol{bayesSymbol(res.Prob)}, nil
	}
	return nil, nil
}

// autolearn trains Bayes from confident verdicts (score without Bayes and
// without noautolearn rules), as SpamAssassin does.
func (e *Engine) autolearn(ctx context.Context, in *Input, msg *Message, v *Verdict) {
	if e.bayes == nil {
		v.Autolearn = "disabled"
		return
	}
	if !e.cfg.Bayes.Autolearn {
		v.Autolearn = "no"
		return
	}
	score := 0.0
	for _, s := range v.Symbols {
		if len(s.Name) > 6 && s.Name[:6] == "BAYES_" {
			continue
		}
		if r := e.rules.Lookup(s.Name); r != nil && r.Has("noautolearn") {
			return
		}
		score += s.Score
	}
	var spam bool
	switch {
	case score >= e.cfg.Bayes.AutolearnSpam:
		spam = true
	case score <= e.cfg.Bayes.AutolearnHam:
	default:
		v.Autolearn = "no"
		return
	}
	err := e.Learn(ctx, msg, spam, "")
	switch {
	case err == nil || errors.Is(err, bayes.ErrAlreadyLearned):
		v.Autolearn = map[bool]string{true: "spam", false: "ham"}[spam]
	default:
		e.log.Warn("bayes autolearn failed", "err", err)
		v.Autolearn = "failed"
	}
}

// Learn trains Bayes with msg as spam or ham. With user set and per-user Bayes
// on, the user's table is trained as well as the global one; each table is
// trained on its own, so a message the global table already has still reaches
// the user's. It returns an error wrapping bayes.ErrAlreadyLearned only when
// every table had the message in that class; in the other class it moves.
func (e *Engine) Learn(ctx context.Context, msg *Message, spam bool, user string) error {
	if e.bayes == nil {
		return errors.New("spam: Bayes is disabled or has no store")
	}
	tokens := e.tokenizer.Tokens(msg)
	digest := bayes.Digest(msg)
	return e.eachTable(user, bayes.ErrAlreadyLearned, func(t string) error {
		return e.bayes.Learn(ctx, t, digest, tokens, spam)
	})
}

// Forget removes a learned message from Bayes (global and user tables). It
// returns bayes.ErrNotLearned only when no table had the message.
func (e *Engine) Forget(ctx context.Context, msg *Message, user string) error {
	if e.bayes == nil {
		return errors.New("spam: Bayes is disabled or has no store")
	}
	tokens := e.tokenizer.Tokens(msg)
	digest := bayes.Digest(msg)
	return e.eachTable(user, bayes.ErrNotLearned, func(t string) error {
		return e.bayes.Forget(ctx, t, digest, tokens)
	})
}

// eachTable runs fn on the global table and, with per-user Bayes, the user's.
// A table answering noop (already learned, not learned) does not stop the
// others; noop is returned only when every table answered it.
func (e *Engine) eachTable(user string, noop error, fn func(table string) error) error {
	tables := []string{"global"}
	if e.cfg.Bayes.PerUser && user != "" {
		tables = append(tables, userTable(user))
	}
	noops := 0
	for _, t := range tables {
		switch err := fn(t); {
		case err == nil:
		case errors.Is(err, noop):
			noops++
		default:
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	if noops == len(tables) {
		return noop
	}
	return nil
}

// BayesCounts returns the messages learned in the global table.
func (e *Engine) BayesCounts(ctx context.Context) (spam, ham int64, err error) {
	if e.bayes == nil {
		return 0, 0, errors.New("spam: Bayes is disabled or has no store")
	}
	return e.bayes.Counts(ctx, "global")
}
