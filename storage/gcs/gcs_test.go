package gcs_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gstorage "cloud.google.com/go/storage"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/api/iterator"

	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/gcs"
	"github.com/nixport/nixport/storage/gcs/gcstest"
	"github.com/nixport/nixport/storage/storagetest"
)

const layerType = "application/vnd.oci.image.layer.v1.tar+gzip"

// TestSuite runs the shared backend suite against the emulator, streaming
// blobs through the backend, with small chunks so that the larger blobs go
// through resumable uploads of many chunks.
func TestSuite(t *testing.T) {
	emu := gcstest.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return emu.NewBackend(t, gcs.Options{ChunkSize: 1 << 20})
	})
}

// TestSuiteSigned runs the suite with a signing key: blob GETs are
// redirected to signed URLs on the emulator, which the suite's client
// follows.
func TestSuiteSigned(t *testing.T) {
	emu := gcstest.Start(t)
	key := newSigningKey(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return emu.NewBackend(t, gcs.Options{SigningKey: key.pem, SigningAccount: "signer@nixport-test.iam.gserviceaccount.com"})
	})
}

// TestSuiteWithFaults runs the suite through a proxy that breaks requests
// in every way it can: every operation must still succeed. Meanwhile a
// watcher reads every blob object in every bucket straight from the
// emulator and checks that its content hashes to its name: no partial or
// corrupt blob is ever visible.
func TestSuiteWithFaults(t *testing.T) {
	emu := gcstest.Start(t)
	proxy := emu.StartProxy(t, gcstest.Faults{Unavailable: 3, CutAfter: 7, CutBefore: 11, Truncate: 13, TooManyRequests: 17})
	w := startWatcher(t, emu)
	log, logs := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	t.Run("Suite", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Backend {
			return emu.NewBackend(t, gcs.Options{
				Log:      log,
				Endpoint: proxy.URL,
				// Chunks small enough for the 20 MiB blob to need several,
				// few enough for an upload to get through the faults in
				// a few attempts (the emulator, unlike GCS, appends a
				// chunk sent twice, and so needs a new upload).
				ChunkSize:      4 << 20,
				UploadAttempts: 20,
			})
		})
	})
	checked := w.stop()
	stats := proxy.Stats()
	messages := map[string]int{}
	for _, entry := range logs.AllEntries() {
		if entry.Level <= logrus.WarnLevel || strings.Contains(entry.Message, "again") {
			messages[entry.Level.String()+": "+entry.Message]++
		}
		if entry.Level <= logrus.ErrorLevel {
			t.Errorf("backend logged an error: %s %v", entry.Message, entry.Data)
		}
	}
	t.Logf("proxy: %+v; watcher checked %d blob objects; backend logs: %v", stats, checked, messages)
	if stats.Unavailable == 0 || stats.TooManyRequests == 0 || stats.CutBefore == 0 || stats.CutAfter == 0 || stats.Truncated == 0 {
		t.Errorf("not every kind of fault was injected: %+v", stats)
	}
	if checked == 0 {
		t.Error("the watcher checked no blob objects")
	}
}

// watcher checks blob objects straight on the emulator while tests run.
type watcher struct {
	t       *testing.T
	client  *gstorage.Client
	cancel  context.CancelFunc
	done    chan struct{}
	checked map[string]bool // bucket/name@generation already verified
}

