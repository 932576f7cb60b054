package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nixport/nixport/storage/gcs/gcstest"
)

// TestTwoInstancesOneBucket runs two real nixport processes on one bucket
// of the GCS emulator: both asked at once for a cold image build it once,
// and what one built the other serves.
func TestTwoInstancesOneBucket(t *testing.T) {
	requireTools(t, "nix-store")
	emu := gcstest.Start(t)
	bucket := emu.NewBucket(t)
	env := []string{"NIXERY_STORAGE_BACKEND=gcs", "GCS_BUCKET=" + bucket, "STORAGE_EMULATOR_HOST=" + emu.Host, "NIXPORT_LOG_LEVEL=debug"}
	a := startServer(t, env...)
	b := startServer(t, env...)
	a.drainCount("")
	b.drainCount("")

	var wg sync.WaitGroup
	digests := make([]string, 8)
	errs := make([]error, 8)
	for i := range digests {
		srv := a
		if i%2 == 1 {
			srv = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			digests[i], errs[i] = pullAll(http.DefaultClient, "http://"+srv.addr, "deep/xorg.xev", "latest")
		}()
	}
	wg.Wait()
	for i := range digests {
		if errs[i] != nil || digests[i] != digests[0] {
			t.Fatalf("client %d: %q %v (client 0: %q)", i, digests[i], errs[i], digests[0])
		}
	}
	na, nb := a.drainCount("nix process started"), b.drainCount("nix process started")
	// One build: resolve, realise, closure, and the SBOM's names.
	if na+nb != 4 {
		t.Errorf("Nix processes: %d on the first instance, %d on the second; want 4 in all (one build)", na, nb)
	}

	// Built on the first, pulled from the second by digest: storage alone.
	if _, err := pullAll(http.DefaultClient, "http://"+a.addr, "hello", "latest"); err != nil {
		t.Fatal(err)
	}
	a.drainCount("")
	b.drainCount("")
	resp, err := http.Get("http://" + a.addr + "/v2/hello/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := resp.Header.Get("Docker-Content-Digest")
	if _, err := pullAll(http.DefaultClient, "http://"+b.addr, "hello", d); err != nil {
		t.Fatal(err)
	}
	if n := b.drainCount("nix process started"); n != 0 {
		t.Errorf("the second instance ran %d Nix processes to serve a stored image", n)
	}
	a.stop(t)
	b.stop(t)
}

// TestSignedBlobRedirects serves blobs from GCS through V4 signed URLs: the
// client follows the redirect and gets the blob.
func TestSignedBlobRedirects(t *testing.T) {
	requireTools(t, "nix-store")
	emu := gcstest.Start(t)
	bucket := emu.NewBucket(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "NIXERY_STORAGE_BACKEND=gcs", "GCS_BUCKET="+bucket, "STORAGE_EMULATOR_HOST="+emu.Host,
		"GCS_SIGNING_KEY="+keyFile, "GCS_SIGNING_ACCOUNT=nixport@test.iam.gserviceaccount.com")

	// pullAll follows redirects and verifies every blob's digest.
	d, err := pullAll(http.DefaultClient, "http://"+s.addr, "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.addr + "/v2/hello/manifests/" + d)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var m struct{ Config struct{ Digest string } }
	resp, err = http.Get("http://" + s.addr + "/v2/hello/manifests/" + d)
	if err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, resp, &m)
	resp, err = noFollow.Get("http://" + s.addr + "/v2/hello/blobs/" + m.Config.Digest)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || loc == "" {
		t.Fatalf("blob GET: %d, Location %q; want 307 to a signed URL", resp.StatusCode, loc)
	}
	for _, p := range []string{"X-Goog-Signature=", "X-Goog-Expires=", "X-Goog-Credential=nixport"} {
		if !contains(loc, p) {
			t.Errorf("signed URL %s lacks %s", loc, p)
		}
	}
	s.stop(t)
}
