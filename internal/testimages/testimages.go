// Package testimages builds the container images wharf's tests use, from
// Debian's busybox-static and nothing downloaded, with go-containerregistry.
package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/wharfhq/wharf/internal/testutil"
)

// BusyboxRef is the name of the busybox test image; BusyboxAppRef is the
// same image run as the user app (uid 1000), like images with a USER.
const (
	BusyboxRef    = "wharf.test/busybox:latest"
	BusyboxAppRef = "wharf.test/busybox-app:latest"
)

// busyboxPath is where Debian's busybox-static installs the binary.
const busyboxPath = "/bin/busybox"

// Busybox writes an image archive with a static busybox, its applets as
// symlinks, the probe network client (/bin/probe), and users root (0) and
// app (1000, also in the group staff, 50), and returns its path.
func Busybox(dir string) (string, error) { return busyboxOnce(dir, BusyboxRef, "") }

// BusyboxApp writes the archive of BusyboxAppRef.
func BusyboxApp(dir string) (string, error) { return busyboxOnce(dir, BusyboxAppRef, "app") }

// built holds each archive busyboxOnce built, by reference, for the life
// of the process: building one (a go build of the probe, a compressed
// layer) takes seconds, and a test binary asks for the same bytes dozens
// of times. The archive is reproducible (TestBusyboxIsReproducible builds
// it afresh each time), so a copy is what a new build would write.
var built struct {
	sync.Mutex
	archives map[string][]byte
}

// busyboxOnce writes into dir the archive of refName that busybox builds,
// built once per process and copied after that.
func busyboxOnce(dir, refName, user string) (string, error) {
	built.Lock()
	defer built.Unlock()
	path := filepath.Join(dir, archiveName(refName))
	if data, ok := built.archives[refName]; ok {
		return path, os.WriteFile(path, data, 0o666)
	}
	if _, err := busybox(dir, refName, user); err != nil {
		return "", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if built.archives == nil {
		built.archives = map[string][]byte{}
	}
	built.archives[refName] = data
	return path, nil
}

// archiveName is the file name busybox writes the archive of refName as.
func archiveName(refName string) string {
	return strings.TrimPrefix(strings.Split(refName, ":")[0], "wharf.test/") + ".tar"
}

// busybox builds the archive of refName, run as user, into dir.
func busybox(dir, refName, user string) (string, error) {
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return "", fmt.Errorf("the test image needs %s: install the Debian package busybox-static: %w", busyboxPath, err)
	}
	out, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("%s --list: %w", busyboxPath, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []string{"bin/", "etc/", "tmp/", "home/app/", "work/"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode})
	}
	// In a fixed order, so the same inputs give the same digest.
	files := []struct{ name, body string }{
		{"etc/group", "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"},
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"},
	}
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.body))})
		io.WriteString(tw, f.body)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	probePath, err := BuildProbe(dir)
	if err != nil {
		return "", err
	}
	probe, err := os.ReadFile(probePath)
	os.Remove(probePath)
	if err != nil {
		return "", err
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/probe", Mode: 0o755, Size: int64(len(probe))})
	tw.Write(probe)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777})
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	img, err = mutate.Config(img, v1.Config{
		Env:        []string{"PATH=/bin", "IMAGE_VAR=from-image"},
		Cmd:        []string{"sh"},
		WorkingDir: "/",
		User:       user,
	})
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref, err := name.NewTag(refName)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, archiveName(refName))
	return path, tarball.WriteToFile(path, ref, img)
}

// BuildProbe compiles the probe command static (it runs in a busybox
// image with no libc) into dir and returns its path.
func BuildProbe(dir string) (string, error) {
	out := filepath.Join(dir, "probe")
	if err := testutil.BuildStatic("github.com/wharfhq/wharf/internal/testimages/probe", out); err != nil {
		return "", fmt.Errorf("the probe for the test image: %w", err)
	}
	return out, nil
}
