package containerd

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// Pull fetches ref from its registry with reg's credentials and unpacks
// it, writing a line of progress per blob to progress (which may be nil).
func Pull(ctx context.Context, c *client.Client, reg Registries, ref string, progress io.Writer) (Image, error) {
	ctx = WithNamespace(ctx)
	ctx = log.WithLogger(ctx, pullLogger(progress))
	resolver := docker.NewResolver(reg.resolver())
	var fetched, total atomic.Int64
	report := images.HandlerFunc(func(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		n := fetched.Add(1)
		size := total.Add(desc.Size)
		if progress != nil {
			fmt.Fprintf(progress, "%s: %d blobs, %.1f MB: %s %s (%.1f MB)\n", ref, n, float64(size)/1e6,
				shortMediaType(desc.MediaType), desc.Digest.Encoded()[:12], float64(desc.Size)/1e6)
		}
		return nil, nil
	})
	img, err := c.Pull(ctx, ref,
		client.WithResolver(resolver),
		client.WithPullUnpack,
		client.WithPullSnapshotter(Snapshotter),
		client.WithImageHandler(report),
	)
	if err != nil {
		return Image{}, fmt.Errorf("pulling %s: %w", ref, reg.explain(ref, err))
	}
	return describe(ctx, c, img.Metadata()), nil
}

// pullLogger is the logger containerd's resolver and fetcher log to during
// a pull: only warnings, with the progress. At info they log each failed
// attempt ("fetch failed", "fetch failed after status: 404 Not Found"),
// which the pull's error says again, on wharf's stderr in logrus's format
// before that error.
func pullLogger(progress io.Writer) *log.Entry {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	l.SetOutput(io.Discard)
	if progress != nil {
		l.SetOutput(progress)
	}
	return logrus.NewEntry(l)
}

func shortMediaType(mt string) string {
	switch mt {
	case ocispec.MediaTypeImageManifest, images.MediaTypeDockerSchema2Manifest:
		return "manifest"
	case ocispec.MediaTypeImageIndex, images.MediaTypeDockerSchema2ManifestList:
		return "index"
	case ocispec.MediaTypeImageConfig, images.MediaTypeDockerSchema2Config:
		return "config"
	}
	return "layer"
}
