// Package bayes is a Robinson/Fisher chi-square token classifier (the
// SpamBayes/SpamAssassin method) over a store.Store.
//
// Each table is one store hash "bayes:<table>" whose fields are 12-hex-digit
// token hashes; a field packs both counts as spam<<32 | ham so one HIncr/HGet
// handles both. The fields "#spam" and "#ham" count learned messages. Learned
// messages are remembered under "bayes:<table>:msg:<digest>" with the token
// hashes they added, so learning twice is a no-op, learning in the other
// class moves the message, and Forget takes back exactly what was added.
package bayes

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/spam/message"
	"github.com/dovetail-mail/dovetail/store"
)

const (
	fieldSpam = "#spam"
	fieldHam  = "#ham"
	shift     = 32
)

// Params are the classifier constants (SpamBayes' defaults).
type Params struct {
	S           float64 // strength of the prior (unknown_word_strength)
	X           float64 // prior probability of an unseen token
	MinStrength float64 // tokens with |f-0.5| below this are ignored
	MaxTokens   int     // most extreme tokens used
}

// DefaultParams returns the constants used by default: SpamBayes' x and
// minimum strength, a stronger prior (s=1.0) and more tokens (500) than
// SpamBayes — measured better on the fixed corpus split (docs/benchmarks.md).
func DefaultParams() Params { return Params{S: 1.0, X: 0.5, MinStrength: 0.1, MaxTokens: 500} }

// Classifier reads and trains token tables.
type Classifier struct {
	st     store.Store
	params Params
}

// New returns a classifier on st.
func New(st store.Store, p Params) *Classifier { return &Classifier{st: st, params: p} }

// ErrAlreadyLearned reports a message learned before in the same class.
var ErrAlreadyLearned = errors.New("bayes: message already learned")

// ErrNotLearned reports a Forget of a message never learned.
var ErrNotLearned = errors.New("bayes: message not learned")

func tableKey(table string) string { return "bayes:" + table }

