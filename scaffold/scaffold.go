// Package scaffold writes a new plugin (`wharf init`): wharf.toml, a
// Worker with a Durable Object (and optionally a Container class), a test
// that runs it in wharftest, go.mod and a go.sum complete enough that
// `go test` needs no network, and a .gitignore for the data directory.
package scaffold

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"text/template"

	"golang.org/x/mod/module"
)

// Module is the module path of wharf, which plugins require.
const Module = "github.com/wharfhq/wharf"

//go:embed template
var templates embed.FS

// Options describe the plugin to write.
type Options struct {
	// Dir is where to write it; none of the plugin's files may be there.
	Dir string
	// Name is the plugin's name; default the directory's base name.
	Name string
	// ModulePath is the new go.mod's module; default example.com/<name>.
	ModulePath string
	// SDK is a checkout of wharf that go.mod's replace points at; default
	// the checkout this wharf was built from (see SourceCheckout).
	SDK string
	// Container adds a Container class and its [[containers]] entry.
	Container bool
}

// files are the templates and where they go.
var files = map[string]string{
	"wharf.toml.tmpl":   "wharf.toml",
	"main.go.tmpl":      "main.go",
	"main_test.go.tmpl": "main_test.go",
}

// Write creates the plugin and resolves its go.mod and go.sum from the
// local module cache only (GOPROXY=off), so it works without a network.
func Write(ctx context.Context, opts Options) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	if opts.Name == "" {
		opts.Name = pluginName(filepath.Base(dir))
	} else if pluginName(opts.Name) != opts.Name {
		// It goes into go.mod's module path and wharf.toml.
		return fmt.Errorf("--name %q: a plugin name is lower case letters, digits and dashes (%q, say)", opts.Name, pluginName(opts.Name))
	}
	if opts.ModulePath == "" {
		opts.ModulePath = "example.com/" + opts.Name
	} else if err := module.CheckImportPath(opts.ModulePath); err != nil {
		// Checked before anything is written: go mod tidy would refuse
		// it only after, leaving files that block the next wharf init.
		return fmt.Errorf("--module: %w", err)
	}
	if opts.SDK == "" {
		if opts.SDK, err = SourceCheckout(); err != nil {
			return err
		}
	}
	if opts.SDK, err = filepath.Abs(opts.SDK); err != nil {
		return err
	}
	goVersion, err := checkoutGoVersion(opts.SDK)
	if err != nil {
		return err
	}
	for _, name := range append([]string{"go.mod", "go.sum", ".gitignore"}, slices.Collect(maps.Values(files))...) {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%s already has %s: wharf init does not overwrite a plugin's files", dir, name)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for tmpl, out := range files {
		t, err := template.ParseFS(templates, "template/"+tmpl)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, opts); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, out), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	gomod := fmt.Sprintf("module %s\n\ngo %s\n\nrequire %s v0.0.0\n\n// The SDK is not published yet: build against a checkout of wharf.\nreplace %s => %s\n",
		opts.ModulePath, goVersion, Module, Module, opts.SDK)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	// wharf's go.sum has every checksum the plugin can need; tidy keeps
	// the ones it does.
	sum, err := os.ReadFile(filepath.Join(opts.SDK, "go.sum"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("# build output, object storage and containerd state of wharf serve\n.wharf/\n"), 0o644); err != nil {
		return err
	}
	return tidy(ctx, dir)
}

// tidy runs go mod tidy against the local module cache only. With -e it
// does not give up on packages that only the tests of wharf's own
// dependencies import (they are never built for the plugin, and may be
// missing from the cache).
func tidy(ctx context.Context, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "mod", "tidy", "-e")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod tidy (offline, from the module cache) in %s failed: %w\n%s(build wharf's checkout once so its modules are cached, or run `go mod tidy` there with the network)", dir, err, out)
	}
	return nil
}

// SourceCheckout returns the wharf checkout this binary was built from,
// found through the path the compiler recorded for this file.
func SourceCheckout() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok && filepath.IsAbs(file) {
		root := filepath.Dir(filepath.Dir(file))
		if _, err := checkoutGoVersion(root); err == nil {
			return root, nil
		}
	}
	return "", errors.New("cannot find the wharf checkout this binary was built from: pass --sdk PATH (a checkout of " + Module + ")")
}

var goLine = regexp.MustCompile(`(?m)^go (\S+)$`)

// checkoutGoVersion checks dir is a wharf checkout and returns the Go
// version its go.mod names.
func checkoutGoVersion(dir string) (string, error) {
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !strings.HasPrefix(string(mod), "module "+Module+"\n") {
		return "", fmt.Errorf("--sdk %s is not a checkout of %s (no go.mod naming it)", dir, Module)
	}
	m := goLine.FindSubmatch(mod)
	if m == nil {
		return "", fmt.Errorf("%s: go.mod has no go line", dir)
	}
	return string(m[1]), nil
}

var notName = regexp.MustCompile(`[^a-z0-9-]+`)

// pluginName makes a plugin name from a directory name: lower case
// letters, digits and dashes.
func pluginName(base string) string {
	name := strings.Trim(notName.ReplaceAllString(strings.ToLower(base), "-"), "-")
	if name == "" {
		return "plugin"
	}
	return name
}
