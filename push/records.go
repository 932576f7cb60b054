package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// Prefix is where every object of the push side lives among storage's
// named objects.
const Prefix = "push/"

// Object names (see the package comment).
const (
	uploadsPrefix = Prefix + "_uploads/"
	digestsPrefix = Prefix + "_digests/"
)

func repoPrefix(repo string) string { return Prefix + repo + "/" }

func blobLinkName(repo string, d digest.Digest) string {
	return repoPrefix(repo) + "_blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

func manifestLinkName(repo string, d digest.Digest) string {
	return repoPrefix(repo) + "_manifests/" + d.Algorithm().String() + "/" + d.Encoded()
}

func tagsPrefix(repo string) string { return repoPrefix(repo) + "_tags/" }

func tagName(repo, tag string) string { return tagsPrefix(repo) + tag }

func aliasName(d digest.Digest) string {
	return digestsPrefix + d.Algorithm().String() + "/" + d.Encoded()
}

// Link is what a repository holds of a blob or a manifest: the record
// stored under its link name.
type Link struct {
	// Digest is what the repository names the content by (sha256 or
	// sha512); not stored, it is the link's name.
	Digest digest.Digest `json:"-"`
	// Stored is the sha256 digest the bytes are stored under.
	Stored digest.Digest `json:"stored"`
	Size   int64         `json:"size"`
	// MediaType is a manifest's (what it was pushed as); empty for blobs.
	MediaType string `json:"mediaType,omitempty"`
	// Subject is the digest a manifest names as its subject, if any.
	Subject digest.Digest `json:"subject,omitempty"`
}

// maxRecord bounds a record read back from storage.
const maxRecord = 4 << 10

func (r *Registry) putLink(ctx context.Context, name string, l Link) error {
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encoding link %s: %w", name, err)
	}
	if err := r.store.PutObject(ctx, name, data); err != nil {
		return fmt.Errorf("writing link %s: %w", name, err)
	}
	return nil
}

// readLink reads the link stored under name; (Link{}, false, nil) when
// there is none.
func (r *Registry) readLink(ctx context.Context, name string, d digest.Digest) (Link, bool, error) {
	data, err := r.store.GetObject(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return Link{}, false, nil
	}
	if err != nil {
		return Link{}, false, fmt.Errorf("reading link %s: %w", name, err)
	}
	var l Link
	if len(data) > maxRecord || json.Unmarshal(data, &l) != nil || l.Stored.Algorithm() != digest.SHA256 || reference.ValidDigest(l.Stored) != nil || l.Size < 0 {
		return Link{}, false, fmt.Errorf("link %s is corrupt", name)
	}
	if d.Algorithm() == digest.SHA256 && l.Stored != d {
		return Link{}, false, fmt.Errorf("link %s names %s", name, l.Stored)
	}
	l.Digest = d
	return l, true, nil
}

// Blob returns the link of blob d in repo, or BLOB_UNKNOWN.
func (r *Registry) Blob(ctx context.Context, repo string, d digest.Digest) (Link, error) {
	l, ok, err := r.readLink(ctx, blobLinkName(repo, d), d)
	if err != nil {
		return Link{}, err
	}
	if !ok {
		return Link{}, errcode.New(errcode.BlobUnknown, "blob unknown to repository %s: %s", repo, d)
	}
	return l, nil
}

// Manifest returns the link of manifest d in repo, or MANIFEST_UNKNOWN.
func (r *Registry) Manifest(ctx context.Context, repo string, d digest.Digest) (Link, error) {
	l, ok, err := r.readLink(ctx, manifestLinkName(repo, d), d)
	if err != nil {
		return Link{}, err
	}
	if !ok {
		return Link{}, errcode.New(errcode.ManifestUnknown, "manifest unknown to repository %s: %s", repo, d)
	}
	return l, nil
}

// HasManifest reports whether repo holds manifest d.
func (r *Registry) HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	_, ok, err := r.readLink(ctx, manifestLinkName(repo, d), d)
	return ok, err
}

