package s3store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/storage"
	s3store "github.com/nixport/nixport/storage/s3"
	"github.com/nixport/nixport/storage/s3/s3test"
	"github.com/nixport/nixport/storage/storagetest"
	"github.com/nixport/nixport/storage/storagetest/faultproxy"
)

const layerType = "application/vnd.oci.image.layer.v1.tar+gzip"

// TestSuite runs the shared backend suite against versitygw, streaming
// blobs through the backend, with the smallest parts S3 allows so that the
// larger blobs go up as multipart uploads of several parts.
func TestSuite(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return srv.NewBackend(t, s3store.Options{PartSize: s3store.MinPartSize})
	})
}

// TestSuitePresigned runs the suite with presigned URLs: the suite fetches
// blobs through them from versitygw, which checks their signatures.
func TestSuitePresigned(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return srv.NewBackend(t, s3store.Options{PresignedURLs: true})
	})
}

// TestSuiteWithFaults runs the suite through a proxy that breaks requests
// in every way it can: every operation must still succeed, and no partial
// or corrupt blob is ever visible (storagetest.RunWithFaults).
func TestSuiteWithFaults(t *testing.T) {
	srv := s3test.Start(t)
	proxy := srv.StartProxy(t, faultproxy.Faults{Unavailable: 3, CutAfter: 7, CutBefore: 11, Truncate: 3, TooManyRequests: 17})
	storagetest.RunWithFaults(t, networked(srv), proxy, func(t *testing.T, log logrus.FieldLogger) storage.Backend {
		return srv.NewBackend(t, s3store.Options{
			Log:      log,
			Endpoint: proxy.URL,
			// Parts small enough for the 20 MiB blob to need several.
			PartSize: s3store.MinPartSize,
			// About half the requests fail here, more often than any
			// server does: with the default 10 attempts, one request of
			// the ~2,400 failing ten times in a row happened (CI, under
			// -race), as it does for GCS, whose suite takes 20.
			RetryAttempts: 25,
		})
	})
}

// networked describes the gateway to the checks every networked backend
// passes.
func networked(srv *s3test.Server) storagetest.Networked {
	client := srv.Client()
	return storagetest.Networked{
		NewBackend: func(t *testing.T, like storage.Backend, endpoint string, log logrus.FieldLogger) storage.Backend {
			opts := s3store.Options{Endpoint: endpoint, Log: log}
			if like != nil {
				opts.Bucket = like.(*s3store.Backend).Bucket()
			}
			return srv.NewBackend(t, opts)
		},
		StartProxy: srv.StartProxy,
		// Not New's probes: writes of the backend's own objects.
		SmallWrite: func(r faultproxy.RequestRecord) bool {
			return (r.Method == http.MethodPut || r.Method == http.MethodPost) && !strings.Contains(r.Path, "/probes/")
		},
		BlobWrite: isBlobPut,
		ListBlobs: func(ctx context.Context) ([]storagetest.StoredBlob, error) {
			buckets, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
			if err != nil {
				return nil, err
			}
			var blobs []storagetest.StoredBlob
			for _, bucket := range buckets.Buckets {
				pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: bucket.Name, Prefix: aws.String("blobs/sha256/")})
				for pages.HasMorePages() {
					page, err := pages.NextPage(ctx)
					if err != nil {
						break // deleted with its bucket meanwhile, or cancelled
					}
					for _, obj := range page.Contents {
						blobs = append(blobs, storagetest.StoredBlob{
							ID:   fmt.Sprintf("%s/%s@%s", aws.ToString(bucket.Name), aws.ToString(obj.Key), aws.ToString(obj.ETag)),
							Hex:  strings.TrimPrefix(aws.ToString(obj.Key), "blobs/sha256/"),
							Size: aws.ToInt64(obj.Size),
							Open: func(ctx context.Context) (io.ReadCloser, error) {
								out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket.Name, Key: obj.Key})
								if err != nil {
									return nil, err
								}
								return out.Body, nil
							},
						})
					}
				}
			}
			return blobs, nil
		},
	}
}

