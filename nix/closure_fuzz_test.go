package nix

import (
	"slices"
	"testing"
)

// FuzzParsePathInfo feeds arbitrary bytes to the parser of `nix path-info
// --json` output: it never panics, and a closure it accepts is a graph
// whose references all point inside it, without self-references.
func FuzzParsePathInfo(f *testing.F) {
	const a = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"
	const b = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b"
	f.Add([]byte(`[{"path":"`+a+`","narHash":"sha256-x","narSize":10,"references":["`+a+`","`+b+`"]},{"path":"`+b+`","narHash":"sha256-y","narSize":5,"references":[]}]`), a)
	f.Add([]byte(`{"`+a+`":{"narHash":"sha256-x","narSize":10,"references":["`+b+`"]},"`+b+`":{"narSize":1,"references":[]}}`), a)
	f.Add([]byte(`[{"path":"`+a+`","valid":false}]`), a)
	f.Add([]byte(`[`), a)
	f.Fuzz(func(t *testing.T, data []byte, root string) {
		c, err := parsePathInfo(data, []string{root})
		if err != nil {
			return
		}
		paths := map[string]bool{}
		for _, p := range c.Paths {
			paths[p.Path] = true
		}
		for _, p := range c.Paths {
			if slices.Contains(p.References, p.Path) {
				t.Errorf("%s refers to itself", p.Path)
			}
			for _, r := range p.References {
				if !paths[r] {
					t.Errorf("%s refers to %s, not in the closure", p.Path, r)
				}
			}
		}
	})
}
