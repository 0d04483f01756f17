package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Snapshotter is the snapshotter wharf unpacks images with.
const Snapshotter = "overlayfs"

// Image is an image stored in wharf's namespace.
type Image struct {
	Name   string
	Digest string
	Size   int64
	// UsedBy are the plugins of running wharf serve processes that use
	// the image (see MarkInUse).
	UsedBy []string
}

// ImportArchive imports an OCI or Docker image archive (a tar file) and
// unpacks its images for this platform. Images without a name in the
// archive get name.
//
// containerd's import updates each image, and creates it if the update
// found none: an import of the same image at the same time (two wharf
// images import through one containerd) that created it in between
// makes that fail with "already exists". Once more, the update finds it.
func ImportArchive(ctx context.Context, c *client.Client, path, name string) ([]Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	imgs, err := Import(ctx, c, f, name)
	if errdefs.IsAlreadyExists(err) {
		if _, err = f.Seek(0, io.SeekStart); err == nil {
			imgs, err = Import(ctx, c, f, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", path, err)
	}
	return imgs, nil
}

// Import reads an OCI or Docker image archive from r and unpacks its
// images for this platform. Images without a name in the archive get name.
func Import(ctx context.Context, c *client.Client, r io.Reader, name string) ([]Image, error) {
	ctx = WithNamespace(ctx)
	opts := []client.ImportOpt{client.WithImportPlatform(platforms.Default())}
	if name != "" {
		opts = append(opts, client.WithImageRefTranslator(archive.AddRefPrefix(name)), client.WithIndexName(name))
	}
	imgs, err := c.Import(ctx, r, opts...)
	if err != nil {
		return nil, err
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

// NameTheManifest points the name of imported, an image Import returned
// whose target is an index of a single manifest (what a build exports),
// at that manifest, and returns the image as that manifest. The index
// records the moment it was exported, so a build that changed nothing
// would otherwise be a new image, with a new digest, each time; the
// manifest is the image itself. A name another import has taken since
// (a build of the same tag at the same time) is left to it; other
// targets are left as they are.
func NameTheManifest(ctx context.Context, c *client.Client, imported Image) (Image, error) {
	ctx = WithNamespace(ctx)
	raw, err := content.ReadBlob(ctx, c.ContentStore(), ocispec.Descriptor{Digest: digest.Digest(imported.Digest)})
	if err != nil {
		return Image{}, fmt.Errorf("reading the index of %s: %w", imported.Name, err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(raw, &index); err != nil {
		return Image{}, fmt.Errorf("reading the index of %s: %w", imported.Name, err)
	}
	if index.MediaType != "" && !images.IsIndexType(index.MediaType) || len(index.Manifests) != 1 || !images.IsManifestType(index.Manifests[0].MediaType) {
		return imported, nil
	}
	m := index.Manifests[0]
	manifest := ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}
	img, err := c.ImageService().Get(ctx, imported.Name)
	if err == nil && img.Target.Digest.String() == imported.Digest {
		img.Target = manifest
		_, err = c.ImageService().Update(ctx, img, "target")
	}
	if err != nil {
		return Image{}, fmt.Errorf("naming the manifest of %s: %w", imported.Name, err)
	}
	return describe(ctx, c, images.Image{Name: imported.Name, Target: manifest}), nil
}

func describe(ctx context.Context, c *client.Client, img images.Image) Image {
	size, _ := img.Size(ctx, c.ContentStore(), platforms.Default())
	return Image{Name: img.Name, Digest: img.Target.Digest.String(), Size: size, UsedBy: users(img)}
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

// ErrImageInUse means a loaded plugin uses the image.
var ErrImageInUse = errors.New("image in use")

// labelUsedBy prefixes the label a running wharf serve puts on each image
// its plugin uses: labelUsedBy+plugin = the serving process's id.
const labelUsedBy = "wharf.used-by."

// MarkInUse records that plugin, served by this process, uses the image.
func MarkInUse(ctx context.Context, c *client.Client, name, plugin string) error {
	return setLabel(ctx, c, name, labelUsedBy+plugin, strconv.Itoa(os.Getpid()))
}

// ReleaseInUse removes MarkInUse's record.
func ReleaseInUse(ctx context.Context, c *client.Client, name, plugin string) error {
	return setLabel(ctx, c, name, labelUsedBy+plugin, "")
}

// setLabel sets (or with an empty value removes) one label of an image.
func setLabel(ctx context.Context, c *client.Client, name, key, value string) error {
	ctx = WithNamespace(ctx)
	img := images.Image{Name: name, Labels: map[string]string{key: value}}
	if _, err := c.ImageService().Update(ctx, img, "labels."+key); err != nil {
		return fmt.Errorf("labelling image %s: %w", name, err)
	}
	return nil
}

// users are the plugins of live wharf serve processes that use img.
func users(img images.Image) []string {
	var out []string
	for k, v := range img.Labels {
		plugin, ok := strings.CutPrefix(k, labelUsedBy)
		if !ok {
			continue
		}
		if pid, err := strconv.Atoi(v); err == nil && syscall.Kill(pid, 0) == nil {
			out = append(out, plugin)
		}
	}
	sort.Strings(out)
	return out
}

// RemoveImage deletes an image; its content and snapshots are garbage
// collected by containerd. An image a loaded plugin uses is refused with
// ErrImageInUse unless force; a missing one (errdefs.ErrNotFound) points
// at `wharf images ls`.
func RemoveImage(ctx context.Context, c *client.Client, name string, force bool) error {
	ctx = WithNamespace(ctx)
	img, err := c.ImageService().Get(ctx, name)
	if err == nil {
		if u := users(img); len(u) > 0 && !force {
			return fmt.Errorf("%w: %s is used by the loaded plugin %s; stop it first or pass --force", ErrImageInUse, name, strings.Join(u, ", "))
		}
		err = c.ImageService().Delete(ctx, name, images.SynchronousDelete())
	}
	if errdefs.IsNotFound(err) { // containerd's words name the image again
		return fmt.Errorf("removing image %s: %w (`wharf images ls` lists the images)", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("removing image %s: %w", name, err)
	}
	return nil
}

// PruneImages removes every image no loaded plugin uses and returns their
// names.
func PruneImages(ctx context.Context, c *client.Client) ([]string, error) {
	ctx = WithNamespace(ctx)
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, img := range imgs {
		if len(users(img)) > 0 {
			continue
		}
		if err := c.ImageService().Delete(ctx, img.Name, images.SynchronousDelete()); err != nil {
			return removed, fmt.Errorf("removing image %s: %w", img.Name, err)
		}
		removed = append(removed, img.Name)
	}
	return removed, nil
}

// ErrImageMissing means an image is not in wharf's containerd.
var ErrImageMissing = errors.New("not in wharf's containerd")

// MissingImage is the error for an image that is not in wharf's
// containerd, saying how to put it there.
func MissingImage(name string) error {
	return fmt.Errorf("image %q is %w: import it with `wharf images import` or `wharf images pull`", name, ErrImageMissing)
}
