package main

// End-to-end tests of the s3 backend: real nixport processes on a bucket of
// versitygw (a real S3 gateway over a directory, started by the test), real
// Nix, and real clients (skopeo, the Docker Engine).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nixport/nixport/storage/s3/s3test"
	"github.com/nixport/nixport/testkit"
)

// TestS3TwoInstancesOneBucket runs two nixport processes on one bucket, one
// redirecting blob downloads to presigned URLs (the default), the other
// streaming them: cold pulls on both at once build the image once, and
// either serves it, to skopeo and to docker.
func TestS3TwoInstancesOneBucket(t *testing.T) {
	requireTools(t, "nix-store", "skopeo")
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	env := append(srv.Env(bucket), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t))
	presigned := startServer(t, env...)
	streamed := startServer(t, append(env, "S3_USE_PRESIGNED_URLS=false")...)
	presigned.drainCount("")
	streamed.drainCount("")

	const image = "shell/hello"
	var wg sync.WaitGroup
	digests := make([]string, 8)
	errs := make([]error, 8)
	for i := range digests {
		s := presigned
		if i%2 == 1 {
			s = streamed
		}
		wg.Go(func() {
			digests[i], errs[i] = pullAll(&http.Client{Timeout: 3 * time.Minute}, "http://"+s.addr, image, "latest")
		})
	}
	wg.Wait()
	for i := range digests {
		if errs[i] != nil || digests[i] != digests[0] || digests[i] == "" {
			t.Fatalf("client %d: %q %v (client 0: %q)", i, digests[i], errs[i], digests[0])
		}
	}
	if na, nb := presigned.drainCount("build started"), streamed.drainCount("build started"); na+nb != 1 {
		t.Errorf("builds: %d on the first instance, %d on the second; want 1 in all", na, nb)
	}

	// The first redirects blob GETs to the gateway, the second streams.
	var m struct{ Config struct{ Digest string } }
	resp, err := http.Get("http://" + presigned.addr + "/v2/" + image + "/manifests/" + digests[0])
	if err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, resp, &m)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		s        *server
		status   int
		location string
	}{{presigned, http.StatusTemporaryRedirect, "http://" + srv.Host + "/" + bucket + "/blobs/sha256/"}, {streamed, http.StatusOK, ""}} {
		resp, err := noFollow.Get("http://" + tt.s.addr + "/v2/" + image + "/blobs/" + m.Config.Digest)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != tt.status || !strings.HasPrefix(loc, tt.location) || (tt.location != "" && !strings.Contains(loc, "X-Amz-Signature=")) {
			t.Errorf("blob GET on %s: %d, Location %q; want %d to %q...", tt.s.addr, resp.StatusCode, loc, tt.status, tt.location)
		}
	}

	// skopeo from each (following the redirects of the first).
	for _, s := range []*server{presigned, streamed} {
		layout := skopeoPull(t, s.addr, image+":latest")
		if got := readLayout(t, layout); got.Config.Digest.String() != m.Config.Digest {
			t.Errorf("skopeo from %s: config %s, want %s", s.addr, got.Config.Digest, m.Config.Digest)
		}
	}

	t.Run("docker", func(t *testing.T) {
		requireDocker(t)
		for _, s := range []*server{presigned, streamed} {
			ref := s.addr + "/" + image + ":latest"
			if r := dockerPull(t, ref); r.err != nil {
				t.Fatalf("docker pull %s: %v\n%s", ref, r.err, r.output())
			}
			r := runDocker(dockerQuickTimeout, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
			if r.err != nil || !strings.Contains(r.stdout, "@"+digests[0]) {
				t.Errorf("docker image inspect %s: %v\n%s; want digest %s", ref, r.err, r.output(), digests[0])
			}
		}
		// What the engine fetched through presigned URLs runs.
		ref := presigned.addr + "/" + image + ":latest"
		name := fmt.Sprintf("nixport-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		t.Cleanup(func() { dockerRemoveContainer(t, name) })
		r := runDocker(dockerRunTimeout, "run", "--rm", "--name", name, "--pull", "never", "--network", "none", ref, "hello")
		if r.err != nil || r.stdout != "Hello, world!\n" {
			t.Errorf("docker run %s hello: %v, printed %q (stderr %q)", ref, r.err, r.stdout, r.stderr)
		}
	})
	presigned.stop(t)
	streamed.stop(t)
}

// TestS3RestartServesWithoutNix: a server started again on the bucket
// serves an image by digest from storage alone, with Nix out of reach:
// every Nix command on its PATH fails.
func TestS3RestartServesWithoutNix(t *testing.T) {
	requireTools(t, "nix-store", "skopeo")
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	env := append(srv.Env(bucket), "NIXPORT_LOG_LEVEL=debug")
	first := startServer(t, env...)
	d, err := pullAll(http.DefaultClient, "http://"+first.addr, "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	first.stop(t)

	// Nix that does not run on the second server: stand-ins that fail,
	// loudly, whatever runs them (nixport refuses to start when the Nix
	// commands are not installed at all). It says so, and serves what
	// storage holds.
	noNix := t.TempDir()
	for _, tool := range []string{"nix", "nix-store", "nix-instantiate", "nix-build"} {
		testkit.WriteFile(t, filepath.Join(noNix, tool), []byte("#!/bin/sh\necho \"nix is out of reach: $0 $*\" >&2\nexit 97\n"))
		if err := os.Chmod(filepath.Join(noNix, tool), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	second := startServer(t, append(env, "PATH="+noNix)...)
	second.awaitLog(t, "Nix does not run: images already built are served, builds fail until it does", "", nil)
	second.drainCount("")
	if got, err := pullAll(http.DefaultClient, "http://"+second.addr, "hello", d); err != nil || got != d {
		t.Fatalf("pull by digest after the restart: %s %v, want %s", got, err, d)
	}
	layout := skopeoPull(t, second.addr, "hello@"+d)
	if m := readLayout(t, layout); len(m.Layers) == 0 {
		t.Error("skopeo copied an image without layers")
	}
	if n := second.drainCount("nix process started"); n != 0 {
		t.Errorf("the restarted server ran %d Nix processes to serve a stored image", n)
	}
	second.stop(t)
}

// TestS3OutageMidBuild stops the S3 server while a build stores its layers,
// and starts it again (same directory, same port) once the build has
// given up: the pull fails with an error that says what failed, no blob in
// the bucket is partial at any time, and the next pull builds and serves
// the image.
func TestS3OutageMidBuild(t *testing.T) {
	requireTools(t, "nix-store")
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	env := append(srv.Env(bucket), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t), "NIXPORT_LOG_LEVEL=debug", "NIXPORT_FAILED_BUILD_TTL=0")
	s := startServer(t, env...)
	const image = "bigclosure"

	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get("http://" + s.addr + "/v2/" + image + "/manifests/latest")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode, body: string(body), err: err}
	}()
	// The first layer is stored: the others are on their way.
	s.awaitLog(t, "blob stored", "", nil)
	srv.Stop(t)
	started := time.Now()
	// The build's end: its log line says why it failed; the client is
	// told of a server fault (a 5xx, whose details web keeps to the log).
	var end map[string]any
	deadline := time.After(3 * time.Minute)
	for end == nil {
		select {
		case line := <-s.logs:
			if line["msg"] == "build failed" || line["msg"] == "image ready" {
				end = line
			}
		case <-deadline:
			t.Fatal("the build neither failed nor ended within 3 minutes of the outage")
		}
	}
	a := <-answered
	t.Logf("the build during the outage: %q after %s: %v; the pull: %d %s %v", end["msg"], time.Since(started).Round(time.Second), end["error"], a.status, a.body, a.err)
	switch msg, _ := end["error"].(string); {
	case a.err != nil:
		t.Fatalf("the pull during the outage got no answer: %v", a.err)
	case end["msg"] == "image ready" && a.status == http.StatusOK:
		// Everything was stored before the outage mattered.
	case end["msg"] == "build failed" && a.status >= 500:
		for _, want := range []string{"operation error S3", "connection refused"} {
			if !strings.Contains(msg, want) {
				t.Errorf("the build's error %q does not say %q", msg, want)
			}
		}
	default:
		t.Errorf("the build %q, the pull %d %s; want the image, or a failed build and a server error", end["msg"], a.status, a.body)
	}
	srv.Restart(t)

	if n := checkBucketIntact(t, srv, bucket); n == 0 {
		t.Error("no blob was stored before the outage")
	}
	if _, err := pullAll(&http.Client{Timeout: 5 * time.Minute}, "http://"+s.addr, image, "latest"); err != nil {
		t.Fatalf("the pull after the outage: %v", err)
	}
	checkBucketIntact(t, srv, bucket)
	s.stop(t)
}

// checkBucketIntact verifies that every blob in the bucket hashes to its
// name, and that no multipart upload is left open; it returns how many
// blobs it checked.
func checkBucketIntact(t *testing.T, srv *s3test.Server, bucket string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := srv.Client()
	n := 0
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("blobs/sha256/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range page.Contents {
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: obj.Key})
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			_, err = io.Copy(h, out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if "blobs/sha256/"+hex.EncodeToString(h.Sum(nil)) != aws.ToString(obj.Key) {
				t.Errorf("blob %s does not hash to its name: partial blob visible", aws.ToString(obj.Key))
			}
			n++
		}
	}
	uploads, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range uploads.Uploads {
		t.Errorf("multipart upload of %s left open", aws.ToString(u.Key))
	}
	return n
}
