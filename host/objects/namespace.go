package objects

import "path/filepath"

// Namespace is the id space and storage directory of one class.
type Namespace struct {
	class string
	ids   IDs
	dir   string
	names Names
}

// Class is the namespace's class name.
func (ns *Namespace) Class() string { return ns.class }

// IDs makes and checks the namespace's object ids.
func (ns *Namespace) IDs() IDs { return ns.ids }

// IDFromName is IDs().FromName, remembering the name.
func (ns *Namespace) IDFromName(name string) string {
	if id, ok := ns.names.ID(name); ok {
		return id
	}
	id := ns.ids.FromName(name)
	ns.names.Note(id, name)
	return id
}

// Name is the name the object id was made from, if the host saw it.
func (ns *Namespace) Name(id string) (string, bool) { return ns.names.Name(id) }

// learnName remembers name for id if id was made from it: the name
// another host sends with the object's events it forwards here (which
// carry a client's headers too, so it is checked).
func (ns *Namespace) learnName(id, name string) {
	if _, ok := ns.names.Name(id); !ok && ns.ids.FromName(name) == id {
		ns.names.Note(id, name)
	}
}

// StoragePath is the database file of the object with the given id.
func (ns *Namespace) StoragePath(id string) string { return filepath.Join(ns.dir, id+".sqlite") }
