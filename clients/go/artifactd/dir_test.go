package artifactd_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/artifactd/artifactd/clients/go/artifactd"
)

// makeTree writes a folder with nested and empty folders, an empty file, an
// executable, and two files of the same content.
func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"config.json":             `{"layers": 2}`,
		"weights/layer1.bin":      strings.Repeat("\x01", 70_000),
		"weights/layer2.bin":      strings.Repeat("\x01", 70_000),
		"weights/deep/notes.txt":  "ünïcödé & <tags>",
		"empty.txt":               "",
		"bin/run.sh":              "#!/bin/sh\necho hi\n",
		"Zeta/upper-case-first.x": "sorted by code unit",
	}
	for name, content := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "bin/run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "logs/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// treeOf describes a folder: each path with its type, content and executable bit.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		relative, _ := filepath.Rel(root, path)
		info, err := entry.Info()
		if err != nil {
			return err
		}
		if entry.IsDir() {
			tree[relative] = "dir"
			return nil
		}
		content, err := os.ReadFile(path)
		tree[relative] = "file executable=" + map[bool]string{true: "yes", false: "no"}[info.Mode()&0o100 != 0] + " " + string(content)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func equalTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("restored %d entries; want %d:\n%v\n%v", len(got), len(want), got, want)
	}
	for path, description := range want {
		if got[path] != description {
			t.Fatalf("%s restored as %.80q; want %.80q", path, got[path], description)
		}
	}
}

func TestDirectorySavedByGoRestoresWithTheNodeSDKAndBack(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	source := makeTree(t)
	want := treeOf(t, source)

	t.Run("saved by Go, restored by Node", func(t *testing.T) {
		saved, err := client.SaveDir(ctx, source, &artifactd.Spec{Kind: "checkpoint", Labels: map[string]string{"sdk": "go"}}, artifactd.DirOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(saved.GetId(), "dir_") || saved.GetMimeType() != artifactd.ManifestMIME {
			t.Fatalf("saved %s as %s", saved.GetId(), saved.GetMimeType())
		}
		target := filepath.Join(t.TempDir(), "restored-by-node")
		askHelper(t, map[string]any{"op": "restoreDir", "id": saved.GetId(), "target": target})
		equalTrees(t, want, treeOf(t, target))
	})

	t.Run("saved by Node, restored by Go", func(t *testing.T) {
		var id string
		if err := json.Unmarshal(askHelper(t, map[string]any{"op": "saveDir", "dir": source, "spec": map[string]any{"kind": "checkpoint"}}), &id); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(t.TempDir(), "restored-by-go")
		manifest, err := client.RestoreDir(ctx, id, target, artifactd.DirOptions{})
		if err != nil {
			t.Fatal(err)
		}
		equalTrees(t, want, treeOf(t, target))
		// What Node wrote is what Go writes for the same manifest, byte for byte.
		written, err := client.LoadBytes(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(manifest.Marshal(), written) {
			t.Fatalf("Go writes the manifest Node wrote as\n%s\nNode wrote\n%s", manifest.Marshal(), written)
		}
	})
}

func TestRestoreDirRefusesUnsafeManifestsBeforeWritingAnything(t *testing.T) {
	client := newClient(t)
	ctx := testContext(t)
	file, err := client.UploadReader(ctx, strings.NewReader("payload"), &artifactd.Spec{Kind: "entry"})
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]any{"path": "a.txt", "type": "file", "size": 7, "blake3": file.GetArtifact().GetBlake3(), "artifactId": file.GetArtifact().GetId(), "executable": false}
	with := func(changes map[string]any) map[string]any {
		entry := map[string]any{}
		for k, v := range good {
			entry[k] = v
		}
		for k, v := range changes {
			entry[k] = v
		}
		return entry
	}
	cases := map[string]struct {
		entries []any
		says    string
	}{
		"a parent segment":    {[]any{with(map[string]any{"path": "../escape.txt"})}, `".." segment`},
		"an absolute path":    {[]any{with(map[string]any{"path": "/etc/passwd"})}, "is absolute"},
		"a backslash":         {[]any{with(map[string]any{"path": `a\b`})}, "backslash"},
		"a repeated path":     {[]any{good, good}, "appears twice"},
		"a path under a file": {[]any{good, with(map[string]any{"path": "a.txt/b"})}, "lies under the file"},
		"a link":              {[]any{with(map[string]any{"type": "symlink"})}, `only "file" and "dir"`},
		"other content":       {[]any{with(map[string]any{"size": 8})}, "does not hold the content the manifest names"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			content, _ := json.Marshal(map[string]any{"format": artifactd.ManifestFormat, "entries": c.entries})
			manifest, err := client.UploadReader(ctx, bytes.NewReader(content), &artifactd.Spec{Kind: "hostile", MimeType: artifactd.ManifestMIME})
			if err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			target := filepath.Join(parent, "target")
			_, err = client.RestoreDir(ctx, manifest.GetArtifact().GetId(), target, artifactd.DirOptions{})
			var refused *artifactd.ManifestError
			if !errors.As(err, &refused) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("answered %v; want a ManifestError saying %q", err, c.says)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Fatalf("a refused manifest left %v behind", entries)
			}
		})
	}
}

func TestSaveDirRefusesLinksByName(t *testing.T) {
	client := newClient(t)
	root := makeTree(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "weights/link")); err != nil {
		t.Fatal(err)
	}
	_, err := client.SaveDir(testContext(t), root, &artifactd.Spec{Kind: "checkpoint"}, artifactd.DirOptions{})
	var refused *artifactd.ManifestError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "weights/link is a symbolic link") {
		t.Fatalf("answered %v; want the link refused by name", err)
	}
}

func TestSaveDirRefusesAFolderPastItsLimitsBeforeUploading(t *testing.T) {
	client := newClient(t)
	_, err := client.SaveDir(testContext(t), makeTree(t), &artifactd.Spec{Kind: "checkpoint"}, artifactd.DirOptions{DirectoryLimits: artifactd.DirectoryLimits{MaxEntries: 3}})
	if err == nil || !strings.Contains(err.Error(), "over the limit maxEntries (3)") {
		t.Fatalf("answered %v; want the entry limit named", err)
	}
}
