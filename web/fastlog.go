package web

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/logsink"
)

// The request line is written on every request, so it has a fast path.
// logrus's JSONFormatter copies the fields into maps three times and
// encodes them by reflection, which costs several times more than serving
// a warm manifest. When the logger is a plain one writing JSON to a file or
// a logsink.Writer (what cmd/nixport sets up: stderr through a logsink),
// fastLine writes the very bytes JSONFormatter would (same keys in the same
// sorted order, same escaping, same time format) in one Write. Anything else
// (hooks, caller reporting, a field map, another formatter or writer)
// takes logrus's own path; the tests check both give the same line.

// lineBuf holds a request line being assembled; pooled.
type lineBuf struct {
	scratch []byte // the encoded values
	out     []byte // the line
	spans   []span
}

// span is one field: its key and where its encoded value is in scratch.
// Offsets, not slices, because scratch may move as it grows.
type span struct {
	key      string
	from, to int
}

var linePool = sync.Pool{New: func() any {
	return &lineBuf{scratch: make([]byte, 0, 512), out: make([]byte, 0, 512), spans: make([]span, 0, 24)}
}}

// fastTarget returns what the fast path needs from log, or ok false if the
// line must go through logrus.
func fastTarget(log logrus.FieldLogger, level logrus.Level) (f *logrus.JSONFormatter, out io.Writer, base logrus.Fields, ok bool) {
	var l *logrus.Logger
	switch v := log.(type) {
	case *logrus.Logger:
		l = v
	case *logrus.Entry:
		if !v.Time.IsZero() || v.Context != nil {
			return nil, nil, nil, false
		}
		l, base = v.Logger, v.Data
	default:
		return nil, nil, nil, false
	}
	f, isJSON := l.Formatter.(*logrus.JSONFormatter)
	// Both writers take concurrent Writes whole, so the fast path needs
	// no lock of logrus's.
	switch l.Out.(type) {
	case *os.File, *logsink.Writer:
	default:
		return nil, nil, nil, false
	}
	if !isJSON || l.ReportCaller || len(l.Hooks[level]) > 0 ||
		f.DataKey != "" || len(f.FieldMap) > 0 || f.PrettyPrint {
		return nil, nil, nil, false
	}
	return f, l.Out, base, true
}

// fastLine writes the request line if the fast path applies, and reports
// whether it did.
func fastLine(log logrus.FieldLogger, level logrus.Level, line *requestLine) bool {
	f, out, base, ok := fastTarget(log, level)
	if !ok {
		return false
	}
	b := linePool.Get().(*lineBuf)
	defer linePool.Put(b)
	b.scratch, b.out, b.spans = b.scratch[:0], b.out[:0], b.spans[:0]
	html := !f.DisableHTMLEscape

	for k, v := range base {
		if line.has(k) {
			continue // the request's own field wins, as with WithFields
		}
		if k == logrus.FieldKeyTime || k == logrus.FieldKeyMsg || k == logrus.FieldKeyLevel {
			return false // JSONFormatter renames clashing fields; leave that to it
		}
		from := len(b.scratch)
		var ok bool
		if b.scratch, ok = appendJSONValue(b.scratch, v, html); !ok {
			return false
		}
		b.mark(k, from)
	}

	// In the sorted order of the keys, which is how encoding/json writes
	// a map.
	b.integer("bytes", line.bytes)
	b.str("code", line.code, html)
	b.str("digest", line.digest, html)
	from := len(b.scratch)
	if b.scratch, ok = appendJSONFloat(b.scratch, line.durationMs); !ok {
		return false
	}
	b.mark("duration_ms", from)
	if line.err != nil {
		b.str(logrus.ErrorKey, line.err.Error(), html)
	}
	b.str("image", line.image, html)
	b.str(logrus.FieldKeyLevel, level.String(), html)
	b.always("method", line.method, html)
	b.str(logrus.FieldKeyMsg, "request", html)
	b.always("path", line.path, html)
	b.always("remote", line.remote, html)
	b.integer("status", int64(line.status))
	b.str("tag", line.tag, html)
	if !f.DisableTimestamp {
		format := f.TimestampFormat
		if format == "" {
			format = time.RFC3339 // logrus's default
		}
		from := len(b.scratch)
		b.scratch = append(b.scratch, '"')
		b.scratch = line.end.AppendFormat(b.scratch, format)
		if !jsonSafe(b.scratch[from+1:], html) {
			return false
		}
		b.scratch = append(b.scratch, '"')
		b.mark(logrus.FieldKeyTime, from)
	}
	if len(base) > 0 {
		slices.SortFunc(b.spans, func(x, y span) int { return strings.Compare(x.key, y.key) })
	}

	b.out = append(b.out, '{')
	for i, s := range b.spans {
		if i > 0 {
			b.out = append(b.out, ',')
		}
		b.out = appendJSONString(b.out, s.key, html)
		b.out = append(b.out, ':')
		b.out = append(b.out, b.scratch[s.from:s.to]...)
	}
	b.out = append(b.out, '}', '\n')
	out.Write(b.out) // one Write, so lines never interleave
	return true
}

