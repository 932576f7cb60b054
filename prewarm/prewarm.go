// Package prewarm is "nixport prewarm": the client that builds images
// before anyone pulls them. It reads a list of image references, starts
// each image's build on a nixport server through the build status API
// (POST /api/builds), follows every build (GET /api/builds/{id}) until it
// is done or failed, and exits non-zero with the failures and their
// messages if any image could not be built. A CI pipeline runs it before
// the jobs that pull those images, so that no job waits on a build, or
// gives up waiting on one.
//
// It needs nothing but the standard library and the server's JSON: the
// build's fields are those of buildstatus.Status, the errors OCI error bodies.
// On a terminal it redraws a progress line per image; elsewhere (CI logs)
// it prints a line per change of state.
package prewarm

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultServer is the server prewarm talks to unless -server or
// NIXPORT_SERVER names another: a nixport on this machine, on its default
// port.
const DefaultServer = "http://127.0.0.1:8080"

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // an image was not built
	exitUsage  = 2 // a wrong flag, server URL or input line
)

const usage = `Usage: nixport prewarm [-server URL] [-timeout DURATION] FILE

Builds images before anyone pulls them. prewarm reads image references from
FILE ("-" for standard input), one per line, starts each image's build on a
nixport server through its build API (POST /api/builds), and waits until
every one is built:

    # the images the CI jobs pull
    shell/git/htop:latest
    shell/hello              # no tag: latest

Blank lines and "#" comments are ignored. An invalid line stops prewarm
before any build starts; every invalid line is reported with its number.
An image already built is answered at once, and a build already running
is joined, not started again.

On a terminal each image has a progress line, redrawn in place: its state
(queued, resolving, realising, archiving, done, failed), the time since
prewarm asked, the store paths and layers done and the bytes compressed.
Otherwise (CI logs) a line is printed each time an image's state changes.
A network error or an overloaded server is retried a few times, and said
so. Builds go on on the server if prewarm stops early.

Exit status: 0 when every image is built; 1 when any is not (each failure
is listed with its message), or -timeout passed; 2 for a wrong flag or
an invalid line.

Flags:
  -h	show this help
`

// Main runs "nixport prewarm" with args (what follows "prewarm" on the
// command line) and returns the exit status. SIGINT or SIGTERM stop it
// early; a second one ends the process at once.
func Main(args []string) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			signal.Stop(sigs)
			cancel(errInterrupted)
		case <-ctx.Done():
		}
	}()
	c := &cli{
		stdin:      os.Stdin,
		stdout:     os.Stdout,
		stderr:     os.Stderr,
		getenv:     os.Getenv,
		tty:        isTerminal(os.Stdout),
		termSize:   func() (int, int) { return terminalSize(os.Stdout) },
		interval:   time.Second,
		retries:    4,
		retryDelay: time.Second,
		now:        time.Now,
	}
	return c.run(ctx, args)
}

// isTerminal reports whether f is a terminal that can redraw a line.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// cli is one run of the command, with everything it touches.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	tty            bool // stdout redraws lines in place
	termSize       func() (cols, rows int)
	interval       time.Duration // between two polls of a build
	retries        int           // transient failures tolerated in a row
	retryDelay     time.Duration // before the first retry
	now            func() time.Time
}

func (c *cli) run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("nixport prewarm", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	server := fs.String("server", "", "the nixport server's `URL` (env NIXPORT_SERVER, default "+DefaultServer+")")
	var timeout durationFlag
	fs.Var(&timeout, "timeout", "give up waiting after this `duration` (\"30m\", or seconds); the builds go on (default none)")
	fs.Usage = func() {
		fmt.Fprint(c.stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.errorf("want one FILE (- for standard input), after the flags; see nixport prewarm -h")
		return exitUsage
	}
	base, err := c.serverURL(*server)
	if err != nil {
		c.errorf("%v", err)
		return exitUsage
	}
	file := fs.Arg(0)
	refs, err := c.read(file)
	if err != nil {
		c.errorf("%v", err)
		return exitUsage
	}
	if len(refs) == 0 {
		c.errorf("%s names no image: nothing to do", displayName(file))
		return exitOK
	}

	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(timeout), fmt.Errorf("%w after %s", errTimeout, time.Duration(timeout)))
		defer cancel()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// However many images, a few connections: the server builds a few
	// at a time anyway, and bounds the connections of one client.
	tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 8, 8
	r := &runner{
		c: &client{
			base:    base,
			http:    &http.Client{Transport: tr},
			retries: c.retries,
			delay:   c.retryDelay,
		},
		interval: c.interval,
		now:      c.now,
		out:      &plain{w: c.stdout, heartbeat: time.Minute},
	}
	if c.tty {
		r.out = &live{w: c.stdout, size: c.terminalSize}
	}
	fmt.Fprintf(c.stdout, "prewarming %d image%s on %s\n", len(refs), plural(len(refs)), strings.TrimSuffix(base.Redacted(), "/"))
	began := c.now()
	items := r.run(ctx, refs)
	return c.summary(file, items, c.now().Sub(began))
}

