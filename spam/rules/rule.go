package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// EvalFunc implements an eval: test. args are the unquoted arguments.
type EvalFunc func(c *Context, args []string) bool

// Rule is one compiled rule.
type Rule struct {
	Name        string
	Kind        Kind
	Score       float64
	Description string
	TFlags      []string
	File        string
	Line        int

	header   string // header rules: field name, ALL, ToCc, MESSAGEID, or exists:
	modif    string // header rules: raw, addr, name
	exists   bool
	negate   bool // !~
	unset    string
	hasUnset bool
	re       *regexp.Regexp
	pre      prefilter // body/rawbody/full: literals one of which must occur
	eval     EvalFunc
	args     []string
	meta     node
}

// Has reports whether the rule carries tflag f.
func (r *Rule) Has(f string) bool {
	for _, t := range r.TFlags {
		if t == f {
			return true
		}
	}
	return false
}

var evalCall = regexp.MustCompile(`^eval:([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*$`)

func (p *Parser) compileEval(def string) (EvalFunc, []string, error) {
	m := evalCall.FindStringSubmatch(def)
	if m == nil {
		return nil, nil, fmt.Errorf("malformed eval %q", trunc(def))
	}
	fn := p.evals[m[1]]
	if fn == nil {
		return nil, nil, fmt.Errorf("eval %s is not available (SpamAssassin plugin function)", m[1])
	}
	var args []string
	for _, a := range strings.Split(m[2], ",") {
		a = strings.TrimSpace(a)
		a = strings.Trim(a, `'"`)
		if a != "" {
			args = append(args, a)
		}
	}
	return fn, args, nil
}

func (p *Parser) compile(kind Kind, name, def string) (*Rule, error) {
	r := &Rule{Name: name, Kind: kind}
	if def == "" {
		return nil, errors.New("missing definition")
	}
	if kind == KindMeta {
		n, err := parseMeta(def)
		if err != nil {
			return nil, err
		}
		r.meta = n
		return r, nil
	}
	if strings.HasPrefix(def, "eval:") {
		fn, args, err := p.compileEval(def)
		if err != nil {
			return nil, err
		}
		r.eval, r.args = fn, args
		return r, nil
	}
	if kind == KindHeader {
		if strings.HasPrefix(def, "exists:") {
			r.exists = true
			r.header = strings.TrimSpace(def[len("exists:"):])
			return r, nil
		}
		// NAME[:modifier] =~ /re/flags [if-unset: STRING]
		i := strings.Index(def, "=~")
		j := strings.Index(def, "!~")
		if i < 0 || (j >= 0 && j < i) {
			i = j
			r.negate = true
		}
		if i < 0 {
			return nil, fmt.Errorf("header rule needs =~ or !~")
		}
		field := strings.TrimSpace(def[:i])
		pat := strings.TrimSpace(def[i+2:])
		if k := strings.Index(pat, "[if-unset:"); k >= 0 {
			r.hasUnset = true
			r.unset = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(pat[k+len("[if-unset:"):]), "]"))
			pat = strings.TrimSpace(pat[:k])
		}
		field, modif, _ := strings.Cut(field, ":")
		r.header, r.modif = field, modif
		if r.header == "" {
			return nil, errors.New("header rule without a field name")
		}
		def = pat
	}
	body, flags, err := splitPattern(def)
	if err != nil {
		return nil, err
	}
	if body == "" {
		// In Perl // reuses the last successful pattern; read as RE2 it would
		// match every message. Either way it is a mistake in the rule file.
		return nil, errors.New("empty pattern")
	}
	re, err := translate(body, flags)
	if err != nil {
		return nil, err
	}
	r.re = re
	if kind == KindBody || kind == KindRawBody || kind == KindFull {
		r.pre = buildPrefilter(re.String())
	}
	return r, nil
}

// Set is a compiled ruleset, safe for concurrent use.
type Set struct {
	rules  []*Rule // non-meta rules, file order
	metas  []*Rule // meta rules in dependency order
	byName map[string]*Rule
}

// Rules returns every rule (non-meta first, then metas).
func (s *Set) Rules() []*Rule { return append(append([]*Rule(nil), s.rules...), s.metas...) }

// Lookup returns the rule named name.
func (s *Set) Lookup(name string) *Rule { return s.byName[name] }

// Build finishes parsing: scores, descriptions and tflags are attached, metas
// are ordered by dependency (cycles are reported and dropped). overrides replace
// scores.
func (p *Parser) Build(overrides map[string]float64) *Set {
	s := &Set{byName: map[string]*Rule{}}
	for _, name := range p.order {
		r := p.rules[name]
		r.Score = defaultScore(name)
		if v, ok := p.scores[name]; ok {
			r.Score = v
		}
		if v, ok := overrides[name]; ok {
			r.Score = v
		}
		r.Description = p.describe[name]
		r.TFlags = p.tflags[name]
		s.byName[name] = r
		if r.Kind != KindMeta {
			s.rules = append(s.rules, r)
		}
	}
	// Order metas so every meta runs after the metas it uses. A meta using a
	// rule that was defined but skipped (a pattern RE2 cannot run) is skipped
	// too: reading that rule as "no hit" would change what the meta means
	// ("A && !__B" would fire on every A). A name defined nowhere reads 0,
	// as in SpamAssassin.
	state := map[string]int{} // 1 visiting, 2 done, 3 skipped
	var visit func(r *Rule) bool
	visit = func(r *Rule) bool {
		switch state[r.Name] {
		case 1, 3:
			return false
		case 2:
			return true
		}
		state[r.Name] = 1
		for _, dep := range r.meta.deps(nil) {
			d := s.byName[dep]
			if d == nil && p.failed[dep] || d != nil && d.Kind == KindMeta && !visit(d) {
				why := "uses " + dep + ", which was skipped"
				if state[dep] == 1 {
					why = "dependency cycle through " + dep
				}
				p.problem(r.File, r.Line, "meta %s: %s; rule skipped", r.Name, why)
				state[r.Name] = 3
				return false
			}
		}
		state[r.Name] = 2
		s.metas = append(s.metas, r)
		return true
	}
	for _, name := range p.order {
		if r := s.byName[name]; r.Kind == KindMeta {
			visit(r)
		}
	}
	for name, st := range state {
		if st != 2 {
			delete(s.byName, name)
		}
	}
	return s
}

// defaultScore is SpamAssassin's: 1.0, 0 for sub-rules (__), 0.01 for tests (T_).
func defaultScore(name string) float64 {
	switch {
	case strings.HasPrefix(name, "__"):
		return 0
	case strings.HasPrefix(name, "T_"):
		return 0.01
	}
	return 1
}
