package push

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/referrers"
)

// Pushed is the outcome of PutManifest.
type Pushed struct {
	// Digest is the manifest's digest: the one it was pushed by, else its
	// sha256.
	Digest digest.Digest
	// Subject is the digest the manifest names as its subject, if any:
	// recorded in the referrers index.
	Subject digest.Digest
	// Tags are the tags set to the manifest.
	Tags []string
}

// linkReads bounds the links read at once to check a manifest.
const linkReads = 16

// PutManifest stores body, pushed to repo with Content-Type contentType,
// as a manifest: by digest when d is set (the body must hash to it), and
// tagged with tags. It is checked before anything is stored: a manifest
// or index of a supported media type (MANIFEST_INVALID), whose config and
// layers are blobs repo holds, of the sizes it says, or, for an index,
// whose manifests repo holds (MANIFEST_BLOB_UNKNOWN); a non-distributable
// layer need not be held. The body is stored as sent, linked, tagged, and
// added to the referrers index of its subject.
func (r *Registry) PutManifest(ctx context.Context, repo, contentType string, body []byte, d digest.Digest, tags []string) (Pushed, error) {
	p, err := manifest.ParsePushed(contentType, body)
	if err != nil {
		return Pushed{}, errcode.Wrap(errcode.ManifestInvalid, err, "invalid manifest: %v", err)
	}
	if d == "" {
		d = digest.SHA256.FromBytes(body)
	} else if got := d.Algorithm().FromBytes(body); got != d {
		return Pushed{}, errcode.New(errcode.DigestInvalid, "the manifest hashes to %s, not to %s, the digest it was pushed by", got, d)
	}
	if err := r.checkReferences(ctx, repo, p); err != nil {
		return Pushed{}, err
	}
	l := Link{Digest: d, Size: int64(len(body)), MediaType: p.MediaType}
	if p.Subject != nil {
		l.Subject = p.Subject.Digest
	}
	err = r.withRecord(ctx, repo, d, func() error {
		w, err := r.store.NewBlobWriter(ctx, p.MediaType)
		if err != nil {
			return fmt.Errorf("storing manifest %s: %w", d, err)
		}
		if _, err := w.Write(body); err != nil {
			w.Cancel()
			return fmt.Errorf("storing manifest %s: %w", d, err)
		}
		stored, err := r.commit(ctx, w, d, int64(len(body)))
		if err != nil {
			return err
		}
		l.Stored = stored.Stored
		if err := r.putLink(ctx, manifestLinkName(repo, d), l); err != nil {
			return err
		}
		for _, tag := range tags {
			if err := r.setTag(ctx, repo, tag, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Pushed{}, err
	}
	out := Pushed{Digest: d, Tags: tags}
	if p.Subject != nil {
		desc := v1.Descriptor{MediaType: p.MediaType, Digest: d, Size: l.Size, ArtifactType: p.ArtifactType, Annotations: p.Annotations}
		if err := referrers.Add(ctx, r.store, p.Subject.Digest, desc); err != nil {
			return Pushed{}, err
		}
		out.Subject = p.Subject.Digest
	}
	return out, nil
}

// checkReferences checks that repo holds what p references.
func (r *Registry) checkReferences(ctx context.Context, repo string, p *manifest.Pushed) error {
	type ref struct {
		d        v1.Descriptor
		manifest bool
	}
	var refs []ref
	if p.IsIndex() {
		for _, m := range p.Manifests {
			refs = append(refs, ref{m, true})
		}
	} else {
		refs = append(refs, ref{*p.Config, false})
		for _, l := range p.Layers {
			if !manifest.IsNonDistributable(l.MediaType) {
				refs = append(refs, ref{l, false})
			}
		}
	}
	jobs := make([]func(context.Context) error, len(refs))
	for i, rf := range refs {
		jobs[i] = func(ctx context.Context) error {
			name, what := blobLinkName(repo, rf.d.Digest), "blob"
			if rf.manifest {
				name, what = manifestLinkName(repo, rf.d.Digest), "manifest"
			}
			l, ok, err := r.readLink(ctx, name, rf.d.Digest)
			if err != nil {
				return err
			}
			if !ok {
				return errcode.New(errcode.ManifestBlobUnknown, "%s %s is not in repository %s: push it first", what, rf.d.Digest, repo)
			}
			if l.Size != rf.d.Size {
				return errcode.New(errcode.ManifestInvalid, "the manifest says %s %s has %d bytes; it has %d", what, rf.d.Digest, rf.d.Size, l.Size)
			}
			return nil
		}
	}
	return parallel.Run(ctx, linkReads, jobs)
}

// DeleteManifest removes manifest d from repo, with the tags that name
// it and its entry in its subject's referrers index; MANIFEST_UNKNOWN if
// repo does not hold it. The blobs it names stay linked.
func (r *Registry) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	l, err := r.Manifest(ctx, repo, d)
	if err != nil {
		return err
	}
	tags, err := r.tagsOf(ctx, repo, d)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		if err := r.store.DeleteObject(ctx, tagName(repo, tag)); err != nil {
			return fmt.Errorf("removing tag %s:%s: %w", repo, tag, err)
		}
	}
	if err := r.store.DeleteObject(ctx, manifestLinkName(repo, d)); err != nil {
		return fmt.Errorf("removing manifest %s from %s: %w", d, repo, err)
	}
	if l.Subject != "" {
		if err := referrers.Remove(ctx, r.store, l.Subject, d); err != nil {
			return err
		}
	}
	return nil
}
