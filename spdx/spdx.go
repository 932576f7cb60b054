// Package spdx renders a software bill of materials as an SPDX 2.3 JSON
// document: packages, their checksums and licenses, and the dependency
// graph between them.
//
// It exists so that the one place that decides the bytes of an image's
// SBOM is pure and reproducible: the same Document gives the same bytes
// on any machine at any time (nothing is read from the clock or the
// host; packages and relationships are sorted), so the SBOM of an image
// is as content-addressed as the image. It knows nothing of Nix, OCI or
// storage: the Nix source says what the packages are.
package spdx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// MediaType is the media type of an SPDX JSON document (and the artifact
// type of an OCI artifact that carries one).
const MediaType = "application/spdx+json"

// Version is the SPDX version of the documents rendered.
const Version = "SPDX-2.3"

// NoAssertion is SPDX's value for "not known, no attempt made".
const NoAssertion = "NOASSERTION"

// Document is what an SBOM says.
type Document struct {
	// Name names the document (the image's packages).
	Name string
	// Namespace is the document's unique absolute URI, without "#".
	Namespace string
	// Created is when the content was made: the caller passes something
	// stable (a commit's time), never the clock.
	Created time.Time
	// Creators are "Tool: …", "Organization: …" or "Person: …" entries; at
	// least one.
	Creators []string
	// Comment is the creation comment: where the packages came from.
	Comment string
	// Packages are the packages, in any order (sorted by ID on output).
	Packages []Package
}

// Package is one package of a Document.
type Package struct {
	// ID identifies the package in the document: letters, digits, "."
	// and "-" (it becomes SPDXRef-<ID>); unique.
	ID string
	// Name and Version of the package; Version may be empty.
	Name, Version string
	// FileName is the package's file or directory (a store path).
	FileName string
	// SHA256 is a hex SHA-256 checksum of the package's content, or "".
	SHA256 string
	// Licenses are the licenses the package declares; none: NOASSERTION.
	Licenses []License
	// Homepage is an http(s) URL or "" (other values are dropped).
	Homepage string
	// Description describes the package.
	Description string
	// Comment says anything else (how the package entered the image).
	Comment string
	// Described: the document describes this package (a package asked
	// for, as opposed to one only depended on).
	Described bool
	// DependsOn are the IDs of the packages this one needs.
	DependsOn []string
}

// License is one declared license.
type License struct {
	// SPDXID is its SPDX license identifier, or "" where there is none.
	SPDXID string
	// Name is what the package calls it.
	Name string
}

// The JSON shapes, in the SPDX 2.3 schema's terms; field order is output
// order.
type (
	document struct {
		SPDXVersion       string         `json:"spdxVersion"`
		DataLicense       string         `json:"dataLicense"`
		SPDXID            string         `json:"SPDXID"`
		Name              string         `json:"name"`
		DocumentNamespace string         `json:"documentNamespace"`
		CreationInfo      creationInfo   `json:"creationInfo"`
		Packages          []pkg          `json:"packages"`
		Relationships     []relationship `json:"relationships"`
	}
	creationInfo struct {
		Created  string   `json:"created"`
		Creators []string `json:"creators"`
		Comment  string   `json:"comment,omitempty"`
	}
	pkg struct {
		SPDXID           string     `json:"SPDXID"`
		Name             string     `json:"name"`
		VersionInfo      string     `json:"versionInfo,omitempty"`
		PackageFileName  string     `json:"packageFileName,omitempty"`
		DownloadLocation string     `json:"downloadLocation"`
		FilesAnalyzed    bool       `json:"filesAnalyzed"`
		Checksums        []checksum `json:"checksums,omitempty"`
		Homepage         string     `json:"homepage,omitempty"`
		LicenseConcluded string     `json:"licenseConcluded"`
		LicenseDeclared  string     `json:"licenseDeclared"`
		LicenseComments  string     `json:"licenseComments,omitempty"`
		CopyrightText    string     `json:"copyrightText"`
		Description      string     `json:"description,omitempty"`
		Comment          string     `json:"comment,omitempty"`
	}
	checksum struct {
		Algorithm     string `json:"algorithm"`
		ChecksumValue string `json:"checksumValue"`
	}
	relationship struct {
		SPDXElementID      string `json:"spdxElementId"`
		RelatedSPDXElement string `json:"relatedSpdxElement"`
		RelationshipType   string `json:"relationshipType"`
	}
)

