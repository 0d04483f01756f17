// Command mkimage writes the busybox image archive the sandbox example (and
// make demo) runs, built from Debian's busybox-static (no registry involved):
//
//	go run ./internal/testimages/mkimage DIR
//
// With -debian-registry it instead serves examples/pyapp's Debian base
// image (built with mmdebstrap once, cached in DIR) from a registry on a
// loopback address until interrupted, since no other registry is reachable:
//
//	go run ./internal/testimages/mkimage -debian-registry 127.0.0.1:5000 DIR
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/wharfhq/wharf/internal/testimages"
)

func main() {
	debianRegistry := flag.String("debian-registry", "", "serve the Debian base image from a registry on this loopback address")
	flag.Parse()
	dir := "."
	if flag.NArg() > 0 {
		dir = flag.Arg(0)
	}
	if err := run(dir, *debianRegistry); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(dir, debianRegistry string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if debianRegistry == "" {
		path, err := testimages.Busybox(dir)
		if err == nil {
			fmt.Println(path)
		}
		return err
	}
	host, _, err := net.SplitHostPort(debianRegistry)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-debian-registry must be a loopback ip:port, got %q", debianRegistry)
	}
	archive, err := testimages.DebianPython(dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", debianRegistry)
	if err != nil {
		return err
	}
	go http.Serve(ln, registry.New())
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(debianRegistry+"/"+testimages.DebianPythonRepo, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img); err != nil {
		return err
	}
	fmt.Printf("serving %s until interrupted\n", ref)
	select {}
}
