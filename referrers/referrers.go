// Package referrers keeps the OCI 1.1 referrers index: for each subject
// manifest, the descriptors of the manifests that name it as their
// subject (an SBOM of a built image, a signature or attestation pushed
// beside an image). GET /v2/<name>/referrers/<digest> lists them.
//
// One small storage object per (subject, referrer) pair, holding the
// referrer's descriptor, so that adding and removing one never rewrites a
// list another instance may be writing: every instance on the storage
// sees the same index, and it survives restarts. Whoever stores a
// referrer manifest adds it here after the manifest itself is stored, so
// the index never names a manifest that is not there.
package referrers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// Prefix is where the index lives among storage's named objects.
const Prefix = "referrers/"

// maxDescriptor bounds one stored descriptor (annotations included).
const maxDescriptor = 64 << 10

// subjectPrefix is the object prefix of subject's referrers.
func subjectPrefix(subject digest.Digest) string {
	return Prefix + subject.Algorithm().String() + "/" + subject.Encoded() + "/"
}

func objectName(subject, referrer digest.Digest) string {
	return subjectPrefix(subject) + referrer.Algorithm().String() + "-" + referrer.Encoded()
}

// Add records desc (a manifest stored under desc.Digest) as a referrer of
// subject. Adding it again replaces the descriptor.
func Add(ctx context.Context, store storage.Backend, subject digest.Digest, desc v1.Descriptor) error {
	if err := reference.ValidDigest(subject); err != nil {
		return fmt.Errorf("referrers: subject: %w", err)
	}
	if err := reference.ValidDigest(desc.Digest); err != nil {
		return fmt.Errorf("referrers: referrer: %w", err)
	}
	if desc.MediaType == "" || desc.Size <= 0 {
		return fmt.Errorf("referrers: descriptor of %s lacks a media type or size", desc.Digest)
	}
	data, err := json.Marshal(desc)
	if err != nil {
		return fmt.Errorf("referrers: encoding descriptor of %s: %w", desc.Digest, err)
	}
	if len(data) > maxDescriptor {
		return fmt.Errorf("referrers: descriptor of %s is %d bytes, over %d", desc.Digest, len(data), maxDescriptor)
	}
	if err := store.PutObject(ctx, objectName(subject, desc.Digest), data); err != nil {
		return fmt.Errorf("referrers: recording %s as a referrer of %s: %w", desc.Digest, subject, err)
	}
	return nil
}

// Remove forgets referrer as a referrer of subject; forgetting one never
// recorded succeeds.
func Remove(ctx context.Context, store storage.Backend, subject, referrer digest.Digest) error {
	if reference.ValidDigest(subject) != nil || reference.ValidDigest(referrer) != nil {
		return errors.New("referrers: invalid digest")
	}
	if err := store.DeleteObject(ctx, objectName(subject, referrer)); err != nil {
		return fmt.Errorf("referrers: removing %s from %s: %w", referrer, subject, err)
	}
	return nil
}

// List returns subject's referrers, sorted by digest so that the same
// index gives the same bytes, keeping only those of artifactType when it
// is not empty. A record that cannot be read is skipped: the index must
// not fail because of one bad entry.
func List(ctx context.Context, store storage.Backend, subject digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	if err := reference.ValidDigest(subject); err != nil {
		return nil, fmt.Errorf("referrers: subject: %w", err)
	}
	names, err := store.ListObjects(ctx, subjectPrefix(subject))
	if err != nil {
		return nil, fmt.Errorf("referrers: listing referrers of %s: %w", subject, err)
	}
	out := []v1.Descriptor{}
	for _, name := range names {
		data, err := store.GetObject(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("referrers: reading %s: %w", name, err)
		}
		var d v1.Descriptor
		if len(data) > maxDescriptor || json.Unmarshal(data, &d) != nil {
			continue
		}
		if reference.ValidDigest(d.Digest) != nil || name != objectName(subject, d.Digest) {
			continue
		}
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b v1.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	return out, nil
}

// Pair is one entry of the index: Referrer names Subject as its subject.
type Pair struct {
	Subject, Referrer digest.Digest
}

// All returns every pair in the index, read from the names of its objects
// alone (one listing, no reads), in no particular order: what the blob
// collector needs to keep the referrers of live subjects and to remove
// the entries of referrers it deletes. Names that are not the index's are
// skipped.
func All(ctx context.Context, store storage.Backend) ([]Pair, error) {
	names, err := store.ListObjects(ctx, Prefix)
	if err != nil {
		return nil, fmt.Errorf("referrers: listing the index: %w", err)
	}
	pairs := make([]Pair, 0, len(names))
	for _, name := range names {
		if p, ok := parseName(name); ok {
			pairs = append(pairs, p)
		}
	}
	return pairs, nil
}

// parseName reads an object name objectName made.
func parseName(name string) (Pair, bool) {
	parts := strings.Split(strings.TrimPrefix(name, Prefix), "/")
	if len(parts) != 3 {
		return Pair{}, false
	}
	alg, encoded, ok := strings.Cut(parts[2], "-")
	if !ok {
		return Pair{}, false
	}
	p := Pair{
		Subject:  digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[1]),
		Referrer: digest.NewDigestFromEncoded(digest.Algorithm(alg), encoded),
	}
	if reference.ValidDigest(p.Subject) != nil || reference.ValidDigest(p.Referrer) != nil || objectName(p.Subject, p.Referrer) != name {
		return Pair{}, false
	}
	return p, true
}
