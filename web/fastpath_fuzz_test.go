package web

import (
	"bufio"
	"bytes"
	"net/http"
	"slices"
	"testing"
)

// FuzzParseHead holds the fast path's request parsing to net/http's on
// arbitrary client bytes: whatever the fast path accepts, net/http must
// read as the same request (method, path, Host, Accept, If-None-Match),
// with no body, no query and no wish to close. What it refuses goes to
// net/http anyway, so refusing is always safe; accepting wrongly is the
// bug this looks for. The seed corpus is in testdata/fuzz/FuzzParseHead.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), headBufSize)
		head, err := readHead(br)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(data, head) {
			t.Fatalf("readHead returned %q, not a prefix of the input", head)
		}
		var req fastRequest
		if !parseHead(head, &req) {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("fast path accepted %q, net/http refuses it: %v", head, err)
		}
		method := "GET"
		if req.head {
			method = "HEAD"
		}
		switch {
		case r.Method != method:
			t.Fatalf("%q: method %q, net/http %q", head, method, r.Method)
		case r.URL.Path != req.path || r.URL.RawQuery != "" || r.URL.RawPath != "" || r.RequestURI != req.path:
			t.Fatalf("%q: path %q, net/http %q (query %q)", head, req.path, r.URL.Path, r.URL.RawQuery)
		case r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close:
			t.Fatalf("%q: net/http reads %s, close=%v", head, r.Proto, r.Close)
		case r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.Body != http.NoBody:
			t.Fatalf("%q: net/http sees a body (length %d, %v)", head, r.ContentLength, r.TransferEncoding)
		case r.Host == "":
			t.Fatalf("%q: net/http sees no Host", head)
		case !slices.Equal(r.Header.Values("Accept"), req.accept):
			t.Fatalf("%q: Accept %q, net/http %q", head, req.accept, r.Header.Values("Accept"))
		case !slices.Equal(r.Header.Values("If-None-Match"), req.ifNoneMatch):
			t.Fatalf("%q: If-None-Match %q, net/http %q", head, req.ifNoneMatch, r.Header.Values("If-None-Match"))
		}
	})
}
