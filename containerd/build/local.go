package build

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/wharfhq/wharf/containerd"
)

// storeID names wharf's image store among the content stores a build's
// session offers BuildKit (SolveOpt.OCIStores).
const storeID = "wharf"

// localImages are the images of wharf's store offered to a build as
// BuildKit named contexts: the Dockerfile frontend takes an image a FROM
// (or COPY --from, RUN --mount=from) names from wharf's store, through the
// build's session, when the store holds that exact reference (tag or
// digest, docker's short names included: busybox is
// docker.io/library/busybox:latest), and pulls only the others, as docker
// build does with the images it has. buildkitd cannot see them otherwise:
// its image store is containerd.BuildNamespace, not wharf's namespace.
type localImages struct {
	// attrs are the frontend attributes, context:NAME =
	// oci-layout://wharf@DIGEST.
	attrs map[string]string
	// digests are the digests offered.
	digests map[digest.Digest]bool
}

// findLocalImages offers the images of wharf's store (see offer). A
// Dockerfile that does not parse is offered none: its build fails on the
// frontend's own error, and without its stage names an image could take a
// stage's place.
func findLocalImages(ctx context.Context, c *client.Client, dockerfile []byte) (localImages, error) {
	stages, ok := stageNames(dockerfile)
	if !ok {
		return offer(nil, nil), nil
	}
	imgs, err := c.ImageService().List(containerd.WithNamespace(ctx))
	if err != nil {
		return localImages{}, fmt.Errorf("listing wharf's images for the build: %w", err)
	}
	return offer(imgs, stages), nil
}

// offer offers every image a Dockerfile can name under the frontend's
// keys for it (the short form of its name, :latest left out, and its name
// with its digest), except under a stage's name: the frontend would take
// the image for the stage.
func offer(imgs []images.Image, stages map[string]bool) localImages {
	local := localImages{attrs: map[string]string{}, digests: map[digest.Digest]bool{}}
	// Of two spellings of one name on different images (myapp:1 as
	// --tag stores it, docker.io/library/myapp:1 as an archive names it),
	// the one written as a Dockerfile writes it wins.
	spelt := map[string]bool{}
	for _, img := range imgs {
		named, err := reference.ParseNormalizedNamed(img.Name)
		if err != nil {
			continue // a name no Dockerfile can write
		}
		short := reference.FamiliarString(named)
		dgst := img.Target.Digest
		for _, name := range []string{strings.TrimSuffix(short, ":latest"), reference.FamiliarName(named) + "@" + dgst.String()} {
			key := "context:" + name
			if stages[name] || spelt[key] && short != img.Name {
				continue
			}
			local.attrs[key] = "oci-layout://" + storeID + "@" + dgst.String()
			local.digests[dgst] = true
			spelt[key] = spelt[key] || short == img.Name
		}
	}
	return local
}

// stageNames are the names of the Dockerfile's stages (FROM … AS name);
// ok is false when it does not parse.
func stageNames(dockerfile []byte) (names map[string]bool, ok bool) {
	res, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, false
	}
	stages, _, err := instructions.Parse(res.AST, linter.New(&linter.Config{SkipAll: true}))
	if err != nil {
		return nil, false
	}
	names = map[string]bool{}
	for _, s := range stages {
		if s.Name != "" {
			names[s.Name] = true
		}
	}
	return names, true
}

// storeContent is wharf's content store as a build's session offers it
// to BuildKit: it reads in wharf's namespace and refuses every change.
type storeContent struct{ cs content.Store }

var errReadOnly = fmt.Errorf("wharf's image store is read-only to builds: %w", errdefs.ErrPermissionDenied)

func (s storeContent) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	return s.cs.Info(containerd.WithNamespace(ctx), dgst)
}

func (s storeContent) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	return s.cs.ReaderAt(containerd.WithNamespace(ctx), desc)
}

func (s storeContent) Walk(ctx context.Context, fn content.WalkFunc, filters ...string) error {
	return s.cs.Walk(containerd.WithNamespace(ctx), fn, filters...)
}

func (storeContent) Update(context.Context, content.Info, ...string) (content.Info, error) {
	return content.Info{}, errReadOnly
}

func (storeContent) Delete(context.Context, digest.Digest) error { return errReadOnly }

func (storeContent) Status(context.Context, string) (content.Status, error) {
	return content.Status{}, errReadOnly
}

func (storeContent) ListStatuses(context.Context, ...string) ([]content.Status, error) {
	return nil, nil
}

func (storeContent) Abort(context.Context, string) error { return errReadOnly }

func (storeContent) Writer(context.Context, ...content.WriterOpt) (content.Writer, error) {
	return nil, errReadOnly
}

// notPulled recognises the frontend's failure to resolve an image
// (`failed to resolve source metadata for REF: CAUSE`) and says that REF
// is not in wharf's store: an image the store holds is offered under its
// digest, so a failure on an offered digest (an image for another
// platform, say) keeps the frontend's words.
func (l localImages) notPulled(msg string) (string, bool) {
	const marker = "failed to resolve source metadata for "
	_, rest, ok := strings.Cut(msg, marker)
	if !ok {
		return "", false
	}
	ref, cause, ok := strings.Cut(rest, ": ")
	if !ok {
		return "", false
	}
	if i := strings.LastIndexByte(ref, '@'); i >= 0 && l.digests[digest.Digest(ref[i+1:])] {
		return "", false
	}
	return fmt.Sprintf("image %s is not in wharf's image store and could not be pulled: %s (`wharf images import` or `wharf images pull` of the same data directory puts it there)", ref, cause), true
}
