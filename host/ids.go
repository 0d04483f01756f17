package host

// idFromName is ids.FromName, remembering the name.
func (ns *namespace) idFromName(name string) string {
	id := ns.ids.FromName(name)
	ns.names.Note(id, name)
	return id
}
