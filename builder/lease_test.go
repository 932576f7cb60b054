package builder

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage/filesystem"
)

// process starts a process of this machine and returns its ID; with dead,
// once it has ended (and been reaped).
func process(t *testing.T, dead bool) procalive.ID {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	id, err := procalive.Of(cmd.Process.Pid)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	if dead {
		stop()
	} else {
		t.Cleanup(stop)
	}
	return id
}

func TestHolderGone(t *testing.T) {
	dead, live := process(t, true), process(t, false)
	other := dead
	other.Space = strings.Repeat("0", len(dead.Space))
	tests := []struct {
		name, holder string
		want         bool
	}{
		{"this instance", newHolderID(), false},
		{"a dead process of this machine", "host/" + dead.String() + "/0123456789ab", true},
		{"a live process of this machine", "host/" + live.String() + "/0123456789ab", false},
		{"another machine's (or pid namespace's)", "host/" + other.String() + "/0123456789ab", false},
		{"an older server's, by pid alone", "host/" + "12345" + "/0123456789ab", false},
		{"not a holder id", dead.String(), false},
		{"too many parts", "host/" + dead.String() + "/x/y", false},
	}
	for _, tt := range tests {
		if got := holderGone(tt.holder); got != tt.want {
			t.Errorf("%s: holderGone(%q) = %v, want %v", tt.name, tt.holder, got, tt.want)
		}
	}
	if id := newHolderID(); !strings.Contains(id, "/"+mustSelf(t).String()+"/") {
		t.Errorf("newHolderID() = %q does not name this process", id)
	}
}

func mustSelf(t *testing.T) procalive.ID {
	t.Helper()
	me, err := procalive.Self()
	if err != nil {
		t.Fatal(err)
	}
	return me
}

// TestLeaseOfADeadInstance: the build lease of an instance of this machine
// that died is taken over at once, where a live instance's is waited for.
func TestLeaseOfADeadInstance(t *testing.T) {
	tests := []struct {
		name     string
		dead     bool
		wantWait bool
	}{
		{"dead holder", true, false},
		{"live holder", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, err := filesystem.New(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			holder := "host/" + process(t, tt.dead).String() + "/0123456789ab"
			if _, err := store.TryLease(t.Context(), leasePrefix+source.Hash("hello:latest"), holder, time.Hour); err != nil {
				t.Fatal(err)
			}
			log, entries := hookedLog()
			src := &countingSource{store: store}
			b, err := New(Options{Storage: store, Source: src, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			result := make(chan error, 1)
			go func() {
				_, _, err := b.ManifestByTag(ctx, "hello", "latest", manifest.OCI)
				result <- err
			}()
			const waiting = "another instance is building this image: waiting for it"
			var seen []string
			for done := false; !done; {
				select {
				case e := <-entries:
					seen = append(seen, e.Message)
					if e.Message == waiting {
						if e.Data["holder"] != holder {
							t.Errorf("waiting for %v, want %s", e.Data["holder"], holder)
						}
						cancel() // it would wait an hour
					}
				case err = <-result:
					done = true
				}
			}
			e, isCode := errcode.As(err)
			waited := errors.Is(err, context.Canceled) || isCode && e.Code == errcode.Unavailable
			switch {
			case tt.wantWait && !waited:
				t.Errorf("a live instance's lease was not waited for: %v; logged %q", err, seen)
			case !tt.wantWait && (err != nil || src.builds.Load() != 1):
				t.Errorf("a dead instance's lease: %v, %d builds; logged %q", err, src.builds.Load(), seen)
			}
			if !tt.wantWait {
				if _, err := store.TryLease(t.Context(), leasePrefix+source.Hash("hello:latest"), "other", time.Hour); err != nil {
					t.Errorf("the lease after the build: %v, want it released", err)
				}
			}
		})
	}
}
