package referrers

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/storage/filesystem"
)

func TestAddListRemove(t *testing.T) {
	store, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	subject := digest.FromString("image")
	other := digest.FromString("another image")
	sbom := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString("sbom"), Size: 100, ArtifactType: "application/spdx+json"}
	sig := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString("sig"), Size: 50, ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
		Annotations: map[string]string{"org.opencontainers.image.created": "2026-12-02T00:00:00Z"}}

	if list, err := List(ctx, store, subject, ""); err != nil || len(list) != 0 || list == nil {
		t.Fatalf("empty index: %v %v (want an empty, non-nil list)", list, err)
	}
	for _, d := range []v1.Descriptor{sbom, sig} {
		if err := Add(ctx, store, subject, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := Add(ctx, store, other, sbom); err != nil {
		t.Fatal(err)
	}
	list, err := List(ctx, store, subject, "")
	if err != nil || len(list) != 2 || list[0].Digest > list[1].Digest {
		t.Fatalf("list: %v %v", list, err)
	}
	if list, _ := List(ctx, store, subject, "application/spdx+json"); len(list) != 1 || list[0].Digest != sbom.Digest {
		t.Errorf("filtered: %v", list)
	}
	if list, _ := List(ctx, store, subject, "text/plain"); len(list) != 0 {
		t.Errorf("filtered by an absent type: %v", list)
	}
	got, _ := List(ctx, store, subject, sig.ArtifactType)
	if len(got) != 1 || got[0].Annotations["org.opencontainers.image.created"] == "" {
		t.Errorf("annotations lost: %v", got)
	}
	if err := Remove(ctx, store, subject, sbom.Digest); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, store, subject, sbom.Digest); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	if list, _ := List(ctx, store, subject, ""); len(list) != 1 || list[0].Digest != sig.Digest {
		t.Errorf("after remove: %v", list)
	}
	if list, _ := List(ctx, store, other, ""); len(list) != 1 {
		t.Errorf("another subject's index changed: %v", list)
	}
	// A broken record is skipped, not fatal.
	store.PutObject(ctx, subjectPrefix(subject)+"sha256-"+digest.FromString("x").Encoded(), []byte("{not json"))
	if list, err := List(ctx, store, subject, ""); err != nil || len(list) != 1 {
		t.Errorf("with a broken record: %v %v", list, err)
	}
}

func TestAddRefusesBadDescriptors(t *testing.T) {
	store, _ := filesystem.New(t.TempDir(), nil)
	ctx := context.Background()
	good := digest.FromString("x")
	for _, tt := range []struct {
		subject digest.Digest
		desc    v1.Descriptor
	}{
		{"sha256:short", v1.Descriptor{MediaType: "m", Digest: good, Size: 1}},
		{good, v1.Descriptor{MediaType: "m", Digest: "nope", Size: 1}},
		{good, v1.Descriptor{Digest: good, Size: 1}},
		{good, v1.Descriptor{MediaType: "m", Digest: good}},
	} {
		if err := Add(ctx, store, tt.subject, tt.desc); err == nil {
			t.Errorf("Add(%s, %+v) accepted", tt.subject, tt.desc)
		}
	}
}

func TestAll(t *testing.T) {
	store, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if pairs, err := All(ctx, store); err != nil || len(pairs) != 0 {
		t.Fatalf("All of an empty index = %v, %v", pairs, err)
	}
	image, other := digest.FromString("image"), digest.FromString("other")
	sbom := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString("sbom"), Size: 100}
	sig := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.SHA512.FromString("sig"), Size: 50}
	for _, p := range []struct {
		subject digest.Digest
		desc    v1.Descriptor
	}{{image, sbom}, {image, sig}, {other, sbom}} {
		if err := Add(ctx, store, p.subject, p.desc); err != nil {
			t.Fatal(err)
		}
	}
	// Not the index's names: skipped.
	for _, name := range []string{Prefix + "sha256/x/sha256-y", Prefix + "sha256/" + image.Encoded() + "/junk", Prefix + "stray"} {
		if err := store.PutObject(ctx, name, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	pairs, err := All(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Pair]bool{{image, sbom.Digest}: true, {image, sig.Digest}: true, {other, sbom.Digest}: true}
	if len(pairs) != len(want) {
		t.Errorf("All = %v, want %v", pairs, want)
	}
	for _, p := range pairs {
		if !want[p] {
			t.Errorf("All yields %v, not added", p)
		}
	}
}
