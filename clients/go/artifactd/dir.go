package artifactd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
)

// DirOptions configures SaveDir and RestoreDir.
type DirOptions struct {
	DirectoryLimits
	// Concurrency: files uploaded or fetched at once; default 4.
	Concurrency int
}

func (o DirOptions) concurrency() int {
	if o.Concurrency < 1 {
		return 4
	}
	return o.Concurrency
}

type foundEntry struct {
	relative, absolute string
	dir, executable    bool
	size               int64
	blake3             string
}

// SaveDir saves a folder as a directory artifact (id prefix dir): every
// regular file and folder, nested and empty ones included. Each distinct
// file is uploaded once, as an artifact of class "directory-entry" (prefix
// fil, named by its relative path, with the spec's kind, labels,
// provenance, pin and expiry), content first; then the manifest. Symbolic
// links, sockets, pipes and devices are refused by name rather than
// skipped, and a folder past the limits is refused before anything is
// uploaded. If the save fails, the file artifacts it stored are deleted.
func (c *Client) SaveDir(ctx context.Context, dir string, spec *Spec, options DirOptions) (*Artifact, error) {
	if spec == nil {
		return nil, invalidArgument("SaveDir: spec is required")
	}
	spec = c.scopedSpec(spec)
	limits := options.withDefaults()
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if info, err := os.Stat(root); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("artifactd: SaveDir: %s is not a directory", dir)
	}
	refuse := func(why string) error {
		return &ManifestError{Message: fmt.Sprintf("SaveDir: %s cannot be stored as one directory artifact: %s", dir, why)}
	}
	found, err := walkDir(root, limits.MaxEntries, refuse)
	if err != nil {
		return nil, err
	}
	// Before hashing or uploading anything: the manifest this folder makes, with stand-ins of the real lengths.
	if why := limits.exceeded(len(found), int64(len(shapeManifest(found).Marshal())), totalSize(found)); why != "" {
		return nil, refuse(why)
	}
	var files []*foundEntry
	for _, f := range found {
		if !f.dir {
			files = append(files, f)
		}
	}
	// Hash first: identical files are uploaded once, and each upload declares its digest, so a file edited meanwhile is refused.
	if err := forEachLimit(ctx, files, options.concurrency(), func(f *foundEntry) error {
		digest, err := hashFile(f.absolute)
		if err != nil {
			return err
		}
		info, err := os.Stat(f.absolute)
		if err != nil {
			return err
		}
		f.blake3, f.size = digest, info.Size()
		return nil
	}); err != nil {
		return nil, err
	}
	var distinct []*foundEntry
	seen := map[string]bool{}
	for _, f := range files {
		if !seen[f.blake3] {
			seen[f.blake3] = true
			distinct = append(distinct, f)
		}
	}
	entrySpec := func(name string) *Spec {
		return &Spec{
			Kind: spec.GetKind(), ArtifactClass: DirectoryEntryClass, Name: name, TypePrefix: "fil",
			Labels: spec.GetLabels(), Provenance: spec.GetProvenance(), Pinned: spec.GetPinned(),
			TtlSeconds: spec.GetTtlSeconds(), ExpiresAt: spec.GetExpiresAt(),
		}
	}
	var mu sync.Mutex
	uploaded := map[string]*Artifact{}
	cleanUp := func() {
		// No directory artifact names the files stored so far: delete them (unpinned first), so GC reclaims their content.
		background := context.WithoutCancel(ctx)
		for _, artifact := range uploaded {
			if spec.GetPinned() {
				_, _ = c.Pin(background, artifact.GetId(), false)
			}
			_, _ = c.Delete(background, artifact.GetId())
		}
	}
	var missing map[contentRef]bool
	if c.contentFirst && c.findMissingIsServed() {
		refs := make([]contentRef, len(distinct))
		for i, f := range distinct {
			refs[i] = contentRef{f.blake3, f.size}
		}
		if missing, err = c.findMissing(ctx, refs); err != nil {
			return nil, wrapErr(ctx, err)
		}
	}
	err = forEachLimit(ctx, distinct, options.concurrency(), func(f *foundEntry) error {
		var response *UploadResponse
		if missing != nil && !missing[contentRef{f.blake3, f.size}] {
			// Nil when the content vanished since the question (garbage collection): its bytes are sent then.
			var err error
			if response, err = c.commitByDigest(ctx, entrySpec(f.relative), contentRef{f.blake3, f.size}); err != nil {
				return wrapErr(ctx, err)
			}
		}
		if response == nil {
			file, err := os.Open(f.absolute)
			if err != nil {
				return err
			}
			defer file.Close()
			upload := c.uploadReader
			if f.size >= c.resumableAbove {
				upload = func(ctx context.Context, _ io.Reader, spec *Spec, options ...WriterOption) (*UploadResponse, error) {
					return c.uploadFileResumably(ctx, f.absolute, f.size, spec, options)
				}
			}
			if response, err = upload(ctx, file, entrySpec(f.relative), ExpectedSize(f.size), ExpectedBlake3(f.blake3)); err != nil {
				return err
			}
		}
		mu.Lock()
		uploaded[f.blake3] = response.GetArtifact()
		mu.Unlock()
		return nil
	})
	if err != nil {
		cleanUp()
		return nil, err
	}
	manifest := &Manifest{}
	for _, f := range found {
		if f.dir {
			manifest.Entries = append(manifest.Entries, ManifestEntry{Path: f.relative, Type: "dir"})
			continue
		}
		artifact := uploaded[f.blake3]
		manifest.Entries = append(manifest.Entries, ManifestEntry{
			Path: f.relative, Type: "file", Size: artifact.GetSizeBytes(), Blake3: f.blake3, ArtifactID: artifact.GetId(), Executable: f.executable,
		})
	}
	content := manifest.Marshal()
	if why := limits.exceeded(len(manifest.Entries), int64(len(content)), totalSize(found)); why != "" {
		cleanUp()
		return nil, refuse(why)
	}
	manifestSpec := proto.CloneOf(spec)
	manifestSpec.MimeType = ManifestMIME
	if manifestSpec.TypePrefix == "" {
		manifestSpec.TypePrefix = "dir"
	}
	if manifestSpec.Name == "" {
		manifestSpec.Name = filepath.Base(root)
	}
	response, err := c.uploadReader(ctx, strings.NewReader(string(content)), manifestSpec)
	if err != nil {
		cleanUp()
		return nil, err
	}
	return response.GetArtifact(), nil
}