// summary tells how it went, and returns the exit status: the failures,
// each with its whole message, on standard error.
func (c *cli) summary(file string, items []*item, took time.Duration) int {
	var failed []*item
	already := 0
	for _, it := range items {
		switch {
		case it.failed != "":
			failed = append(failed, it)
		case it.built:
			already++
		}
	}
	if len(failed) == 0 {
		fmt.Fprintf(c.stdout, "%d image%s ready in %s", len(items), plural(len(items)), took.Round(time.Second))
		if already > 0 {
			fmt.Fprintf(c.stdout, " (%d built already)", already)
		}
		fmt.Fprintln(c.stdout)
		return exitOK
	}
	var b strings.Builder
	fmt.Fprintf(&b, "nixport prewarm: %d of %d image%s not built:\n", len(failed), len(items), plural(len(items)))
	for _, it := range failed {
		where := []string{fmt.Sprintf("%s:%d", displayName(file), it.ref.Line)}
		if it.st.ID != "" {
			where = append(where, "build "+it.st.ID)
		}
		if it.st.RequestID != "" {
			where = append(where, "request "+it.st.RequestID)
		}
		fmt.Fprintf(&b, "  %s (%s):\n", it.ref, strings.Join(where, ", "))
		for l := range strings.SplitSeq(strings.TrimRight(it.failed, "\n"), "\n") {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	io.WriteString(c.stderr, b.String())
	return exitFailed
}

// read reads the references of file, or of standard input for "-".
func (c *cli) read(file string) ([]Ref, error) {
	in := c.stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	return readRefs(displayName(file), in)
}

func displayName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

// serverURL is the server's base URL: the flag's, NIXPORT_SERVER's or the
// default. A path is kept (a server behind a proxy under a prefix).
func (c *cli) serverURL(flagValue string) (*url.URL, error) {
	v, name := DefaultServer, ""
	if e := c.getenv("NIXPORT_SERVER"); e != "" {
		v, name = e, "NIXPORT_SERVER"
	}
	if flagValue != "" {
		v, name = flagValue, "-server"
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid %s=%q: want http://HOST[:PORT] or https://HOST[:PORT]", name, v)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// terminalSize is the size of the terminal: COLUMNS and LINES if set,
// else what the terminal says, else 80 by 24; never less than 20 by 3.
func (c *cli) terminalSize() (cols, rows int) {
	if c.termSize != nil {
		cols, rows = c.termSize()
	}
	if n, err := strconv.Atoi(c.getenv("COLUMNS")); err == nil && n > 0 {
		cols = n
	}
	if n, err := strconv.Atoi(c.getenv("LINES")); err == nil && n > 0 {
		rows = n
	}
	if cols <= 0 {
		cols = 80
	}
	if rows <= 0 {
		rows = 24
	}
	return max(cols, 20), max(rows, 3)
}

func (c *cli) errorf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "nixport prewarm: "+format+"\n", args...)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// durationFlag is a duration given as Go writes one ("90s", "30m") or as
// whole seconds, as nixport's other settings are.
type durationFlag time.Duration

func (d *durationFlag) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}

func (d *durationFlag) Set(s string) error {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		*d = durationFlag(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return errors.New(`want a duration such as "30m" or "90s", or seconds`)
	}
	*d = durationFlag(v)
	return nil
}
