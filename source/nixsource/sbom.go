package nixsource

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/spdx"
	"github.com/nixport/nixport/storage"
)

// Every image built from Nix carries its bill of materials: an SPDX 2.3
// document listing exactly the store paths of its closure (the
// customisation layer's links to them, /tmp and the nonroot user's files
// are nixport's, not packages, and are not listed), with
//
//   - name and version: a requested package's pname and version as the
//     package set's evaluation gave them; every other path's from its
//     derivation (nix.Driver.Names: env.pname and env.version, else
//     env.name split as parseDrvName splits it), or from its store path
//     name where no derivation is at hand;
//   - license, homepage and description from the meta of the requested
//     packages (for every output of their derivations); other paths have
//     none (NOASSERTION): their meta is not evaluated;
//   - the NAR hash as a SHA256 checksum, the store path as file name;
//   - DEPENDS_ON for every reference, and DESCRIBES for the paths the
//     image was asked for (each says by which name);
//   - the package source (kind, URL, commit) in the creation comment.
//
// It is deterministic: its time is the package set's commit time where
// Nix knows it (git sources), else manifest.Created (the image config's
// fixed time), and its namespace derives from the image's OCI manifest
// digest, so the same image gives the same bytes. It is stored as a blob
// and published as an OCI 1.1 artifact (artifactType application/spdx+json)
// whose subject is the image manifest: one artifact for each of the
// image's manifests (OCI and Docker forms, same SPDX blob), each added to
// the referrers index of its subject, all before the image's manifests
// are recorded, so that no pull sees the image without its SBOM.

// sbomCreator is the document's creator: no version, so that the same
// image gives the same bytes whichever nixport built it.
const sbomCreator = "Tool: nixport"

// sbomNamespace is the document namespace of the SBOM of the image whose
// OCI manifest is m: unique per image, an identifier only (the reserved
// .invalid domain never resolves).
func sbomNamespace(m manifest.Blob) string {
	return "https://nixport.invalid/spdx/" + m.Digest.Algorithm().String() + "/" + m.Digest.Encoded()
}

// sbomFileName names the SPDX blob for clients that save artifacts to
// files (oras pull).
const sbomFileName = "sbom.spdx.json"

// sbomDocument is the SPDX document of img, whose OCI manifest is m,
// with names naming its paths.
func sbomDocument(img *nix.Image, names map[string]nix.PathName, m manifest.Blob) (spdx.Document, error) {
	res := img.Resolution
	// The requested packages by derivation, and by output path (in case
	// the store recorded no deriver).
	byDrv := map[string]*nix.Package{}
	byOutput := map[string]*nix.Package{}
	requestedAs := map[string][]string{}
	for i := range res.Packages {
		p := &res.Packages[i]
		if _, ok := byDrv[p.DrvPath]; !ok {
			byDrv[p.DrvPath] = p
		}
		for _, o := range p.Outputs {
			if _, ok := byOutput[o.Path]; !ok {
				byOutput[o.Path] = p
			}
			requestedAs[o.Path] = append(requestedAs[o.Path], p.Attr)
		}
	}

	created := manifest.Created
	if !res.Source.Time.IsZero() {
		created = res.Source.Time
	}
	doc := spdx.Document{
		Name:      imageTitle(res),
		Namespace: sbomNamespace(m),
		Created:   created,
		Creators:  []string{sbomCreator},
		Comment:   sbomComment(res.Source),
		Packages:  make([]spdx.Package, 0, len(img.Closure.Paths)),
	}
	for _, p := range img.Closure.Paths {
		id, err := sbomID(p.Path)
		if err != nil {
			return spdx.Document{}, err
		}
		n := names[p.Path]
		pkg := spdx.Package{ID: id, Name: n.Name, Version: n.Version, FileName: p.Path}
		if pkg.Name == "" {
			pkg.Name, pkg.Version = nix.ParseDrvName(storeName(p.Path))
		}
		if sum, ok := p.NarSHA256(); ok {
			pkg.SHA256 = sum
		}
		var notes []string
		req := byOutput[p.Path]
		if req == nil && p.Deriver != "" {
			req = byDrv[p.Deriver]
		}
		if req != nil {
			if req.Pname != "" {
				pkg.Name, pkg.Version = req.Pname, req.Version
			}
			for _, l := range req.Meta.Licenses {
				pkg.Licenses = append(pkg.Licenses, spdx.License{SPDXID: l.SPDXID, Name: l.Name})
			}
			pkg.Homepage, pkg.Description = req.Meta.Homepage, req.Meta.Description
		}
		if as := requestedAs[p.Path]; len(as) > 0 {
			pkg.Described = true
			notes = append(notes, "requested as "+strings.Join(as, ", "))
		}
		if n.Output != "" {
			notes = append(notes, "Nix output "+n.Output)
		}
		if n.From == nix.NameFromStorePath {
			notes = append(notes, "name and version from the store path's name")
		}
		pkg.Comment = strings.Join(notes, "; ")
		for _, r := range p.References {
			rid, err := sbomID(r)
			if err != nil {
				return spdx.Document{}, err
			}
			pkg.DependsOn = append(pkg.DependsOn, rid)
		}
		doc.Packages = append(doc.Packages, pkg)
	}
	return doc, nil
}

