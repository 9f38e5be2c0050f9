// Package constraint parses and evaluates deployment-policy constraints over node properties,
// in anax's text language: `prop == value`, `prop != value`, `prop in "a,b,c"`, numeric
// `<`, `<=`, `>`, `>=`, joined by `&&`/`AND` and `||`/`OR`, with parentheses. A property the
// node does not have satisfies no comparison.
//
// Pure, like the rest of protocol: the agbot evaluates a deployment policy's constraints
// against node properties when it matches, and the agent evaluates a node policy's
// constraints against the proposed service, so both sides must share one parser.
package constraint

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("constraint syntax error")

// Expr is a parsed constraint.
type Expr interface {
	// Eval reports whether props (property name -> value as decoded from JSON) satisfy it.
	Eval(props map[string]any) bool
	String() string
}

type binary struct {
	and  bool
	l, r Expr
}

func (b binary) Eval(p map[string]any) bool {
	if b.and {
		return b.l.Eval(p) && b.r.Eval(p)
	}
	return b.l.Eval(p) || b.r.Eval(p)
}

func (b binary) String() string {
	op := "||"
	if b.and {
		op = "&&"
	}
	return "(" + b.l.String() + " " + op + " " + b.r.String() + ")"
}

type cmp struct {
	prop, op, val string
}

func (c cmp) String() string { return fmt.Sprintf("%s %s %q", c.prop, c.op, c.val) }

func (c cmp) Eval(p map[string]any) bool {
	have, ok := p[c.prop]
	if !ok {
		return false
	}
	if list, ok := have.([]any); ok {
		for _, el := range list {
			if c.one(el) {
				return true
			}
		}
		return false
	}
	if list, ok := have.([]string); ok {
		for _, el := range list {
			if c.one(el) {
				return true
			}
		}
		return false
	}
	return c.one(have)
}

// one compares a single property value.
func (c cmp) one(have any) bool {
	hs := scalar(have)
	switch c.op {
	case "==":
		return equal(have, hs, c.val)
	case "!=":
		return !equal(have, hs, c.val)
	case "in":
		for _, v := range strings.Split(c.val, ",") {
			if equal(have, hs, strings.TrimSpace(v)) {
				return true
			}
		}
		return false
	}
	hn, err1 := strconv.ParseFloat(hs, 64)
	wn, err2 := strconv.ParseFloat(c.val, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	switch c.op {
	case "<":
		return hn < wn
	case "<=":
		return hn <= wn
	case ">":
		return hn > wn
	case ">=":
		return hn >= wn
	}
	return false
}

func equal(have any, hs, want string) bool {
	switch h := have.(type) {
	case float64, int, int64:
		wn, err := strconv.ParseFloat(want, 64)
		hn, _ := strconv.ParseFloat(hs, 64)
		return err == nil && wn == hn
	case bool:
		wb, err := strconv.ParseBool(want)
		return err == nil && wb == h
	}
	return hs == want
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// Parse parses one constraint expression.
func Parse(s string) (Expr, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, p.errf("unexpected %q", p.toks[p.i].text)
	}
	return e, nil
}

// ParseAll parses a policy's constraints list: every entry must hold (anax ANDs them).
// An empty list matches every node.
func ParseAll(list []string) (Expr, error) {
	var out Expr = always{}
	for i, s := range list {
		e, err := Parse(s)
		if err != nil {
			return nil, fmt.Errorf("constraints[%d]: %w", i, err)
		}
		if _, ok := out.(always); ok {
			out = e
		} else {
			out = binary{and: true, l: out, r: e}
		}
	}
	return out, nil
}

type always struct{}

func (always) Eval(map[string]any) bool { return true }
func (always) String() string           { return "true" }

type token struct {
	text   string
	quoted bool
	pos    int
}

func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			out = append(out, token{text: string(c), pos: i})
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("%w at byte %d: unterminated quote", ErrSyntax, i)
			}
			out = append(out, token{text: s[i+1 : i+1+j], quoted: true, pos: i})
			i += j + 2
		case strings.ContainsRune("=!<>&|", rune(c)):
			j := i
			for j < len(s) && strings.ContainsRune("=!<>&|", rune(s[j])) {
				j++
			}
			out = append(out, token{text: s[i:j], pos: i})
			i = j
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n()\"'=!<>&|", rune(s[j])) {
				j++
			}
			out = append(out, token{text: s[i:j], pos: i})
			i = j
		}
	}
	return out, nil
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) errf(format string, args ...any) error {
	pos := -1
	if p.i < len(p.toks) {
		pos = p.toks[p.i].pos
	}
	if pos < 0 {
		return fmt.Errorf("%w at the end: %s", ErrSyntax, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, pos, fmt.Sprintf(format, args...))
}

func (p *parser) peek(words ...string) bool {
	if p.i >= len(p.toks) || p.toks[p.i].quoted {
		return false
	}
	for _, w := range words {
		if p.toks[p.i].text == w {
			return true
		}
	}
	return false
}

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek("||", "OR") {
		p.i++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = binary{l: l, r: r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek("&&", "AND") {
		p.i++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = binary{and: true, l: l, r: r}
	}
	return l, nil
}

var ops = map[string]string{"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "in": "in", "IN": "in"}

func (p *parser) unary() (Expr, error) {
	if p.peek("(") {
		p.i++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peek(")") {
			return nil, p.errf("missing ')'")
		}
		p.i++
		return e, nil
	}
	if p.i >= len(p.toks) {
		return nil, p.errf("expected a property name")
	}
	prop := p.toks[p.i]
	if prop.text == "" || p.peek(")", "&&", "||", "AND", "OR") {
		return nil, p.errf("expected a property name, got %q", prop.text)
	}
	p.i++
	if p.i >= len(p.toks) || p.toks[p.i].quoted || ops[p.toks[p.i].text] == "" {
		return nil, p.errf("expected one of ==, !=, in, <, <=, >, >= after %q", prop.text)
	}
	op := ops[p.toks[p.i].text]
	p.i++
	if p.i >= len(p.toks) || !p.toks[p.i].quoted && p.peek("(", ")", "&&", "||", "AND", "OR") {
		return nil, p.errf("expected a value after %s %s", prop.text, op)
	}
	val := p.toks[p.i].text
	p.i++
	return cmp{prop: prop.text, op: op, val: val}, nil
}
