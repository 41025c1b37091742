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

// maxArguments bounds the arguments of one command or test (Pigeonhole's
// SIEVE_MAX_COMMAND_ARGUMENTS).
const maxArguments = 32

// parser is a recursive-descent parser with Pigeonhole's error recovery: after
// a syntax error it skips to the end of the enclosing grammatical structure
// (string list, test list, command, block) so that later errors are still
// reported, while one mistake yields one error. Parse results are tri-state
// like Pigeonhole's: pOK, pRecover (caller must recover) and pFatal.
type parser struct {
	lx       *lexer
	tok      token
	errs     *errList
	valid    bool
	maxBlock int
	maxTest  int
}

const (
	pFatal   = -1
	pRecover = 0
	pOK      = 1
)

func (p *parser) next() { p.tok = p.lx.next() }

// errorf reports a syntax error at the current token, unless the lexer has
// already reported the token itself.
func (p *parser) errorf(format string, args ...any) {
	p.errorAt(p.tok.pos, format, args...)
}

func (p *parser) errorAt(pos Pos, format string, args ...any) {
	// A script cut short at the token limit has that one error: what is
	// missing at its (artificial) end is not the script's fault.
	if p.tok.kind != tError && !p.lx.limited {
		p.errs.add(pos, format, args...)
	}
	p.valid = false
}

func (p *parser) moreErrorsAllowed() bool {
	return p.errs.max <= 0 || len(p.errs.list) < p.errs.max
}

// parseScript parses a whole script. Any lexical or syntax error is recorded
// in errs; the caller must not validate the returned nodes then.
func parseScript(src []byte, errs *errList, lim Limits) []*cmdNode {
	p := &parser{lx: newLexer(src, errs, lim.MaxTokens), errs: errs, valid: true,
		maxBlock: lim.MaxNesting, maxTest: lim.MaxNesting}
	p.next()
	cmds, r := p.commands(1)
	if r > 0 && p.valid && p.tok.kind != tEOF {
		p.errorf("unexpected %s found at (the presumed) end of file", p.tok.kind)
	}
	return cmds
}

// commands = *command; command = identifier arguments ( ";" / block )
func (p *parser) commands(depth int) ([]*cmdNode, int) {
	var cmds []*cmdNode
	r := pOK
	for r > 0 && p.tok.kind == tIdent {
		if !p.valid && !p.moreErrorsAllowed() {
			r = p.recover(tSemicolon)
			break
		}
		c := &cmdNode{pos: p.tok.pos, name: p.tok.str}
		p.next()
		c.args, c.tests, c.paren, r = p.arguments(c.name, 1)
		if r > 0 && p.tok.kind != tSemicolon && p.tok.kind != tLBrace {
			p.errorf("expected end of command ';' or the beginning of a compound block '{', but found %s", p.tok.kind)
			r = pRecover
		}
		if r == pRecover {
			r = p.recover(tSemicolon)
		}
		if r <= 0 {
			return cmds, r
		}
		cmds = append(cmds, c)
		if p.tok.kind == tSemicolon {
			p.next()
			continue
		}
		// block
		brace := p.tok.pos
		p.next()
		if depth+1 > p.maxBlock {
			p.errorAt(brace, "cannot nest command blocks deeper than %d levels", p.maxBlock)
			if r = p.recover(tRBrace); r > 0 {
				p.next()
			}
			continue
		}
		c.hasBlock = true
		c.block, r = p.commands(depth + 1)
		if r > 0 {
			if p.tok.kind != tRBrace {
				p.errorf("expected end of compound block '}', but found %s", p.tok.kind)
				r = p.recover(tRBrace)
			} else {
				c.endPos = p.tok.pos
				p.next()
			}
		} else {
			if r < 0 {
				return cmds, r
			}
			if r = p.recover(tRBrace); r > 0 {
				c.endPos = p.tok.pos
				p.next()
			}
		}
	}
	return cmds, r
}

