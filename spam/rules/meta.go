package rules

import (
	"errors"
	"fmt"
	"strconv"
)

// node is a meta expression: rule names, numbers, ! + - * / < > <= >= == != && ||.
type node interface {
	eval(hits map[string]float64) float64
	deps(acc []string) []string
}

type numNode float64
type refNode string
type notNode struct{ x node }
type binNode struct {
	op   string
	l, r node
}

func (n numNode) eval(map[string]float64) float64   { return float64(n) }
func (n numNode) deps(acc []string) []string        { return acc }
func (n refNode) eval(h map[string]float64) float64 { return h[string(n)] }
func (n refNode) deps(acc []string) []string        { return append(acc, string(n)) }
func (n notNode) eval(h map[string]float64) float64 { return b2f(n.x.eval(h) == 0) }
func (n notNode) deps(acc []string) []string        { return n.x.deps(acc) }
func (n binNode) deps(acc []string) []string        { return n.r.deps(n.l.deps(acc)) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (n binNode) eval(h map[string]float64) float64 {
	l := n.l.eval(h)
	switch n.op {
	case "&&":
		if l == 0 {
			return 0
		}
		return b2f(n.r.eval(h) != 0)
	case "||":
		if l != 0 {
			return 1
		}
		return b2f(n.r.eval(h) != 0)
	}
	r := n.r.eval(h)
	switch n.op {
	case "+":
		return l + r
	case "-":
		return l - r
	case "*":
		return l * r
	case "/":
		if r == 0 {
			return 0
		}
		return l / r
	case "<":
		return b2f(l < r)
	case ">":
		return b2f(l > r)
	case "<=":
		return b2f(l <= r)
	case ">=":
		return b2f(l >= r)
	case "==":
		return b2f(l == r)
	case "!=":
		return b2f(l != r)
	}
	return 0
}

type metaParser struct {
	toks []string
	pos  int
}

func tokenizeMeta(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '.' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			if i+1 < len(s) {
				two := s[i : i+2]
				switch two {
				case "&&", "||", "<=", ">=", "==", "!=":
					toks = append(toks, two)
					i += 2
					continue
				}
			}
			switch c {
			case '!', '(', ')', '+', '-', '*', '/', '<', '>':
				toks = append(toks, string(c))
				i++
			default:
				return nil, fmt.Errorf("meta: unexpected %q", c)
			}
		}
	}
	if len(toks) > 4096 {
		return nil, errors.New("meta: expression too long")
	}
	return toks, nil
}

func parseMeta(s string) (node, error) {
	toks, err := tokenizeMeta(s)
	if err != nil {
		return nil, err
	}
	p := &metaParser{toks: toks}
	n, err := p.expr(0, 0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("meta: unexpected %q", p.toks[p.pos])
	}
	return n, nil
}

var precedence = map[string]int{"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, ">": 4, "<=": 4, ">=": 4,
	"+": 5, "-": 5, "*": 6, "/": 6}

// expr is precedence climbing; depth bounds recursion on hostile input.
func (p *metaParser) expr(minPrec, depth int) (node, error) {
	if depth > 200 {
		return nil, errors.New("meta: nested too deeply")
	}
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.pos < len(p.toks) {
		op := p.toks[p.pos]
		prec, ok := precedence[op]
		if !ok || prec < minPrec {
			break
		}
		p.pos++
		r, err := p.expr(prec+1, depth+1)
		if err != nil {
			return nil, err
		}
		l = binNode{op, l, r}
	}
	return l, nil
}

func (p *metaParser) unary(depth int) (node, error) {
	if depth > 200 {
		return nil, errors.New("meta: nested too deeply")
	}
	if p.pos >= len(p.toks) {
		return nil, errors.New("meta: unexpected end of expression")
	}
	t := p.toks[p.pos]
	p.pos++
	switch {
	case t == "!":
		x, err := p.unary(depth + 1)
		return notNode{x}, err
	case t == "-":
		x, err := p.unary(depth + 1)
		return binNode{"-", numNode(0), x}, err
	case t == "(":
		x, err := p.expr(0, depth+1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos] != ")" {
			return nil, errors.New("meta: missing )")
		}
		p.pos++
		return x, nil
	case t[0] >= '0' && t[0] <= '9' || t[0] == '.':
		v, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return nil, fmt.Errorf("meta: bad number %q", t)
		}
		return numNode(v), nil
	case validName(t):
		return refNode(t), nil
	}
	return nil, fmt.Errorf("meta: unexpected %q", t)
}