// isPartUpload and the others tell the requests of a blob's multipart
// upload apart, as the proxy records them (not those of New's probe).
func isPartUpload(r faultproxy.RequestRecord) bool {
	return isBlob(r) && r.Method == http.MethodPut && strings.Contains(r.Query, "partNumber=")
}
func isUploadStart(r faultproxy.RequestRecord) bool {
	return isBlob(r) && r.Method == http.MethodPost && strings.Contains(r.Query, "uploads")
}
func isUploadCompletion(r faultproxy.RequestRecord) bool {
	return isBlob(r) && r.Method == http.MethodPost && strings.Contains(r.Query, "uploadId=")
}
func isBlobPut(r faultproxy.RequestRecord) bool {
	return isBlob(r) && r.Method == http.MethodPut && !strings.Contains(r.Query, "partNumber=")
}
func isBlob(r faultproxy.RequestRecord) bool { return strings.Contains(r.Path, "/blobs/sha256/") }

// Large blobs go up as multipart uploads in parts of PartSize, several at
// once, completed once; small ones in one PutObject; the spool file is gone
// after Commit. A blob that fails its digest check starts no upload at all.
func TestMultipartUpload(t *testing.T) {
	srv := s3test.Start(t)
	proxy := srv.StartProxy(t, faultproxy.Faults{})
	spool := t.TempDir()
	const part = s3store.MinPartSize
	b := srv.NewBackend(t, s3store.Options{Endpoint: proxy.URL, PartSize: part, TempDir: spool})

	content := storagetest.RandomBytes(1, 5*part+1000)
	info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	var starts, parts, completions, puts int
	for _, rec := range proxy.Records() {
		switch {
		case isUploadStart(rec):
			starts++
		case isPartUpload(rec):
			parts++
			if rec.BodySize > part {
				t.Errorf("a part carried %d bytes, more than PartSize (%d)", rec.BodySize, part)
			}
		case isUploadCompletion(rec):
			completions++
		case isBlobPut(rec):
			puts++
		}
	}
	if starts != 1 || parts != 6 || completions != 1 || puts != 0 {
		t.Errorf("%d uploads started, %d parts, %d completions, %d whole PUTs; want 1, 6, 1, 0", starts, parts, completions, puts)
	}
	requireContent(t, b, info.Digest, content)
	if entries, err := os.ReadDir(spool); err != nil || len(entries) != 0 {
		t.Errorf("spool directory holds %d entries (%v) after Commit, want none", len(entries), err)
	}

	// No larger than a part: one PutObject.
	small := storagetest.RandomBytes(2, part)
	before := len(proxy.Records())
	if _, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(small), part, bytes.NewReader(small)); err != nil {
		t.Fatal(err)
	}
	recs := proxy.Records()[before:]
	if n := countRecords(recs, isBlobPut); n != 1 || countRecords(recs, isUploadStart) != 0 {
		t.Errorf("a blob of one part size: %d whole PUTs, %d multipart uploads; want 1 and 0", n, countRecords(recs, isUploadStart))
	}

	// A wrong digest: nothing leaves the machine.
	before = len(proxy.Records())
	other := storagetest.RandomBytes(3, 3*part)
	if _, err := storage.PutBlob(t.Context(), b, layerType, digest.FromString("something else"), -1, bytes.NewReader(other)); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("PutBlob with a wrong digest: %v, want ErrDigestMismatch", err)
	}
	recs = proxy.Records()[before:]
	if n := countRecords(recs, func(r faultproxy.RequestRecord) bool {
		return r.Method != http.MethodHead && r.Method != http.MethodGet
	}); n != 0 {
		t.Errorf("a blob failing its digest check made %d writes: %+v", n, recs)
	}
	requireNoUploads(t, srv, b.Bucket())
}

