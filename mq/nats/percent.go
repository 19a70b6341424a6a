package nats

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// percentEncode writes s as the CloudEvents NATS (and HTTP) protocol
// binding asks of an attribute's value in a header: space, '"', '%' and
// every byte outside the printable ASCII range U+0021-U+007E become %XY
// (each byte of a character's UTF-8 encoding, upper-case hex).
func percentEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if needsPercent(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsPercent(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func needsPercent(c byte) bool { return c <= ' ' || c == '"' || c == '%' || c > '~' }

var (
	errPercent = errors.New("malformed percent-encoding")
	errUTF8    = errors.New("percent-encoding of invalid UTF-8")
	errQuoted  = errors.New("malformed quoted string")
)

// percentDecode reads a header value as the binding asks: a value in double
// quotes is unquoted first (RFC 7230 quoted-string, backslash escapes),
// then one round of percent-decoding (lower-case hex accepted, and
// characters encoded without need); the result must be valid UTF-8.
func percentDecode(v string) (string, error) {
	if strings.HasPrefix(v, `"`) {
		var err error
		if v, err = unquote(v); err != nil {
			return "", err
		}
	}
	if !strings.Contains(v, "%") {
		if !utf8.ValidString(v) {
			return "", errUTF8
		}
		return v, nil
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(v) {
			return "", errPercent
		}
		hi, ok1 := unhex(v[i+1])
		lo, ok2 := unhex(v[i+2])
		if !ok1 || !ok2 {
			return "", errPercent
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	if !utf8.Valid(b) { // rejects overlong encodings such as %C0%A0
		return "", errUTF8
	}
	return string(b), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unquote reads an RFC 7230 quoted-string that is the whole of v.
func unquote(v string) (string, error) {
	if len(v) < 2 || v[len(v)-1] != '"' {
		return "", errQuoted
	}
	var b strings.Builder
	for i := 1; i < len(v)-1; i++ {
		c := v[i]
		switch c {
		case '\\':
			if i+1 >= len(v)-1 {
				return "", errQuoted
			}
			i++
			b.WriteByte(v[i])
		case '"':
			return "", errQuoted
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