// RestoreDir restores a directory artifact into target (new, or an empty
// folder). The manifest is checked whole first — a path that is absolute,
// holds "..", a backslash or NUL, repeats, or lies under a file is a
// *ManifestError and nothing is written — and so is every file artifact it
// names (live, with the manifest's size and BLAKE3). Then the files are
// fetched, verified, into a folder built beside the target, renamed into
// place: the target appears whole or not at all.
func (c *Client) RestoreDir(ctx context.Context, idOrRef, target string, options DirOptions) (*Manifest, error) {
	id, err := requestID(idOrRef)
	if err != nil {
		return nil, err
	}
	limits := options.withDefaults()
	target, err = filepath.Abs(target)
	if err != nil {
		return nil, err
	}
	if _, err := checkTarget(target); err != nil {
		return nil, err
	}
	artifact, err := c.getLive(ctx, id)
	if err != nil {
		return nil, err
	}
	if artifact.GetMimeType() != ManifestMIME {
		return nil, fmt.Errorf("artifactd: artifact %s is not a directory artifact (its mime type is %s); use DownloadToFile", id, artifact.GetMimeType())
	}
	if why := limits.exceeded(0, artifact.GetSizeBytes(), 0); why != "" {
		return nil, &ManifestError{Message: fmt.Sprintf("directory artifact %s is refused: %s; raise the option if you trust it", id, why)}
	}
	content, err := c.LoadBytes(ctx, artifact.GetId())
	if err != nil {
		return nil, err
	}
	manifest, err := ParseManifest(content, id, limits)
	if err != nil {
		return nil, err
	}
	// Every file artifact, once each, must hold the content the manifest names — before anything is written.
	byArtifact := map[string]ManifestEntry{}
	var distinctArtifacts []ManifestEntry
	for _, entry := range manifest.Entries {
		if entry.Type != "file" {
			continue
		}
		if first, ok := byArtifact[entry.ArtifactID]; ok {
			if first.Blake3 != entry.Blake3 || first.Size != entry.Size {
				return nil, &ManifestError{Message: fmt.Sprintf("file %q names artifact %s with other content than %q does", entry.Path, entry.ArtifactID, first.Path), Path: entry.Path}
			}
			continue
		}
		byArtifact[entry.ArtifactID] = entry
		distinctArtifacts = append(distinctArtifacts, entry)
	}
	var mu sync.Mutex
	sourceOf := map[string]string{} // BLAKE3 → the artifact id to fetch it from
	if err := forEachLimit(ctx, distinctArtifacts, options.concurrency(), func(entry ManifestEntry) error {
		artifact, err := c.getLive(ctx, entry.ArtifactID)
		if err != nil {
			return err
		}
		if artifact.GetBlake3() != entry.Blake3 || artifact.GetSizeBytes() != entry.Size {
			return &ManifestError{Path: entry.Path, Message: fmt.Sprintf(
				"file %q: artifact %s does not hold the content the manifest names (it holds %d bytes with BLAKE3 %s, the manifest says %d bytes with BLAKE3 %s)",
				entry.Path, entry.ArtifactID, artifact.GetSizeBytes(), artifact.GetBlake3(), entry.Size, entry.Blake3)}
		}
		mu.Lock()
		sourceOf[entry.Blake3] = artifact.GetId()
		mu.Unlock()
		return nil
	}); err != nil {
		return nil, err
	}
	existed, err := checkTarget(target)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return nil, err
	}
	staging := partialName(target, "restore")
	if err := os.Mkdir(staging, 0o755); err != nil {
		return nil, err
	}
	if err := c.buildTree(ctx, manifest, staging, sourceOf, options.concurrency()); err != nil {
		_ = os.RemoveAll(staging)
		return nil, err
	}
	if existed {
		if err := os.Remove(target); err != nil {
			_ = os.RemoveAll(staging)
			return nil, err
		}
	}
	if err := os.Rename(staging, target); err != nil {
		_ = os.RemoveAll(staging)
		return nil, err
	}
	return manifest, nil
}

