package pdfsafe

import "strconv"

// lexer splits PDF data into tokens exactly where digitorus/pdf's lexer (lex.go) does,
// wherever that lexer does not panic. It is written here, not taken from there, because that
// lexer is unexported and, in an object stream, never ends at a truncated string or array:
// this one reports the end of the data instead (open).
type lexer struct {
	data []byte
	pos  int
	// open is set when the data ended inside a literal or hex string.
	open bool
}

type tokKind int

const (
	tokWord   tokKind = iota // a keyword or a number
	tokName                  // text holds the name decoded (#xx), without the slash
	tokString                // a literal or hex string
	tokDelim                 // [ ] { } << >>, text holds it; a stray delimiter too
)

type token struct {
	kind  tokKind
	text  []byte
	start int
}

func newLexer(data []byte) *lexer { return &lexer{data: data} }

func isSpace(c byte) bool {
	switch c {
	case 0, '\t', '\n', '\f', '\r', ' ':
		return true
	}
	return false
}

func isDelim(c byte) bool {
	switch c {
	case '<', '>', '(', ')', '[', ']', '{', '}', '/', '%':
		return true
	}
	return false
}

// skip moves past white space and comments to where the next token starts.
func (l *lexer) skip() {
	for l.pos < len(l.data) {
		c := l.data[l.pos]
		switch {
		case isSpace(c):
			l.pos++
		case c == '%':
			for l.pos < len(l.data) && l.data[l.pos] != '\r' && l.data[l.pos] != '\n' {
				l.pos++
			}
		default:
			return
		}
	}
}

// skip1 moves past one byte of white space or one comment.
func (l *lexer) skip1() {
	if l.data[l.pos] != '%' {
		l.pos++
		return
	}
	for l.pos < len(l.data) && l.data[l.pos] != '\r' && l.data[l.pos] != '\n' {
		l.pos++
	}
}

// next returns the next token, or false at the end of the data (l.open tells whether the
// data ended inside a string).
func (l *lexer) next() (token, bool) {
	l.skip()
	if l.pos >= len(l.data) {
		return token{}, false
	}
	start := l.pos
	c := l.data[l.pos]
	l.pos++
	tok := func(k tokKind, text []byte) (token, bool) { return token{k, text, start}, true }
	switch c {
	case '<':
		if l.pos < len(l.data) && l.data[l.pos] == '<' {
			l.pos++
			return tok(tokDelim, []byte("<<"))
		}
		// A hex string ends at the first '>' (the other lexer panics on any '>' it meets
		// where a second digit belongs).
		for l.pos < len(l.data) && l.data[l.pos] != '>' {
			l.pos++
		}
		if l.pos == len(l.data) {
			l.open = true
			return token{}, false
		}
		l.pos++
		return tok(tokString, nil)
	case '(':
		depth := 1
		for l.pos < len(l.data) {
			b := l.data[l.pos]
			l.pos++
			switch b {
			case '\\':
				l.pos++ // the escaped byte; the rest of an escape never holds a parenthesis
			case '(':
				depth++
			case ')':
				if depth--; depth == 0 {
					return tok(tokString, nil)
				}
			}
		}
		l.open = true
		return token{}, false
	case '[', ']', '{', '}':
		return tok(tokDelim, []byte{c})
	case '>':
		if l.pos < len(l.data) && l.data[l.pos] == '>' {
			l.pos++
			return tok(tokDelim, []byte(">>"))
		}
		return tok(tokDelim, []byte{c})
	case '/':
		var name []byte
		for l.pos < len(l.data) {
			b := l.data[l.pos]
			if isDelim(b) || isSpace(b) {
				break
			}
			l.pos++
			if b == '#' {
				h := make([]byte, 0, 2)
				for range 2 {
					if l.pos < len(l.data) {
						h = append(h, l.data[l.pos])
					}
					l.pos++
				}
				x, err := strconv.ParseUint(string(h), 16, 8)
				if err != nil {
					continue // the other lexer panics here
				}
				name = append(name, byte(x))
				continue
			}
			name = append(name, b)
		}
		l.pos = min(l.pos, len(l.data))
		return tok(tokName, name)
	}
	if isDelim(c) { // ')' alone: the other lexer panics
		return tok(tokDelim, []byte{c})
	}
	for l.pos < len(l.data) && !isDelim(l.data[l.pos]) && !isSpace(l.data[l.pos]) {
		l.pos++
	}
	return tok(tokWord, l.data[start:l.pos])
}

// parseInt reads a keyword token as digitorus/pdf does an integer.
func parseInt(b []byte) (int64, bool) {
	s := string(b)
	d := s
	if len(d) > 0 && (d[0] == '+' || d[0] == '-') {
		d = d[1:]
	}
	if d == "" {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// dictionary reads the top-level entries of the dictionary the data starts with (after
// "n g obj" when present): each key with the tokens of its value. ok is false when the
// dictionary does not end in the data.
func dictionary(data []byte) (entries map[string][]token, ok bool) {
	l := newLexer(data)
	t, more := l.next()
	for i := 0; more && i < 3 && t.kind == tokWord; i++ { // n g obj
		t, more = l.next()
	}
	if !more || string(t.text) != "<<" {
		return nil, false
	}
	entries = map[string][]token{}
	depth := 1
	key := ""
	for {
		t, more = l.next()
		if !more {
			return nil, false
		}
		if t.kind == tokDelim {
			switch string(t.text) {
			case "<<", "[", "{":
				depth++
			case ">>", "]", "}":
				depth--
			}
			if depth == 0 {
				return entries, true
			}
		}
		if depth == 1 && t.kind == tokName && (key == "" || len(entries[key]) > 0) {
			key = string(t.text)
			entries[key] = entries[key][:0]
			continue
		}
		if key != "" {
			entries[key] = append(entries[key], t)
		}
	}
}
