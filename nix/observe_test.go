package nix

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/testkit"
)

// recordingObserver keeps what it heard.
type recordingObserver struct {
	mu    sync.Mutex
	out   bytes.Buffer
	paths [][2]int
}

func (r *recordingObserver) Output(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out.Write(p)
}

func (r *recordingObserver) Paths(done, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paths = append(r.paths, [2]int{done, total})
}

// TestObserverHearsTheRealisation builds packages new to the store and
// checks the observer heard Nix's log and the paths counted up to all
// done.
func TestObserverHearsTheRealisation(t *testing.T) {
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: testkit.FreshPackageSet(t)}})
	obs := &recordingObserver{}
	ctx := WithObserver(context.Background(), obs)
	img, err := d.Build(ctx, LatestTag, hostSystem, []string{"hello", "deep"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if !strings.Contains(obs.out.String(), "building '/nix/store/") {
		t.Errorf("the observer did not hear the build log: %q", obs.out.String())
	}
	if len(obs.paths) < 2 {
		t.Fatalf("paths reported %v, want the count to move", obs.paths)
	}
	last := obs.paths[len(obs.paths)-1]
	if last[0] != last[1] || last[1] < 2 {
		t.Errorf("last report %v, want all of at least 2 paths done", last)
	}
	for i, p := range obs.paths {
		if p[0] > p[1] {
			t.Errorf("report %d: %d done of %d", i, p[0], p[1])
		}
		if i > 0 && p[0] < obs.paths[i-1][0] {
			t.Errorf("report %d: done went back from %d to %d", i, obs.paths[i-1][0], p[0])
		}
	}
}

func TestObservationCountsLines(t *testing.T) {
	obs := &recordingObserver{}
	w := &logWriter{ob: &observation{o: obs}}
	log := "these 3 derivations will be built:\n  /nix/store/a.drv\n  /nix/store/b.drv\n  /nix/store/c.drv\n" +
		"this path will be fetched (0.1 MiB download):\n  /nix/store/d\n" +
		"copying path '/nix/store/d' from 'https://cache'...\nbuilding '/nix/store/a.drv'...\nbuil"
	// Written in pieces, as a pipe delivers it.
	for i := 0; i < len(log); i += 7 {
		w.Write([]byte(log[i:min(i+7, len(log))]))
	}
	w.Write([]byte("ding '/nix/store/b.drv'...\n"))
	w.ob.realised()
	want := [][2]int{{0, 3}, {0, 4}, {0, 4}, {1, 4}, {2, 4}, {4, 4}}
	if fmt.Sprint(obs.paths) != fmt.Sprint(want) {
		t.Errorf("reports %v, want %v", obs.paths, want)
	}
	if obs.out.String() != log+"ding '/nix/store/b.drv'...\n" {
		t.Error("the output was not passed on whole")
	}
}
