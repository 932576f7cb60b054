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
// in every way it can: every operation must still succeed, and no partial
// or corrupt blob is ever visible (storagetest.RunWithFaults).
func TestSuiteWithFaults(t *testing.T) {
	emu := gcstest.Start(t)
	proxy := emu.StartProxy(t, gcstest.Faults{Unavailable: 3, CutAfter: 7, CutBefore: 11, Truncate: 13, TooManyRequests: 17})
	storagetest.RunWithFaults(t, networked(t, emu), proxy, func(t *testing.T, log logrus.FieldLogger) storage.Backend {
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
}

// networked describes the emulator to the checks every networked backend
// passes. Every write to GCS is an upload, a POST.
func networked(t *testing.T, emu *gcstest.Emulator) storagetest.Networked {
	uploads := func(r gcstest.RequestRecord) bool { return r.Method == http.MethodPost }
	client := emu.Client(t)
	return storagetest.Networked{
		NewBackend: func(t *testing.T, like storage.Backend, endpoint string, log logrus.FieldLogger) storage.Backend {
			opts := gcs.Options{Endpoint: endpoint, Log: log}
			if like != nil {
				opts.Bucket = like.(*gcs.Backend).Bucket()
			}
			return emu.NewBackend(t, opts)
		},
		StartProxy: emu.StartProxy,
		SmallWrite: uploads,
		BlobWrite:  uploads,
		ListBlobs: func(ctx context.Context) ([]storagetest.StoredBlob, error) {
			var blobs []storagetest.StoredBlob
			buckets := client.Buckets(ctx, "nixport-test")
			for {
				battrs, err := buckets.Next()
				if errors.Is(err, iterator.Done) {
					return blobs, nil
				}
				if err != nil {
					return blobs, err
				}
				objects := client.Bucket(battrs.Name).Objects(ctx, &gstorage.Query{Prefix: "blobs/sha256/"})
				for {
					attrs, err := objects.Next()
					if err != nil {
						break // done, or deleted with its bucket meanwhile
					}
					obj := client.Bucket(attrs.Bucket).Object(attrs.Name).Generation(attrs.Generation)
					blobs = append(blobs, storagetest.StoredBlob{
						ID:   fmt.Sprintf("%s/%s@%d", attrs.Bucket, attrs.Name, attrs.Generation),
						Hex:  strings.TrimPrefix(attrs.Name, "blobs/sha256/"),
						Size: attrs.Size,
						Open: func(ctx context.Context) (io.ReadCloser, error) { return obj.NewReader(ctx) },
					})
				}
			}
		},
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
	content := storagetest.RandomBytes(1, 5*chunk+1000)
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

// A conditional write whose response is lost happened; the writer still
// sees its own write as a success (storagetest.RunLostResponses).
func TestLostResponses(t *testing.T) {
	storagetest.RunLostResponses(t, networked(t, gcstest.Start(t)))
}

// Two backends (two instances) on one bucket see each other's blobs and
// objects, and one lease between them.
func TestTwoInstancesOneBucket(t *testing.T) {
	storagetest.RunTwoInstances(t, networked(t, gcstest.Start(t)))
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
	content := storagetest.RandomBytes(3, 50_000)
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

// A lease record whose expiry cannot be read counts as expired; one that
// can be read holds.
func TestDamagedLeaseRecord(t *testing.T) {
	emu := gcstest.Start(t)
	b := emu.NewBackend(t, gcs.Options{})
	client := emu.Client(t)
	record := func(name, expires string, damaged bool) storagetest.StoredLease {
		return storagetest.StoredLease{Name: name, Damaged: damaged, Store: func(t *testing.T) {
			w := client.Bucket(b.Bucket()).Object("leases/build/x").NewWriter(t.Context())
			w.Metadata = map[string]string{"nixport-lease-name": "build/x", "nixport-lease-holder": "other", "nixport-lease-expires": expires}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}}
	}
	storagetest.RunDamagedLeases(t, b, []storagetest.StoredLease{
		record("readable", time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano), false),
		record("expiry not a time", "not a time", true),
		record("no expiry", "", true),
	})
}

// TestRefreshSlack: a blob written or refreshed within the slack is not
// written again; past it, the refresh time goes into its metadata.
func TestRefreshSlack(t *testing.T) {
	emu := gcstest.Start(t)
	client := emu.Client(t)
	for _, tt := range []struct {
		name       string
		slack      time.Duration
		wantUpdate bool
	}{
		{"within the default slack", gcs.DefaultRefreshSlack, false},
		{"past the slack", time.Nanosecond, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := emu.NewBackend(t, gcs.Options{RefreshSlack: tt.slack})
			content := []byte("a layer reused by the next build")
			info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if got, err := b.RefreshBlob(t.Context(), info.Digest); err != nil || got != info {
				t.Fatalf("RefreshBlob = %+v, %v; want %+v", got, err, info)
			}
			attrs, err := client.Bucket(b.Bucket()).Object("blobs/sha256/" + info.Digest.Encoded()).Attrs(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			refreshed, err := time.Parse(time.RFC3339Nano, attrs.Metadata["nixport-refreshed"])
			if updated := err == nil; updated != tt.wantUpdate {
				t.Fatalf("refresh time in the metadata: %v (%q), want it written: %v", updated, attrs.Metadata["nixport-refreshed"], tt.wantUpdate)
			}
			if tt.wantUpdate && refreshed.Before(start) {
				t.Errorf("refresh time %s is before the refresh began (%s)", refreshed, start)
			}
			if attrs.Metadata["nixport-media-type"] != layerType {
				t.Errorf("media type after the refresh = %q, want %q", attrs.Metadata["nixport-media-type"], layerType)
			}
		})
	}
}

// TestListBlobsPages lists more blobs than one page holds, beside names
// that are not blobs.
func TestListBlobsPages(t *testing.T) {
	emu := gcstest.Start(t)
	b := emu.NewBackend(t, gcs.Options{})
	bucket := emu.Client(t).Bucket(b.Bucket())
	const n = 1100
	want := map[digest.Digest]bool{}
	names := []string{"blobs/sha256/not-a-digest", "objects/x"}
	for i := range n {
		d := digest.FromString(strconv.Itoa(i))
		want[d] = true
		names = append(names, "blobs/sha256/"+d.Encoded())
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	sem := make(chan struct{}, 16)
	for _, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			w := bucket.Object(name).NewWriter(t.Context())
			w.Write([]byte("x"))
			errs <- w.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := map[digest.Digest]bool{}
	for st, err := range b.ListBlobs(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		if got[st.Digest] || !want[st.Digest] {
			t.Errorf("ListBlobs yields %s, again or unexpectedly", st.Digest)
		}
		got[st.Digest] = true
	}
	if len(got) != n {
		t.Errorf("ListBlobs yields %d blobs, want %d", len(got), n)
	}
}
