package nix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/bytesize"
	"github.com/nixport/nixport/procrun"
)

// StoreUsage is how much the Nix store holds.
type StoreUsage struct {
	// Bytes is the sum of the NAR sizes of the valid paths: what they
	// take unpacked, before hard-linking of identical files and the
	// file system's block overhead.
	Bytes int64
	// Paths is the number of valid paths.
	Paths int
}

// StoreSize measures the Nix store in one nix path-info --all --json call,
// read as it streams (the output of a large store is tens of megabytes:
// it is never held whole). Its cost grows with the number of paths: about
// 40 µs each, mostly Nix reading its database. The process is not counted
// among the builds' (ProcessCount).
func (d *Driver) StoreSize(ctx context.Context) (StoreUsage, error) {
	log := d.log.WithField("op", "store-size")
	pr, pw := io.Pipe()
	type decoded struct {
		u   StoreUsage
		err error
	}
	done := make(chan decoded, 1)
	go func() {
		u, err := decodeStoreUsage(pr)
		// Whatever follows an error is read and dropped, so that the
		// process never blocks writing.
		io.Copy(io.Discard, pr)
		done <- decoded{u, err}
	}()
	r, err := d.execCmd(ctx, log, "gc", procrun.Cmd{
		Argv:   []string{"nix", "path-info", "--all", "--json"},
		Stdout: pw,
	})
	pw.Close()
	dec := <-done
	if err != nil {
		return StoreUsage{}, err
	}
	if r.ExitCode != 0 {
		return StoreUsage{}, fmt.Errorf("nix: measuring the store: nix path-info exited with code %d: %s", r.ExitCode, firstError(r.Tail))
	}
	if dec.err != nil {
		return StoreUsage{}, fmt.Errorf("nix: measuring the store: reading nix path-info: %w", dec.err)
	}
	return dec.u, nil
}

// storePathSize is what StoreSize reads of an entry of nix path-info
// --json.
type storePathSize struct {
	NarSize *int64 `json:"narSize"`
	Valid   *bool  `json:"valid"`
}

// decodeStoreUsage sums the NAR sizes in nix path-info --json output,
// entry by entry: a JSON array of objects (Nix up to 2.18), or an object
// keyed by store path (Nix 2.19 and later, where an invalid path's value
// is null). Invalid paths are not counted; a valid one without a size is
// an error, as is anything after the value.
func decodeStoreUsage(r io.Reader) (StoreUsage, error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return StoreUsage{}, err
	}
	var u StoreUsage
	add := func(e *storePathSize) error {
		if e == nil || (e.Valid != nil && !*e.Valid) {
			return nil
		}
		if e.NarSize == nil || *e.NarSize < 0 {
			return errors.New("an entry has no narSize")
		}
		if *e.NarSize > 1<<62-u.Bytes {
			return errors.New("the sizes add up past 4 EiB")
		}
		u.Bytes += *e.NarSize
		u.Paths++
		return nil
	}
	switch tok {
	case json.Delim('['):
		for dec.More() {
			var e storePathSize
			if err := dec.Decode(&e); err != nil {
				return StoreUsage{}, err
			}
			if err := add(&e); err != nil {
				return StoreUsage{}, err
			}
		}
	case json.Delim('{'):
		for dec.More() {
			if _, err := dec.Token(); err != nil { // the path
				return StoreUsage{}, err
			}
			var e *storePathSize
			if err := dec.Decode(&e); err != nil {
				return StoreUsage{}, err
			}
			if err := add(e); err != nil {
				return StoreUsage{}, err
			}
		}
	default:
		return StoreUsage{}, fmt.Errorf("unexpected %v at the start", tok)
	}
	if _, err := dec.Token(); err != nil { // the closing ] or }
		return StoreUsage{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return StoreUsage{}, errors.New("more after the value")
	}
	return u, nil
}

// Collected is what a garbage collection deleted.
type Collected struct {
	Paths int
	// Bytes freed, as Nix reports them (in hundredths of a MiB).
	Bytes int64
}

// CollectGarbage runs nix-store --gc --max-freed maxFreed: Nix deletes
// store paths that nothing roots until more than maxFreed bytes are freed
// (or nothing is left to delete). A path a build needs is rooted (see
// gcroots.go), so it is never deleted. The process runs under the
// driver's deadline (NIX_TIMEOUT) and stops with ctx; a collection
// stopped half-way leaves the store consistent. It is not counted among
// the builds' processes.
func (d *Driver) CollectGarbage(ctx context.Context, maxFreed int64) (Collected, error) {
	if maxFreed < 1 {
		return Collected{}, fmt.Errorf("nix: collecting garbage: max-freed %d is not positive", maxFreed)
	}
	log := d.log.WithFields(logrus.Fields{"op": "gc", "max_freed": maxFreed})
	r, err := d.execCmd(ctx, log, "gc", procrun.Cmd{
		Argv: []string{"nix-store", "--gc", "--max-freed", strconv.FormatInt(maxFreed, 10)},
	})
	if err != nil {
		return Collected{}, err
	}
	if r.ExitCode != 0 {
		return Collected{}, fmt.Errorf("nix: collecting garbage: nix-store --gc exited with code %d: %s", r.ExitCode, firstError(r.Tail))
	}
	c, err := parseGCReport(string(r.Stdout))
	if err != nil {
		return Collected{}, fmt.Errorf("nix: collecting garbage: %w", err)
	}
	return c, nil
}

// gcReport is nix-store --gc's last line: "12 store paths deleted, 3.45
// MiB freed".
var gcReport = regexp.MustCompile(`^(\d+) store paths? deleted, (\d+(?:\.\d+)? ?[A-Za-z]*) freed$`)

// parseGCReport reads what nix-store --gc prints on stdout: the report,
// after the deleted paths when Nix lists them there.
func parseGCReport(stdout string) (Collected, error) {
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	m := gcReport.FindStringSubmatch(last)
	if m == nil {
		return Collected{}, fmt.Errorf("no report of what was freed in nix-store's output (last line %.100q)", last)
	}
	paths, err := strconv.Atoi(m[1])
	if err != nil {
		return Collected{}, fmt.Errorf("the number of paths deleted %q: %w", m[1], err)
	}
	freed, err := bytesize.Parse(m[2])
	if err != nil {
		return Collected{}, fmt.Errorf("the bytes freed: %w", err)
	}
	return Collected{Paths: paths, Bytes: freed}, nil
}
