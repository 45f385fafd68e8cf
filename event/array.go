package event

import (
	"bytes"
	"errors"
	"fmt"
)

// arrayNode is a parsed Postgres array literal: either a sub-array (elems)
// or one element (text, or SQL NULL).
type arrayNode struct {
	isArray bool
	elems   []arrayNode
	text    []byte
	null    bool
}

var errArraySyntax = errors.New("malformed array literal")

// parseArray parses the text form of an array, such as `{1,2}`,
// `{{"a b",NULL},{c,"d\"e"}}` or `[0:1]={x,y}` (explicit bounds are dropped:
// JSON arrays start at 0 anyway).
func parseArray(raw []byte, delim byte) (arrayNode, error) {
	if len(raw) > 0 && raw[0] == '[' {
		eq := bytes.IndexByte(raw, '=')
		if eq < 0 {
			return arrayNode{}, errArraySyntax
		}
		raw = raw[eq+1:]
	}
	p := arrayParser{src: raw, delim: delim}
	n, err := p.array(0)
	if err != nil {
		return arrayNode{}, err
	}
	p.skipSpace()
	if p.pos != len(p.src) {
		return arrayNode{}, fmt.Errorf("%w: trailing text at byte %d", errArraySyntax, p.pos)
	}
	return n, nil
}

type arrayParser struct {
	src   []byte
	pos   int
	delim byte
}

// maxArrayDepth matches Postgres's MAXDIM; it also bounds recursion on hostile input.
const maxArrayDepth = 6

func (p *arrayParser) skipSpace() {
	for p.pos < len(p.src) && isArraySpace(p.src[p.pos]) {
		p.pos++
	}
}

func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func (p *arrayParser) array(depth int) (arrayNode, error) {
	if depth >= maxArrayDepth {
		return arrayNode{}, fmt.Errorf("%w: more than %d dimensions", errArraySyntax, maxArrayDepth)
	}
	p.skipSpace()
	if p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return arrayNode{}, fmt.Errorf("%w: expected '{' at byte %d", errArraySyntax, p.pos)
	}
	p.pos++
	n := arrayNode{isArray: true}
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		return n, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return arrayNode{}, fmt.Errorf("%w: unterminated", errArraySyntax)
		}
		var el arrayNode
		var err error
		switch p.src[p.pos] {
		case '{':
			el, err = p.array(depth + 1)
		case '"':
			el, err = p.quoted()
		default:
			el, err = p.unquoted()
		}
		if err != nil {
			return arrayNode{}, err
		}
		n.elems = append(n.elems, el)
		p.skipSpace()
		if p.pos >= len(p.src) {
			return arrayNode{}, fmt.Errorf("%w: unterminated", errArraySyntax)
		}
		switch p.src[p.pos] {
		case p.delim:
			p.pos++
		case '}':
			p.pos++
			return n, nil
		default:
			return arrayNode{}, fmt.Errorf("%w: unexpected %q at byte %d", errArraySyntax, p.src[p.pos], p.pos)
		}
	}
}

func (p *arrayParser) quoted() (arrayNode, error) {
	p.pos++ // opening quote
	var out []byte
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch c {
		case '\\':
			p.pos++
			if p.pos >= len(p.src) {
				return arrayNode{}, fmt.Errorf("%w: unterminated escape", errArraySyntax)
			}
			out = append(out, p.src[p.pos])
		case '"':
			p.pos++
			if out == nil {
				out = []byte{}
			}
			return arrayNode{text: out}, nil
		default:
			out = append(out, c)
		}
		p.pos++
	}
	return arrayNode{}, fmt.Errorf("%w: unterminated quoted element", errArraySyntax)
}

func (p *arrayParser) unquoted() (arrayNode, error) {
	start := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == p.delim || c == '}' || c == '{' || c == '"' {
			break
		}
		if c == '\\' {
			return arrayNode{}, fmt.Errorf("%w: escape in unquoted element", errArraySyntax)
		}
		p.pos++
	}
	text := bytes.TrimRight(p.src[start:p.pos], " \t\n\r\v\f")
	if len(text) == 0 {
		return arrayNode{}, fmt.Errorf("%w: empty element at byte %d", errArraySyntax, start)
	}
	if bytes.EqualFold(text, []byte("NULL")) {
		return arrayNode{null: true}, nil
	}
	return arrayNode{text: text}, nil
}

func (n arrayNode) appendJSON(dst []byte, elem *Type) []byte {
	switch {
	case n.isArray:
		dst = append(dst, '[')
		for i, e := range n.elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = e.appendJSON(dst, elem)
		}
		return append(dst, ']')
	case n.null:
		return append(dst, "null"...)
	default:
		return appendTextAsJSON(dst, n.text, elem)
	}
}

func (n arrayNode) decode(elem *Type) (any, error) {
	switch {
	case n.isArray:
		out := make([]any, len(n.elems))
		for i, e := range n.elems {
			v, err := e.decode(elem)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case n.null:
		return nil, nil
	default:
		return decodeText(n.text, elem)
	}
}
