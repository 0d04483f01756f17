package containerd

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/platforms"
)

// Snapshotter is the snapshotter wharf unpacks images with.
const Snapshotter = "overlayfs"

// Image is an image stored in wharf's namespace.
type Image struct {
	Name   string
	Digest string
	Size   int64
}

// ImportArchive imports an OCI or Docker image archive (a tar file) and
// unpacks its images for this platform. Images without a name in the
// archive get name.
func ImportArchive(ctx context.Context, c *client.Client, path, name string) ([]Image, error) {
	ctx = WithNamespace(ctx)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	opts := []client.ImportOpt{client.WithImportPlatform(platforms.Default())}
	if name != "" {
		opts = append(opts, client.WithImageRefTranslator(archive.AddRefPrefix(name)), client.WithIndexName(name))
	}
	imgs, err := c.Import(ctx, io.Reader(f), opts...)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", path, err)
	}
	var out []Image
	for _, img := range imgs {
		if err := client.NewImage(c, img).Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s: %w", img.Name, err)
		}
		out = append(out, describe(ctx, c, img))
	}
	return out, nil
}

func describe(ctx context.Context, c *client.Client, img images.Image) Image {
	size, _ := img.Size(ctx, c.ContentStore(), platforms.Default())
	return Image{Name: img.Name, Digest: img.Target.Digest.String(), Size: size}
}

// ListImages lists wharf's images.
func ListImages(ctx context.Context, c *client.Client) ([]Image, error) {
	ctx = WithNamespace(ctx)
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, describe(ctx, c, img))
	}
	return out, nil
}

// RemoveImage deletes an image; its content and snapshots are garbage
// collected by containerd.
func RemoveImage(ctx context.Context, c *client.Client, name string) error {
	ctx = WithNamespace(ctx)
	if err := c.ImageService().Delete(ctx, name, images.SynchronousDelete()); err != nil {
		return fmt.Errorf("removing image %s: %w", name, err)
	}
	return nil
}