// DeleteBlob removes repo's link to blob d (the bytes stay until a
// collector finds nothing else names them), or answers BLOB_UNKNOWN.
func (r *Registry) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	if _, err := r.Blob(ctx, repo, d); err != nil {
		return err
	}
	if err := r.store.DeleteObject(ctx, blobLinkName(repo, d)); err != nil {
		return fmt.Errorf("removing blob %s from %s: %w", d, repo, err)
	}
	return nil
}

// Tag returns the link of the manifest repo's tag names, or
// MANIFEST_UNKNOWN.
func (r *Registry) Tag(ctx context.Context, repo, tag string) (Link, error) {
	d, ok, err := r.readTag(ctx, repo, tag)
	if err != nil {
		return Link{}, err
	}
	if !ok {
		return Link{}, errcode.New(errcode.ManifestUnknown, "manifest unknown: %s has no tag %s", repo, tag)
	}
	return r.Manifest(ctx, repo, d)
}

func (r *Registry) readTag(ctx context.Context, repo, tag string) (digest.Digest, bool, error) {
	data, err := r.store.GetObject(ctx, tagName(repo, tag))
	if errors.Is(err, storage.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading tag %s:%s: %w", repo, tag, err)
	}
	d, err := reference.ParseDigest(string(data))
	if err != nil {
		return "", false, fmt.Errorf("tag %s:%s is corrupt: %w", repo, tag, err)
	}
	return d, true, nil
}

func (r *Registry) setTag(ctx context.Context, repo, tag string, d digest.Digest) error {
	if err := r.store.PutObject(ctx, tagName(repo, tag), []byte(d)); err != nil {
		return fmt.Errorf("tagging %s:%s: %w", repo, tag, err)
	}
	return nil
}

// DeleteTag removes a tag (the manifest stays), or answers
// MANIFEST_UNKNOWN.
func (r *Registry) DeleteTag(ctx context.Context, repo, tag string) error {
	if _, ok, err := r.readTag(ctx, repo, tag); err != nil {
		return err
	} else if !ok {
		return errcode.New(errcode.ManifestUnknown, "manifest unknown: %s has no tag %s", repo, tag)
	}
	if err := r.store.DeleteObject(ctx, tagName(repo, tag)); err != nil {
		return fmt.Errorf("removing tag %s:%s: %w", repo, tag, err)
	}
	return nil
}

// Tags lists repo's tags, sorted; a repository without tags has none.
func (r *Registry) Tags(ctx context.Context, repo string) ([]string, error) {
	prefix := tagsPrefix(repo)
	names, err := r.store.ListObjects(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	tags := make([]string, 0, len(names))
	for _, n := range names {
		if tag, ok := strings.CutPrefix(n, prefix); ok && reference.ValidTag(tag) {
			tags = append(tags, tag)
		}
	}
	slices.Sort(tags)
	return tags, nil
}

// tagReads bounds the tag records read at once.
const tagReads = 16

// tagsOf returns repo's tags that name d.
func (r *Registry) tagsOf(ctx context.Context, repo string, d digest.Digest) ([]string, error) {
	tags, err := r.Tags(ctx, repo)
	if err != nil {
		return nil, err
	}
	naming := make([]bool, len(tags))
	jobs := make([]func(context.Context) error, len(tags))
	for i, tag := range tags {
		jobs[i] = func(ctx context.Context) error {
			got, ok, err := r.readTag(ctx, repo, tag)
			naming[i] = ok && got == d
			return err
		}
	}
	if err := parallel.Run(ctx, tagReads, jobs); err != nil {
		return nil, err
	}
	var out []string
	for i, tag := range tags {
		if naming[i] {
			out = append(out, tag)
		}
	}
	return out, nil
}

// Record is a write in progress, stored under push/_uploads/<id> from its
// start until its content is linked (see the package comment).
type Record struct {
	Repository string `json:"repository"`
	// Digest is the content's digest once known (at once for a mount or a
	// manifest, at the end for a chunked upload).
	Digest  digest.Digest `json:"digest,omitempty"`
	Started time.Time     `json:"started"`
	Updated time.Time     `json:"updated"`
}

func (r *Registry) putRecord(ctx context.Context, id string, rec Record) error {
	rec.Updated = r.now().UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding the record of write %s: %w", id, err)
	}
	if err := r.store.PutObject(ctx, uploadsPrefix+id, data); err != nil {
		return fmt.Errorf("recording write %s: %w", id, err)
	}
	return nil
}