// An upload whose parts cannot be stored fails, and is aborted: no object,
// no upload left open, no spool file.
func TestFailedUploadIsAborted(t *testing.T) {
	srv := s3test.Start(t)
	// Every attempt at part 3 is refused with a 503.
	proxy := srv.StartProxy(t, faultproxy.Faults{Unavailable: 1, Match: func(r faultproxy.RequestRecord) bool {
		return isPartUpload(r) && strings.Contains(r.Query, "partNumber=3&")
	}})
	spool := t.TempDir()
	b := srv.NewBackend(t, s3store.Options{Endpoint: proxy.URL, PartSize: s3store.MinPartSize, RetryAttempts: 3, TempDir: spool})
	content := storagetest.RandomBytes(4, 4*s3store.MinPartSize)
	_, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
	if err == nil {
		t.Fatal("PutBlob succeeded with a part that is always refused")
	}
	t.Log(err)
	if s := proxy.Stats(); s.Unavailable != 3 {
		t.Errorf("part 3 was refused %d times, want 3 (RetryAttempts)", s.Unavailable)
	}
	if !strings.Contains(err.Error(), "part 3") {
		t.Errorf("error %q does not name the part", err)
	}
	if _, err := b.StatBlob(t.Context(), digest.FromBytes(content)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("StatBlob after the failed upload: %v, want ErrNotFound", err)
	}
	requireNoUploads(t, srv, b.Bucket())
	if entries, err := os.ReadDir(spool); err != nil || len(entries) != 0 {
		t.Errorf("spool directory holds %d entries (%v), want none", len(entries), err)
	}
}

// A conditional write whose response is lost happened; the writer still
// sees its own write as a success (storagetest.RunLostResponses), and so
// it does when the lost response is that of a multipart upload's
// completion.
func TestLostResponses(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.RunLostResponses(t, networked(srv))

	t.Run("MultipartCompletion", func(t *testing.T) {
		proxy := srv.StartProxy(t, faultproxy.Faults{CutAfter: 1, Limit: 1, Match: isUploadCompletion})
		b := srv.NewBackend(t, s3store.Options{Endpoint: proxy.URL, PartSize: s3store.MinPartSize})
		content := storagetest.RandomBytes(6, 2*s3store.MinPartSize+1)
		info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
		if err != nil {
			t.Fatalf("PutBlob: %v", err)
		}
		if s := proxy.Stats(); s.CutAfter != 1 {
			t.Errorf("%d responses cut, want 1", s.CutAfter)
		}
		requireContent(t, b, info.Digest, content)
		requireNoUploads(t, srv, b.Bucket())
	})
}

