package spam_test

import (
	"context"
	"testing"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/store/mem"
)

// BenchmarkScore scores corpus messages with rules and a trained Bayes.
func BenchmarkScore(b *testing.B) {
	msgs := loadCorpus(b, 300)
	ctx := context.Background()
	e, err := spam.New(spam.DefaultConfig(), spam.WithStore(mem.New()))
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range msgs {
		pm, _ := e.Parse(bytesReader(m.data))
		_ = e.Learn(ctx, pm, m.spam, "")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := msgs[i%len(msgs)]
		if _, err := e.Score(ctx, &spam.Input{Raw: bytesReader(m.data)}); err != nil {
			b.Fatal(err)
		}
	}
}
