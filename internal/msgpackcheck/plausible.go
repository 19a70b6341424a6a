// Package msgpackcheck checks msgpack input before msgpack's decoder sees
// it: the envelope's decoder (package message) and the default codec of
// typed handlers both read what a broker delivered.
package msgpackcheck

import "encoding/binary"

// Plausible reports whether data begins with one complete msgpack value
// whose every length fits in the bytes that follow it, nested at most
// maxDepth deep. Only such input reaches msgpack's decoder, which
// allocates what a byte string, a map or an array claims before reading
// it: a corrupt row or a hostile delivery claiming four billion entries
// in five bytes would otherwise exhaust memory. Input that fails the check
// cannot decode anyway (it ends before what it claims), except values
// nested deeper than maxDepth, which the codec refuses.
func Plausible(data []byte) bool {
	_, ok := scan(data, 0)
	return ok
}

const maxDepth = 256

// lengthSize is the size of the length that follows a code of a string,
// binary, extension, array or map (0: not such a code).
func lengthSize(c byte) int {
	switch c {
	case 0xc4, 0xc7, 0xd9:
		return 1
	case 0xc5, 0xc8, 0xda, 0xdc, 0xde:
		return 2
	case 0xc6, 0xc9, 0xdb, 0xdd, 0xdf:
		return 4
	}
	return 0
}

// fixedSize is the size of what follows a code of a number or of a
// fixed-size extension, its type byte included (0: not such a code).
func fixedSize(c byte) int {
	switch c {
	case 0xcc, 0xd0:
		return 1
	case 0xcd, 0xd1, 0xd4:
		return 2
	case 0xd5:
		return 3
	case 0xca, 0xce, 0xd2:
		return 4
	case 0xd6:
		return 5
	case 0xcb, 0xcf, 0xd3:
		return 8
	case 0xd7:
		return 9
	case 0xd8:
		return 17
	}
	return 0
}

// scan skips one value and returns what follows it.
func scan(b []byte, depth int) ([]byte, bool) {
	if len(b) == 0 || depth > maxDepth {
		return nil, false
	}
	c, b := b[0], b[1:]
	// n is a string's, binary's or extension's byte count (ext: plus its
	// type byte); items is a container's count of values (a map's: two
	// per entry).
	n, items := 0, -1
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
	case c >= 0x80 && c <= 0x8f:
		items = 2 * int(c&0x0f)
	case c >= 0x90 && c <= 0x9f:
		items = int(c & 0x0f)
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	default:
		if size := lengthSize(c); size > 0 {
			if len(b) < size {
				return nil, false
			}
			var l uint64
			switch size {
			case 1:
				l = uint64(b[0])
			case 2:
				l = uint64(binary.BigEndian.Uint16(b))
			case 4:
				l = uint64(binary.BigEndian.Uint32(b))
			}
			b = b[size:]
			if l > uint64(len(b)) {
				return nil, false
			}
			switch {
			case c == 0xdc || c == 0xdd:
				items = int(l)
			case c == 0xde || c == 0xdf:
				items = 2 * int(l)
			case c >= 0xc7 && c <= 0xc9:
				n = int(l) + 1
			default:
				n = int(l)
			}
			break
		}
		n = fixedSize(c)
		if n == 0 { // 0xc1, never used
			return nil, false
		}
	}
	if n > len(b) || items > len(b) {
		return nil, false
	}
	b = b[n:]
	for range max(items, 0) {
		var ok bool
		if b, ok = scan(b, depth+1); !ok {
			return nil, false
		}
	}
	return b, true
}