// A reader whose stream is cut short carries on from where it broke.
func TestReaderResumes(t *testing.T) {
	srv := s3test.Start(t)
	direct := srv.NewBackend(t, s3store.Options{})
	content := storagetest.RandomBytes(7, 3<<20)
	info, err := storage.PutBlob(t.Context(), direct, layerType, "", -1, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	// Every GET of the blob is answered with half its body.
	proxy := srv.StartProxy(t, faultproxy.Faults{Truncate: 1, Match: func(r faultproxy.RequestRecord) bool {
		return r.Method == http.MethodGet && strings.Contains(r.Path, "/blobs/sha256/")
	}})
	b := srv.NewBackend(t, s3store.Options{Bucket: direct.Bucket(), Endpoint: proxy.URL})
	r, _, err := b.OpenBlob(t.Context(), info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Seek(1000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, content[1000:]) {
		t.Fatalf("read %d bytes (%v), want the %d after offset 1000", len(got), err, len(content)-1000)
	}
	if s := proxy.Stats(); s.Truncated < 3 {
		t.Errorf("%d streams were cut short, want several", s.Truncated)
	}
}

// Two backends (two instances) on one bucket see each other's blobs and
// objects, and one lease between them.
func TestTwoInstancesOneBucket(t *testing.T) {
	storagetest.RunTwoInstances(t, networked(s3test.Start(t)))
}

// A presigned URL names the gateway, lasts SignedURLTTL, and yields the
// blob; versitygw checks its signature, so one with a longer lifetime or
// another blob's key is refused, and one past its expiry too.
func TestPresignedURL(t *testing.T) {
	srv := s3test.Start(t)
	const ttl = 2 * time.Minute
	b := srv.NewBackend(t, s3store.Options{PresignedURLs: true, SignedURLTTL: ttl})
	content := storagetest.RandomBytes(8, 50_000)
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
	if signed.Host != srv.Host || signed.Path != "/"+b.Bucket()+"/blobs/sha256/"+info.Digest.Encoded() {
		t.Errorf("presigned URL %s, want the blob's object on %s", location, srv.Host)
	}
	q := signed.Query()
	if got := q.Get("X-Amz-Expires"); got != strconv.Itoa(int(ttl.Seconds())) {
		t.Errorf("X-Amz-Expires = %q, want %d", got, int(ttl.Seconds()))
	}
	if got := q.Get("X-Amz-Credential"); !strings.HasPrefix(got, s3test.AccessKey+"/") {
		t.Errorf("X-Amz-Credential = %q", got)
	}
	status, body, header := get(t, location, "")
	if status != http.StatusOK || !bytes.Equal(body, content) || header.Get("Content-Type") != layerType {
		t.Errorf("GET presigned URL: %d, %d bytes, Content-Type %q; want 200, the blob, %s", status, len(body), header.Get("Content-Type"), layerType)
	}
	if status, body, _ := get(t, location, "bytes=100-199"); status != http.StatusPartialContent || !bytes.Equal(body, content[100:200]) {
		t.Errorf("a range of the presigned URL: %d, %d bytes", status, len(body))
	}
	tampered := *signed
	tq := signed.Query()
	tq.Set("X-Amz-Expires", "604800")
	tampered.RawQuery = tq.Encode()
	if status, _, _ := get(t, tampered.String(), ""); status != http.StatusForbidden {
		t.Errorf("a presigned URL with a longer lifetime: %d, want 403", status)
	}
	other := *signed
	other.Path = "/" + b.Bucket() + "/blobs/sha256/" + digest.FromString("another").Encoded()
	if status, _, _ := get(t, other.String(), ""); status != http.StatusForbidden {
		t.Errorf("a presigned URL moved to another key: %d, want 403", status)
	}

	// A second's lifetime: refused once it has passed.
	short := srv.NewBackend(t, s3store.Options{Bucket: b.Bucket(), PresignedURLs: true, SignedURLTTL: time.Second})
	location, _, err = short.SignedBlobURL(t.Context(), info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, _ := get(t, location, "")
		if status == http.StatusForbidden {
			break
		}
		if status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("an expired presigned URL still answers %d", status)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Without PresignedURLs, blobs are streamed.
	streamed := srv.NewBackend(t, s3store.Options{Bucket: b.Bucket()})
	if u, ok, err := streamed.SignedBlobURL(t.Context(), info.Digest); ok || err != nil || u != "" {
		t.Errorf("SignedBlobURL without PresignedURLs = %q, %v, %v; want none", u, ok, err)
	}
}

func get(t *testing.T, u, rng string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

// New says what is wrong, before the first pull would.
func TestNewErrors(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	// Nothing from this machine's AWS configuration, and no instance
	// metadata lookups (no traffic beyond 127.0.0.1).
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/nixport-test/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/nixport-test/credentials")
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(v, "")
	}
	creds := s3test.Credentials()
	wrongCreds := credentials.NewStaticCredentialsProvider(s3test.AccessKey, "not-the-secret", "")
	base := func(o s3store.Options) s3store.Options {
		o.Endpoint = orString(o.Endpoint, srv.URL)
		o.ForcePathStyle = true
		o.RetryMax = 50 * time.Millisecond
		return o
	}
	tests := []struct {
		name string
		opts s3store.Options
		want string
	}{
		{"no bucket", base(s3store.Options{Region: s3test.Region, Credentials: creds}), "no bucket given"},
		{"missing bucket", base(s3store.Options{Bucket: "does-not-exist", Region: s3test.Region, Credentials: creds}), "bucket does-not-exist does not exist"},
		{"wrong secret", base(s3store.Options{Bucket: bucket, Region: s3test.Region, Credentials: wrongCreds}), "access to bucket " + bucket + " denied"},
		{"no region", base(s3store.Options{Bucket: bucket, Credentials: creds}), "no AWS region: set AWS_REGION"},
		{"no credentials", base(s3store.Options{Bucket: bucket, Region: s3test.Region}), "no AWS credentials found"},
		{"endpoint not a URL", base(s3store.Options{Bucket: bucket, Region: s3test.Region, Credentials: creds, Endpoint: "127.0.0.1:1"}), "not an http(s) URL"},
		{"part too small", base(s3store.Options{Bucket: bucket, Region: s3test.Region, Credentials: creds, PartSize: 1 << 20}), "below S3's minimum"},
		{"stale age within transfers", base(s3store.Options{Bucket: bucket, Region: s3test.Region, Credentials: creds, TransferTimeout: time.Hour, StaleUploadAge: time.Minute}), "stale upload age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s3store.New(t.Context(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v; want an error saying %q", err, tt.want)
			}
			t.Log(err)
		})
	}

	// Credentials from the environment, as the AWS chain finds them.
	t.Run("credentials from the environment", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
		t.Setenv("AWS_REGION", s3test.Region)
		if _, err := s3store.New(t.Context(), base(s3store.Options{Bucket: bucket})); err != nil {
			t.Errorf("New with credentials and region from the environment: %v", err)
		}
	})
}