// buildTree writes the manifest's tree under root: each distinct content
// fetched once (verified), copies for the other paths holding it; files are
// created exclusively, so nothing already at a path is written through.
func (c *Client) buildTree(ctx context.Context, manifest *Manifest, root string, sourceOf map[string]string, concurrency int) error {
	firstPath := map[string]string{}
	var fetches []ManifestEntry
	for _, entry := range manifest.Entries {
		local := filepath.Join(root, filepath.FromSlash(entry.Path))
		if entry.Type == "dir" {
			if err := os.MkdirAll(local, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			return err
		}
		if _, ok := firstPath[entry.Blake3]; !ok {
			firstPath[entry.Blake3] = local
			fetches = append(fetches, entry)
		}
	}
	if err := forEachLimit(ctx, fetches, concurrency, func(entry ManifestEntry) error {
		return c.fetchInto(ctx, sourceOf[entry.Blake3], firstPath[entry.Blake3])
	}); err != nil {
		return err
	}
	for _, entry := range manifest.Entries {
		if entry.Type != "file" {
			continue
		}
		local := filepath.Join(root, filepath.FromSlash(entry.Path))
		if first := firstPath[entry.Blake3]; first != local {
			if err := copyFileExclusive(first, local); err != nil {
				return err
			}
		}
		mode := os.FileMode(0o644)
		if entry.Executable {
			mode = 0o755
		}
		if err := os.Chmod(local, mode); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) fetchInto(ctx context.Context, id, path string) error {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer file.Close()
	reader, err := c.Open(ctx, id)
	if err != nil {
		return err
	}
	defer reader.Close()
	if _, err := io.CopyBuffer(file, reader, make([]byte, messageBytes)); err != nil {
		return err
	}
	return file.Close()
}

func copyFileExclusive(from, to string) error {
	source, err := os.Open(from)
	if err != nil {
		return err
	}
	defer source.Close()
	destination, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(destination, source); err != nil {
		_ = destination.Close()
		return err
	}
	return destination.Close()
}

// getLive answers the artifact, or NOT_FOUND for a deleted one (as a download would).
func (c *Client) getLive(ctx context.Context, id string) (*Artifact, error) {
	artifact, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if artifact.GetDeletedAt() != nil {
		return nil, &Error{cause: connectNotFound(fmt.Sprintf("artifact %s was deleted; its content cannot be read", id))}
	}
	return artifact, nil
}

// checkTarget refuses a target that exists and is not an empty folder (a link included: never followed).
func checkTarget(target string) (existed bool, err error) {
	info, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if info.IsDir() {
		entries, err := os.ReadDir(target)
		if err != nil {
			return false, err
		}
		if len(entries) == 0 {
			return true, nil
		}
		return false, fmt.Errorf("artifactd: RestoreDir: %s already exists and is not empty; give a new or empty folder", target)
	}
	how := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		how = " as a link"
	}
	return false, fmt.Errorf("artifactd: RestoreDir: %s already exists%s; give a new or empty folder", target, how)
}

// walkDir lists every folder and regular file under root, sorted as the
// Node SDK sorts them; anything else is refused by name. It stops past
// maxEntries, so a huge tree is refused without being listed whole.
func walkDir(root string, maxEntries int, refuse func(string) error) ([]*foundEntry, error) {
	var found []*foundEntry
	var visit func(dir string) error
	visit = func(dir string) error {
		items, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		slices.SortFunc(items, func(a, b fs.DirEntry) int { return compareUTF16(a.Name(), b.Name()) })
		for _, item := range items {
			absolute := filepath.Join(dir, item.Name())
			relative, _ := filepath.Rel(root, absolute)
			relative = filepath.ToSlash(relative)
			if err := checkEntryPath(relative); err != nil {
				return &ManifestError{Message: fmt.Sprintf("SaveDir: %s cannot be stored: %s", absolute, strings.TrimPrefix(err.Error(), "artifactd: ")), Path: relative}
			}
			info, err := os.Lstat(absolute)
			if err != nil {
				return err
			}
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				return &ManifestError{Path: relative, Message: fmt.Sprintf("SaveDir: %s is a symbolic link; directory artifacts hold files and folders only (copy what it points to, or remove it)", absolute)}
			case info.IsDir():
				found = append(found, &foundEntry{relative: relative, absolute: absolute, dir: true})
			case info.Mode().IsRegular():
				found = append(found, &foundEntry{relative: relative, absolute: absolute, executable: info.Mode()&0o111 != 0, size: info.Size()})
			default:
				return &ManifestError{Path: relative, Message: fmt.Sprintf("SaveDir: %s is not a regular file or folder (a socket, pipe or device); remove it first", absolute)}
			}
			if len(found) > maxEntries {
				return refuse(fmt.Sprintf("it has more than %d entries, over the limit maxEntries (%d)", maxEntries, maxEntries))
			}
			if info.IsDir() {
				if err := visit(absolute); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return found, visit(root)
}

// shapeManifest is the manifest found would make, with stand-ins of the real lengths of ids and digests.
func shapeManifest(found []*foundEntry) *Manifest {
	manifest := &Manifest{}
	for _, f := range found {
		if f.dir {
			manifest.Entries = append(manifest.Entries, ManifestEntry{Path: f.relative, Type: "dir"})
		} else {
			manifest.Entries = append(manifest.Entries, ManifestEntry{
				Path: f.relative, Type: "file", Size: f.size, Blake3: strings.Repeat("0", 64), ArtifactID: "fil_" + strings.Repeat("0", 26), Executable: f.executable,
			})
		}
	}
	return manifest
}

func totalSize(found []*foundEntry) int64 {
	var total int64
	for _, f := range found {
		total += f.size
	}
	return total
}

// forEachLimit runs work on every item, at most limit at once. After the
// first failure no new item is started, and those running are awaited
// before it is returned, so nothing goes on in the background of a failed call.
func forEachLimit[T any](ctx context.Context, items []T, limit int, work func(T) error) error {
	var (
		mu      sync.Mutex
		next    int
		failure error
		wg      sync.WaitGroup
	)
	for range min(limit, len(items)) {
		wg.Go(func() {
			for {
				mu.Lock()
				if failure != nil || next >= len(items) {
					mu.Unlock()
					return
				}
				if ctx.Err() != nil {
					failure = wrapErr(ctx, ctx.Err())
					mu.Unlock()
					return
				}
				item := items[next]
				next++
				mu.Unlock()
				if err := work(item); err != nil {
					mu.Lock()
					if failure == nil {
						failure = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failure
}
