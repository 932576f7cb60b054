package nixsource

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// maxPopularityBytes bounds the popularity file: nixpkgs' whole data set is
// a few MB.
const maxPopularityBytes = 64 << 20

// LoadPopularity reads popularity data (NIX_POPULARITY_URL): a JSON object
// mapping package names to counts, from an http(s) URL, a file:// URL or a
// file path. An empty location gives no data, which the layering handles.
func LoadPopularity(ctx context.Context, location string) (map[string]int, error) {
	if location == "" {
		return nil, nil
	}
	var r io.ReadCloser
	switch {
	case strings.HasPrefix(location, "http://"), strings.HasPrefix(location, "https://"):
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
		if err != nil {
			return nil, fmt.Errorf("popularity data %s: %w", location, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching popularity data %s: %w", location, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("fetching popularity data %s: HTTP %s", location, resp.Status)
		}
		r = resp.Body
	default:
		f, err := os.Open(strings.TrimPrefix(location, "file://"))
		if err != nil {
			return nil, fmt.Errorf("opening popularity data: %w", err)
		}
		r = f
	}
	defer r.Close()
	var pop map[string]int
	dec := json.NewDecoder(io.LimitReader(r, maxPopularityBytes))
	if err := dec.Decode(&pop); err != nil {
		return nil, fmt.Errorf("decoding popularity data %s (want a JSON object of name to count): %w", location, err)
	}
	return pop, nil
}
