package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"

	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/nixport/nixport/storage"
)

// objectKey returns the object name in the bucket of a valid object name.
func objectKey(name string) string { return objectPrefix + name }

// PutObject implements storage.Backend. GCS replaces an object atomically:
// a reader sees the old or the new value, whole.
func (b *Backend) PutObject(ctx context.Context, name string, data []byte) error {
	if err := storage.ValidObjectName(name); err != nil {
		return err
	}
	if _, err := b.writeSmall(ctx, smallWrite{key: objectKey(name), data: data}); err != nil {
		return fmt.Errorf("storing object %s: %w", name, err)
	}
	return nil
}

// CreateObject implements storage.Backend, with a DoesNotExist
// precondition: of several concurrent creators, exactly one succeeds. A
// creator whose write went through but whose response was lost sees a 412
// on the retry; the token in the object's metadata tells it the object is
// its own (storage.CreateObjectOnce).
func (b *Backend) CreateObject(ctx context.Context, name string, data []byte) error {
	key := objectKey(name)
	create := func(ctx context.Context, token string) error {
		_, err := b.writeSmall(ctx, smallWrite{
			key:      key,
			data:     data,
			conds:    &gstorage.Conditions{DoesNotExist: true},
			metadata: map[string]string{metaToken: token},
		})
		return conditionErr(err)
	}
	// tokenOf reads the token of the object's current generation.
	tokenOf := func(ctx context.Context) (string, error) {
		ctx, cancel := b.opContext(ctx)
		defer cancel()
		attrs, err := b.bucket.Object(key).Attrs(ctx)
		if err != nil {
			return "", storageErr(err)
		}
		return attrs.Metadata[metaToken], nil
	}
	return storage.CreateObjectOnce(ctx, name, create, tokenOf)
}

// GetObject implements storage.Backend.
func (b *Backend) GetObject(ctx context.Context, name string) ([]byte, error) {
	if err := storage.ValidObjectName(name); err != nil {
		return nil, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	r, err := b.bucket.Object(objectKey(name)).NewReader(ctx)
	if err != nil {
		return nil, wrapErr("reading object", name, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, wrapErr("reading object", name, err)
	}
	return data, nil
}

// ListObjects implements storage.Backend. GCS lists in the byte order of
// names, which is the order wanted; storage.ListedObjectNames sorts them
// anyway, and leaves out names the backend could not have written.
func (b *Backend) ListObjects(ctx context.Context, prefix string) ([]string, error) {
	if err := storage.ValidObjectPrefix(prefix); err != nil {
		return nil, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	query := &gstorage.Query{Prefix: objectPrefix + prefix}
	if err := query.SetAttrSelection([]string{"Name"}); err != nil {
		return nil, fmt.Errorf("listing objects under %q: %w", prefix, err)
	}
	var keys []string
	it := b.bucket.Objects(ctx, query)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing objects under %q: %w", prefix, err)
		}
		keys = append(keys, attrs.Name)
	}
	return storage.ListedObjectNames(keys, objectPrefix), nil
}

// DeleteObject implements storage.Backend.
func (b *Backend) DeleteObject(ctx context.Context, name string) error {
	if err := storage.ValidObjectName(name); err != nil {
		return err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	err := b.bucket.Object(objectKey(name)).Delete(ctx)
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("deleting object %s: %w", name, err)
	}
	return nil
}
