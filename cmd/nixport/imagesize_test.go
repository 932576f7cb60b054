package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nixport/nixport/testkit"
)

// TestImageSizeLimit: an image whose closure is over NIXPORT_MAX_IMAGE_BYTES
// is refused with DENIED naming both sizes, before anything is archived;
// the refusal is logged with the client and counted.
func TestImageSizeLimit(t *testing.T) {
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t), "NIXPORT_MAX_IMAGE_BYTES=1KiB")
	resp, body := get(t, "http://"+s.addr+"/v2/hello/manifests/latest")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %s, want 403: %s", resp.Status, body)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != "DENIED" {
		t.Fatalf("body %s", body)
	}
	if msg := e.Errors[0].Message; !strings.Contains(msg, "1.00 KiB") || !strings.Contains(msg, "NIXPORT_MAX_IMAGE_BYTES") {
		t.Errorf("message %q does not name the limit", msg)
	}
	line := s.awaitLog(t, "build refused", "hello", nil)
	if line["limit"] != "image_size" || line["client"] != "addr:127.0.0.1" || line["closure_bytes"] == nil {
		t.Errorf("refusal line %v", line)
	}
	families := scrape(t, "http://"+s.addr+"/metrics")
	if v := sample(families, "nixport_refusals_total", "limit", "image_size"); v != 1 {
		t.Errorf("nixport_refusals_total{limit=image_size} = %v, want 1", v)
	}
	// Nothing was archived: no blob was written.
	if v := sample(families, "nixport_storage_operations_total", "backend", "filesystem", "op", "write_blob", "result", "ok"); v != 0 {
		t.Errorf("%v blobs were written for a refused image", v)
	}
}