// sbomID is a store path's SPDX element ID: its hash, unique in a store.
func sbomID(storePath string) (string, error) {
	hash, _, ok := strings.Cut(filepath.Base(storePath), "-")
	if !ok || len(hash) != 32 || strings.Trim(hash, "0123456789abcdfghijklmnpqrsvwxyz") != "" {
		return "", fmt.Errorf("SBOM: %q is not a store path", storePath)
	}
	return "Nix-" + hash, nil
}

// storeName is a store path's name without its hash.
func storeName(storePath string) string {
	base := filepath.Base(storePath)
	if _, name, ok := strings.Cut(base, "-"); ok {
		return name
	}
	return base
}

// sbomComment says where the packages came from.
func sbomComment(src nix.Provenance) string {
	var b strings.Builder
	b.WriteString("The Nix store paths of the image's closure, each a package; nixport's own customisation layer (links to them, /tmp, a nonroot user's files) is not listed. Package set: ")
	switch {
	case src.URL != "":
		fmt.Fprintf(&b, "%s %s", src.Kind, src.URL)
	case src.Kind == "path":
		b.WriteString("a local directory (path)")
	default:
		b.WriteString(src.Kind)
	}
	if src.Rev != "" {
		fmt.Fprintf(&b, " at commit %s", src.Rev)
	}
	b.WriteString(".")
	return b.String()
}

// publishSBOM stores the SBOM of img, whose manifests are rendered, as
// artifacts referring to each of them, and adds them to the referrers
// index. Everything is stored before the image's record is.
func (s *Source) publishSBOM(ctx context.Context, img *nix.Image, rendered *manifest.Built) error {
	names, err := s.opts.Driver.Names(ctx, img.Closure)
	if err != nil {
		return fmt.Errorf("naming the closure's packages: %w", err)
	}
	doc, err := sbomDocument(img, names, rendered.OCI)
	if err != nil {
		return err
	}
	data, err := spdx.Render(doc)
	if err != nil {
		return fmt.Errorf("rendering the SBOM: %w", err)
	}
	sbom, err := storage.PutBlob(ctx, s.opts.Storage, spdx.MediaType, digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("storing the SBOM: %w", err)
	}
	empty := manifest.EmptyConfig
	if _, err := storage.PutBlob(ctx, s.opts.Storage, empty.MediaType, empty.Digest, empty.Size, bytes.NewReader(empty.Bytes)); err != nil {
		return fmt.Errorf("storing the empty config: %w", err)
	}
	content := v1.Descriptor{
		MediaType:   spdx.MediaType,
		Digest:      sbom.Digest,
		Size:        sbom.Size,
		Annotations: map[string]string{v1.AnnotationTitle: sbomFileName},
	}
	for _, subject := range []manifest.Blob{rendered.OCI, rendered.Docker} {
		art, desc, err := manifest.Artifact(spdx.MediaType, content, subject.Descriptor())
		if err != nil {
			return fmt.Errorf("rendering the SBOM artifact of %s: %w", subject.Digest, err)
		}
		if _, err := storage.PutBlob(ctx, s.opts.Storage, art.MediaType, art.Digest, art.Size, bytes.NewReader(art.Bytes)); err != nil {
			return fmt.Errorf("storing the SBOM artifact of %s: %w", subject.Digest, err)
		}
		if err := referrers.Add(ctx, s.opts.Storage, subject.Digest, desc); err != nil {
			return err
		}
	}
	return nil
}