func startWatcher(t *testing.T, emu *gcstest.Emulator) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, client: emu.Client(t), cancel: cancel, done: make(chan struct{}), checked: map[string]bool{}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			w.scan(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// stop ends the watcher (once it has finished a last scan) and returns how
// many objects it verified.
func (w *watcher) stop() int {
	w.cancel()
	<-w.done
	w.scan(context.Background())
	return len(w.checked)
}

func (w *watcher) scan(ctx context.Context) {
	buckets := w.client.Buckets(ctx, "nixport-test")
	for {
		battrs, err := buckets.Next()
		if err != nil {
			return // done, or cancelled
		}
		objects := w.client.Bucket(battrs.Name).Objects(ctx, &gstorage.Query{Prefix: "blobs/sha256/"})
		for {
			attrs, err := objects.Next()
			if err != nil {
				break
			}
			id := fmt.Sprintf("%s/%s@%d", attrs.Bucket, attrs.Name, attrs.Generation)
			if w.checked[id] {
				continue
			}
			r, err := w.client.Bucket(attrs.Bucket).Object(attrs.Name).Generation(attrs.Generation).NewReader(ctx)
			if err != nil {
				continue // deleted with its bucket meanwhile, or cancelled
			}
			h := sha256.New()
			n, err := io.Copy(h, r)
			r.Close()
			if err != nil {
				continue
			}
			want := strings.TrimPrefix(attrs.Name, "blobs/sha256/")
			if got := hex.EncodeToString(h.Sum(nil)); got != want || n != attrs.Size {
				w.t.Errorf("visible blob object %s holds %d bytes hashing to %s (object size %d)", id, n, got, attrs.Size)
			}
			w.checked[id] = true
		}
	}
}

// Large blobs go up as resumable uploads in chunks of ChunkSize, so no
// request (and no buffer of the client) holds more than a chunk; the
// spool file is gone after Commit.
func TestResumableUploadInChunks(t *testing.T) {
	emu := gcstest.Start(t)
	proxy := emu.StartProxy(t, gcstest.Faults{})
	spool := t.TempDir()
	const chunk = 256 << 10
	b := emu.NewBackend(t, gcs.Options{Endpoint: proxy.URL, ChunkSize: chunk, TempDir: spool})
	content := pseudoRandom(1, 5*chunk+1000)
	info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	var initiations, chunks int
	for _, rec := range proxy.Records() {
		if !strings.Contains(rec.Query, "uploadType=resumable") {
			continue
		}
		if strings.Contains(rec.Query, "upload_id=") {
			chunks++
		} else {
			initiations++
		}
		if rec.BodySize > chunk {
			t.Errorf("an upload request carried %d bytes, more than a chunk (%d)", rec.BodySize, chunk)
		}
	}
	if initiations != 1 || chunks != 6 {
		t.Errorf("%d resumable sessions with %d chunk requests, want 1 with 6", initiations, chunks)
	}
	rc, _, err := b.OpenBlob(t.Context(), info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("read back %d bytes (%v), want the %d written", len(got), err, len(content))
	}
	if entries, err := os.ReadDir(spool); err != nil || len(entries) != 0 {
		t.Errorf("spool directory holds %d entries (%v) after Commit, want none", len(entries), err)
	}
}

// A conditional write whose response is lost happened; its retry then
// fails its precondition. The writer must still see its own write as a
// success: CreateObject does not report ErrExists, TryLease takes the
// lease, a blob Commit succeeds.
func TestLostResponses(t *testing.T) {
	emu := gcstest.Start(t)
	uploads := func(r gcstest.RequestRecord) bool { return r.Method == http.MethodPost }
	newBackend := func(t *testing.T) (*gcs.Backend, *gcstest.Proxy) {
		proxy := emu.StartProxy(t, gcstest.Faults{CutAfter: 1, Limit: 1, Match: uploads})
		return emu.NewBackend(t, gcs.Options{Endpoint: proxy.URL}), proxy
	}
	requireOneCut := func(t *testing.T, proxy *gcstest.Proxy) {
		t.Helper()
		if s := proxy.Stats(); s.CutAfter != 1 {
			t.Errorf("%d responses cut, want 1", s.CutAfter)
		}
	}

	t.Run("CreateObject", func(t *testing.T) {
		b, proxy := newBackend(t)
		if err := b.CreateObject(t.Context(), "tags/x", []byte("mine")); err != nil {
			t.Fatalf("CreateObject: %v", err)
		}
		requireOneCut(t, proxy)
		if got, err := b.GetObject(t.Context(), "tags/x"); err != nil || string(got) != "mine" {
			t.Errorf("GetObject = %q, %v", got, err)
		}
		if err := b.CreateObject(t.Context(), "tags/x", []byte("again")); !errors.Is(err, storage.ErrExists) {
			t.Errorf("second CreateObject: %v, want ErrExists", err)
		}
	})

	t.Run("TryLease", func(t *testing.T) {
		b, proxy := newBackend(t)
		l, err := b.TryLease(t.Context(), "image", "instance-a", time.Hour)
		if err != nil {
			t.Fatalf("TryLease: %v", err)
		}
		requireOneCut(t, proxy)
		if _, err := b.TryLease(t.Context(), "image", "instance-b", time.Hour); !errors.Is(err, storage.ErrLeaseHeld) {
			t.Errorf("second holder: %v, want ErrLeaseHeld", err)
		}
		if err := l.Renew(t.Context()); err != nil {
			t.Errorf("Renew: %v", err)
		}
	})

	t.Run("Renew", func(t *testing.T) {
		direct := emu.NewBackend(t, gcs.Options{})
		l, err := direct.TryLease(t.Context(), "image", "instance-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The same lease, renewed through a backend whose first upload
		// loses its response.
		proxy := emu.StartProxy(t, gcstest.Faults{CutAfter: 1, Limit: 1, Match: uploads})
		viaProxy := emu.NewBackend(t, gcs.Options{Bucket: direct.Bucket(), Endpoint: proxy.URL})
		l2, err := viaProxy.TryLease(t.Context(), "image", "instance-a", time.Hour) // same holder: retakes
		if err != nil {
			t.Fatalf("TryLease by the same holder: %v", err)
		}
		requireOneCut(t, proxy)
		if err := l2.Renew(t.Context()); err != nil {
			t.Errorf("Renew: %v", err)
		}
		if err := l.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
			t.Errorf("Renew of the replaced lease: %v, want ErrLeaseLost", err)
		}
	})

	t.Run("Blob", func(t *testing.T) {
		b, proxy := newBackend(t)
		content := pseudoRandom(2, 100_000)
		info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
		if err != nil {
			t.Fatalf("PutBlob: %v", err)
		}
		requireOneCut(t, proxy)
		if got, err := b.StatBlob(t.Context(), info.Digest); err != nil || got != info {
			t.Errorf("StatBlob = %+v, %v; want %+v", got, err, info)
		}
	})
}

// Two backends (two instances) on one bucket see each other's blobs and
// objects, and one lease between them.
func TestTwoInstancesOneBucket(t *testing.T) {
	emu := gcstest.Start(t)
	first := emu.NewBackend(t, gcs.Options{})
	second := emu.NewBackend(t, gcs.Options{Bucket: first.Bucket()})
	content := []byte("built on the first instance")
	info, err := storage.PutBlob(t.Context(), first, layerType, "", -1, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := second.StatBlob(t.Context(), info.Digest); err != nil || got != info {
		t.Errorf("second StatBlob = %+v, %v; want %+v", got, err, info)
	}
	if err := first.PutObject(t.Context(), "manifests/x", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if got, err := second.GetObject(t.Context(), "manifests/x"); err != nil || string(got) != "m" {
		t.Errorf("second GetObject = %q, %v", got, err)
	}
	lease, err := first.TryLease(t.Context(), "build/x", "first", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var held *storage.LeaseHeldError
	if _, err := second.TryLease(t.Context(), "build/x", "second", time.Hour); !errors.As(err, &held) || held.Holder != "first" {
		t.Errorf("second TryLease: %v, want held by first", err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := second.TryLease(t.Context(), "build/x", "second", time.Hour); err != nil {
		t.Errorf("second TryLease after release: %v", err)
	}
}

// With a signing key, SignedBlobURL gives a V4 signed URL on the emulator;
// fetching it yields the blob. The emulator checks neither signature nor
// expiry, so the URL is verified here, offline, against the public half of
// the test key.
func TestSignedBlobURL(t *testing.T) {
	emu := gcstest.Start(t)
	key := newSigningKey(t)
	const account = "signer@nixport-test.iam.gserviceaccount.com"
	const ttl = 2 * time.Minute
	b := emu.NewBackend(t, gcs.Options{SigningKey: key.pem, SigningAccount: account, SignedURLTTL: ttl})
	content := pseudoRandom(3, 50_000)
	info, err := storage.PutBlob(t.Context(), b, layerType, "", -1, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	location, ok, err := b.SignedBlobURL(t.Context(), info.Digest)
	if err != nil || !ok {
		t.Fatalf("SignedBlobURL = %q, %v, %v", location, ok, err)
	}
	signed, err := url.Parse(location)
	if err != nil {
		t.Fatal(err)
	}
	if signed.Host != emu.Host || signed.Scheme != "http" {
		t.Errorf("redirect to %s://%s, want http://%s", signed.Scheme, signed.Host, emu.Host)
	}
	q := signed.Query()
	if got := q.Get("X-Goog-Expires"); got != strconv.Itoa(int(ttl.Seconds())) {
		t.Errorf("X-Goog-Expires = %q, want %d", got, int(ttl.Seconds()))
	}
	if date, err := time.Parse("20060102T150405Z", q.Get("X-Goog-Date")); err != nil || time.Since(date).Abs() > time.Minute {
		t.Errorf("X-Goog-Date = %q (%v), want about now", q.Get("X-Goog-Date"), err)
	}
	if got := q.Get("X-Goog-Algorithm"); got != "GOOG4-RSA-SHA256" {
		t.Errorf("X-Goog-Algorithm = %q", got)
	}
	if got := q.Get("X-Goog-Credential"); !strings.HasPrefix(got, account+"/") {
		t.Errorf("X-Goog-Credential = %q, want it to start with %s/", got, account)
	}
	if q.Get("X-Goog-Signature") == "" {
		t.Fatal("no X-Goog-Signature")
	}
	if err := verifyV4(signed, &key.private.PublicKey); err != nil {
		t.Errorf("signature: %v", err)
	}
	// The verification is not vacuous: a URL whose lifetime was extended,
	// or signed by another key, fails it.
	tampered := *signed
	tq := signed.Query()
	tq.Set("X-Goog-Expires", "604800")
	tampered.RawQuery = tq.Encode()
	if err := verifyV4(&tampered, &key.private.PublicKey); err == nil {
		t.Error("a URL with a longer X-Goog-Expires verifies")
	}
	if err := verifyV4(signed, &testKeys(t)[1].private.PublicKey); err == nil {
		t.Error("the URL verifies with another key")
	}

	// A client fetching it gets the blob, and ranges of it.
	resp, err := http.Get(location)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, content) {
		t.Errorf("fetching the signed URL: status %d, %d bytes (%v); want 200 and the blob", resp.StatusCode, len(got), err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != layerType {
		t.Errorf("Content-Type at the signed URL %q, want %q", ct, layerType)
	}
	req, _ := http.NewRequest("GET", location, nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[100:200]) {
		t.Errorf("a range of the signed URL: status %d, %d bytes", resp.StatusCode, len(got))
	}
}

// verifyV4 checks a V4 signed URL's signature as GCS does, from the
// documented canonical request (GET, the path, the X-Goog-* query without
// the signature, the signed host header, UNSIGNED-PAYLOAD) and string to
// sign. The host is taken without its port, as the client library signs
// it: GCS itself is reached on the default port, where the two agree.
func verifyV4(u *url.URL, pub *rsa.PublicKey) error {
	q := u.Query()
	signature, err := hex.DecodeString(q.Get("X-Goog-Signature"))
	if err != nil {
		return fmt.Errorf("signature not hex: %w", err)
	}
	q.Del("X-Goog-Signature")
	if got := q.Get("X-Goog-SignedHeaders"); got != "host" {
		return fmt.Errorf("signed headers %q, want host", got)
	}
	credential := q.Get("X-Goog-Credential")
	_, scope, ok := strings.Cut(credential, "/")
	if !ok {
		return fmt.Errorf("credential %q has no scope", credential)
	}
	canonicalQuery := strings.ReplaceAll(q.Encode(), "+", "%20") // Encode sorts by key
	canonicalRequest := strings.Join([]string{
		"GET",
		u.EscapedPath(),
		canonicalQuery,
		"host:" + u.Hostname() + "\n",
		"host",
		"UNSIGNED-PAYLOAD",
	}, "\n")
	requestHash := sha256.Sum256([]byte(canonicalRequest))
	stringToSign := strings.Join([]string{
		"GOOG4-RSA-SHA256",
		q.Get("X-Goog-Date"),
		scope,
		hex.EncodeToString(requestHash[:]),
	}, "\n")
	digest := sha256.Sum256([]byte(stringToSign))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], signature)
}

func TestNewErrors(t *testing.T) {
	emu := gcstest.Start(t)
	key := newSigningKey(t)
	tests := []struct {
		name string
		opts gcs.Options
	}{
		{"no bucket", gcs.Options{Endpoint: emu.URL}},
		{"missing bucket", gcs.Options{Endpoint: emu.URL, Bucket: "does-not-exist"}},
		{"key without account", gcs.Options{Endpoint: emu.URL, Bucket: "x", SigningKey: key.pem}},
		{"account without key", gcs.Options{Endpoint: emu.URL, Bucket: "x", SigningAccount: "a@b"}},
		{"key not PEM", gcs.Options{Endpoint: emu.URL, Bucket: "x", SigningKey: []byte("nonsense"), SigningAccount: "a@b"}},
		{"chunk too small", gcs.Options{Endpoint: emu.URL, Bucket: "x", ChunkSize: 1000}},
		{"endpoint not a URL", gcs.Options{Endpoint: "127.0.0.1:1", Bucket: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := gcs.New(t.Context(), tt.opts); err == nil {
				b.Close()
				t.Error("New succeeded")
			} else {
				t.Log(err)
			}
		})
	}
}

// A service account's JSON key file works as SigningKey on its own.
func TestSigningKeyFromJSON(t *testing.T) {
	emu := gcstest.Start(t)
	key := newSigningKey(t)
	keyFile, err := json.Marshal(map[string]string{
		"type":         "service_account",
		"private_key":  string(key.pem),
		"client_email": "from-json@nixport-test.iam.gserviceaccount.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	b := emu.NewBackend(t, gcs.Options{SigningKey: keyFile})
	info, err := storage.PutBlob(t.Context(), b, layerType, "", -1, strings.NewReader("json key"))
	if err != nil {
		t.Fatal(err)
	}
	location, ok, err := b.SignedBlobURL(t.Context(), info.Digest)
	if err != nil || !ok {
		t.Fatalf("SignedBlobURL = %q, %v, %v", location, ok, err)
	}
	loc, err := url.Parse(location)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc.Query().Get("X-Goog-Credential"), "from-json@") {
		t.Errorf("credential %q, want the JSON key's client_email", loc.Query().Get("X-Goog-Credential"))
	}
	if err := verifyV4(loc, &key.private.PublicKey); err != nil {
		t.Errorf("signature: %v", err)
	}
}

// Objects stored in the bucket by other means than the backend (and so
// under names it would refuse) are left out of listings.
func TestListSkipsForeignNames(t *testing.T) {
	emu := gcstest.Start(t)
	b := emu.NewBackend(t, gcs.Options{})
	client := emu.Client(t)
	w := client.Bucket(b.Bucket()).Object("objects/a b").NewWriter(t.Context())
	w.Write([]byte("foreign"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.PutObject(t.Context(), "a/ok", []byte("x")); err != nil {
		t.Fatal(err)
	}
	names, err := b.ListObjects(t.Context(), "")
	if err != nil || !slices.Equal(names, []string{"a/ok"}) {
		t.Errorf("ListObjects = %q, %v; want [a/ok]", names, err)
	}
	// And leases never appear among objects.
	if _, err := b.TryLease(t.Context(), "a/ok", "h", time.Hour); err != nil {
		t.Fatal(err)
	}
	it := client.Bucket(b.Bucket()).Objects(t.Context(), &gstorage.Query{Prefix: "leases/"})
	if attrs, err := it.Next(); err != nil || attrs.Name != "leases/a/ok" {
		t.Errorf("lease object: %v, %v; want leases/a/ok", attrs, err)
	} else if _, err := it.Next(); !errors.Is(err, iterator.Done) {
		t.Errorf("more than one lease object: %v", err)
	}
}

type signingKey struct {
	private *rsa.PrivateKey
	pem     []byte
}

var (
	keysOnce sync.Once
	keys     [2]signingKey
	keysErr  error
)

// testKeys returns two different test RSA keys, PEM-encoded as PKCS#8 the
// way service account keys are, made once per test binary (2048-bit RSA
// takes a while on a small machine).
func testKeys(t *testing.T) [2]signingKey {
	t.Helper()
	keysOnce.Do(func() {
		for i := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				keysErr = err
				return
			}
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				keysErr = err
				return
			}
			keys[i] = signingKey{private: k, pem: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}
		}
	})
	if keysErr != nil {
		t.Fatalf("making test keys: %v", keysErr)
	}
	return keys
}

// newSigningKey returns the first test key.
func newSigningKey(t *testing.T) signingKey { return testKeys(t)[0] }

// pseudoRandom returns n bytes that depend only on seed.
func pseudoRandom(seed byte, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	block := sha256.Sum256([]byte{seed})
	for len(out) < n {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return out[:n]
}

// A lease record whose expiry cannot be read counts as expired, so that
// damage cannot block a lease for good; one that can be read holds.
func TestDamagedLeaseRecord(t *testing.T) {
	emu := gcstest.Start(t)
	b := emu.NewBackend(t, gcs.Options{})
	client := emu.Client(t)
	for _, tt := range []struct {
		expires  string
		wantHeld bool
	}{
		{time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano), true},
		{"not a time", false},
		{"", false},
	} {
		w := client.Bucket(b.Bucket()).Object("leases/build/x").NewWriter(t.Context())
		w.Metadata = map[string]string{"nixport-lease-name": "build/x", "nixport-lease-holder": "other", "nixport-lease-expires": tt.expires}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		l, err := b.TryLease(t.Context(), "build/x", "instance-a", time.Hour)
		if held := errors.Is(err, storage.ErrLeaseHeld); held != tt.wantHeld || (err != nil && !held) {
			t.Errorf("expiry %q: TryLease: %v, want held %v", tt.expires, err, tt.wantHeld)
		}
		if err == nil {
			if err := l.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
}
