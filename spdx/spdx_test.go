package spdx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func sample() Document {
	return Document{
		Name:      "hello",
		Namespace: "https://nixport.invalid/spdx/sha256-0123",
		Created:   time.Date(2024, 5, 1, 12, 30, 0, 0, time.FixedZone("X", 3600)),
		Creators:  []string{"Tool: nixport"},
		Comment:   "from the builtin package set",
		Packages: []Package{
			{ID: "b", Name: "hello", Version: "2.12.1", FileName: "/nix/store/b-hello", SHA256: strings.Repeat("ab", 32),
				Licenses: []License{{SPDXID: "MIT", Name: "mit"}}, Homepage: "https://example.org/hello",
				Description: "greets <you> & me", Described: true, DependsOn: []string{"a", "c", "a"}},
			{ID: "a", Name: "busybox", FileName: "/nix/store/a-busybox"},
			{ID: "c", Name: "greeting", Version: "1.0", DependsOn: []string{"a"},
				Licenses: []License{{SPDXID: "MIT"}, {SPDXID: "Apache-2.0"}}, Homepage: "ftp://not-kept"},
		},
	}
}

func TestRender(t *testing.T) {
	data, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(data); err != nil {
		t.Fatalf("rendered document fails the schema's rules: %v\n%s", err, data)
	}
	var doc struct {
		CreationInfo struct{ Created string }
		Packages     []struct {
			SPDXID, Name, VersionInfo, LicenseDeclared, LicenseComments, Homepage, Description string
			Checksums                                                                          []struct{ Algorithm, ChecksumValue string }
		}
		Relationships []struct{ SPDXElementID, RelatedSPDXElement, RelationshipType string }
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.CreationInfo.Created != "2024-05-01T11:30:00Z" {
		t.Errorf("created %q: want UTC", doc.CreationInfo.Created)
	}
	var ids []string
	for _, p := range doc.Packages {
		ids = append(ids, p.SPDXID)
	}
	if strings.Join(ids, " ") != "SPDXRef-a SPDXRef-b SPDXRef-c" {
		t.Errorf("packages in order %v", ids)
	}
	hello, greeting := doc.Packages[1], doc.Packages[2]
	if hello.LicenseDeclared != "MIT" || hello.Homepage != "https://example.org/hello" || hello.Description != "greets <you> & me" ||
		len(hello.Checksums) != 1 || hello.Checksums[0].Algorithm != "SHA256" {
		t.Errorf("hello: %+v", hello)
	}
	if greeting.LicenseDeclared != "MIT AND Apache-2.0" || greeting.Homepage != "" {
		t.Errorf("greeting: %+v", greeting)
	}
	if doc.Packages[0].LicenseDeclared != NoAssertion || doc.Packages[0].LicenseComments != "" {
		t.Errorf("busybox without licenses: %+v", doc.Packages[0])
	}
	var rels []string
	for _, r := range doc.Relationships {
		rels = append(rels, r.SPDXElementID+" "+r.RelationshipType+" "+r.RelatedSPDXElement)
	}
	want := "SPDXRef-DOCUMENT DESCRIBES SPDXRef-b|SPDXRef-b DEPENDS_ON SPDXRef-a|SPDXRef-b DEPENDS_ON SPDXRef-c|SPDXRef-c DEPENDS_ON SPDXRef-a"
	if strings.Join(rels, "|") != want {
		t.Errorf("relationships\n%s\nwant\n%s", strings.Join(rels, "|"), want)
	}

	// Same document, packages in another order: same bytes.
	d := sample()
	d.Packages[0], d.Packages[2] = d.Packages[2], d.Packages[0]
	again, err := Render(d)
	if err != nil || !bytes.Equal(again, data) {
		t.Errorf("reordered packages changed the bytes (%v)", err)
	}
}

func TestDeclaredLicense(t *testing.T) {
	for _, tc := range []struct {
		in               []License
		want, commentHas string
	}{
		{nil, NoAssertion, ""},
		{[]License{{SPDXID: "GPL-2.0-or-later", Name: "gpl2Plus"}}, "GPL-2.0-or-later", "gpl2Plus"},
		{[]License{{SPDXID: "MIT"}, {SPDXID: "BSD-3-Clause"}}, "MIT AND BSD-3-Clause", "MIT, BSD-3-Clause"},
		{[]License{{Name: "unfree"}}, NoAssertion, "unfree"},
		{[]License{{SPDXID: "MIT"}, {Name: "custom"}}, NoAssertion, "MIT, custom"},
		{[]License{{SPDXID: "GPL-2.0-only"}, {SPDXID: "Classpath-exception-2.0"}}, NoAssertion, "Classpath-exception-2.0"},
		{[]License{{SPDXID: "MIT OR (evil"}}, NoAssertion, ""},
		{[]License{{SPDXID: "LicenseRef-foo"}}, "LicenseRef-foo", ""},
	} {
		got, comment := declaredLicense(tc.in)
		if got != tc.want || !strings.Contains(comment, tc.commentHas) {
			t.Errorf("%+v: %q (%q), want %q (with %q)", tc.in, got, comment, tc.want, tc.commentHas)
		}
	}
}

func TestRenderRejects(t *testing.T) {
	for name, change := range map[string]func(*Document){
		"no name":         func(d *Document) { d.Name = "" },
		"relative ns":     func(d *Document) { d.Namespace = "nixport" },
		"ns with #":       func(d *Document) { d.Namespace = "https://x/y#z" },
		"no creator":      func(d *Document) { d.Creators = nil },
		"bad creator":     func(d *Document) { d.Creators = []string{"nixport"} },
		"bad id":          func(d *Document) { d.Packages[0].ID = "a_b" },
		"duplicate id":    func(d *Document) { d.Packages[1].ID = "b" },
		"unknown dep":     func(d *Document) { d.Packages[1].DependsOn = []string{"zz"} },
		"bad checksum":    func(d *Document) { d.Packages[0].SHA256 = "xyz" },
		"no package name": func(d *Document) { d.Packages[1].Name = "" },
	} {
		d := sample()
		change(&d)
		if _, err := Render(d); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

// TestCheckRejects: the schema checks catch what the schema forbids.
func TestCheckRejects(t *testing.T) {
	good, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(map[string]any){
		"missing namespace":  func(d map[string]any) { delete(d, "documentNamespace") },
		"extra property":     func(d map[string]any) { d["nixport"] = true },
		"bad date":           func(d map[string]any) { d["creationInfo"].(map[string]any)["created"] = "2024-05-01 11:30:00" },
		"no creators":        func(d map[string]any) { d["creationInfo"].(map[string]any)["creators"] = []any{} },
		"package without dl": func(d map[string]any) { delete(pkgAt(d, 0), "downloadLocation") },
		"package extra":      func(d map[string]any) { pkgAt(d, 0)["storePath"] = "/nix/store/x" },
		"bad SPDXID":         func(d map[string]any) { pkgAt(d, 0)["SPDXID"] = "SPDXRef-a_b" },
		"bad algorithm": func(d map[string]any) {
			pkgAt(d, 1)["checksums"] = []any{map[string]any{"algorithm": "NAR", "checksumValue": "ab"}}
		},
		"bad relationship":    func(d map[string]any) { relAt(d, 0)["relationshipType"] = "NEEDS" },
		"dangling relation":   func(d map[string]any) { relAt(d, 1)["relatedSpdxElement"] = "SPDXRef-zz" },
		"wrong version":       func(d map[string]any) { d["spdxVersion"] = "SPDX-2.2" },
		"relationship extras": func(d map[string]any) { relAt(d, 0)["why"] = "x" },
	} {
		var d map[string]any
		if err := json.Unmarshal(good, &d); err != nil {
			t.Fatal(err)
		}
		change(d)
		bad, _ := json.Marshal(d)
		if err := Check(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := Check([]byte("[")); err == nil {
		t.Error("non-JSON accepted")
	}
}

func pkgAt(d map[string]any, i int) map[string]any {
	return d["packages"].([]any)[i].(map[string]any)
}

func relAt(d map[string]any, i int) map[string]any {
	return d["relationships"].([]any)[i].(map[string]any)
}
