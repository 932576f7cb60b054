package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// siteFiles is the documentation site served at / unless WebDir is set.
//
//go:embed site site/_*.html
var siteFiles embed.FS

// hostPlaceholder in an embedded HTML page is replaced by the host the
// client asked for, so that the examples can be copied as they are.
const hostPlaceholder = "{{HOST}}"

// The embedded pages share their header (with the navigation) and footer:
// these placeholders are replaced once, at start-up, by _header.html and
// _footer.html, the header marking the page's own link as the current one.
// Files whose names start with "_" are such parts, never served; files
// ending in ".tmpl" are the build pages' templates (buildpages.go), never
// served as they are.
const (
	headerPlaceholder = "{{HEADER}}"
	footerPlaceholder = "{{FOOTER}}"
)

// site serves the documentation: the embedded pages, or a directory.
type site struct {
	pages map[string]*page // the embedded site by file name; nil with dir
	dir   *os.Root         // WebDir: every open stays inside it
}

// page is an embedded file, prepared once.
type page struct {
	name         string
	contentType  string
	cacheControl string
	parts        [][]byte // the content split at hostPlaceholder
	hash         string   // of the content, for ETags
}

func newSite(webDir string) (*site, error) {
	if webDir != "" {
		root, err := os.OpenRoot(webDir)
		if err != nil {
			return nil, fmt.Errorf("opening web directory: %w", err)
		}
		return &site{dir: root}, nil
	}
	files, err := fs.Sub(siteFiles, "site")
	if err != nil {
		return nil, fmt.Errorf("embedded site: %w", err)
	}
	contents := map[string][]byte{}
	err = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(path.Base(name), "_") && path.Ext(name) != ".tmpl" {
			contents[name] = data
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded site: %w", err)
	}
	header, footer, err := sharedParts()
	if err != nil {
		return nil, err
	}
	pages := map[string]*page{}
	for name, data := range contents {
		if path.Ext(name) == ".html" {
			data = withSharedParts(name, data, header, footer)
		}
		pages[name] = newPage(name, data)
	}
	if pages["index.html"] == nil || pages["404.html"] == nil {
		return nil, errors.New("embedded site: index.html or 404.html missing")
	}
	return &site{pages: pages}, nil
}

// sharedParts are the embedded header and footer every page shares.
func sharedParts() (header, footer []byte, err error) {
	header, herr := fs.ReadFile(siteFiles, "site/_header.html")
	footer, ferr := fs.ReadFile(siteFiles, "site/_footer.html")
	if herr != nil || ferr != nil {
		return nil, nil, errors.New("embedded site: _header.html or _footer.html missing")
	}
	return bytes.TrimSuffix(header, []byte("\n")), bytes.TrimSuffix(footer, []byte("\n")), nil
}

// withSharedParts puts the shared header and footer into page name.
func withSharedParts(name string, data, header, footer []byte) []byte {
	self := "/" + strings.TrimSuffix(name, ".html")
	if name == "index.html" {
		self = "/"
	}
	own := `<li><a href="` + self + `">`
	header = bytes.Replace(header, []byte(own), []byte(`<li><a href="`+self+`" aria-current="page">`), 1)
	data = bytes.Replace(data, []byte(headerPlaceholder), header, 1)
	return bytes.Replace(data, []byte(footerPlaceholder), footer, 1)
}

func newPage(name string, data []byte) *page {
	sum := sha256.Sum256(data)
	p := &page{
		name:         name,
		contentType:  contentType(name),
		cacheControl: "public, max-age=3600",
		parts:        [][]byte{data},
		hash:         hex.EncodeToString(sum[:8]),
	}
	if path.Ext(name) == ".html" {
		// Pages are revalidated on every visit (a cheap 304), so a new
		// release shows at once.
		p.cacheControl = "no-cache"
		p.parts = bytes.Split(data, []byte(hostPlaceholder))
	}
	return p
}