func orString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// A server that ignores conditional writes is refused at start-up: with
// it, two instances could hold one lease. Such a server is simulated here
// by a handler that accepts every write; versitygw honours both headers.
func TestNewRefusesServerWithoutConditionalWrites(t *testing.T) {
	var conditional []string
	lax := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for _, h := range []string{"If-None-Match", "If-Match"} {
			if r.Header.Get(h) != "" {
				conditional = append(conditional, h)
			}
		}
		switch r.Method {
		case http.MethodPut:
			w.Header().Set("ETag", `"`+strconv.Itoa(len(conditional))+`"`)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer lax.Close()
	_, err := s3store.New(t.Context(), s3store.Options{
		Bucket: "lax", Endpoint: lax.URL, ForcePathStyle: true, Region: s3test.Region, Credentials: s3test.Credentials(),
	})
	if err == nil {
		t.Fatal("New accepted a server that ignores If-None-Match and If-Match")
	}
	for _, want := range []string{"does not honour If-None-Match", "nor If-Match", "build leases"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New: %v; want it to say %q", err, want)
		}
	}
	if !slices.Contains(conditional, "If-None-Match") || !slices.Contains(conditional, "If-Match") {
		t.Errorf("the probe sent conditions %v, want both", conditional)
	}
}

// A server that honours conditional PUTs but not a conditional completion
// of a multipart upload, nor a conditional delete (it answers 501 Not
// Implemented), is used without them: New says so, large blobs are
// completed without If-None-Match (safe: a blob's name is its verified
// content), and released leases are deleted without If-Match.
func TestServerWithoutConditionalCompletionOrDelete(t *testing.T) {
	srv := s3test.Start(t)
	proxy := srv.StartProxy(t, faultproxy.Faults{NotImplemented: 1, Match: func(r faultproxy.RequestRecord) bool {
		completion := r.Method == http.MethodPost && strings.Contains(r.Query, "uploadId=")
		return (completion && r.Header.Get("If-None-Match") != "") || (r.Method == http.MethodDelete && r.Header.Get("If-Match") != "")
	}})
	log, logs := logtest.NewNullLogger()
	b := srv.NewBackend(t, s3store.Options{Endpoint: proxy.URL, PartSize: s3store.MinPartSize, Log: log})
	var warnings []string
	for _, e := range logs.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "If-None-Match on CompleteMultipartUpload") || !strings.Contains(warnings[1], "If-Match on DeleteObject") {
		t.Errorf("New warned %q; want one warning about each condition", warnings)
	}

	content := storagetest.RandomBytes(9, 2*s3store.MinPartSize+1)
	info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
	if err != nil {
		t.Fatalf("PutBlob: %v", err)
	}
	requireContent(t, b, info.Digest, content)
	lease, err := b.TryLease(t.Context(), "image", "instance-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := b.TryLease(t.Context(), "image", "instance-b", time.Hour); err != nil {
		t.Errorf("TryLease after the release: %v", err)
	}
	if s := proxy.Stats(); s.NotImplemented != 2 {
		t.Errorf("%d requests refused as not implemented, want 2 (New's probes)", s.NotImplemented)
	}
	var completions, leaseDeletes int
	for _, r := range proxy.Records() {
		if isUploadCompletion(r) && r.Header.Get("If-None-Match") == "" {
			completions++
		}
		if r.Method == http.MethodDelete && strings.Contains(r.Path, "/leases/") && r.Header.Get("If-Match") == "" {
			leaseDeletes++
		}
	}
	if completions != 1 || leaseDeletes != 1 {
		t.Errorf("%d unconditional completions, %d unconditional lease deletes; want 1 each", completions, leaseDeletes)
	}
	requireNoUploads(t, srv, b.Bucket())
}

