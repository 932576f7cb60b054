package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
)

// CreateObjectOnce implements Backend.CreateObject for a backend whose
// conditional writes go over the network (GCS, S3), where a create may
// happen though its response is lost: the SDK's retry of it then fails its
// condition, as if another creator had been first. Each create therefore
// stores a token unique to it beside the object (in its metadata), and
// after a failed condition the object's token tells the creator whether
// the object is its own (success) or another's (ErrExists).
//
// create stores the object called name with token, only if it does not
// exist yet, and fails with an error wrapping ErrConditionFailed if it
// does. tokenOf returns the token of the object stored under name, or an
// error wrapping ErrNotFound. Of several concurrent creators, exactly one
// succeeds, as the service's conditional create decides.
func CreateObjectOnce(ctx context.Context, name string, create func(ctx context.Context, token string) error, tokenOf func(ctx context.Context) (string, error)) error {
	if err := ValidObjectName(name); err != nil {
		return err
	}
	token := rand.Text()
	err := create(ctx, token)
	if errors.Is(err, ErrConditionFailed) {
		stored, checkErr := tokenOf(ctx)
		switch {
		case errors.Is(checkErr, ErrNotFound):
			// Removed meanwhile; in any case not ours now.
			return fmt.Errorf("creating object %s: %w", name, ErrExists)
		case checkErr != nil:
			return fmt.Errorf("creating object %s: it exists, but checking whose it is: %w", name, checkErr)
		case stored == token:
			return nil
		default:
			return fmt.Errorf("creating object %s: %w", name, ErrExists)
		}
	}
	if err != nil {
		return fmt.Errorf("creating object %s: %w", name, err)
	}
	return nil
}