func (b *lineBuf) mark(key string, from int) {
	b.spans = append(b.spans, span{key, from, len(b.scratch)})
}

// str adds a string field, unless it is empty.
func (b *lineBuf) str(key, v string, html bool) {
	if v != "" {
		b.always(key, v, html)
	}
}

// always adds a string field, even an empty one.
func (b *lineBuf) always(key, v string, html bool) {
	from := len(b.scratch)
	b.scratch = appendJSONString(b.scratch, v, html)
	b.mark(key, from)
}

func (b *lineBuf) integer(key string, v int64) {
	from := len(b.scratch)
	b.scratch = strconv.AppendInt(b.scratch, v, 10)
	b.mark(key, from)
}

// appendJSONValue encodes v as encoding/json would, for the types request
// lines hold; ok is false for any other type.
func appendJSONValue(dst []byte, v any, html bool) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		return appendJSONString(dst, v, html), true
	case error:
		return appendJSONString(dst, v.Error(), html), true
	case int:
		return strconv.AppendInt(dst, int64(v), 10), true
	case int64:
		return strconv.AppendInt(dst, v, 10), true
	case bool:
		return strconv.AppendBool(dst, v), true
	case float64:
		return appendJSONFloat(dst, v)
	}
	return dst, false
}

// appendJSONFloat encodes v as encoding/json would, within the range where
// that is plain decimal notation; ok is false outside it.
func appendJSONFloat(dst []byte, v float64) ([]byte, bool) {
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) || math.IsNaN(v) || math.IsInf(v, 0) {
		return dst, false
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64), true
}

// appendJSONString quotes s. Plain text is copied as it is; anything that
// needs escaping goes through encoding/json, so the result is identical.
func appendJSONString(dst []byte, s string, html bool) []byte {
	if jsonSafe(s, html) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(html)
	enc.Encode(s) // a string cannot fail
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// plainJSON[c] is set for the bytes that need no escaping in a JSON string
// (printable ASCII but '"' and '\'); plainJSONHTML also excludes <, > and &,
// which encoding/json escapes by default.
var plainJSON, plainJSONHTML [256]bool

func init() {
	for c := 0x20; c < 0x80; c++ {
		plainJSON[c] = c != '"' && c != '\\'
		plainJSONHTML[c] = plainJSON[c] && c != '<' && c != '>' && c != '&'
	}
}

// jsonSafe reports whether s needs no escaping in a JSON string.
func jsonSafe[T string | []byte](s T, html bool) bool {
	table := &plainJSON
	if html {
		table = &plainJSONHTML
	}
	for i := 0; i < len(s); i++ {
		if !table[s[i]] {
			return false
		}
	}
	return true
}
