package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/nixport/nixport/storage"
)

// tokenSecretObject is where the token secret is kept in storage.
const tokenSecretObject = "auth/token-secret"

// LoadTokenSecret returns the token secret shared by every instance on
// store, making it on first use: created once (CreateObject), so that of
// instances starting together all end up with the same one.
func LoadTokenSecret(ctx context.Context, store storage.Backend) ([]byte, error) {
	fresh := make([]byte, TokenSecretSize)
	rand.Read(fresh)
	err := store.CreateObject(ctx, tokenSecretObject, fresh)
	if err == nil {
		return fresh, nil
	}
	if !errors.Is(err, storage.ErrExists) {
		return nil, fmt.Errorf("storing the token secret: %w", err)
	}
	secret, err := store.GetObject(ctx, tokenSecretObject)
	if err != nil {
		return nil, fmt.Errorf("reading the token secret: %w", err)
	}
	if len(secret) < TokenSecretSize {
		return nil, fmt.Errorf("the token secret %s in storage is %d bytes, want %d: remove it and restart", tokenSecretObject, len(secret), TokenSecretSize)
	}
	return secret, nil
}
