package web

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/logsink"
)

// TestFastLineMatchesLogrus checks that the fast request line is byte for
// byte what logrus's JSONFormatter writes for the same fields.
func TestFastLineMatchesLogrus(t *testing.T) {
	end := time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.FixedZone("X", 3600))
	lines := []requestLine{
		{method: "GET", path: "/v2/", remote: "127.0.0.1:1234", status: 200, bytes: 2, durationMs: 0.012},
		{method: "GET", path: "/v2/shell/git/manifests/latest", remote: "[::1]:5", image: "shell/git", tag: "latest",
			digest: "sha256:" + string(bytes.Repeat([]byte("ab"), 32)), status: 200, bytes: 1234, durationMs: 1.5},
		{method: "HEAD", path: "/v2/a<b>&c/blobs/x", remote: "r", code: "NAME_INVALID", status: 400, durationMs: 0,
			err: errors.New(`bad "name" <a&b> é ` + "\x00\n\t\u2028 \xff")},
		{method: "BREW", path: "/caf\u00e9", status: 500, bytes: 1 << 40, durationMs: 123456.789, err: errors.New("disk\\full")},
		{method: "GET", path: "/", status: 304, durationMs: 0.001},
	}
	formatters := []*logrus.JSONFormatter{
		{},
		{TimestampFormat: time.RFC3339Nano},
		{TimestampFormat: time.RFC3339Nano, DisableHTMLEscape: true},
		{DisableTimestamp: true},
		{TimestampFormat: "Jan _2 15:04:05.000"},
	}
	bases := []logrus.Fields{
		nil,
		{"component": "web", "n": 3, "ok": true, "image": "overridden", "z": errors.New("e<rr")},
	}
	for fi, f := range formatters {
		for bi, base := range bases {
			for li, line := range lines {
				line.end = end
				for _, level := range []logrus.Level{logrus.InfoLevel, logrus.ErrorLevel} {
					want := logrusOutput(f, base, level, &line)
					for _, sink := range []bool{false, true} {
						fast := fastOutput(t, f, base, level, &line, sink)
						if !bytes.Equal(fast, want) {
							t.Errorf("formatter %d, base %d, line %d, %s, logsink %v:\nfast:   %s\nlogrus: %s", fi, bi, li, level, sink, fast, want)
						}
					}
				}
			}
		}
	}
}

// fastOutput runs fastLine into a temporary file, straight or through a
// logsink.Writer, and returns what it wrote.
func fastOutput(t *testing.T, f *logrus.JSONFormatter, base logrus.Fields, level logrus.Level, line *requestLine, sink bool) []byte {
	t.Helper()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	l := logrus.New()
	l.Out = file
	var w *logsink.Writer
	if sink {
		w = logsink.New(file, 0)
		l.Out = w
	}
	l.Formatter = f
	var log logrus.FieldLogger = l
	if base != nil {
		log = l.WithFields(base)
	}
	if !fastLine(log, level, line) {
		t.Fatal("fast path not taken")
	}
	if w != nil {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// logrusOutput is the line through logrus, as logRequest writes it when
// the fast path does not apply.
func logrusOutput(f *logrus.JSONFormatter, base logrus.Fields, level logrus.Level, line *requestLine) []byte {
	var buf bytes.Buffer
	l := logrus.New()
	l.Out = &buf
	l.Formatter = f
	var log logrus.FieldLogger = l
	if base != nil {
		log = l.WithFields(base)
	}
	entry := log.WithFields(line.fields()).WithTime(line.end)
	if line.err != nil {
		entry = entry.WithError(line.err)
	}
	entry.Log(level, "request")
	return buf.Bytes()
}

type nopHook struct{}

func (nopHook) Levels() []logrus.Level   { return logrus.AllLevels }
func (nopHook) Fire(*logrus.Entry) error { return nil }

// TestFastLineFallsBack checks that everything the fast path does not
// reproduce goes through logrus.
func TestFastLineFallsBack(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	line := &requestLine{method: "GET", path: "/", status: 200, end: time.Now()}
	plain := func() *logrus.Logger {
		l := logrus.New()
		l.Out = file
		l.Formatter = &logrus.JSONFormatter{}
		return l
	}
	cases := map[string]logrus.FieldLogger{
		"text formatter": func() logrus.FieldLogger { l := plain(); l.Formatter = &logrus.TextFormatter{}; return l }(),
		"buffer output":  func() logrus.FieldLogger { l := plain(); l.Out = &bytes.Buffer{}; return l }(),
		"hook":           func() logrus.FieldLogger { l := plain(); l.AddHook(nopHook{}); return l }(),
		"report caller":  func() logrus.FieldLogger { l := plain(); l.ReportCaller = true; return l }(),
		"field map": func() logrus.FieldLogger {
			l := plain()
			l.Formatter = &logrus.JSONFormatter{FieldMap: logrus.FieldMap{logrus.FieldKeyMsg: "message"}}
			return l
		}(),
		"data key": func() logrus.FieldLogger {
			l := plain()
			l.Formatter = &logrus.JSONFormatter{DataKey: "data"}
			return l
		}(),
		"pretty": func() logrus.FieldLogger {
			l := plain()
			l.Formatter = &logrus.JSONFormatter{PrettyPrint: true}
			return l
		}(),
		"clashing field":   plain().WithField("msg", "x"),
		"unsupported type": plain().WithField("s", struct{ A int }{1}),
		"entry with time":  plain().WithTime(time.Now()),
	}
	for name, log := range cases {
		if fastLine(log, logrus.InfoLevel, line) {
			t.Errorf("%s: fast path taken", name)
		}
	}
	if fi, _ := file.Stat(); fi.Size() != 0 {
		t.Errorf("%d bytes written by refused fast paths", fi.Size())
	}
}
