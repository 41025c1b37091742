package spam

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/spam/message"
	"github.com/dovetail-mail/dovetail/store"
)

// Engine scores messages. It is safe for concurrent use.
type Engine struct {
	cfg        Config
	store      store.Store
	checks     []Check
	log        *slog.Logger
	reg        prometheus.Registerer
	now        func() time.Time
	extraRules []namedText
}

// New builds an engine from cfg (validated by the caller or here).
func New(cfg Config, opts ...Option) (*Engine, error) {
	e := &Engine{cfg: cfg, now: time.Now}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// NewBuilder returns a message Builder with the engine's limits (spill
// threshold, size cap), for callers that receive a message in chunks.
func (e *Engine) NewBuilder() *message.Builder { return message.NewBuilder(e.cfg.limits()) }

// Score scans one message.
func (e *Engine) Score(ctx context.Context, in *Input) (Verdict, error) {
	return Verdict{}, errors.New("spam: not implemented yet")
}

// Learn trains Bayes with msg as spam or ham, in user's table ("" = global).
// Learning a message again in the other class moves it.
func (e *Engine) Learn(ctx context.Context, msg *Message, spam bool, user string) error {
	return errors.New("spam: not implemented yet")
}

// Forget removes a learned message from Bayes.
func (e *Engine) Forget(ctx context.Context, msg *Message, user string) error {
	return errors.New("spam: not implemented yet")
}
