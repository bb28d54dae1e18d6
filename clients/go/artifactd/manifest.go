package artifactd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Directory artifacts hold a JSON manifest of relative paths, the same
// format the Node SDK writes and reads (clients/node/src/directory-manifest.ts),
// so a directory saved by one SDK restores with the other:
//
//	{"format":"artifactd.directory/v1","entries":[
//	  {"path":"data","type":"dir"},
//	  {"path":"data/train.csv","type":"file","size":1234,"blake3":"…64 hex…","artifactId":"fil_…","executable":false}]}
//
// Entries are sorted by path (UTF-16 order, as JavaScript compares) and the
// JSON is written as JSON.stringify writes it, so equal trees give equal
// bytes whichever SDK saved them. A manifest comes from the network and may
// have been written by anyone holding a token, so it is checked whole
// before anything is written (ParseManifest).
const (
	ManifestFormat = "artifactd.directory/v1"
	ManifestMIME   = "application/vnd.artifactd.directory+json"
	// DirectoryEntryClass is the class of the file artifacts a directory names.
	DirectoryEntryClass = "directory-entry"
)

// ManifestEntry is one path of a directory: a folder (Type "dir") or a file.
type ManifestEntry struct {
	Path       string
	Type       string // "file" or "dir"
	Size       int64
	Blake3     string
	ArtifactID string
	Executable bool
}

// Manifest is a directory artifact's content.
type Manifest struct {
	Entries []ManifestEntry
}

// ManifestError is a manifest that must not be restored, or a folder that
// cannot be saved as one; Path names the offending entry when there is one.
type ManifestError struct {
	Message string
	Path    string
}

func (e *ManifestError) Error() string { return "artifactd: " + e.Message }

// DirectoryLimits bound a directory artifact, as options of SaveDir and
// RestoreDir (the Node SDK's DirectoryLimits, with its defaults).
type DirectoryLimits struct {
	// MaxEntries: files and folders; default 100,000.
	MaxEntries int
	// MaxManifestBytes: default 64 MiB.
	MaxManifestBytes int64
	// MaxTotalBytes: what the files add up to; default 0, no limit.
	MaxTotalBytes int64
}

func (l DirectoryLimits) withDefaults() DirectoryLimits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = 100_000
	}
	if l.MaxManifestBytes <= 0 {
		l.MaxManifestBytes = 64 * miB
	}
	return l
}

// exceeded says which limit a directory of this shape breaks, or "".
func (l DirectoryLimits) exceeded(entries int, manifestBytes, totalBytes int64) string {
	if manifestBytes > l.MaxManifestBytes {
		return fmt.Sprintf("its manifest is %d bytes, over the limit maxManifestBytes (%d)", manifestBytes, l.MaxManifestBytes)
	}
	if entries > l.MaxEntries {
		return fmt.Sprintf("it has %d entries, over the limit maxEntries (%d)", entries, l.MaxEntries)
	}
	if l.MaxTotalBytes > 0 && totalBytes > l.MaxTotalBytes {
		return fmt.Sprintf("its files add up to %d bytes, over the limit maxTotalBytes (%d)", totalBytes, l.MaxTotalBytes)
	}
	return ""
}

var (
	hexDigest    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	driveLetter  = regexp.MustCompile(`^[A-Za-z]:`)
	maxSafeInt   = float64(1<<53 - 1)
	maxPathChars = 4096
	maxSegment   = 255
)

