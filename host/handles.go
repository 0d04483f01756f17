package host

import (
	"fmt"

	"github.com/wharfhq/wharf/abi"
)

// handleTable maps the u32 handles a guest sees to host objects. A slot's
// generation changes on every release, so a stale handle never reaches a
// newer object.
type handleTable struct {
	slots []slot
	free  []uint32
	live  int
}

// eventCap bounds the live handles of one kind an event owns at once
// (those it created; they are released when it ends): a pending
// fetch holds a socket, a stream a buffer, a process a process in a
// container.
type eventCap struct {
	max  int
	what string
}

// eventCaps are the caps by kind; a kind without one is bounded only by
// maxHandles.
var eventCaps = [...]eventCap{
	abi.KindPending:     {1000, "pending results (fetches, object calls, forwards, monitors)"},
	abi.KindReadStream:  {1000, "readable streams"},
	abi.KindWriteStream: {1000, "writable streams"},
	abi.KindProcess:     {64, "processes"},
}

// checkCap refuses one more handle of kind beyond its event cap.
func (g *guest) checkCap(kind abi.Kind) error {
	if int(kind) >= len(eventCaps) || eventCaps[kind].max == 0 || g.byKind[kind] < eventCaps[kind].max {
		return nil
	}
	c := eventCaps[kind]
	return fmt.Errorf("%w: %d %s are open in this event, the limit is %d", abi.StatusTooLarge, g.byKind[kind], c.what, c.max)
}

type slot struct {
	gen  uint32
	kind abi.Kind
	obj  any
	// owner is the event (or instance scope) that created the handle.
	owner *guest
}

const maxGeneration = 1<<(32-abi.IndexBits) - 1

func (t *handleTable) add(kind abi.Kind, obj any) abi.Handle {
	if len(t.slots) == 0 {
		t.slots = append(t.slots, slot{}) // index 0 is never handed out
	}
	var idx uint32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = uint32(len(t.slots))
		t.slots = append(t.slots, slot{gen: 1})
	}
	s := &t.slots[idx]
	s.kind, s.obj = kind, obj
	t.live++
	return abi.MakeHandle(idx, s.gen)
}

// lookup returns the object behind h if it is live and of kind.
func (t *handleTable) lookup(h abi.Handle, kind abi.Kind) (any, error) {
	s, err := t.slot(h)
	if err != nil {
		return nil, err
	}
	if s.kind != kind {
		return nil, fmt.Errorf("%w: handle %d is a %s, not a %s", abi.StatusBadHandle, h, s.kind, kind)
	}
	return s.obj, nil
}

func (t *handleTable) slot(h abi.Handle) (*slot, error) {
	idx := h.Index()
	if idx == 0 || int(idx) >= len(t.slots) || t.slots[idx].obj == nil || t.slots[idx].gen != h.Generation() {
		return nil, fmt.Errorf("%w: handle %d is not open (stale or never issued)", abi.StatusBadHandle, h)
	}
	return &t.slots[idx], nil
}

// remove releases h and returns what it held.
func (t *handleTable) remove(h abi.Handle) (abi.Kind, any, error) {
	s, err := t.slot(h)
	if err != nil {
		return 0, nil, err
	}
	kind, obj := s.kind, s.obj
	if s.owner != nil {
		s.owner.byKind[kind%16]--
	}
	s.obj, s.owner = nil, nil
	s.gen++
	if s.gen > maxGeneration {
		s.gen = 1
	}
	t.free = append(t.free, h.Index())
	t.live--
	return kind, obj, nil
}

// drain releases every live handle, calling fn for each.
func (t *handleTable) drain(fn func(abi.Kind, any)) {
	if t.live == 0 {
		return
	}
	for i := 1; i < len(t.slots); i++ {
		if obj := t.slots[i].obj; obj != nil {
			kind := t.slots[i].kind
			t.remove(abi.MakeHandle(uint32(i), t.slots[i].gen))
			fn(kind, obj)
		}
	}
}