// Digest identifies a message for the learned-message record, as
// SpamAssassin does: by its Message-ID, or, when it has none worth the name,
// by its Date and a hash of its whole body (attachments included). Line
// endings are normalised and trailing blank lines dropped, so the same message
// read from a file, a Maildir or an mbox (whose separator adds a blank line)
// has one digest. Headers added on the way (X-Spam-*, Received, our
// Authentication-Results) do not enter it.
func Digest(msg *message.Message) string {
	h := sha256.New()
	if id := strings.Join(strings.Fields(msg.Header.Get("Message-Id")), ""); strings.Trim(id, "<>@") != "" {
		h.Write([]byte("id\x00"))
		h.Write([]byte(id))
	} else {
		body := strings.ReplaceAll(msg.RawBody, "\r\n", "\n")
		body = strings.ReplaceAll(body, "\r", "\n")
		body = strings.TrimRight(body, " \t\n")
		bh := sha256.Sum256([]byte(body))
		h.Write([]byte("date\x00"))
		h.Write([]byte(strings.Join(strings.Fields(msg.Header.Get("Date")), " ")))
		h.Write([]byte{0})
		h.Write(bh[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func hashToken(tok string) string {
	h := hashBytes(tok)
	return hex.EncodeToString(h[:])
}

func hashBytes(tok string) [hashLen]byte {
	s := sha256.Sum256([]byte(tok))
	return [hashLen]byte(s[:hashLen])
}

// Counts returns the learned message counts of table.
func (c *Classifier) Counts(ctx context.Context, table string) (spam, ham int64, err error) {
	m, err := c.st.HGet(ctx, tableKey(table), []string{fieldSpam, fieldHam})
	if err != nil {
		return 0, 0, fmt.Errorf("bayes: %w", err)
	}
	return m[fieldSpam], m[fieldHam], nil
}

// ErrBusy reports a message that others kept changing while we tried to.
var ErrBusy = errors.New("bayes: message is being changed concurrently; try again")

const (
	// retireTTL bounds how long a retired record generation stays claimed: a
	// reader that saw the record before it changed must still lose the claim,
	// and such readers are milliseconds behind, not hours.
	retireTTL = time.Hour
	// maxAttempts bounds the retries when the record changes under us.
	maxAttempts = 16
	genLen      = 8
	hashLen     = 6
)

// record is what the learned-message key holds: the class, a generation
// unique to this learning, and the token hashes that were added to the
// counts.
//
// Why the hashes are kept: the spam and ham counts of a token share one
// packed integer, and the store's HIncr adds without a floor, so subtracting
// a token a message did not add borrows from the other half (ham -1 becomes
// spam-1 and ham 2^32-1). Clamping each half at 0 would need a
// read-modify-write per token that HIncr cannot do atomically on every
// backend (Redis pipelines HINCRBY, SQLite adds in SQL). Subtracting exactly
// what was added instead keeps each half a sum of whole messages, so it
// never goes below 0, whatever the tokenizer or the message's headers do
// between learning and forgetting. The cost is 6 bytes per token per learned
// message (a few KB a message).
//
// Encoding: '2', 's' or 'h', 8 generation bytes, then 6 bytes per hash.
// Records written before this format are the bare class, "spam" or "ham".
type record struct {
	spam   bool
	gen    []byte   // nil for a legacy record
	hashes [][]byte // nil for a legacy record
}

func (r record) encode() []byte {
	b := make([]byte, 0, 2+genLen+hashLen*len(r.hashes))
	b = append(b, '2', 'h')
	if r.spam {
		b[1] = 's'
	}
	b = append(b, r.gen...)
	for _, h := range r.hashes {
		b = append(b, h...)
	}
	return b
}

func decodeRecord(b []byte) (record, error) {
	switch string(b) {
	case "spam":
		return record{spam: true}, nil
	case "ham":
		return record{}, nil
	}
	if len(b) < 2+genLen || b[0] != '2' || b[1] != 's' && b[1] != 'h' || (len(b)-2-genLen)%hashLen != 0 {
		return record{}, fmt.Errorf("bayes: malformed learned-message record (%d bytes)", len(b))
	}
	r := record{spam: b[1] == 's', gen: b[2 : 2+genLen], hashes: [][]byte{}}
	for rest := b[2+genLen:]; len(rest) > 0; rest = rest[hashLen:] {
		r.hashes = append(r.hashes, rest[:hashLen])
	}
	return r, nil
}

func (c *Classifier) newRecord(tokens []string, spam bool) record {
	r := record{spam: spam, gen: make([]byte, genLen)}
	rand.Read(r.gen)
	seen := make(map[[hashLen]byte]bool, len(tokens))
	r.hashes = make([][]byte, 0, len(tokens))
	for _, t := range tokens {
		h := hashBytes(t)
		if !seen[h] {
			seen[h] = true
			r.hashes = append(r.hashes, h[:])
		}
	}
	return r
}

func msgKey(table, digest string) string { return tableKey(table) + ":msg:" + digest }

// retireKey is claimed (SetNX) by whoever ends a record generation: moving or
// forgetting the message, or undoing a learn whose counts failed. Exactly one
// caller wins it, so a generation's counts are taken back at most once.
func retireKey(key string, r record) string {
	if r.gen == nil {
		return key + ":retire:legacy"
	}
	return key + ":retire:" + hex.EncodeToString(r.gen)
}

func (c *Classifier) claimRetire(ctx context.Context, key string, r record) (bool, error) {
	ok, err := c.st.SetNX(ctx, retireKey(key, r), []byte{1}, retireTTL)
	if err != nil {
		return false, fmt.Errorf("bayes: %w", err)
	}
	return ok, nil
}

// Learn adds tokens as spam or ham to table, under the message digest. It
// returns ErrAlreadyLearned when the digest was learned in the same class;
// learned in the other class, the message moves.
//
// The record is claimed before the counts change (SetNX), so two learners
// of one message count it once, and a failed count update gives the claim
// back, so a retry does not count it twice.
func (c *Classifier) Learn(ctx context.Context, table, digest string, tokens []string, spam bool) error {
	key := msgKey(table, digest)
	next := c.newRecord(tokens, spam)
	enc := next.encode()
	for range maxAttempts {
		ok, err := c.st.SetNX(ctx, key, enc, 0)
		if err != nil {
			return fmt.Errorf("bayes: %w", err)
		}
		if ok {
			if err := c.st.HIncr(ctx, tableKey(table), deltas(nil, next)); err != nil {
				c.undo(ctx, key, next, nil)
				return fmt.Errorf("bayes: %w", err)
			}
			return nil
		}
		raw, err := c.st.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			continue // forgotten meanwhile: claim again
		}
		if err != nil {
			return fmt.Errorf("bayes: %w", err)
		}
		prev, err := decodeRecord(raw)
		if err != nil {
			return err
		}
		if prev.spam == spam {
			return ErrAlreadyLearned
		}
		won, err := c.claimRetire(ctx, key, prev)
		if err != nil {
			return err
		}
		if !won {
			continue // someone else is moving or forgetting it: look again
		}
		// A move: the record changes first (others now see the new class and
		// cannot claim the old generation), then the counts in one HIncr.
		if err := c.st.Set(ctx, key, enc, 0); err != nil {
			c.st.Delete(ctx, retireKey(key, prev))
			return fmt.Errorf("bayes: %w", err)
		}
		d, err := c.moveDeltas(ctx, table, &prev, next)
		if err == nil {
			err = c.st.HIncr(ctx, tableKey(table), d)
		}
		if err != nil {
			if c.undo(ctx, key, next, raw) {
				// prev is the record again: let it be moved or forgotten later.
				c.st.Delete(context.WithoutCancel(ctx), retireKey(key, prev))
			}
			return fmt.Errorf("bayes: %w", err)
		}
		return nil
	}
	return ErrBusy
}

// undo gives back a record generation whose counts were not applied: the
// record is removed (or restored to prev) only if we win its retire claim;
// if another caller won it, that caller already took the counts back
// believing they were there, and the table keeps that one message's error
// (a store failure racing a concurrent change of the same message).
func (c *Classifier) undo(ctx context.Context, key string, r record, prev []byte) bool {
	// The store just failed; give the undo its own short budget so a done
	// ctx does not leave the claim behind.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if won, err := c.claimRetire(ctx, key, r); err != nil || !won {
		return false
	}
	if prev != nil {
		return c.st.Set(ctx, key, prev, 0) == nil
	}
	return c.st.Delete(ctx, key) == nil
}

// Forget removes a learned message from table, subtracting what learning it
// added (tokens are only used for records written before the learned hashes
// were kept).
func (c *Classifier) Forget(ctx context.Context, table, digest string, tokens []string) error {
	key := msgKey(table, digest)
	for range maxAttempts {
		raw, err := c.st.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotLearned
		}
		if err != nil {
			return fmt.Errorf("bayes: %w", err)
		}
		prev, err := decodeRecord(raw)
		if err != nil {
			return err
		}
		if prev.gen == nil {
			prev.hashes = c.newRecord(tokens, prev.spam).hashes
		}
		won, err := c.claimRetire(ctx, key, prev)
		if err != nil {
			return err
		}
		if !won {
			continue
		}
		if err := c.st.Delete(ctx, key); err != nil {
			c.st.Delete(ctx, retireKey(key, prev))
			return fmt.Errorf("bayes: %w", err)
		}
		d, err := c.moveDeltas(ctx, table, &prev, record{})
		if err == nil {
			err = c.st.HIncr(ctx, tableKey(table), d)
		}
		if err != nil {
			// Put the record back (unless the message was learned anew
			// meanwhile) and release its generation.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			c.st.SetNX(ctx, key, raw, 0)
			c.st.Delete(ctx, retireKey(key, prev))
			return fmt.Errorf("bayes: %w", err)
		}
		return nil
	}
	return ErrBusy
}

// moveDeltas returns the HIncr deltas that take prev out of the table and
// put next in (next with no generation: nothing added). For a legacy prev,
// whose learned tokens are unknown, only tokens whose prev-class half is
// above 0 now are subtracted: a best effort that never borrows.
func (c *Classifier) moveDeltas(ctx context.Context, table string, prev *record, next record) (map[string]int64, error) {
	if prev.gen == nil {
		if prev.hashes == nil {
			prev.hashes = next.hashes
		}
		fields := make([]string, len(prev.hashes))
		for i, h := range prev.hashes {
			fields[i] = hex.EncodeToString(h)
		}
		cur, err := c.st.HGet(ctx, tableKey(table), fields)
		if err != nil {
			return nil, err
		}
		kept := prev.hashes[:0:0]
		for i, h := range prev.hashes {
			s, hm := splitCounts(cur[fields[i]])
			if prev.spam && s > 0 || !prev.spam && hm > 0 {
				kept = append(kept, h)
			}
		}
		prev.hashes = kept
	}
	return deltas(prev, next), nil
}

// deltas is the HIncr map removing prev (nil: nothing) and adding next (no
// generation: nothing).
func deltas(prev *record, next record) map[string]int64 {
	d := make(map[string]int64, len(next.hashes)+2)
	add := func(r record, sign int64) {
		unit, msgField := sign, fieldHam
		if r.spam {
			unit, msgField = sign<<shift, fieldSpam
		}
		for _, h := range r.hashes {
			d[hex.EncodeToString(h)] += unit
		}
		d[msgField] += sign
	}
	if prev != nil {
		add(*prev, -1)
	}
	if next.gen != nil {
		add(next, 1)
	}
	for f, v := range d {
		if v == 0 {
			delete(d, f)
		}
	}
	return d
}

// splitCounts unpacks a token's value. The halves are read as signed, so a
// value damaged by an earlier borrow (ham 0 − 1 = spam−1, ham 2^32−1) or
// seen between the two updates of concurrent learners decodes to its true
// halves instead of a huge ham count; each half is then floored at 0.
func splitCounts(v int64) (spam, ham int64) {
	ham = int64(int32(uint32(v)))
	spam = (v - ham) >> shift
	return max(spam, 0), max(ham, 0)
}

// Clue is one token's contribution.
type Clue struct {
	Token string
	Prob  float64
	Spam  int64
	Ham   int64
}

// Result of a classification.
type Result struct {
	Prob        float64 // spam probability in [0,1]
	Clues       []Clue  // tokens used, most extreme first
	NSpam, NHam int64   // training of the table
}

// Classify computes the spam probability of tokens against table. The caller
// checks the training minimums with Counts (or Result.NSpam/NHam).
func (c *Classifier) Classify(ctx context.Context, table string, tokens []string) (Result, error) {
	fields := make([]string, 0, len(tokens)+2)
	hashes := make([]string, len(tokens))
	for i, t := range tokens {
		hashes[i] = hashToken(t)
		fields = append(fields, hashes[i])
	}
	fields = append(fields, fieldSpam, fieldHam)
	m, err := c.st.HGet(ctx, tableKey(table), fields)
	if err != nil {
		return Result{}, fmt.Errorf("bayes: %w", err)
	}
	res := Result{NSpam: m[fieldSpam], NHam: m[fieldHam]}
	if res.NSpam <= 0 || res.NHam <= 0 {
		res.Prob = 0.5
		return res, nil
	}
	p := c.params
	clues := make([]Clue, 0, len(tokens))
	for i, t := range tokens {
		s, h := splitCounts(m[hashes[i]])
		if s+h == 0 {
			continue
		}
		sr := math.Min(float64(s)/float64(res.NSpam), 1)
		hr := math.Min(float64(h)/float64(res.NHam), 1)
		if sr+hr == 0 {
			continue
		}
		n := float64(s + h)
		f := (p.S*p.X + n*sr/(sr+hr)) / (p.S + n)
		if math.Abs(f-0.5) < p.MinStrength {
			continue
		}
		clues = append(clues, Clue{t, f, s, h})
	}
	sort.Slice(clues, func(i, j int) bool {
		di, dj := math.Abs(clues[i].Prob-0.5), math.Abs(clues[j].Prob-0.5)
		if di != dj {
			return di > dj
		}
		return clues[i].Token < clues[j].Token
	})
	if len(clues) > p.MaxTokens {
		clues = clues[:p.MaxTokens]
	}
	res.Clues = clues
	res.Prob = chiCombine(clues)
	return res, nil
}

// chiCombine is Fisher's method as in SpamBayes: two chi-square tests, one for
// "these look like spam" and one for "these look like ham", averaged.
func chiCombine(clues []Clue) float64 {
	if len(clues) == 0 {
		return 0.5
	}
	var lnS, lnH float64
	for _, c := range clues {
		pr := math.Min(math.Max(c.Prob, 1e-6), 1-1e-6)
		lnS += math.Log(1 - pr)
		lnH += math.Log(pr)
	}
	n := 2 * len(clues)
	s := 1 - chi2Q(-2*lnS, n)
	h := 1 - chi2Q(-2*lnH, n)
	return (s - h + 1) / 2
}

// chi2Q is the survival function of chi-square with v (even) degrees of freedom.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	sum := math.Exp(-m)
	term := sum
	for i := 1; i < v/2; i++ {
		term *= m / float64(i)
		sum += term
	}
	return math.Min(sum, 1)
}
