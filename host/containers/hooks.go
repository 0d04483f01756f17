package containers

import (
	"net/http"
	"sync"

	"github.com/wharfhq/wharf/egresspolicy"
)

// Hooks are how the backend reaches the host: the main process of an
// object's container ended, or a container's request was intercepted. The
// backend gets them before the host exists (a container adopted from a
// previous run may exit meanwhile); the host binds them once it can
// answer (Service.Bind), and exits before that are told then.
type Hooks struct {
	mu       sync.Mutex
	exited   func(class, object string)
	outbound func(w http.ResponseWriter, r *http.Request, class, object, handler string)
	early    [][2]string // exits before Bind
}

// Exited tells the host the main process of the object's container ended.
func (h *Hooks) Exited(class, object string) {
	h.mu.Lock()
	f := h.exited
	if f == nil {
		h.early = append(h.early, [2]string{class, object})
	}
	h.mu.Unlock()
	if f != nil {
		f(class, object)
	}
}

// ServeOutbound has the host answer a container's intercepted request
// (the Interceptor of containerd/egress).
func (h *Hooks) ServeOutbound(w http.ResponseWriter, r *http.Request, src egresspolicy.Source, handler string) {
	h.mu.Lock()
	f := h.outbound
	h.mu.Unlock()
	if f == nil {
		http.Error(w, "wharf egress: the Worker is still loading", http.StatusServiceUnavailable)
		return
	}
	f(w, r, src.Class, src.Object, handler)
}

func (h *Hooks) bind(exited func(class, object string), outbound func(w http.ResponseWriter, r *http.Request, class, object, handler string)) {
	h.mu.Lock()
	h.exited, h.outbound = exited, outbound
	early := h.early
	h.early = nil
	h.mu.Unlock()
	for _, e := range early {
		go exited(e[0], e[1])
	}
}
