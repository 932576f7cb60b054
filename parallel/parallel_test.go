package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestRunBoundsAndStops(t *testing.T) {
	tests := []struct {
		name    string
		n, jobs int
		failAt  int // job index that fails; -1: none
		wantErr bool
	}{
		{"all succeed", 3, 20, -1, false},
		{"one at a time", 1, 5, -1, false},
		{"n below one counts as one", 0, 5, -1, false},
		{"first failure returned", 2, 20, 3, true},
		{"no jobs", 4, 0, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var running, peak, ran atomic.Int32
			boom := errors.New("boom")
			jobs := make([]func(context.Context) error, tt.jobs)
			for i := range jobs {
				jobs[i] = func(ctx context.Context) error {
					r := running.Add(1)
					defer running.Add(-1)
					for {
						p := peak.Load()
						if r <= p || peak.CompareAndSwap(p, r) {
							break
						}
					}
					ran.Add(1)
					if i == tt.failAt {
						return boom
					}
					return nil
				}
			}
			err := Run(context.Background(), tt.n, jobs)
			if tt.wantErr != errors.Is(err, boom) {
				t.Errorf("Run = %v, want boom: %v", err, tt.wantErr)
			}
			if p := peak.Load(); int(p) > max(tt.n, 1) {
				t.Errorf("%d jobs at once, bound %d", p, tt.n)
			}
			if !tt.wantErr && int(ran.Load()) != tt.jobs {
				t.Errorf("%d of %d jobs ran", ran.Load(), tt.jobs)
			}
			if running.Load() != 0 {
				t.Error("Run returned with jobs running")
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ran atomic.Int32
	jobs := []func(context.Context) error{func(context.Context) error { ran.Add(1); return nil }}
	if err := Run(ctx, 1, jobs); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}
