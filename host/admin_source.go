package host

import (
	"fmt"
	"os"

	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/manifest"
)

// What the operator API (host/adminserver) reads of a running Worker.

// ObjectBindings are the manifest's Durable Object bindings, in its order;
// none if the plugin has no Durable Objects.
func (w *Worker) ObjectBindings() []manifest.Binding { return w.manifest.DurableObjects.Bindings }

// ObjectIDFromName is the id name gives an object of class, remembering
// the name.
func (w *Worker) ObjectIDFromName(class, name string) (string, error) {
	ns, err := w.objectClass(class)
	if err != nil {
		return "", err
	}
	return ns.IDFromName(name), nil
}

// ParseObjectID checks a whole object id of class, in hex.
func (w *Worker) ParseObjectID(class, hex string) (string, error) {
	ns, err := w.objectClass(class)
	if err != nil {
		return "", err
	}
	return ns.IDs().Parse(hex)
}

// ObjectState is what the host knows of an object apart from its
// container: the name its id was made from (if known), whether it has an
// instance now, and its SQLite file if it has one. It is empty for an
// unknown class.
func (w *Worker) ObjectState(class, id string) (name string, live bool, storage string) {
	ns, err := w.objectClass(class)
	if err != nil {
		return "", false, ""
	}
	name, _ = ns.Name(id)
	if _, err := os.Stat(ns.StoragePath(id)); err == nil {
		storage = ns.StoragePath(id)
	}
	return name, w.services.objects.IsLive(ns, id), storage
}

// objectClass is class's namespace.
func (w *Worker) objectClass(class string) (*objects.Namespace, error) {
	var ns *objects.Namespace
	if w.services.objects != nil {
		ns, _ = w.services.objects.Class(class)
	}
	if ns == nil {
		return nil, fmt.Errorf("no Durable Object class %q", class)
	}
	return ns, nil
}

// ContainerBackend runs the objects' containers; nil if the plugin has no
// [[containers]].
func (w *Worker) ContainerBackend() containers.Backend {
	if w.services.containers == nil {
		return nil
	}
	return w.services.containers.Backend()
}

// ContainerImage is the image of class's container, if the class has one.
func (w *Worker) ContainerImage(class string) (string, bool) {
	spec, ok := w.services.containers.Spec(class)
	return spec.Image, ok
}