// checkEntryPath refuses a path that could leave the target folder.
func checkEntryPath(path string) error {
	if path == "" {
		return &ManifestError{Message: "an entry has no path"}
	}
	shown := strconv.Quote(truncate(path, 200))
	fail := func(format string, args ...any) error {
		return &ManifestError{Message: fmt.Sprintf(format, args...), Path: path}
	}
	if utf16Len(path) > maxPathChars {
		return fail("entry path %s… is longer than %d characters", shown, maxPathChars)
	}
	if strings.ContainsRune(path, 0) {
		return fail("entry path %s contains a NUL character", shown)
	}
	if strings.Contains(path, `\`) {
		return fail("entry path %s contains a backslash; manifests use / only", shown)
	}
	if strings.HasPrefix(path, "/") || driveLetter.MatchString(path) {
		return fail("entry path %s is absolute; entries must be relative to the directory", shown)
	}
	for _, segment := range strings.Split(path, "/") {
		switch segment {
		case "":
			return fail("entry path %s has a empty segment; it could point outside the directory", shown)
		case ".", "..":
			return fail("entry path %s has a %q segment; it could point outside the directory", shown, segment)
		}
		if utf16Len(segment) > maxSegment {
			return fail("entry path %s has a name longer than %d characters", shown, maxSegment)
		}
	}
	return nil
}

// ParseManifest parses and checks a manifest: paths relative and inside
// the folder, each once, none under a file, only files and folders, valid
// sizes, digests and ids, within the limits.
func ParseManifest(content []byte, artifactID string, limits DirectoryLimits) (*Manifest, error) {
	limits = limits.withDefaults()
	refuse := func(exceeded string) error {
		return &ManifestError{Message: fmt.Sprintf("directory artifact %s is refused: %s; raise the option if you trust it", artifactID, exceeded)}
	}
	if why := limits.exceeded(0, int64(len(content)), 0); why != "" {
		return nil, refuse(why)
	}
	notManifest := &ManifestError{Message: fmt.Sprintf(`artifact %s is not a directory manifest: expected {"format": "%s", "entries": […]}`, artifactID, ManifestFormat)}
	if !utf8.Valid(content) {
		return nil, &ManifestError{Message: fmt.Sprintf("artifact %s is not a directory manifest: it is not UTF-8", artifactID)}
	}
	var raw struct {
		Format  any               `json:"format"`
		Entries []json.RawMessage `json:"entries"`
	}
	decoder := json.NewDecoder(bytes.NewReader(content))
	if err := decoder.Decode(&raw); err != nil {
		return nil, &ManifestError{Message: fmt.Sprintf("artifact %s is not a directory manifest: %v", artifactID, err)}
	}
	if raw.Format != ManifestFormat || raw.Entries == nil {
		return nil, notManifest
	}
	if why := limits.exceeded(len(raw.Entries), 0, 0); why != "" {
		return nil, refuse(why)
	}
	types := map[string]string{}
	manifest := &Manifest{}
	var totalBytes int64
	for _, item := range raw.Entries {
		var entry struct {
			Path       any `json:"path"`
			Type       any `json:"type"`
			Size       any `json:"size"`
			Blake3     any `json:"blake3"`
			ArtifactID any `json:"artifactId"`
			Executable any `json:"executable"`
		}
		if err := json.Unmarshal(item, &entry); err != nil {
			entry.Path = nil
		}
		path, _ := entry.Path.(string)
		if err := checkEntryPath(path); err != nil {
			return nil, err
		}
		if _, seen := types[path]; seen {
			return nil, &ManifestError{Message: fmt.Sprintf("entry path %q appears twice", path), Path: path}
		}
		switch entry.Type {
		case "dir":
			types[path] = "dir"
			manifest.Entries = append(manifest.Entries, ManifestEntry{Path: path, Type: "dir"})
		case "file":
			size, ok := entry.Size.(float64)
			if !ok || size < 0 || size > maxSafeInt || size != float64(int64(size)) {
				return nil, &ManifestError{Message: fmt.Sprintf("file %q has no valid size", path), Path: path}
			}
			digest, _ := entry.Blake3.(string)
			if !hexDigest.MatchString(digest) {
				return nil, &ManifestError{Message: fmt.Sprintf("file %q has no valid BLAKE3 digest", path), Path: path}
			}
			id, _ := entry.ArtifactID.(string)
			if !idPattern.MatchString(id) {
				return nil, &ManifestError{Message: fmt.Sprintf("file %q has no valid artifact id", path), Path: path}
			}
			totalBytes += int64(size)
			if why := limits.exceeded(len(manifest.Entries), 0, totalBytes); why != "" {
				return nil, refuse(why)
			}
			types[path] = "file"
			manifest.Entries = append(manifest.Entries, ManifestEntry{
				Path: path, Type: "file", Size: int64(size), Blake3: digest, ArtifactID: id, Executable: entry.Executable == true,
			})
		default:
			shownType, _ := json.Marshal(entry.Type)
			return nil, &ManifestError{Message: fmt.Sprintf(`entry %q has type %s; only "file" and "dir" can be restored`, path, shownType), Path: path}
		}
	}
	// A path under a file would need that file to be a folder as well.
	for path := range types {
		segments := strings.Split(path, "/")
		for i := 1; i < len(segments); i++ {
			parent := strings.Join(segments[:i], "/")
			if types[parent] == "file" {
				return nil, &ManifestError{Message: fmt.Sprintf("entry %q lies under the file %q", path, parent), Path: path}
			}
		}
	}
	return manifest, nil
}

// Marshal writes the manifest as the Node SDK does: entries sorted by path,
// JSON as JSON.stringify writes it.
func (m *Manifest) Marshal() []byte {
	entries := slices.Clone(m.Entries)
	slices.SortStableFunc(entries, func(a, b ManifestEntry) int { return compareUTF16(a.Path, b.Path) })
	var out bytes.Buffer
	out.WriteString(`{"format":"` + ManifestFormat + `","entries":[`)
	for i, entry := range entries {
		if i > 0 {
			out.WriteByte(',')
		}
		out.WriteString(`{"path":`)
		writeJSString(&out, entry.Path)
		if entry.Type == "dir" {
			out.WriteString(`,"type":"dir"}`)
			continue
		}
		fmt.Fprintf(&out, `,"type":"file","size":%d,"blake3":`, entry.Size)
		writeJSString(&out, entry.Blake3)
		out.WriteString(`,"artifactId":`)
		writeJSString(&out, entry.ArtifactID)
		fmt.Fprintf(&out, `,"executable":%t}`, entry.Executable)
	}
	out.WriteString("]}")
	return out.Bytes()
}

// writeJSString writes s quoted as JSON.stringify does (which differs from
// encoding/json on \b, \f, U+2028 and U+2029).
func writeJSString(out *bytes.Buffer, s string) {
	out.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\b':
			out.WriteString(`\b`)
		case '\f':
			out.WriteString(`\f`)
		case '\n':
			out.WriteString(`\n`)
		case '\r':
			out.WriteString(`\r`)
		case '\t':
			out.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(out, `\u%04x`, r)
			} else {
				out.WriteRune(r)
			}
		}
	}
	out.WriteByte('"')
}

// compareUTF16 orders strings as JavaScript's < does: by UTF-16 code units.
func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

// utf16Len is a string's length as JavaScript counts it.
func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