// New aborts the blob uploads older than StaleUploadAge (abandoned by a
// crash), and leaves younger ones (another instance's, running) and
// anything outside blobs/ alone.
func TestStaleUploadsAborted(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	client := srv.Client()
	start := func(key string) string {
		out, err := client.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.UploadId)
	}
	stale := start("blobs/sha256/" + digest.FromString("abandoned").Encoded())
	foreign := start("elsewhere/upload")
	// The gateway keeps initiation times in whole seconds: wait until the
	// first uploads are surely older than the bound.
	const age = 2 * time.Second
	time.Sleep(age + 1500*time.Millisecond)
	fresh := start("blobs/sha256/" + digest.FromString("in progress").Encoded())

	log, logs := logtest.NewNullLogger()
	srv.NewBackend(t, s3store.Options{Bucket: bucket, TransferTimeout: time.Second, StaleUploadAge: age, Log: log})
	open := map[string]bool{}
	out, err := client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		open[aws.ToString(u.UploadId)] = true
	}
	if open[stale] || !open[fresh] || !open[foreign] {
		t.Errorf("open uploads after New: stale %v, fresh %v, outside blobs/ %v; want false, true, true", open[stale], open[fresh], open[foreign])
	}
	if e := logs.LastEntry(); e == nil || e.Message != "aborted abandoned blob uploads" || e.Data["aborted"] != 1 {
		t.Errorf("last log entry %v, want one saying 1 upload was aborted", e)
	}
}

// Objects stored in the bucket by other means than the backend (and so
// under names it would refuse) are left out of listings, and leases never
// appear among objects.
func TestListSkipsForeignNames(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBackend(t, s3store.Options{})
	client := srv.Client()
	if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(b.Bucket()), Key: aws.String("objects/a b"), Body: strings.NewReader("foreign")}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutObject(t.Context(), "a/ok", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLease(t.Context(), "a/ok", "h", time.Hour); err != nil {
		t.Fatal(err)
	}
	names, err := b.ListObjects(t.Context(), "")
	if err != nil || !slices.Equal(names, []string{"a/ok"}) {
		t.Errorf("ListObjects = %q, %v; want [a/ok]", names, err)
	}
	out, err := client.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(b.Bucket()), Prefix: aws.String("leases/")})
	if err != nil || len(out.Contents) != 1 {
		t.Fatalf("lease objects: %v, %v; want one", out, err)
	}
	sum := sha256.Sum256([]byte("a/ok"))
	if key := aws.ToString(out.Contents[0].Key); key != "leases/"+hex.EncodeToString(sum[:]) {
		t.Errorf("lease object %s, want leases/<sha256 of the name>", key)
	}
	// And New left no probe object behind.
	if out, err := client.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(b.Bucket()), Prefix: aws.String("probes/")}); err != nil || len(out.Contents) != 0 {
		t.Errorf("probe objects left: %v, %v", out, err)
	}
}

// requireContent checks that the blob reads back as content.
func requireContent(t *testing.T, b storage.Backend, dgst digest.Digest, content []byte) {
	t.Helper()
	rc, info, err := b.OpenBlob(t.Context(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) || info.Size != int64(len(content)) {
		t.Errorf("read back %d bytes (%v, size %d), want the %d written", len(got), err, info.Size, len(content))
	}
}

// requireNoUploads checks that no multipart upload is left open.
func requireNoUploads(t *testing.T, srv *s3test.Server, bucket string) {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		t.Errorf("multipart upload of %s left open", aws.ToString(u.Key))
	}
}

func countRecords(recs []faultproxy.RequestRecord, match func(faultproxy.RequestRecord) bool) int {
	n := 0
	for _, r := range recs {
		if match(r) {
			n++
		}
	}
	return n
}

