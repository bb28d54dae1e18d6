package artifactd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// The README's Go examples are the programs in clients/go/examples, shown
// verbatim: each is marked `<!-- go-example: <path> -->` before its code
// block. This checks the README shows each file exactly, then builds and
// runs each against the test service; they check what they claim and exit
// non-zero otherwise.
func TestReadmeExamples(t *testing.T) {
	root := repositoryRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]string{}
	for _, match := range regexp.MustCompile("(?s)<!-- go-example: (\\S+) -->\\s*```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		shown[match[1]] = match[2]
	}
	examplesDir := filepath.Join(root, "clients/go/examples")
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, entry := range entries {
		if entry.IsDir() {
			names = append(names, entry.Name())
		}
	}
	if len(names) == 0 {
		t.Fatal("no examples")
	}
	t.Run("the README shows every example verbatim", func(t *testing.T) {
		var files, marked []string
		for _, name := range names {
			files = append(files, "clients/go/examples/"+name+"/main.go")
		}
		for file := range shown {
			marked = append(marked, file)
		}
		slices.Sort(marked)
		if !slices.Equal(files, marked) {
			t.Fatalf("the README shows %v; the examples are %v", marked, files)
		}
		for _, file := range files {
			content, _ := os.ReadFile(filepath.Join(root, file))
			if shown[file] != string(content) {
				t.Errorf("%s differs from its README block", file)
			}
		}
	})
	if server.URL == "" {
		t.Skip("no artifactd to run the examples against (-short)")
	}
	bin := t.TempDir()
	build := exec.Command("go", append([]string{"build", "-o", bin + "/"}, prefixed("./examples/", names)...)...)
	build.Dir = filepath.Join(root, "clients/go")
	if output, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, output)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			run := exec.CommandContext(testContext(t), filepath.Join(bin, name))
			run.Env = append(os.Environ(), "ARTIFACTD_URL="+server.URL, "ARTIFACTD_TOKEN="+server.Tokens["alpha"])
			if output, err := run.CombinedOutput(); err != nil || len(output) > 0 {
				t.Fatalf("%s: %v\n%s", name, err, output)
			}
		})
	}
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = prefix + name
	}
	return out
}
