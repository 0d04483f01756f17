package guestio

import (
	"fmt"

	"github.com/wharfhq/wharf/abi"
)

// Table maps the u32 handles a guest sees to host objects. A slot's
// generation changes on every release, so a stale handle never reaches a
// newer object. The zero Table is empty and ready to use.
type Table[O Owner] struct {
	slots []slot[O]
	free  []uint32
	live  int
}

// Owner is what a handle can belong to (an event, or an instance scope): it
// is told when a handle it owns is released. Its zero value means no owner.
type Owner interface {
	comparable
	// Released is called when a handle of kind the owner owned is
	// released.
	Released(kind abi.Kind)
}

// Entry is what a live handle holds.
type Entry[O Owner] struct {
	Kind abi.Kind
	Obj  any
	// Owner is the event (or instance scope) that created the handle.
	Owner O
}

type slot[O Owner] struct {
	gen uint32
	Entry[O]
}

const maxGeneration = 1<<(32-abi.IndexBits) - 1

// Add registers obj as a handle of kind owned by owner (the zero O for
// none) and returns it.
func (t *Table[O]) Add(kind abi.Kind, obj any, owner O) abi.Handle {
	if len(t.slots) == 0 {
		t.slots = append(t.slots, slot[O]{}) // index 0 is never handed out
	}
	var idx uint32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = uint32(len(t.slots))
		t.slots = append(t.slots, slot[O]{gen: 1})
	}
	s := &t.slots[idx]
	s.Kind, s.Obj, s.Owner = kind, obj, owner
	t.live++
	return abi.MakeHandle(idx, s.gen)
}

// Live is the number of live handles.
func (t *Table[O]) Live() int { return t.live }

// Lookup returns the object behind h if it is live and of kind.
func (t *Table[O]) Lookup(h abi.Handle, kind abi.Kind) (any, error) {
	s, err := t.slot(h)
	if err != nil {
		return nil, err
	}
	if s.Kind != kind {
		return nil, fmt.Errorf("%w: handle %d is a %s, not a %s", abi.StatusBadHandle, h, s.Kind, kind)
	}
	return s.Obj, nil
}

// Get returns what h holds if it is live, whatever its kind.
func (t *Table[O]) Get(h abi.Handle) (Entry[O], error) {
	s, err := t.slot(h)
	if err != nil {
		return Entry[O]{}, err
	}
	return s.Entry, nil
}

// Held is Get for a caller that needs no error: whether h is live, and
// what it holds. Events check every handle they owned as they end, most of
// them closed already, so this costs no error text.
func (t *Table[O]) Held(h abi.Handle) (Entry[O], bool) {
	if s := t.find(h); s != nil {
		return s.Entry, true
	}
	return Entry[O]{}, false
}

// slot is h's slot, or why h is not open.
func (t *Table[O]) slot(h abi.Handle) (*slot[O], error) {
	if s := t.find(h); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w: handle %d is not open (stale or never issued)", abi.StatusBadHandle, h)
}

// find is h's slot if h is live, else nil.
func (t *Table[O]) find(h abi.Handle) *slot[O] {
	idx := h.Index()
	if idx == 0 || int(idx) >= len(t.slots) || t.slots[idx].Obj == nil || t.slots[idx].gen != h.Generation() {
		return nil
	}
	return &t.slots[idx]
}

// Remove releases h and returns what it held; its owner is told.
func (t *Table[O]) Remove(h abi.Handle) (abi.Kind, any, error) {
	s, err := t.slot(h)
	if err != nil {
		return 0, nil, err
	}
	kind, obj := s.Kind, s.Obj
	var none O
	if s.Owner != none {
		s.Owner.Released(kind)
	}
	s.Obj, s.Owner = nil, none
	s.gen++
	if s.gen > maxGeneration {
		s.gen = 1
	}
	t.free = append(t.free, h.Index())
	t.live--
	return kind, obj, nil
}

// Drain releases every live handle, calling fn for each.
func (t *Table[O]) Drain(fn func(abi.Kind, any)) {
	if t.live == 0 {
		return
	}
	for i := 1; i < len(t.slots); i++ {
		if obj := t.slots[i].Obj; obj != nil {
			kind := t.slots[i].Kind
			t.Remove(abi.MakeHandle(uint32(i), t.slots[i].gen))
			fn(kind, obj)
		}
	}
}
