package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nixport/nixport/storage"
)

// objectKey returns the object key in the bucket of a valid object name.
func objectKey(name string) string { return objectPrefix + name }

// smallWrite describes the upload of a small object, held whole in memory.
type smallWrite struct {
	key         string
	data        []byte
	ifNoneMatch bool   // create only: If-None-Match: *
	ifMatch     string // replace only this ETag; "": unconditional
	metadata    map[string]string
}

// writeSmall uploads a small object in a single PutObject (retried by the
// SDK from the buffered data), under a deadline, declaring its SHA-256. It
// returns the new object's ETag, or the error of the write, such as a 412
// when a condition fails. Every write here may be repeated: a repeated
// conditional write fails its condition if the first went through, which
// the callers tell apart by the token in the metadata or body.
func (b *Backend) writeSmall(ctx context.Context, sw smallWrite) (string, error) {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	sum := sha256.Sum256(sw.data)
	in := &s3.PutObjectInput{
		Bucket:         aws.String(b.bucket),
		Key:            aws.String(sw.key),
		Body:           bytes.NewReader(sw.data),
		ContentLength:  aws.Int64(int64(len(sw.data))),
		ContentType:    aws.String(defaultContentType),
		Metadata:       sw.metadata,
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
	}
	if sw.ifNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if sw.ifMatch != "" {
		in.IfMatch = aws.String(sw.ifMatch)
	}
	out, err := b.client.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// readSmall returns a small object's content and ETag. A body cut short is
// read again with a new GET: the SDK retries requests, not the reading of
// a body it has handed over.
func (b *Backend) readSmall(ctx context.Context, key string) ([]byte, string, error) {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
		if err != nil {
			return nil, "", err
		}
		data, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err == nil {
			return data, aws.ToString(out.ETag), nil
		}
		if attempt >= readAttempts || ctx.Err() != nil {
			return nil, "", err
		}
	}
}

// PutObject implements storage.Backend. S3 replaces an object atomically:
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

// CreateObject implements storage.Backend, with If-None-Match: *: of
// several concurrent creators, exactly one succeeds. A creator whose write
// went through but whose response was lost sees a 412 on the retry; the
// token in the object's metadata tells it the object is its own
// (storage.CreateObjectOnce).
func (b *Backend) CreateObject(ctx context.Context, name string, data []byte) error {
	key := objectKey(name)
	create := func(ctx context.Context, token string) error {
		_, err := b.writeSmall(ctx, smallWrite{key: key, data: data, ifNoneMatch: true, metadata: map[string]string{metaToken: token}})
		return conditionErr(err)
	}
	// tokenOf reads the token of the object stored under key.
	tokenOf := func(ctx context.Context) (string, error) {
		ctx, cancel := b.opContext(ctx)
		defer cancel()
		out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
		if err != nil {
			return "", storageErr(err)
		}
		return metaValue(out.Metadata, metaToken), nil
	}
	return storage.CreateObjectOnce(ctx, name, create, tokenOf)
}

// GetObject implements storage.Backend.
func (b *Backend) GetObject(ctx context.Context, name string) ([]byte, error) {
	if err := storage.ValidObjectName(name); err != nil {
		return nil, err
	}
	data, _, err := b.readSmall(ctx, objectKey(name))
	if err != nil {
		return nil, wrapErr("reading object", name, err)
	}
	return data, nil
}

// ListObjects implements storage.Backend. S3 lists in the byte order of
// keys, which is the order wanted; storage.ListedObjectNames sorts them
// anyway, and leaves out names the backend could not have written.
func (b *Backend) ListObjects(ctx context.Context, prefix string) ([]string, error) {
	if err := storage.ValidObjectPrefix(prefix); err != nil {
		return nil, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	var keys []string
	pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(b.bucket),
		Prefix: aws.String(objectPrefix + prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing objects under %q: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			keys = append(keys, aws.ToString(obj.Key))
		}
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
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(objectKey(name))})
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("deleting object %s: %w", name, err)
	}
	return nil
}
