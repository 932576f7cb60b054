package nix

import (
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nixport/nixport/config"
)

// Provenance says where a resolution's package set came from: what an
// image's labels and SBOM name as its source. It holds nothing that
// changes between two resolutions of the same commit, no local
// filesystem path of the server (a path source is only "path") and no
// credentials (a git URL loses its user information and query).
type Provenance struct {
	// Kind is the configured kind of source: builtin, path, git or
	// channel.
	Kind string
	// URL locates the package set: a git source's repository, a
	// channel's archive (which names the channel or commit); empty for
	// builtin and path sources.
	URL string
	// Rev is the commit evaluated, where it is known: a git source, a
	// path checkout's tag other than latest, a channel whose archive says
	// it or whose tag is a commit.
	Rev string
	// Time is the commit's time where Nix knows it (git sources), else
	// zero.
	Time time.Time
}

// provenance is the Provenance of a resolution of tag from spec; ev is the
// evaluation's answer (nil when nothing was evaluated).
func (d *Driver) provenance(spec sourceSpec, tag string, ev *evaluation) Provenance {
	p := Provenance{Kind: string(d.opts.Source.Kind)}
	switch d.opts.Source.Kind {
	case config.SourceGit:
		p.URL = publicURL(d.opts.Source.Value)
	case config.SourceChannel:
		p.URL = spec.URL
	}
	if ev != nil && commitHash.MatchString(ev.Rev) {
		p.Rev = ev.Rev
	} else {
		p.Rev = pinnedRev(spec, tag)
	}
	if ev != nil && ev.LastModified > 0 {
		p.Time = time.Unix(ev.LastModified, 0).UTC()
	}
	return p
}

// publicURL is a repository URL without what must not be published: user
// information (a token in https://user:token@host/…), query and fragment.
// A form url.Parse does not read (scp-like git@host:path, which carries
// no password) is kept as it is.
func publicURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return raw
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// maxText bounds every string of a package's meta, as resolve.nix does
// (in characters there, bytes here).
const maxText = 1000

// boundText cuts s to maxText bytes on a rune boundary and drops invalid
// UTF-8: resolve.nix bounds it already, but what reaches an SBOM is held
// to the bound here too.
func boundText(s string) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// maxLicenses bounds meta.license's entries, as resolve.nix does.
const maxLicenses = 16

func (m Meta) bounded() Meta {
	out := Meta{Description: boundText(m.Description), Homepage: boundText(m.Homepage)}
	for i, l := range m.Licenses {
		if i == maxLicenses {
			break
		}
		out.Licenses = append(out.Licenses, License{SPDXID: boundText(l.SPDXID), Name: boundText(l.Name)})
	}
	return out
}