// arguments = *argument [ test / test-list ]
func (p *parser) arguments(owner string, depth int) (args []arg, tests []*testNode, paren bool, r int) {
	r = pOK
argLoop:
	for r > 0 {
		if !p.valid && !p.moreErrorsAllowed() {
			return args, nil, false, pRecover
		}
		t := p.tok
		switch t.kind {
		case tLBracket:
			a := arg{pos: t.pos, kind: aStringList}
			p.next()
			if p.tok.kind == tString {
				a.strs = append(a.strs, p.tok.str)
				p.next()
				for p.tok.kind == tComma {
					p.next()
					if !p.valid && !p.moreErrorsAllowed() {
						r = p.recover(tRBracket)
						break
					}
					if p.tok.kind != tString {
						p.errorf("expecting string after ',' in string list, but found %s", p.tok.kind)
						r = p.recover(tRBracket)
						break
					}
					a.strs = append(a.strs, p.tok.str)
					p.next()
				}
			} else {
				p.errorf("expecting string after '[' in string list, but found %s", p.tok.kind)
				r = p.recover(tRBracket)
			}
			if p.tok.kind == tRBracket {
				p.next()
			} else {
				p.errorf("expecting ',' or end of string list ']', but found %s", p.tok.kind)
				if r = p.recover(tRBracket); r > 0 {
					p.next()
				}
			}
			args = append(args, a)
		case tString:
			args = append(args, arg{pos: t.pos, kind: aString, strs: []string{t.str}, text: t.text})
			p.next()
		case tNumber:
			args = append(args, arg{pos: t.pos, kind: aNumber, num: t.num})
			p.next()
		case tTag:
			args = append(args, arg{pos: t.pos, kind: aTag, tag: t.str})
			p.next()
		default:
			break argLoop
		}
		if len(args) > maxArguments {
			p.errorAt(t.pos, "too many arguments for command '%s'", owner)
			return args, nil, false, pRecover
		}
	}
	if r <= 0 {
		return args, nil, false, r
	}
	switch p.tok.kind {
	case tIdent:
		if depth+1 > p.maxTest {
			p.errorf("cannot nest tests deeper than %d levels", p.maxTest)
			return args, nil, false, pRecover
		}
		tn := &testNode{pos: p.tok.pos, name: p.tok.str}
		p.next()
		tests = []*testNode{tn}
		if tn.args, tn.tests, tn.paren, r = p.arguments(tn.name, depth+1); r <= 0 {
			return args, tests, false, pRecover
		}
	case tLParen:
		lparen := p.tok.pos
		p.next()
		if depth+1 > p.maxTest {
			p.errorAt(lparen, "cannot nest tests deeper than %d levels", p.maxTest)
			if r = p.recover(tRParen); r > 0 {
				p.next()
			}
			return args, nil, true, r
		}
		paren = true
		if p.tok.kind == tIdent {
			tn := &testNode{pos: p.tok.pos, name: p.tok.str}
			p.next()
			tests = append(tests, tn)
			if tn.args, tn.tests, tn.paren, r = p.arguments(tn.name, depth+1); r > 0 {
				for p.tok.kind == tComma {
					p.next()
					if !p.valid && !p.moreErrorsAllowed() {
						r = p.recover(tRParen)
						break
					}
					if p.tok.kind != tIdent {
						p.errorf("expecting test identifier after ',' in test list, but found %s", p.tok.kind)
						r = p.recover(tRParen)
						break
					}
					tn := &testNode{pos: p.tok.pos, name: p.tok.str}
					p.next()
					tests = append(tests, tn)
					if tn.args, tn.tests, tn.paren, r = p.arguments(tn.name, depth+1); r <= 0 {
						if r < 0 {
							return args, tests, paren, r
						}
						r = p.recover(tRParen)
						break
					}
				}
			} else {
				if r < 0 {
					return args, tests, paren, r
				}
				r = p.recover(tRParen)
			}
		} else {
			p.errorf("expecting test identifier after '(' in test list, but found %s", p.tok.kind)
			r = p.recover(tRParen)
		}
		if p.tok.kind == tRParen {
			p.next()
		} else {
			p.errorf("expecting ',' or end of test list ')', but found %s", p.tok.kind)
			if r = p.recover(tRParen); r > 0 {
				p.next()
			}
		}
	}
	return args, tests, paren, r
}

// recoveryLevel ranks the tokens that delimit grammatical structures; -1 for
// all others.
func recoveryLevel(k tokKind) int {
	switch k {
	case tLBrace, tRBrace:
		return 3
	case tSemicolon:
		return 2
	case tLParen, tRParen:
		return 1
	case tLBracket, tRBracket:
		return 0
	}
	return -1
}

// recover skips tokens until end (at nesting level zero) is the current
// token, without crossing a delimiter of a higher-level structure. It
// returns pOK when end was found (or, recovering a command, when a block
// starts), pRecover otherwise.
func (p *parser) recover(end tokKind) int {
	level := recoveryLevel(end)
	begin := [4]tokKind{tLBracket, tLParen, tEOF, tLBrace}[level]
	nesting := 1
	for p.tok.kind != tEOF && recoveryLevel(p.tok.kind) <= level {
		if begin != tEOF && p.tok.kind == begin {
			nesting++
			p.next()
			continue
		}
		if p.tok.kind == end {
			nesting--
			if nesting == 0 {
				return pOK
			}
		}
		p.next()
	}
	if end == tSemicolon && p.tok.kind == tLBrace {
		return pOK
	}
	return pRecover
}
