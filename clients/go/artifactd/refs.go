package artifactd

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// References name artifacts wherever a call takes an id, resolved by the
// server when the call runs (the grammar of clients/api/src/artifact-references.ts,
// which the service, the Node SDK and the CLI share):
//
//	art_01jf3k8z9q4v6w2x7y5t0r1s3m  an id (typed by its prefix: img_, json_, dir_…)
//	orders:latest, team/orders:production  [project/]name:alias
//	orders@v3, orders@3             [project/]name@version
//	artifact://<any of these>       the same, as kept in configs
//
// A malformed reference is refused with INVALID_ARGUMENT before any call.

// URIScheme prefixes references kept in configs and messages.
const URIScheme = "artifact://"

var (
	idPattern      = regexp.MustCompile(`^([a-z]{3,5})_[0-9abcdefghjkmnpqrstvwxyz]{26}$`)
	namePattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	projectPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	aliasPattern   = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,63}$`)
	versionLike    = regexp.MustCompile(`^v[0-9]+$`)
	versionPattern = regexp.MustCompile(`^v?([1-9][0-9]{0,14})$`)
)

const referenceGrammar = "expected an id (art_01jf…), [project/]name:alias, [project/]name@v3, or artifact:// followed by one of these"

// Reference is a parsed reference: an id, or a version or alias of a
// versioned name (Project empty: the tenant's default project).
type Reference struct {
	ID      string
	Project string
	Name    string
	Alias   string
	Version int64
}

// String is the reference as ParseReference reads it back (without artifact://).
func (r Reference) String() string {
	if r.ID != "" {
		return r.ID
	}
	path := r.Name
	if r.Project != "" {
		path = r.Project + "/" + r.Name
	}
	if r.Alias != "" {
		return path + ":" + r.Alias
	}
	return fmt.Sprintf("%s@v%d", path, r.Version)
}

// URI is the reference with the artifact:// scheme.
func (r Reference) URI() string { return URIScheme + r.String() }

// ParseReference reads an id or reference; an error (INVALID_ARGUMENT) says
// which part is wrong.
func ParseReference(text string) (Reference, error) {
	malformed := func(problem string) (Reference, error) {
		shown := text
		if len(shown) > 80 {
			shown = shown[:80]
		}
		return Reference{}, invalidArgument("%q is not an artifact id or reference: %s", shown, problem)
	}
	if text == "" {
		return malformed("it is empty: " + referenceGrammar)
	}
	body := strings.TrimPrefix(text, URIScheme)
	if idPattern.MatchString(body) {
		return Reference{ID: body}, nil
	}
	at := strings.IndexAny(body, ":@")
	if at < 0 {
		return malformed("it is neither an id nor names a version or alias: " + referenceGrammar)
	}
	path, selector := body[:at], body[at+1:]
	project, name := "", path
	if slash := strings.IndexByte(path, '/'); slash >= 0 {
		project, name = path[:slash], path[slash+1:]
		if !projectPattern.MatchString(project) {
			return malformed(fmt.Sprintf("project %q: use 1–64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit", project))
		}
	}
	if name == "" {
		return malformed(fmt.Sprintf("name %q: a versioned artifact needs a name", name))
	}
	if !namePattern.MatchString(name) {
		return malformed(fmt.Sprintf("name %q: use 1–128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit", name))
	}
	if body[at] == '@' {
		match := versionPattern.FindStringSubmatch(selector)
		if match == nil {
			return malformed(fmt.Sprintf("version %q: give @v<number> or @<number>, from 1", selector))
		}
		version, _ := strconv.ParseInt(match[1], 10, 64)
		return Reference{Project: project, Name: name, Version: version}, nil
	}
	if !aliasPattern.MatchString(selector) {
		return malformed(fmt.Sprintf("alias %q: use 1–64 characters of a-z 0-9 . _ -, starting with a lowercase letter", selector))
	}
	if versionLike.MatchString(selector) {
		return malformed(fmt.Sprintf("alias %q: v followed by digits names a version, not an alias", selector))
	}
	return Reference{Project: project, Name: name, Alias: selector}, nil
}

// requestID is what a call sends for an id or reference: the id, or the
// reference without artifact:// (the server resolves it).
func requestID(locator string) (string, error) {
	ref, err := ParseReference(locator)
	if err != nil {
		return "", err
	}
	if ref.ID != "" {
		return ref.ID, nil
	}
	return strings.TrimPrefix(locator, URIScheme), nil
}

// IDPrefix is the type prefix of an artifact id (img, json, dir…), or "" for
// something that is not an id.
func IDPrefix(id string) string {
	if match := idPattern.FindStringSubmatch(strings.TrimPrefix(id, URIScheme)); match != nil {
		return match[1]
	}
	return ""
}
