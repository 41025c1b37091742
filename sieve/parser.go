package sieve

// AST

type argKind int

const (
	aTag argKind = iota
	aNumber
	aString     // single string
	aStringList // bracketed list
)

type arg struct {
	pos  Pos
	kind argKind
	tag  string
	num  int64
	strs []string
	text bool
}

type testNode struct {
	pos   Pos
	name  string
	args  []arg
	tests []*testNode
	paren bool // had a parenthesised test list
}

type cmdNode struct {
	pos      Pos
	name     string
	args     []arg
	tests    []*testNode
	paren    bool
	hasBlock bool
	block    []*cmdNode
	endPos   Pos
}

type parser struct {
	lx       *lexer
	tok      token
	peeked   bool
	errs     *errList
	maxDepth int
	depth    int
}

func (p *parser) peek() token {
	if !p.peeked {
		p.tok = p.lx.next()
		p.peeked = true
	}
	return p.tok
}

func (p *parser) take() token {
	t := p.peek()
	p.peeked = false
	return t
}

func parseScript(src []byte, errs *errList, lim Limits) []*cmdNode {
	p := &parser{lx: newLexer(src, errs, lim.MaxTokens), errs: errs, maxDepth: lim.MaxNesting}
	var cmds []*cmdNode
	for {
		t := p.peek()
		if t.kind == tEOF {
			break
		}
		if t.kind == tRBrace {
			p.errs.add(t.pos, "unexpected '}' found at top level")
			p.take()
			continue
		}
		c := p.command()
		if c != nil {
			cmds = append(cmds, c)
		}
		if len(errs.list) >= errs.max && errs.max > 0 {
			break
		}
	}
	return cmds
}

// recover skips to the end of the current command: after ';' or a balanced block.
func (p *parser) recover() {
	depth := 0
	for {
		t := p.peek()
		switch t.kind {
		case tEOF:
			return
		case tSemicolon:
			p.take()
			if depth == 0 {
				return
			}
		case tLBrace:
			depth++
			p.take()
		case tRBrace:
			if depth == 0 {
				return
			}
			depth--
			p.take()
			if depth == 0 {
				return
			}
		default:
			p.take()
		}
	}
}

func (p *parser) command() *cmdNode {
	t := p.take()
	if t.kind != tIdent {
		p.errs.add(t.pos, "expected command identifier, but found %s", t.kind)
		p.recover()
		return nil
	}
	c := &cmdNode{pos: t.pos, name: t.str}
	var ok bool
	c.args, c.tests, c.paren, ok = p.arguments(true)
	if !ok {
		p.recover()
		return nil
	}
	t = p.peek()
	switch t.kind {
	case tSemicolon:
		p.take()
	case tLBrace:
		p.take()
		c.hasBlock = true
		p.depth++
		if p.depth > p.maxDepth {
			p.errs.add(t.pos, "cannot nest command blocks deeper than %d levels", p.maxDepth)
			p.depth--
			p.skipBlock()
			return nil
		}
		for {
			t2 := p.peek()
			if t2.kind == tRBrace {
				c.endPos = t2.pos
				p.take()
				break
			}
			if t2.kind == tEOF {
				p.errs.add(t2.pos, "end of file before end of command block")
				break
			}
			sub := p.command()
			if sub != nil {
				c.block = append(c.block, sub)
			}
		}
		p.depth--
	default:
		p.errs.add(t.pos, "expected ';' or '{' after command '%s', but found %s", c.name, t.kind)
		p.recover()
		return nil
	}
	return c
}

func (p *parser) skipBlock() {
	depth := 1
	for depth > 0 {
		t := p.take()
		switch t.kind {
		case tEOF:
			return
		case tLBrace:
			depth++
		case tRBrace:
			depth--
		}
	}
}

// arguments parses *argument [test / test-list]
func (p *parser) arguments(isCmd bool) (args []arg, tests []*testNode, paren bool, ok bool) {
	for {
		t := p.peek()
		switch t.kind {
		case tTag:
			p.take()
			args = append(args, arg{pos: t.pos, kind: aTag, tag: t.str})
			continue
		case tNumber:
			p.take()
			args = append(args, arg{pos: t.pos, kind: aNumber, num: t.num})
			continue
		case tString:
			p.take()
			args = append(args, arg{pos: t.pos, kind: aString, strs: []string{t.str}, text: t.text})
			continue
		case tLBracket:
			p.take()
			a := arg{pos: t.pos, kind: aStringList}
			for {
				s := p.take()
				if s.kind != tString {
					p.errs.add(s.pos, "expected string in string list, but found %s", s.kind)
					return nil, nil, false, false
				}
				a.strs = append(a.strs, s.str)
				sep := p.take()
				if sep.kind == tRBracket {
					break
				}
				if sep.kind != tComma {
					p.errs.add(sep.pos, "expected ',' or ']' in string list, but found %s", sep.kind)
					return nil, nil, false, false
				}
			}
			args = append(args, a)
			continue
		}
		break
	}
	t := p.peek()
	if t.kind == tIdent {
		tst := p.test()
		if tst == nil {
			return nil, nil, false, false
		}
		tests = []*testNode{tst}
	} else if t.kind == tLParen {
		p.take()
		paren = true
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > p.maxDepth {
			p.errs.add(t.pos, "cannot nest tests deeper than %d levels", p.maxDepth)
			return nil, nil, false, false
		}
		for {
			tst := p.test()
			if tst == nil {
				return nil, nil, false, false
			}
			tests = append(tests, tst)
			sep := p.take()
			if sep.kind == tRParen {
				break
			}
			if sep.kind != tComma {
				p.errs.add(sep.pos, "expected ',' or ')' in test list, but found %s", sep.kind)
				return nil, nil, false, false
			}
		}
	}
	return args, tests, paren, true
}

func (p *parser) test() *testNode {
	t := p.take()
	if t.kind != tIdent {
		p.errs.add(t.pos, "expected test identifier, but found %s", t.kind)
		return nil
	}
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > p.maxDepth {
		p.errs.add(t.pos, "cannot nest tests deeper than %d levels", p.maxDepth)
		return nil
	}
	n := &testNode{pos: t.pos, name: t.str}
	var ok bool
	n.args, n.tests, n.paren, ok = p.arguments(false)
	if !ok {
		return nil
	}
	return n
}
