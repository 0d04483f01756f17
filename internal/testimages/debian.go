package testimages

import (
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DebianPythonRepo is the base image of examples/pyapp, as pushed to a
// loopback registry: Debian bookworm with python3-minimal.
const DebianPythonRepo = "wharf/debian-python:bookworm"

// debianPackages are what the base image holds besides Debian's essential
// set.
const debianPackages = "python3-minimal"

// DebianPython returns a docker image archive of a Debian bookworm root
// filesystem with python3-minimal, made by mmdebstrap from the host's apt
// sources. It is built once into cacheDir (a few minutes) and reused from
// there after.
func DebianPython(cacheDir string) (string, error) {
	out := filepath.Join(cacheDir, "debian-python-bookworm.tar")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", fmt.Errorf("the Debian base image needs mmdebstrap: install the Debian package mmdebstrap")
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	rootfs := filepath.Join(cacheDir, fmt.Sprintf("rootfs-%d.tar", os.Getpid()))
	defer os.Remove(rootfs)
	cmd := exec.Command("mmdebstrap", "--variant=essential", "--include="+debianPackages,
		"--format=tar", "--skip=output/dev",
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "bookworm", rootfs)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mmdebstrap: %v\n%s", err, msg)
	}
	return out, DebianPythonFromRootfs(rootfs, out)
}

// DebianPythonFromRootfs writes the image archive out from a root
// filesystem tar made by mmdebstrap.
func DebianPythonFromRootfs(rootfs, out string) error {
	layer, err := tarball.LayerFromFile(rootfs, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	img, err = mutate.Config(img, v1.Config{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		Cmd: []string{"python3"},
	})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	ref, err := name.NewTag("wharf.test/" + DebianPythonRepo)
	if err != nil {
		return err
	}
	tmp := out + fmt.Sprintf(".%d", os.Getpid())
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}
