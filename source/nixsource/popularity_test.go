package nixsource

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadPopularity(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pop.json")
	os.WriteFile(good, []byte(`{"glibc": 900, "openssl": 400}`), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`["glibc"]`), 0o644)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/pop.json" {
			w.Write([]byte(`{"zlib": 7}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()

	tests := []struct {
		location string
		want     map[string]int
		wantErr  string
	}{
		{location: "", want: nil},
		{location: good, want: map[string]int{"glibc": 900, "openssl": 400}},
		{location: "file://" + good, want: map[string]int{"glibc": 900, "openssl": 400}},
		{location: srv.URL + "/pop.json", want: map[string]int{"zlib": 7}},
		{location: srv.URL + "/missing", wantErr: "404"},
		{location: bad, wantErr: "JSON object"},
		{location: filepath.Join(dir, "nope"), wantErr: "opening popularity data"},
	}
	for _, tt := range tests {
		t.Run(tt.location, func(t *testing.T) {
			got, err := LoadPopularity(context.Background(), tt.location)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d", k, got[k], v)
				}
			}
		})
	}
}
