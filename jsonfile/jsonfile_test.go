package jsonfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeStrict(t *testing.T) {
	type doc struct {
		Name  string   `json:"name"`
		List  []string `json:"list"`
		On    bool     `json:"on"`
		Count int      `json:"count"`
	}
	tests := []struct {
		data, wantErr string
	}{
		{`{"name": "x", "list": ["a"], "on": true, "count": 3}`, ""},
		{`{"name": 3}`, `field "name": a JSON number where a string belongs`},
		{`{"list": {}}`, `field "list": a JSON object where a list belongs`},
		{`{"on": "yes"}`, `field "on": a JSON string where a boolean belongs`},
		{`{"count": []}`, `field "count": a JSON array where a number belongs`},
		{`[]`, `a JSON array where an object belongs`},
		{`{"other": 1}`, `unknown field "other"`},
		{`{"name": "x"} {}`, `data after the JSON value`},
		{`{"name": `, `malformed JSON: it ends early`},
		{`{"name" "x"}`, `malformed JSON at byte 9`},
		{`{"secret-document-text" x}`, `malformed JSON at byte`},
	}
	for _, tt := range tests {
		var d doc
		err := DecodeStrict([]byte(tt.data), &d)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.data, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: %v, want %q", tt.data, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret-document-text") {
			t.Errorf("%s: the error quotes the document: %v", tt.data, err)
		}
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small"), filepath.Join(dir, "big")
	os.WriteFile(small, []byte("12345"), 0o644)
	os.WriteFile(big, []byte("123456"), 0o644)
	if data, err := Read(small, 5); err != nil || string(data) != "12345" {
		t.Errorf("Read(small) = %q, %v", data, err)
	}
	if _, err := Read(big, 5); err == nil || !strings.Contains(err.Error(), "larger than 5 bytes") {
		t.Errorf("Read(big) = %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing"), 5); !os.IsNotExist(err) {
		t.Errorf("Read(missing) = %v", err)
	}
}
