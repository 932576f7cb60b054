// Package parallel runs a list of jobs with a bound on how many run at
// once, stopping the rest at the first failure. Archiving the layers of an
// image and verifying the blobs of an OCI layout both need exactly this,
// and it is easy to get subtly wrong (a goroutine left running, an error
// lost), so it is written once.
package parallel

import (
	"context"
	"sync"
)

// Run runs jobs with at most n at once (n < 1 counts as 1). The first error
// cancels the context the others get and is returned; otherwise Run
// returns ctx's error, if it ended. Run returns only once every job it
// started has returned.
func Run(ctx context.Context, n int, jobs []func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, max(n, 1))
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, job := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := job(ctx); err != nil {
				once.Do(func() { first = err; cancel(err) })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
