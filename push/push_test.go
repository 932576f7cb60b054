package push

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// fixture is a push registry over real filesystem storage, with a clock
// the test moves.
type fixture struct {
	reg   *Registry
	store storage.Backend
	mu    sync.Mutex
	clock time.Time
}

func (f *fixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.clock = f.clock.Add(d)
	f.mu.Unlock()
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	store, _ := testkit.NewFSStore(t)
	f := &fixture{store: store, clock: time.Unix(1_000_000, 0)}
	opts.Storage = store
	if opts.Namespaces == nil {
		opts.Namespaces = []string{"local", "ci"}
	}
	opts.Log = testkit.QuietLog()
	opts.now = f.now
	reg, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	f.reg = reg
	return f
}

var ctx = context.Background()

// upload pushes data into repo through a session of two chunks.
func (f *fixture) upload(t *testing.T, repo string, data []byte) Link {
	t.Helper()
	u, err := f.reg.StartUpload(ctx, repo, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	u, err = f.reg.Acquire(u.ID(), repo, "")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	half := int64(len(data) / 2)
	if err := u.Write(ctx, 0, half, bytes.NewReader(data[:half])); err != nil {
		t.Fatal(err)
	}
	if err := u.Write(ctx, -1, -1, bytes.NewReader(data[half:])); err != nil {
		t.Fatal(err)
	}
	l, err := u.Commit(ctx, digest.FromBytes(data))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// wantNoRecords checks that no write is left recorded.
func (f *fixture) wantNoRecords(t *testing.T) {
	t.Helper()
	recs, err := ListRecords(ctx, f.store)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Errorf("records left behind: %+v", recs)
	}
}

func TestNamespaces(t *testing.T) {
	f := newFixture(t, Options{Namespaces: []string{"local", "ci"}})
	for name, want := range map[string]bool{
		"local": true, "local/app": true, "ci/a/b/c": true,
		"localx/app": false, "shell/local": false, "": false, "l": false,
	} {
		if got := f.reg.Owns(name); got != want {
			t.Errorf("Owns(%q) = %v", name, got)
		}
	}
	if got := strings.Join(f.reg.Namespaces(), ","); got != "ci,local" {
		t.Errorf("Namespaces() = %s", got)
	}
	var none *Registry
	if none.Owns("local/app") {
		t.Error("a nil registry owns names")
	}
	store, _ := testkit.NewFSStore(t)
	for _, bad := range [][]string{nil, {"local/app"}, {"Local"}, {""}} {
		if r, err := New(Options{Storage: store, Namespaces: bad}); err == nil {
			r.Close()
			t.Errorf("New accepted namespaces %q", bad)
		}
	}
}

func TestChunkedUpload(t *testing.T) {
	f := newFixture(t, Options{})
	data := []byte(strings.Repeat("nixport push ", 1000))
	d := digest.FromBytes(data)

	u, err := f.reg.StartUpload(ctx, "local/app", "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(u.ID()) {
		t.Fatalf("id %q", u.ID())
	}
	u, err = f.reg.Acquire(u.ID(), "local/app", "")
	if err != nil {
		t.Fatal(err)
	}
	// A second request on the same session is refused while this one
	// holds it.
	_, err = f.reg.Acquire(u.ID(), "local/app", "")
	testkit.WantCode(t, err, errcode.BlobUploadInvalid, "busy")

	if err := u.Write(ctx, 0, 100, bytes.NewReader(data[:100])); err != nil {
		t.Fatal(err)
	}
	// Asking how much it holds is answered while it is in use.
	if st, err := f.reg.Status(u.ID(), "local/app", ""); err != nil || st.Offset() != 100 {
		t.Fatalf("Status = %v, %v", st, err)
	}
	// Out of order: refused, nothing written.
	err = u.Write(ctx, 200, 100, bytes.NewReader(data[200:300]))
	testkit.WantCode(t, err, errcode.RangeInvalid, "starts at byte 200", "holds 100")
	if !errors.Is(err, ErrOutOfOrder) || u.Offset() != 100 {
		t.Fatalf("out-of-order chunk: %v, offset %d", err, u.Offset())
	}
	// A chunk shorter than its length says: kept, and said.
	err = u.Write(ctx, 100, 100, bytes.NewReader(data[100:150]))
	testkit.WantCode(t, err, errcode.SizeInvalid, "has 50 bytes")
	if u.Offset() != 150 {
		t.Fatalf("offset %d after a short chunk", u.Offset())
	}
	// A body that breaks off: what arrived is kept.
	err = u.Write(ctx, 150, -1, io.MultiReader(bytes.NewReader(data[150:160]), errReader{}))
	testkit.WantCode(t, err, errcode.BlobUploadInvalid, "after 10 bytes", "holds 160")
	if err := u.Write(ctx, -1, -1, bytes.NewReader(data[160:])); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.StatBlob(ctx, d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("blob visible before its commit: %v", err)
	}
	recs, _ := ListRecords(ctx, f.store)
	if rec, ok := recs[u.ID()]; !ok || rec.Repository != "local/app" {
		t.Fatalf("upload in progress not recorded: %+v", recs)
	}
	l, err := u.Commit(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	u.Release()
	if l.Digest != d || l.Stored != d || l.Size != int64(len(data)) {
		t.Fatalf("link %+v", l)
	}
	if got := testkit.ReadBlob(t, f.store, storage.BlobInfo{Digest: d}); !bytes.Equal(got, data) {
		t.Fatal("stored bytes differ")
	}
	if _, err := f.reg.Blob(ctx, "local/app", d); err != nil {
		t.Fatal(err)
	}
	// Only that repository holds it.
	_, err = f.reg.Blob(ctx, "local/other", d)
	testkit.WantCode(t, err, errcode.BlobUnknown)
	// The session is over.
	_, err = f.reg.Acquire(u.ID(), "local/app", "")
	testkit.WantCode(t, err, errcode.BlobUploadUnknown)
	f.wantNoRecords(t)

	// Deleting takes the link away, not the bytes.
	if err := f.reg.DeleteBlob(ctx, "local/app", d); err != nil {
		t.Fatal(err)
	}
	_, err = f.reg.Blob(ctx, "local/app", d)
	testkit.WantCode(t, err, errcode.BlobUnknown)
	testkit.WantCode(t, f.reg.DeleteBlob(ctx, "local/app", d), errcode.BlobUnknown)
	if _, err := f.store.StatBlob(ctx, d); err != nil {
		t.Fatal(err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestUploadDigestMismatch(t *testing.T) {
	f := newFixture(t, Options{})
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		data := []byte("the bytes sent for " + alg.String())
		claimed := alg.FromBytes([]byte("other bytes"))
		u, err := f.reg.StartUpload(ctx, "local/app", "", "a")
		if err != nil {
			t.Fatal(err)
		}
		u, _ = f.reg.Acquire(u.ID(), "local/app", "")
		if err := u.Write(ctx, 0, -1, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		_, err = u.Commit(ctx, claimed)
		u.Release()
		testkit.WantCode(t, err, errcode.DigestInvalid, "do not match")
		if _, err := f.reg.Blob(ctx, "local/app", claimed); err == nil {
			t.Errorf("%s: a mismatching upload was linked", alg)
		}
		if _, ok, _ := f.reg.storedOf(ctx, claimed); ok {
			t.Errorf("%s: the claimed digest names stored bytes", alg)
		}
		_, err = f.reg.Acquire(u.ID(), "local/app", "")
		testkit.WantCode(t, err, errcode.BlobUploadUnknown)
	}
	f.wantNoRecords(t)
}

func TestSHA512(t *testing.T) {
	f := newFixture(t, Options{})
	data := []byte("a blob named by its sha512 digest")
	d := digest.SHA512.FromBytes(data)
	l, err := f.reg.PutBlob(ctx, "local/a", "", "x", d, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if l.Digest != d || l.Stored != digest.FromBytes(data) {
		t.Fatalf("link %+v", l)
	}
	got, err := f.reg.Blob(ctx, "local/a", d)
	if err != nil || got.Stored != l.Stored {
		t.Fatalf("Blob = %+v, %v", got, err)
	}
	// Mounted anonymously into another repository through the alias.
	if ml, ok, err := f.reg.Mount(ctx, "local/b", "", d); err != nil || !ok || ml.Stored != l.Stored {
		t.Fatalf("anonymous sha512 mount: %+v %v %v", ml, ok, err)
	}
	sum := sha512.Sum512(data)
	if d.Encoded() != fmt.Sprintf("%x", sum) {
		t.Fatal("test digest wrong")
	}
}

func TestUploadBounds(t *testing.T) {
	f := newFixture(t, Options{MaxUploadBytes: 100, MaxUploads: 3, MaxClientUploads: 2})
	u, err := f.reg.StartUpload(ctx, "local/a", "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	u, _ = f.reg.Acquire(u.ID(), "local/a", "")
	// A chunk whose length is over the bound: refused, the session goes on.
	err = u.Write(ctx, 0, 101, bytes.NewReader(make([]byte, 101)))
	testkit.WantCode(t, err, errcode.RequestTooLarge, "NIXPORT_MAX_UPLOAD_BYTES")
	if u.Closed() {
		t.Fatal("session closed by a refused chunk")
	}
	if err := u.Write(ctx, 0, 60, bytes.NewReader(make([]byte, 60))); err != nil {
		t.Fatal(err)
	}
	// A stream growing past the bound: the session is cancelled.
	err = u.Write(ctx, -1, -1, bytes.NewReader(make([]byte, 41)))
	testkit.WantCode(t, err, errcode.RequestTooLarge, "cancelled")
	if !u.Closed() {
		t.Fatal("an upload past the bound goes on")
	}
	u.Release()

	// Two sessions per client, three in all.
	var held []*Upload
	for _, client := range []string{"192.0.2.1", "192.0.2.1"} {
		u, err := f.reg.StartUpload(ctx, "local/a", "", client)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, u)
	}
	_, err = f.reg.StartUpload(ctx, "local/a", "", "192.0.2.1")
	if e := testkit.WantCode(t, err, errcode.TooManyRequests, "2 uploads in progress"); e.RetryAfter <= 0 {
		t.Error("no Retry-After")
	}
	// A user counts apart from the address.
	if _, err := f.reg.StartUpload(ctx, "local/a", "alice", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	_, err = f.reg.StartUpload(ctx, "local/a", "", "192.0.2.9")
	testkit.WantCode(t, err, errcode.TooManyRequests, "on this server")
	// Finishing one frees its place.
	u, _ = f.reg.Acquire(held[0].ID(), "local/a", "")
	u.Cancel(ctx)
	u.Release()
	if _, err := f.reg.StartUpload(ctx, "local/a", "", "192.0.2.1"); err != nil {
		t.Fatalf("after a cancel: %v", err)
	}
}

func TestAcquireChecksOwner(t *testing.T) {
	f := newFixture(t, Options{})
	u, err := f.reg.StartUpload(ctx, "local/a", "alice", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ id, repo, user string }{
		{u.ID(), "local/b", "alice"},
		{u.ID(), "local/a", "bob"},
		{u.ID(), "local/a", ""},
		{strings.Repeat("0", 32), "local/a", "alice"},
	} {
		_, err := f.reg.Acquire(tt.id, tt.repo, tt.user)
		testkit.WantCode(t, err, errcode.BlobUploadUnknown, "another instance")
	}
	u, err = f.reg.Acquire(u.ID(), "local/a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	u.Release()
}

func TestIdleUploadsExpire(t *testing.T) {
	f := newFixture(t, Options{UploadTimeout: time.Minute})
	idle, _ := f.reg.StartUpload(ctx, "local/a", "", "a")
	busy, _ := f.reg.StartUpload(ctx, "local/a", "", "a")
	fresh, _ := f.reg.StartUpload(ctx, "local/a", "", "a")
	f.advance(30 * time.Second)
	u, _ := f.reg.Acquire(fresh.ID(), "local/a", "")
	u.Release() // used now: idle for 30 s less
	b, _ := f.reg.Acquire(busy.ID(), "local/a", "")
	f.advance(45 * time.Second)
	f.reg.expireIdle()

	_, err := f.reg.Acquire(idle.ID(), "local/a", "")
	testkit.WantCode(t, err, errcode.BlobUploadUnknown)
	if !b.Closed() {
		b.Release()
	} else {
		t.Fatal("a session in use expired")
	}
	if u, err := f.reg.Acquire(fresh.ID(), "local/a", ""); err != nil {
		t.Fatalf("a session used 45 s ago expired: %v", err)
	} else {
		u.Release()
	}
	recs, _ := ListRecords(ctx, f.store)
	if _, ok := recs[idle.ID()]; ok || len(recs) != 2 {
		t.Fatalf("records after expiry: %+v", recs)
	}
}

func TestCloseCancelsUploads(t *testing.T) {
	f := newFixture(t, Options{})
	for range 3 {
		u, err := f.reg.StartUpload(ctx, "local/a", "", "a")
		if err != nil {
			t.Fatal(err)
		}
		u, _ = f.reg.Acquire(u.ID(), "local/a", "")
		u.Write(ctx, 0, 3, strings.NewReader("abc"))
		u.Release()
	}
	if err := f.reg.Close(); err != nil {
		t.Fatal(err)
	}
	f.wantNoRecords(t)
	_, err := f.reg.StartUpload(ctx, "local/a", "", "a")
	testkit.WantCode(t, err, errcode.Unavailable)
	if err := f.reg.Close(); err != nil {
		t.Fatal("a second Close:", err)
	}
}

func TestMount(t *testing.T) {
	f := newFixture(t, Options{})
	pushed := []byte("pushed into local/src")
	src := f.upload(t, "local/src", pushed)
	built := []byte("a layer of a built image")
	info, err := storage.PutBlob(ctx, f.store, manifest.DockerLayerGzip, "", -1, bytes.NewReader(built))
	if err != nil {
		t.Fatal(err)
	}
	missing := digest.FromString("nothing")
	for _, tt := range []struct {
		name, from string
		d          digest.Digest
		ok         bool
	}{
		{"from a push repository", "local/src", src.Digest, true},
		{"from a built image", "shell/hello", info.Digest, true},
		{"anonymous", "", info.Digest, true},
		{"from a push repository not holding it", "local/other", src.Digest, false},
		{"missing", "shell/hello", missing, false},
		{"missing anonymous", "", missing, false},
	} {
		repo := "local/dst/" + strings.ReplaceAll(tt.name, " ", "-")
		l, ok, err := f.reg.Mount(ctx, repo, tt.from, tt.d)
		if err != nil || ok != tt.ok {
			t.Errorf("%s: %+v %v %v", tt.name, l, ok, err)
			continue
		}
		_, err = f.reg.Blob(ctx, repo, tt.d)
		if (err == nil) != tt.ok {
			t.Errorf("%s: linked = %v", tt.name, err == nil)
		}
	}
	f.wantNoRecords(t)
}

// pushImage pushes a config and a layer into repo and returns an image
// manifest naming them.
func (f *fixture) pushImage(t *testing.T, repo, seed string, subject *v1.Descriptor) []byte {
	t.Helper()
	config := f.upload(t, repo, []byte(`{"architecture":"amd64","os":"linux","seed":"`+seed+`"}`))
	layer := f.upload(t, repo, []byte("layer "+seed))
	m := v1.Manifest{
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: config.Digest, Size: config.Size},
		Layers:    []v1.Descriptor{{MediaType: v1.MediaTypeImageLayerGzip, Digest: layer.Digest, Size: layer.Size}},
		Subject:   subject,
	}
	m.SchemaVersion = 2
	return mustJSON(t, m)
}

func TestManifests(t *testing.T) {
	f := newFixture(t, Options{})
	const repo = "local/app"
	body := f.pushImage(t, repo, "one", nil)
	d := digest.FromBytes(body)

	res, err := f.reg.PutManifest(ctx, repo, v1.MediaTypeImageManifest, body, "", []string{"latest"})
	if err != nil || res.Digest != d {
		t.Fatalf("PutManifest = %+v, %v", res, err)
	}
	l, err := f.reg.Tag(ctx, repo, "latest")
	if err != nil || l.Digest != d || l.MediaType != v1.MediaTypeImageManifest || l.Size != int64(len(body)) {
		t.Fatalf("Tag = %+v, %v", l, err)
	}
	// By digest, with tags.
	if _, err := f.reg.PutManifest(ctx, repo, "", body, d, []string{"v1", "v2"}); err != nil {
		t.Fatal(err)
	}
	if tags, _ := f.reg.Tags(ctx, repo); strings.Join(tags, ",") != "latest,v1,v2" {
		t.Fatalf("tags %v", tags)
	}

	// An index of it, and an artifact naming it as subject.
	index := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": v1.MediaTypeImageIndex,
		"manifests": []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: int64(len(body))}}})
	if _, err := f.reg.PutManifest(ctx, repo, v1.MediaTypeImageIndex, index, "", []string{"multi"}); err != nil {
		t.Fatal(err)
	}
	subject := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: int64(len(body))}
	sig := f.pushImage(t, repo, "signature", &subject)
	sigRes, err := f.reg.PutManifest(ctx, repo, v1.MediaTypeImageManifest, sig, "", nil)
	if err != nil || sigRes.Subject != d {
		t.Fatalf("artifact: %+v, %v", sigRes, err)
	}
	list, err := referrers.List(ctx, f.store, d, "")
	if err != nil || len(list) != 1 || list[0].Digest != sigRes.Digest || list[0].ArtifactType != v1.MediaTypeImageConfig {
		t.Fatalf("referrers %+v, %v", list, err)
	}

	// Deleting a tag leaves the manifest; deleting the manifest takes its
	// tags along (not the index's) and its referrers entry.
	if err := f.reg.DeleteTag(ctx, repo, "v2"); err != nil {
		t.Fatal(err)
	}
	testkit.WantCode(t, f.reg.DeleteTag(ctx, repo, "v2"), errcode.ManifestUnknown)
	if _, err := f.reg.Manifest(ctx, repo, d); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.DeleteManifest(ctx, repo, sigRes.Digest); err != nil {
		t.Fatal(err)
	}
	if list, _ := referrers.List(ctx, f.store, d, ""); len(list) != 0 {
		t.Fatalf("referrers after delete: %+v", list)
	}
	if err := f.reg.DeleteManifest(ctx, repo, d); err != nil {
		t.Fatal(err)
	}
	if tags, _ := f.reg.Tags(ctx, repo); strings.Join(tags, ",") != "multi" {
		t.Fatalf("tags after delete %v", tags)
	}
	_, err = f.reg.Tag(ctx, repo, "latest")
	testkit.WantCode(t, err, errcode.ManifestUnknown)
	testkit.WantCode(t, f.reg.DeleteManifest(ctx, repo, d), errcode.ManifestUnknown)
	f.wantNoRecords(t)
}

func TestManifestChecks(t *testing.T) {
	f := newFixture(t, Options{})
	const repo = "local/app"
	body := f.pushImage(t, repo, "checked", nil)
	d := digest.FromBytes(body)
	var m v1.Manifest
	mustUnmarshal(t, body, &m)
	edit := func(change func(*v1.Manifest)) []byte {
		c := m
		c.Layers = append([]v1.Descriptor{}, m.Layers...)
		change(&c)
		return mustJSON(t, c)
	}
	foreign := edit(func(m *v1.Manifest) {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
			Digest: digest.FromString("elsewhere"), Size: 5, URLs: []string{"https://example.com/x"}})
	})
	if _, err := f.reg.PutManifest(ctx, repo, v1.MediaTypeImageManifest, foreign, "", nil); err != nil {
		t.Fatalf("a non-distributable layer must not need its blob: %v", err)
	}
	for _, tt := range []struct {
		name        string
		repo, ctype string
		body        []byte
		d           digest.Digest
		code        errcode.Code
		msg         string
	}{
		{"not JSON", repo, v1.MediaTypeImageManifest, []byte("nope"), "", errcode.ManifestInvalid, "invalid manifest"},
		{"digest mismatch", repo, v1.MediaTypeImageManifest, body, digest.FromString("x"), errcode.DigestInvalid, "hashes to " + d.String()},
		{"sha512 mismatch", repo, v1.MediaTypeImageManifest, body, digest.SHA512.FromString("x"), errcode.DigestInvalid, "not to sha512:"},
		{"layer missing", repo, v1.MediaTypeImageManifest, edit(func(m *v1.Manifest) {
			m.Layers[0].Digest = digest.FromString("never pushed")
		}), "", errcode.ManifestBlobUnknown, "is not in repository local/app"},
		{"in another repository", "local/other", v1.MediaTypeImageManifest, body, "", errcode.ManifestBlobUnknown, "push it first"},
		{"size wrong", repo, v1.MediaTypeImageManifest, edit(func(m *v1.Manifest) { m.Layers[0].Size++ }), "", errcode.ManifestInvalid, "bytes"},
		{"index of a missing manifest", repo, v1.MediaTypeImageIndex, mustJSON(t, map[string]any{"schemaVersion": 2,
			"manifests": []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: int64(len(body))}}}), "", errcode.ManifestBlobUnknown, "manifest " + d.String()},
	} {
		_, err := f.reg.PutManifest(ctx, tt.repo, tt.ctype, tt.body, tt.d, []string{"t"})
		e := testkit.WantCode(t, err, tt.code, tt.msg)
		if e.Code.Status() >= 500 {
			t.Errorf("%s: status %d", tt.name, e.Code.Status())
		}
		if _, err := f.reg.Tag(ctx, tt.repo, "t"); err == nil {
			t.Errorf("%s: tagged anyway", tt.name)
		}
	}
	f.wantNoRecords(t)
}

