package apiv1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// protojsonPos finds the position that protojson puts in its syntax and type errors.
var protojsonPos = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// withJSONPath prefixes a protojson error about js with the path of the field it is about,
// e.g. "clusters[0].connect_timeout". protojson only gives a line and column, which mean
// nothing to a user when js was produced from a TypedStruct rather than written by them.
func withJSONPath(js []byte, err error) error {
	m := protojsonPos.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	if path := jsonPathAt(js, byteOffset(js, line, col)); path != "" {
		return fmt.Errorf("%s: %w", path, err)
	}
	return err
}

// byteOffset converts protojson's 1-based line and rune column to a byte offset in js.
func byteOffset(js []byte, line, col int) int {
	off := 0
	for ; line > 1; line-- {
		i := bytes.IndexByte(js[off:], '\n')
		if i < 0 {
			return len(js)
		}
		off += i + 1
	}
	for ; col > 1 && off < len(js); col-- {
		_, size := utf8.DecodeRune(js[off:])
		off += size
	}
	return off
}

// jsonPathAt returns the path ("a.b[2].c") of the key or value that starts at byte offset
// off of js, or "" if js cannot be scanned that far.
func jsonPathAt(js []byte, off int) string {
	type frame struct {
		object    bool
		key       string
		index     int
		expectKey bool
	}
	var stack []frame
	path := func() string {
		var b []byte
		for _, f := range stack {
			if f.object {
				if len(b) > 0 {
					b = append(b, '.')
				}
				b = append(b, f.key...)
			} else {
				b = fmt.Appendf(b, "[%d]", f.index)
			}
		}
		return string(b)
	}
	// valueDone moves the enclosing container past the value just read.
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].expectKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		past := dec.InputOffset() > int64(off)
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if past {
					return path()
				}
				stack = append(stack, frame{object: t == '{', expectKey: true})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
				stack[n-1].key, stack[n-1].expectKey = t, false
				if past {
					return path()
				}
				continue
			}
			if past {
				return path()
			}
			valueDone()
		default:
			if past {
				return path()
			}
			valueDone()
		}
	}
}
