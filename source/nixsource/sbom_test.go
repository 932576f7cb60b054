package nixsource

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/spdx"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// spdxDoc is what the tests read of an SBOM.
type spdxDoc struct {
	Name              string
	DocumentNamespace string
	CreationInfo      struct {
		Created  string
		Creators []string
		Comment  string
	}
	Packages []struct {
		SPDXID, Name, VersionInfo, PackageFileName string
		LicenseDeclared, Homepage, Description     string
		Comment                                    string
		Checksums                                  []struct{ Algorithm, ChecksumValue string }
	}
	Relationships []struct{ SPDXElementID, RelatedSPDXElement, RelationshipType string }
}

// sbomOf finds the SBOM of the image manifest subject through the
// referrers index: exactly one referrer, an SPDX artifact whose subject
// is the image; it returns the SPDX bytes and the artifact's digest.
func sbomOf(t *testing.T, store storage.Backend, subject storage.BlobInfo) ([]byte, digest.Digest) {
	t.Helper()
	ctx := context.Background()
	list, err := referrers.List(ctx, store, subject.Digest, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ArtifactType != spdx.MediaType || list[0].MediaType != v1.MediaTypeImageManifest {
		t.Fatalf("referrers of %s: %+v, want one SPDX artifact", subject.Digest, list)
	}
	if filtered, err := referrers.List(ctx, store, subject.Digest, "application/vnd.example"); err != nil || len(filtered) != 0 {
		t.Errorf("referrers of another artifact type: %+v %v", filtered, err)
	}
	var art v1.Manifest
	if err := json.Unmarshal(testkit.ReadBlob(t, store, storage.BlobInfo{Digest: list[0].Digest}), &art); err != nil {
		t.Fatal(err)
	}
	if art.ArtifactType != spdx.MediaType || art.Subject == nil || art.Subject.Digest != subject.Digest ||
		art.Subject.MediaType != subject.MediaType || art.Subject.Size != subject.Size ||
		art.Config.MediaType != v1.MediaTypeEmptyJSON || len(art.Layers) != 1 || art.Layers[0].MediaType != spdx.MediaType {
		t.Fatalf("artifact manifest %+v", art)
	}
	if got := testkit.ReadBlob(t, store, storage.BlobInfo{Digest: art.Config.Digest}); string(got) != "{}" {
		t.Errorf("empty config %q", got)
	}
	data := testkit.ReadBlob(t, store, storage.BlobInfo{Digest: art.Layers[0].Digest})
	if err := spdx.Check(data); err != nil {
		t.Fatalf("the SBOM fails the SPDX 2.3 schema's rules: %v\n%s", err, data)
	}
	return data, list[0].Digest
}

// nixQuery runs nix-store --query with args and returns its lines.
func nixQuery(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("nix-store", append([]string{"--query"}, args...)...).Output()
	if err != nil {
		t.Fatalf("nix-store --query %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestSBOM: the SBOM of a built image lists exactly its closure (what
// nix-store --query --requisites says), with names, versions, licenses
// and checksums, the references as DEPENDS_ON and the requested packages
// described; it is reachable from both manifests through the referrers
// index; a second build into another store gives the same bytes.
func TestSBOM(t *testing.T) {
	src, store := newNixSource(t, t.TempDir())
	ctx := context.Background()
	before := src.opts.Driver.ProcessCount()
	m, err := source.BuildOnce(ctx, src, "hello/multi", "latest")
	if err != nil {
		t.Fatal(err)
	}
	// Resolve, realise, closure, and one to name the closure's paths; an
	// image found in the manifest cache needs no SBOM work.
	if n := src.opts.Driver.ProcessCount() - before; n != 4 {
		t.Errorf("a new image ran %d Nix processes, want 4", n)
	}
	before = src.opts.Driver.ProcessCount()
	if _, err := source.BuildOnce(ctx, src, "hello/multi", "latest"); err != nil {
		t.Fatal(err)
	}
	if n := src.opts.Driver.ProcessCount() - before; n != 3 {
		t.Errorf("an image in the manifest cache ran %d Nix processes, want 3", n)
	}
	data, artifact := sbomOf(t, store, m[manifest.OCI])
	dockerData, dockerArtifact := sbomOf(t, store, m[manifest.Docker])
	if !bytes.Equal(data, dockerData) || artifact == dockerArtifact {
		t.Errorf("the Docker manifest's SBOM differs, or shares the OCI one's artifact")
	}
	var doc spdxDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}

	// The roots: the installed outputs of the requested packages.
	res, err := src.opts.Driver.Resolve(ctx, "latest", SystemAMD64, []string{"cacert", "hello", "iana-etc", "multi"})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	roots := res.OutputPaths()
	requisites := nixQuery(t, append([]string{"--requisites"}, roots...)...)
	slices.Sort(requisites)
	var listed []string
	byPath := map[string]int{}
	idOf := map[string]string{}
	for i, p := range doc.Packages {
		listed = append(listed, p.PackageFileName)
		byPath[p.PackageFileName] = i
		idOf[p.SPDXID] = p.PackageFileName
	}
	slices.Sort(listed)
	if !slices.Equal(listed, requisites) {
		t.Fatalf("SBOM lists\n%s\nnix-store --query --requisites says\n%s", strings.Join(listed, "\n"), strings.Join(requisites, "\n"))
	}

	// Each path: its checksum is its NAR hash, its DEPENDS_ON its
	// references.
	depends := map[string][]string{}
	var described []string
	for _, r := range doc.Relationships {
		switch r.RelationshipType {
		case "DEPENDS_ON":
			depends[idOf[r.SPDXElementID]] = append(depends[idOf[r.SPDXElementID]], idOf[r.RelatedSPDXElement])
		case "DESCRIBES":
			described = append(described, idOf[r.RelatedSPDXElement])
		default:
			t.Errorf("relationship %+v", r)
		}
	}
	for _, p := range doc.Packages {
		hash := nixQuery(t, "--hash", p.PackageFileName)[0]
		want, ok := (nix.PathInfo{NarHash: hash}).NarSHA256()
		if !ok || len(p.Checksums) != 1 || p.Checksums[0].Algorithm != "SHA256" || p.Checksums[0].ChecksumValue != want {
			t.Errorf("%s: checksums %+v, NAR hash %s", p.PackageFileName, p.Checksums, hash)
		}
		refs := slices.DeleteFunc(nixQuery(t, "--references", p.PackageFileName), func(r string) bool { return r == p.PackageFileName })
		slices.Sort(refs)
		got := depends[p.PackageFileName]
		slices.Sort(got)
		if !slices.Equal(got, refs) {
			t.Errorf("%s depends on %v, references %v", p.PackageFileName, got, refs)
		}
	}
	slices.Sort(described)
	if !slices.Equal(described, roots) {
		t.Errorf("described %v, want the requested outputs %v", described, roots)
	}

	// Names, versions and licenses: from the evaluation's meta for what
	// was requested, from derivations for the rest.
	type want struct{ name, version, license, homepage, comment string }
	wants := map[string]want{
		"hello":      {"hello", "2.12.1", "MIT", "https://www.gnu.org/software/hello/manual/", "requested as hello; Nix output out"},
		"greeting":   {"greeting", "1.0", spdx.NoAssertion, "", "Nix output out"},
		"busybox":    {"busybox", "", spdx.NoAssertion, "", "Nix output out"},
		"multi-bin":  {"multi", "", "MIT AND Apache-2.0", "https://example.org/multi", "requested as multi; Nix output bin"},
		"multi":      {"multi", "", "MIT AND Apache-2.0", "https://example.org/multi", "Nix output out"},
		"iana-etc":   {"iana-etc", "", spdx.NoAssertion, "", "requested as iana-etc; Nix output out"},
		"nss-cacert": {"nss-cacert", "", "MPL-2.0", "", "requested as cacert; Nix output out"},
	}
	for _, p := range doc.Packages {
		w, ok := wants[storeName(p.PackageFileName)]
		if !ok {
			t.Errorf("unexpected package %s", p.PackageFileName)
			continue
		}
		got := want{p.Name, p.VersionInfo, p.LicenseDeclared, p.Homepage, p.Comment}
		if got != w {
			t.Errorf("%s: %+v, want %+v", p.PackageFileName, got, w)
		}
	}
	if hello := doc.Packages[byPath[roots[slices.IndexFunc(roots, func(r string) bool { return strings.HasSuffix(r, "-hello") })]]]; hello.Description != "A program that produces a familiar, friendly greeting" {
		t.Errorf("hello's description %q", hello.Description)
	}
	if doc.CreationInfo.Created != "1970-01-01T00:00:01Z" || !slices.Equal(doc.CreationInfo.Creators, []string{"Tool: nixport"}) ||
		!strings.Contains(doc.CreationInfo.Comment, "Package set: builtin.") ||
		doc.DocumentNamespace != "https://nixport.invalid/spdx/sha256/"+m[manifest.OCI].Digest.Encoded() ||
		doc.Name != "cacert hello iana-etc multi" {
		t.Errorf("document %s %s %+v", doc.Name, doc.DocumentNamespace, doc.CreationInfo)
	}

	// The labels of the config.
	var cfg v1.Image
	if err := json.Unmarshal(testkit.ReadBlob(t, store, storage.BlobInfo{Digest: readManifest(t, store, m[manifest.OCI]).Config.Digest}), &cfg); err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{v1.AnnotationSource: "builtin", v1.AnnotationTitle: "cacert hello iana-etc multi"}
	if !mapsEqual(cfg.Config.Labels, wantLabels) || cfg.Config.User != "" {
		t.Errorf("config labels %v user %q, want %v as root", cfg.Config.Labels, cfg.Config.User, wantLabels)
	}

	// Another store, the same image: the same SBOM bytes and artifacts.
	src2, store2 := newNixSource(t, t.TempDir())
	m2, err := source.BuildOnce(ctx, src2, "multi/hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	data2, artifact2 := sbomOf(t, store2, m2[manifest.OCI])
	if !bytes.Equal(data, data2) || artifact != artifact2 || m2[manifest.OCI].Digest != m[manifest.OCI].Digest {
		t.Errorf("two builds of one image: different SBOMs (%s, %s)", artifact, artifact2)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestNonRoot: the nonroot meta-package makes an image that runs as
// 65532:65532, with the user database and a home directory it owns in the
// customisation layer; the same packages without it are another image,
// run as root.
func TestNonRoot(t *testing.T) {
	src, store := newNixSource(t, t.TempDir())
	ctx := context.Background()
	plain, err := source.BuildOnce(ctx, src, "shell", "latest")
	if err != nil {
		t.Fatal(err)
	}
	nonroot, err := source.BuildOnce(ctx, src, "nonroot/shell", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if plain[manifest.OCI].Digest == nonroot[manifest.OCI].Digest {
		t.Fatal("nonroot made the same image")
	}
	for _, tc := range []struct {
		m    source.Manifests
		user string
		etc  bool
	}{{plain, "", false}, {nonroot, NonRootUser, true}} {
		mf := readManifest(t, store, tc.m[manifest.OCI])
		var cfg v1.Image
		if err := json.Unmarshal(testkit.ReadBlob(t, store, storage.BlobInfo{Digest: mf.Config.Digest}), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Config.User != tc.user {
			t.Errorf("user %q, want %q", cfg.Config.User, tc.user)
		}
		// The customisation layer is the last.
		files := layerFiles(t, testkit.ReadBlob(t, store, storage.BlobInfo{Digest: mf.Layers[len(mf.Layers)-1].Digest}))
		passwd, hasPasswd := files["etc/passwd"]
		if hasPasswd != tc.etc {
			t.Errorf("user %q: /etc/passwd present %v", tc.user, hasPasswd)
		}
		if !tc.etc {
			continue
		}
		if !strings.Contains(passwd.data, "\nnonroot:x:65532:65532:nonroot:/home/nonroot:") || !strings.HasPrefix(passwd.data, "root:x:0:0:") ||
			!strings.Contains(passwd.data, "\nnobody:x:65534:65534:") {
			t.Errorf("/etc/passwd:\n%s", passwd.data)
		}
		if g := files["etc/group"].data; g != "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n" {
			t.Errorf("/etc/group:\n%s", g)
		}
		if home := files["home/nonroot/"]; home.typ != tar.TypeDir || home.uid != 65532 || home.gid != 65532 || home.mode != 0o700 {
			t.Errorf("/home/nonroot: %+v", home)
		}
		// The packages' etc entries are still there, beside the user's.
		if _, ok := files["etc/ssl"]; !ok {
			t.Errorf("cacert's /etc/ssl is missing beside /etc/passwd: %v", files)
		}
	}
}

type tarFile struct {
	typ          byte
	mode         int64
	uid, gid     int
	data, linkTo string
}

// layerFiles reads a gzip-compressed tar layer.
func layerFiles(t *testing.T, layer []byte) map[string]tarFile {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]tarFile{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = tarFile{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid, data: string(data), linkTo: h.Linkname}
	}
	return files
}