// TestConcurrentPushes pushes the same blobs and manifest into one
// repository from many goroutines at once, and deletes and pushes tags:
// every push succeeds and the repository ends up whole.
//
//	go test ./push -run ConcurrentPushes -count=20 -race -cpu 1
func TestConcurrentPushes(t *testing.T) {
	f := newFixture(t, Options{})
	const repo, n = "local/race", 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = func() error {
				for _, data := range [][]byte{[]byte(`{"architecture":"amd64","os":"linux"}`), []byte("shared layer")} {
					u, err := f.reg.StartUpload(ctx, repo, "", fmt.Sprint("client", i))
					if err != nil {
						return err
					}
					if u, err = f.reg.Acquire(u.ID(), repo, ""); err != nil {
						return err
					}
					err = u.Write(ctx, 0, int64(len(data)), bytes.NewReader(data))
					if err == nil {
						_, err = u.Commit(ctx, digest.FromBytes(data))
					}
					u.Release()
					if err != nil {
						return err
					}
				}
				m := sharedManifest()
				_, err := f.reg.PutManifest(ctx, repo, v1.MediaTypeImageManifest, m, "", []string{"latest", fmt.Sprint("t", i)})
				return err
			}()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pusher %d: %v", i, err)
		}
	}
	tags, err := f.reg.Tags(ctx, repo)
	if err != nil || len(tags) != n+1 {
		t.Fatalf("tags %v, %v", tags, err)
	}
	if l, err := f.reg.Tag(ctx, repo, "latest"); err != nil || l.Digest != digest.FromBytes(sharedManifest()) {
		t.Fatalf("latest: %+v %v", l, err)
	}
	f.wantNoRecords(t)
}

func sharedManifest() []byte {
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := []byte("shared layer")
	return []byte(`{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageManifest + `","config":{"mediaType":"` + v1.MediaTypeImageConfig +
		`","digest":"` + digest.FromBytes(config).String() + `","size":` + fmt.Sprint(len(config)) + `},"layers":[{"mediaType":"` +
		v1.MediaTypeImageLayerGzip + `","digest":"` + digest.FromBytes(layer).String() + `","size":` + fmt.Sprint(len(layer)) + `}]}`)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}