// dropRecord removes a write's record; a failure only leaves a stale
// record behind, which is logged.
func (r *Registry) dropRecord(id string) {
	// Not the request's context: a client that went away must not leave
	// the record behind.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.store.DeleteObject(ctx, uploadsPrefix+id); err != nil {
		r.log.WithError(err).WithField("upload", id).Warn("removing the record of a finished write")
	}
}

// withRecord runs write, which will link content in repo, with a record
// of it in storage for the time it runs.
func (r *Registry) withRecord(ctx context.Context, repo string, d digest.Digest, write func() error) error {
	id, err := newID()
	if err != nil {
		return err
	}
	now := r.now().UTC()
	if err := r.putRecord(ctx, id, Record{Repository: repo, Digest: d, Started: now}); err != nil {
		return err
	}
	defer r.dropRecord(id)
	return write()
}

// ListRecords lists the writes in progress on every instance on store, by
// id, for a collector; records of instances that died stay until someone
// removes them. A record that cannot be read is returned empty, with its
// id: something is being written.
func ListRecords(ctx context.Context, store storage.Backend) (map[string]Record, error) {
	names, err := store.ListObjects(ctx, uploadsPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing writes in progress: %w", err)
	}
	out := make(map[string]Record, len(names))
	for _, n := range names {
		id := strings.TrimPrefix(n, uploadsPrefix)
		data, err := store.GetObject(ctx, n)
		if errors.Is(err, storage.ErrNotFound) {
			continue // finished since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("reading write record %s: %w", id, err)
		}
		var rec Record
		if len(data) <= maxRecord {
			json.Unmarshal(data, &rec)
		}
		out[id] = rec
	}
	return out, nil
}

// storedOf returns the sha256 digest the bytes of d are stored under, and
// whether storage holds them: d itself for sha256, the alias recorded for
// sha512.
func (r *Registry) storedOf(ctx context.Context, d digest.Digest) (storage.BlobInfo, bool, error) {
	stored := d
	if d.Algorithm() != digest.SHA256 {
		data, err := r.store.GetObject(ctx, aliasName(d))
		if errors.Is(err, storage.ErrNotFound) {
			return storage.BlobInfo{}, false, nil
		}
		if err != nil {
			return storage.BlobInfo{}, false, fmt.Errorf("reading the alias of %s: %w", d, err)
		}
		if stored, err = reference.ParseDigest(string(data)); err != nil || stored.Algorithm() != digest.SHA256 {
			return storage.BlobInfo{}, false, fmt.Errorf("the alias of %s is corrupt", d)
		}
	}
	// Refreshed, not only found: the caller is about to link it, and a
	// collection must not take it meanwhile (storage.Backend.RefreshBlob).
	info, err := r.store.RefreshBlob(ctx, stored)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.BlobInfo{}, false, nil
	}
	if err != nil {
		return storage.BlobInfo{}, false, fmt.Errorf("looking up blob %s: %w", stored, err)
	}
	return info, true, nil
}

// putAlias records that sha512 digest d names the bytes stored under
// stored (verified by the caller).
func (r *Registry) putAlias(ctx context.Context, d, stored digest.Digest) error {
	err := r.store.CreateObject(ctx, aliasName(d), []byte(stored))
	if errors.Is(err, storage.ErrExists) {
		return nil // the same bytes, recorded before: content addressed
	}
	if err != nil {
		return fmt.Errorf("recording %s as %s: %w", d, stored, err)
	}
	return nil
}