const documentID = "SPDXRef-DOCUMENT"

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9.-]+$`)
	sha256Pattern  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	licensePattern = regexp.MustCompile(`^(LicenseRef-)?[A-Za-z0-9.+-]+$`)
	// creatorPattern is SPDX's creator syntax: a kind, then a name.
	creatorPattern = regexp.MustCompile(`^(Tool|Organization|Person): \S`)
)

// Render returns d as SPDX 2.3 JSON. It fails on what would make an
// invalid document: no name or namespace, a namespace with "#", no
// creator, an ID that is malformed or given twice, a dependency on an
// unknown ID, a malformed checksum.
func Render(d Document) ([]byte, error) {
	if d.Name == "" {
		return nil, errors.New("spdx: the document has no name")
	}
	if d.Namespace == "" || strings.Contains(d.Namespace, "#") || !strings.Contains(d.Namespace, ":") {
		return nil, fmt.Errorf("spdx: document namespace %q: want an absolute URI without #", d.Namespace)
	}
	if len(d.Creators) == 0 {
		return nil, errors.New("spdx: the document has no creator")
	}
	for _, c := range d.Creators {
		if !creatorPattern.MatchString(c) {
			return nil, fmt.Errorf("spdx: creator %q: want Tool:, Organization: or Person: and a name", c)
		}
	}
	pkgs := slices.Clone(d.Packages)
	slices.SortFunc(pkgs, func(a, b Package) int { return strings.Compare(a.ID, b.ID) })
	ids := make(map[string]bool, len(pkgs))
	for _, p := range pkgs {
		if !idPattern.MatchString(p.ID) {
			return nil, fmt.Errorf("spdx: package %q: ID %q may hold only letters, digits, . and -", p.Name, p.ID)
		}
		if ids[p.ID] {
			return nil, fmt.Errorf("spdx: package ID %q given twice", p.ID)
		}
		if p.Name == "" {
			return nil, fmt.Errorf("spdx: package %s has no name", p.ID)
		}
		if p.SHA256 != "" && !sha256Pattern.MatchString(p.SHA256) {
			return nil, fmt.Errorf("spdx: package %s: checksum %q is not 64 lower-case hex digits", p.ID, p.SHA256)
		}
		ids[p.ID] = true
	}

	doc := document{
		SPDXVersion:       Version,
		DataLicense:       "CC0-1.0",
		SPDXID:            documentID,
		Name:              d.Name,
		DocumentNamespace: d.Namespace,
		CreationInfo: creationInfo{
			Created:  d.Created.UTC().Format("2006-01-02T15:04:05Z"),
			Creators: d.Creators,
			Comment:  d.Comment,
		},
		Packages:      make([]pkg, 0, len(pkgs)),
		Relationships: []relationship{},
	}
	var depends []relationship
	for _, p := range pkgs {
		declared, comment := declaredLicense(p.Licenses)
		out := pkg{
			SPDXID:           "SPDXRef-" + p.ID,
			Name:             p.Name,
			VersionInfo:      p.Version,
			PackageFileName:  p.FileName,
			DownloadLocation: NoAssertion,
			LicenseConcluded: NoAssertion,
			LicenseDeclared:  declared,
			LicenseComments:  comment,
			CopyrightText:    NoAssertion,
			Homepage:         homepage(p.Homepage),
			Description:      p.Description,
			Comment:          p.Comment,
		}
		if p.SHA256 != "" {
			out.Checksums = []checksum{{Algorithm: "SHA256", ChecksumValue: p.SHA256}}
		}
		doc.Packages = append(doc.Packages, out)
		if p.Described {
			doc.Relationships = append(doc.Relationships, relationship{documentID, out.SPDXID, "DESCRIBES"})
		}
		deps := slices.Clone(p.DependsOn)
		slices.Sort(deps)
		for _, dep := range slices.Compact(deps) {
			if !ids[dep] {
				return nil, fmt.Errorf("spdx: package %s depends on %q, which is not in the document", p.ID, dep)
			}
			depends = append(depends, relationship{out.SPDXID, "SPDXRef-" + dep, "DEPENDS_ON"})
		}
	}
	doc.Relationships = append(doc.Relationships, depends...)

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("spdx: encoding the document: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// declaredLicense is the licenseDeclared expression of a package's
// licenses, and a comment naming them as the package does. Several
// licenses are joined with AND (nixpkgs' meta.license list says the
// package is under all of them). Where one has no SPDX identifier, or
// one that cannot stand in an AND expression (an exception, which
// belongs after WITH), the expression is NOASSERTION and only the
// comment names them.
func declaredLicense(ls []License) (expression, comment string) {
	if len(ls) == 0 {
		return NoAssertion, ""
	}
	ids := make([]string, 0, len(ls))
	names := make([]string, 0, len(ls))
	expressible := true
	for _, l := range ls {
		name := l.Name
		if name == "" {
			name = l.SPDXID
		}
		names = append(names, name)
		if !licensePattern.MatchString(l.SPDXID) || strings.Contains(strings.ToLower(l.SPDXID), "exception") {
			expressible = false
			continue
		}
		ids = append(ids, l.SPDXID)
	}
	comment = "declared by the package set as: " + strings.Join(names, ", ")
	if !expressible {
		return NoAssertion, comment
	}
	return strings.Join(ids, " AND "), comment
}

// homepage keeps an http(s) URL of one line, else nothing.
func homepage(s string) string {
	if (strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")) && !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	return ""
}
