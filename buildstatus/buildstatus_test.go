package buildstatus

import (
	"encoding/json"
	"testing"
	"time"
)

// TestJSONFieldNames pins the JSON of a Status: CI pipelines and the
// status pages read these names.
func TestJSONFieldNames(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := Status{
		ID: "0123456789abcdef", Image: "shell/hello", Tag: "latest", Source: "nix", State: Realising,
		PathsDone: 1, PathsTotal: 2, LayersDone: 3, LayersTotal: 4, BytesCompressed: 5,
		QueuedAt: at, StartedAt: &at, FinishedAt: &at,
		ManifestDigest: "sha256:x", Error: "e", RequestID: "r", Log: "l",
	}
	got, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"0123456789abcdef","image":"shell/hello","tag":"latest","source":"nix","state":"realising",` +
		`"paths_done":1,"paths_total":2,"layers_done":3,"layers_total":4,"bytes_compressed":5,` +
		`"queued_at":"2026-01-02T03:04:05Z","started_at":"2026-01-02T03:04:05Z","finished_at":"2026-01-02T03:04:05Z",` +
		`"manifest_digest":"sha256:x","error":"e","request_id":"r","log":"l"}`
	if string(got) != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
	// An image already built: no build, so no times and no progress.
	got, _ = json.Marshal(Status{Image: "hello", Tag: "latest", State: Done, ManifestDigest: "sha256:x"})
	if want := `{"id":"","image":"hello","tag":"latest","state":"done","manifest_digest":"sha256:x"}`; string(got) != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
}

func TestFinished(t *testing.T) {
	for s, want := range map[State]bool{Queued: false, Resolving: false, Realising: false, Archiving: false, Done: true, Failed: true} {
		if s.Finished() != want {
			t.Errorf("%s.Finished() = %v", s, !want)
		}
	}
}
