package spdx

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// The constraints of the SPDX 2.3 JSON schema (spdx-spec,
// schemas/spdx-schema.json, SPDX 2.3.1) on the objects Render writes:
// each object's required properties and the properties it allows (the
// schema closes every object with additionalProperties: false), and the
// patterns and enumerations of the values Render fills. The schema file
// itself could not be vendored here (no registry this project reaches
// serves it), so its rules for these objects are transcribed; Check
// applies them, and the document's own semantics besides (every
// relationship names an element of the document).
var (
	documentRules = objectRules{
		required: []string{"SPDXID", "creationInfo", "dataLicense", "name", "spdxVersion", "documentNamespace"},
		allowed: []string{"$schema", "SPDXID", "annotations", "comment", "creationInfo", "dataLicense",
			"externalDocumentRefs", "hasExtractedLicensingInfos", "name", "revieweds", "spdxVersion",
			"documentNamespace", "documentDescribes", "packages", "files", "snippets", "relationships"},
	}
	creationInfoRules = objectRules{
		required: []string{"created", "creators"},
		allowed:  []string{"comment", "created", "creators", "licenseListVersion"},
	}
	packageRules = objectRules{
		required: []string{"SPDXID", "downloadLocation", "name"},
		allowed: []string{"SPDXID", "annotations", "attributionTexts", "builtDate", "checksums", "comment",
			"copyrightText", "description", "downloadLocation", "externalRefs", "filesAnalyzed", "hasFiles",
			"homepage", "licenseComments", "licenseConcluded", "licenseDeclared", "licenseInfoFromFiles", "name",
			"originator", "packageFileName", "packageVerificationCode", "primaryPackagePurpose", "releaseDate",
			"sourceInfo", "summary", "supplier", "validUntilDate", "versionInfo"},
	}
	checksumRules = objectRules{
		required: []string{"algorithm", "checksumValue"},
		allowed:  []string{"algorithm", "checksumValue"},
	}
	relationshipRules = objectRules{
		required: []string{"spdxElementId", "relatedSpdxElement", "relationshipType"},
		allowed:  []string{"spdxElementId", "comment", "relatedSpdxElement", "relationshipType"},
	}

	schemaDate        = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]|23:59:60)Z$`)
	schemaElementID   = regexp.MustCompile(`^SPDXRef-[a-zA-Z0-9.-]+$`)
	schemaHex         = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	schemaAlgorithms  = []string{"SHA1", "BLAKE3", "SHA3-384", "SHA256", "SHA384", "BLAKE2b-512", "BLAKE2b-256", "SHA3-512", "MD2", "ADLER32", "MD4", "SHA3-256", "BLAKE2b-384", "SHA512", "MD6", "MD5", "SHA224"}
	schemaPurposes    = []string{"OTHER", "INSTALL", "ARCHIVE", "FIRMWARE", "APPLICATION", "FRAMEWORK", "LIBRARY", "CONTAINER", "SOURCE", "DEVICE", "OPERATING-SYSTEM", "FILE"}
	schemaRelationTyp = []string{"VARIANT_OF", "COPY_OF", "PATCH_FOR", "TEST_DEPENDENCY_OF", "CONTAINED_BY", "DATA_FILE_OF",
		"OPTIONAL_COMPONENT_OF", "ANCESTOR_OF", "GENERATES", "CONTAINS", "OPTIONAL_DEPENDENCY_OF", "FILE_ADDED",
		"REQUIREMENT_DESCRIPTION_FOR", "DEV_DEPENDENCY_OF", "DEPENDENCY_OF", "BUILD_DEPENDENCY_OF", "DESCRIBES",
		"PREREQUISITE_FOR", "HAS_PREREQUISITE", "PROVIDED_DEPENDENCY_OF", "DYNAMIC_LINK", "DESCRIBED_BY", "METAFILE_OF",
		"DEPENDENCY_MANIFEST_OF", "PATCH_APPLIED", "RUNTIME_DEPENDENCY_OF", "TEST_OF", "TEST_TOOL_OF", "DEPENDS_ON",
		"SPECIFICATION_FOR", "FILE_MODIFIED", "DISTRIBUTION_ARTIFACT", "AMENDS", "DOCUMENTATION_OF", "GENERATED_FROM",
		"STATIC_LINK", "OTHER", "BUILD_TOOL_OF", "TEST_CASE_OF", "PACKAGE_OF", "DESCENDANT_OF", "FILE_DELETED",
		"EXPANDED_FROM_ARCHIVE", "DEV_TOOL_OF", "EXAMPLE_OF"}
)

// objectRules are what the schema asks of one kind of object.
type objectRules struct {
	required, allowed []string
}

func (r objectRules) check(what string, obj map[string]json.RawMessage) error {
	for _, k := range r.required {
		if _, ok := obj[k]; !ok {
			return fmt.Errorf("%s lacks the required property %q", what, k)
		}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(r.allowed, k) {
			return fmt.Errorf("%s has property %q, which the schema does not allow", what, k)
		}
	}
	return nil
}

// Check says whether data is an SPDX 2.3 JSON document that satisfies the
// schema's constraints on the objects Render writes (see above), and
// whose relationships name its own elements. It is for tests and for
// anyone checking a stored SBOM.
func Check(data []byte) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if err := documentRules.check("the document", doc); err != nil {
		return err
	}
	var top struct {
		SPDXID, SPDXVersion, DataLicense, Name, DocumentNamespace string
		CreationInfo                                              map[string]json.RawMessage
		Packages                                                  []map[string]json.RawMessage
		Relationships                                             []map[string]json.RawMessage
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("the document's fields have the wrong types: %w", err)
	}
	if top.SPDXVersion != Version || top.SPDXID != documentID || top.DataLicense != "CC0-1.0" {
		return fmt.Errorf("spdxVersion %q, SPDXID %q, dataLicense %q: want %s, %s, CC0-1.0", top.SPDXVersion, top.SPDXID, top.DataLicense, Version, documentID)
	}
	if top.Name == "" || strings.Contains(top.DocumentNamespace, "#") || !strings.Contains(top.DocumentNamespace, ":") {
		return fmt.Errorf("name %q, documentNamespace %q: want a name and an absolute URI without #", top.Name, top.DocumentNamespace)
	}
	if err := creationInfoRules.check("creationInfo", top.CreationInfo); err != nil {
		return err
	}
	var ci struct {
		Created  string
		Creators []string
	}
	if err := decode(top.CreationInfo, &ci); err != nil {
		return fmt.Errorf("creationInfo: %w", err)
	}
	if !schemaDate.MatchString(ci.Created) {
		return fmt.Errorf("creationInfo.created %q does not match the schema's date pattern", ci.Created)
	}
	if len(ci.Creators) == 0 {
		return fmt.Errorf("creationInfo.creators is empty (minItems 1)")
	}

	elements := map[string]bool{documentID: true}
	for i, p := range top.Packages {
		what := fmt.Sprintf("package %d", i+1)
		if err := packageRules.check(what, p); err != nil {
			return err
		}
		var fields struct {
			SPDXID, PrimaryPackagePurpose string
			Checksums                     []map[string]json.RawMessage
		}
		if err := decode(p, &fields); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !schemaElementID.MatchString(fields.SPDXID) {
			return fmt.Errorf("%s: SPDXID %q does not match %s", what, fields.SPDXID, schemaElementID)
		}
		if elements[fields.SPDXID] {
			return fmt.Errorf("%s: SPDXID %s given twice", what, fields.SPDXID)
		}
		elements[fields.SPDXID] = true
		if fields.PrimaryPackagePurpose != "" && !slices.Contains(schemaPurposes, fields.PrimaryPackagePurpose) {
			return fmt.Errorf("%s: primaryPackagePurpose %q", what, fields.PrimaryPackagePurpose)
		}
		for j, c := range fields.Checksums {
			if err := checksumRules.check(fmt.Sprintf("%s checksum %d", what, j+1), c); err != nil {
				return err
			}
			var cs struct{ Algorithm, ChecksumValue string }
			if err := decode(c, &cs); err != nil {
				return fmt.Errorf("%s checksum %d: %w", what, j+1, err)
			}
			if !slices.Contains(schemaAlgorithms, cs.Algorithm) || !schemaHex.MatchString(cs.ChecksumValue) {
				return fmt.Errorf("%s checksum %d: algorithm %q, value %q", what, j+1, cs.Algorithm, cs.ChecksumValue)
			}
		}
	}
	for i, r := range top.Relationships {
		what := fmt.Sprintf("relationship %d", i+1)
		if err := relationshipRules.check(what, r); err != nil {
			return err
		}
		var rel struct{ SPDXElementID, RelatedSPDXElement, RelationshipType string }
		if err := decode(r, &rel); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !slices.Contains(schemaRelationTyp, rel.RelationshipType) {
			return fmt.Errorf("%s: relationshipType %q", what, rel.RelationshipType)
		}
		if !elements[rel.SPDXElementID] || !elements[rel.RelatedSPDXElement] {
			return fmt.Errorf("%s: %s %s %s names an element the document does not hold", what, rel.SPDXElementID, rel.RelationshipType, rel.RelatedSPDXElement)
		}
	}
	return nil
}

// decode reads the fields of an object already split into properties.
func decode(obj map[string]json.RawMessage, v any) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