func contentType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// serve answers a request for the site.
func (s *site) serve(w *responseWriter, r *http.Request) {
	if !isReadMethod(r.Method) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rel := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if s.pages != nil {
		if to, ok := siteRedirects[rel]; ok {
			w.Header().Set("Location", to)
			w.Header().Set("Cache-Control", "public, max-age=86400")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
	}
	if !hidden(rel) && !isNotFoundPage(rel) {
		for _, name := range candidates(rel) {
			if s.dir != nil {
				if s.serveFile(w, r, name) {
					return
				}
			} else if p, ok := s.pages[name]; ok {
				s.servePage(w, r, p, http.StatusOK)
				return
			}
		}
	}
	s.notFound(w, r)
}

// siteRedirects are the embedded site's addresses that answer with a
// redirect: a browser asks for /favicon.ico wherever no page names an icon
// (the JSON of /v2/ and /api/, say), and gets the SVG icon the pages link.
var siteRedirects = map[string]string{"favicon.ico": "/favicon.svg"}

// isNotFoundPage reports whether a clean relative URL path names the 404
// page itself, which answers 404 like any address without a page, so that
// no link checker or crawler takes it for a page that exists.
func isNotFoundPage(rel string) bool {
	return rel == "404" || rel == "404.html"
}

// candidates lists the files a clean relative URL path may name: the file
// itself, the page without its ".html", or a directory's index.
func candidates(rel string) []string {
	if rel == "" {
		return []string{"index.html"}
	}
	return []string{rel, rel + ".html", rel + "/index.html"}
}

// hidden reports whether a path has a component starting with a dot
// (".git", ".env"): a web directory's dot files are never served.
func hidden(rel string) bool {
	for _, c := range strings.Split(rel, "/") {
		if strings.HasPrefix(c, ".") {
			return true
		}
	}
	return false
}

// servePage writes an embedded page with the client's host filled in.
func (s *site) servePage(w *responseWriter, r *http.Request, p *page, status int) {
	body, etag := p.parts[0], `"`+p.hash+`"`
	if len(p.parts) > 1 {
		host := displayHost(r.Host)
		body = bytes.Join(p.parts, []byte(host))
		f := fnv.New64a()
		io.WriteString(f, host)
		etag = `"` + p.hash + "-" + strconv.FormatUint(f.Sum64(), 36) + `"`
	}
	h := w.Header()
	h.Set("Content-Type", p.contentType)
	h.Set("Cache-Control", p.cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	if status != http.StatusOK {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		if !w.head {
			w.Write(body)
		}
		return
	}
	h.Set("Etag", etag)
	http.ServeContent(w, r, p.name, time.Time{}, bytes.NewReader(body))
}

// displayHost is the host name shown in examples: the request's Host if it
// looks like a host (and port), else a placeholder. Nothing else from the
// request reaches a page.
func displayHost(host string) string {
	if host == "" || len(host) > 255 {
		return "HOST"
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']':
		default:
			return "HOST"
		}
	}
	return host
}

// serveFile serves name from the web directory if it is a regular file
// there, and reports whether it did.
func (s *site) serveFile(w *responseWriter, r *http.Request, name string) bool {
	f, err := s.dir.Open(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.err = fmt.Errorf("web directory: %w", err) // logged; the client gets a 404
		}
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	h := w.Header()
	h.Set("Etag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, fi.ModTime(), f)
	return true
}

// notFound answers with the site's 404 page (for a web directory, its
// 404.html if it has one).
func (s *site) notFound(w *responseWriter, r *http.Request) {
	if s.pages != nil {
		s.servePage(w, r, s.pages["404.html"], http.StatusNotFound)
		return
	}
	if data, err := s.dir.ReadFile("404.html"); err == nil {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusNotFound)
		if !w.head {
			w.Write(data)
		}
		return
	}
	http.Error(w, "404 page not found", http.StatusNotFound)
}