// A lease record that cannot be read counts as expired; one that can be
// read holds.
func TestDamagedLeaseRecord(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBackend(t, s3store.Options{})
	sum := sha256.Sum256([]byte("build/x"))
	key := "leases/" + hex.EncodeToString(sum[:])
	record := func(name, body string, damaged bool) storagetest.StoredLease {
		return storagetest.StoredLease{Name: name, Damaged: damaged, Store: func(t *testing.T) {
			_, err := srv.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(b.Bucket()), Key: aws.String(key), Body: strings.NewReader(body)})
			if err != nil {
				t.Fatal(err)
			}
		}}
	}
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	storagetest.RunDamagedLeases(t, b, []storagetest.StoredLease{
		record("readable", `{"name":"build/x","holder":"other","expires":"`+expires+`","token":"t"}`, false),
		record("no expiry", `{"name":"build/x","holder":"other","token":"t"}`, true),
		record("not JSON", "not JSON", true),
	})
}

// TestRefreshObjects ages a blob (versitygw reports a file's modification
// time), refreshes it and deletes it: the refresh object makes the blob
// recent in the listing and to DeleteBlob, and goes with the blob.
func TestRefreshObjects(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBackend(t, s3store.Options{})
	client := srv.Client()
	content := []byte("a layer reused a day after it was built")
	info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	dayAgo := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(filepath.Join(srv.Dir, b.Bucket(), "blobs", "sha256", info.Digest.Encoded()), dayAgo, dayAgo); err != nil {
		t.Fatal(err)
	}
	modified := func() time.Time {
		for st, err := range b.ListBlobs(t.Context()) {
			if err != nil {
				t.Fatal(err)
			}
			if st.Digest == info.Digest {
				return st.Modified
			}
		}
		t.Fatalf("ListBlobs does not list %s", info.Digest)
		return time.Time{}
	}
	if m := modified(); m.After(dayAgo.Add(2 * time.Second)) {
		t.Fatalf("the aged blob's Modified is %s, want about %s (does the gateway report file times?)", m, dayAgo)
	}
	start := time.Now()
	if _, err := b.RefreshBlob(t.Context(), info.Digest); err != nil {
		t.Fatal(err)
	}
	refreshKey := "refreshed/" + info.Digest.Encoded()
	if _, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(b.Bucket()), Key: aws.String(refreshKey)}); err != nil {
		t.Fatalf("refresh object after RefreshBlob: %v", err)
	}
	if m := modified(); m.Before(start.Add(-time.Second)) {
		t.Errorf("Modified after RefreshBlob = %s, want no earlier than %s", m, start)
	}
	if err := b.DeleteBlob(t.Context(), info.Digest, start.Add(-time.Second)); !errors.Is(err, storage.ErrBlobRecent) {
		t.Errorf("DeleteBlob of the refreshed blob = %v, want ErrBlobRecent", err)
	}
	if err := b.DeleteBlob(t.Context(), info.Digest, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"blobs/sha256/" + info.Digest.Encoded(), refreshKey} {
		if _, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(b.Bucket()), Key: aws.String(key)}); err == nil {
			t.Errorf("%s left after DeleteBlob", key)
		}
	}
}

// TestListBlobsPages lists more blobs than one page holds, beside refresh
// objects of some and of none, and names that are not blobs.
func TestListBlobsPages(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBackend(t, s3store.Options{})
	client := srv.Client()
	const n = 1100
	want := map[digest.Digest]bool{}
	var keys []string
	for i := range n {
		d := digest.FromString(strconv.Itoa(i))
		want[d] = true
		keys = append(keys, "blobs/sha256/"+d.Encoded())
		if i%3 == 0 {
			keys = append(keys, "refreshed/"+d.Encoded())
		}
	}
	keys = append(keys, "blobs/sha256/not-a-digest", "refreshed/"+digest.FromString("no blob").Encoded(), "refreshed/zz")
	jobs := make([]func(context.Context) error, len(keys))
	for i, key := range keys {
		jobs[i] = func(ctx context.Context) error {
			_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.Bucket()), Key: aws.String(key), Body: strings.NewReader("x")})
			return err
		}
	}
	if err := parallel.Run(t.Context(), 16, jobs); err != nil {
		t.Fatal(err)
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
