package host

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"

	"github.com/wharfhq/wharf/abi"
)

// guest is the host-side state of one guest instance: its handle table, the
// message of its last failed import and the event it is serving.
type guest struct {
	plugin  string
	base    *slog.Logger
	logs    *guestLogs // bounds what the guest logs
	table   handleTable
	lastErr string
	wakeup  signal
	scratch []byte // reused to encode heads
	// object is the Durable Object this instance is dedicated to; nil in a
	// Worker instance.
	object *object
	// classes are the object classes the guest registered while it
	// initialised.
	classes []string
	// bindings are the Durable Object bindings the guest said it uses
	// (sdk.GetNamespace) while it initialised.
	bindings []string

	// The current event; set by beginEvent, cleared by endEvent. The id is
	// formatted only when something is logged.
	ctx    context.Context
	id     eventID
	logger *slog.Logger
}

// eventID names an event in logs: a per-host prefix and a counter.
type eventID struct {
	prefix string
	n      uint64
}

func (id eventID) String() string {
	if id.prefix == "" {
		return ""
	}
	return id.prefix + "-" + strconv.FormatUint(id.n, 10)
}

func newGuest(logs *guestLogs) *guest {
	return &guest{plugin: logs.plugin, base: logs.base, logs: logs, wakeup: newSignal()}
}

func (g *guest) wake() { g.wakeup.notify() }

func (g *guest) beginEvent(ctx context.Context, id eventID) {
	g.ctx, g.id, g.logger = ctx, id, nil
}

// log returns the logger of the current event, tagged with the plugin name
// and the request id; it is made on first use.
func (g *guest) log() *slog.Logger {
	if g.logger == nil {
		g.logger = g.base.With("plugin", g.plugin)
		if id := g.id.String(); id != "" {
			g.logger = g.logger.With("request_id", id)
		}
	}
	return g.logger
}

// endEvent releases every handle the event left open. Writable streams are
// finished cleanly unless the guest failed, in which case they are aborted.
func (g *guest) endEvent(failure error) {
	g.table.drain(func(kind abi.Kind, obj any) { releaseObject(obj, failure) })
	g.ctx, g.id, g.logger = nil, eventID{}, nil
}

// releaseObject frees what a handle held.
func releaseObject(obj any, failure error) {
	switch o := obj.(type) {
	case *readStream:
		o.close()
	case *writeStream:
		if failure != nil {
			o.abort(failure)
		} else {
			o.close()
		}
	case *pending:
		o.cancel()
	case *timer:
		o.stop()
	case *fetchedResponse:
		o.close()
	}
}

// fail records err as the last error and returns its status.
func (g *guest) fail(err error) abi.Status {
	g.lastErr = err.Error()
	return statusOf(err)
}

// statusOf finds the abi.Status an error wraps; IO if none.
func statusOf(err error) abi.Status {
	var st abi.Status
	if !errors.As(err, &st) {
		st = abi.StatusIO
	}
	return st
}

// pending is a result that arrives later: a fetch or a forward.
type pending struct {
	done     chan struct{}
	once     sync.Once
	value    any
	err      error
	cancelFn func()
	wake     func()
}

func newPending(wake func(), cancel func()) *pending {
	return &pending{done: make(chan struct{}), wake: wake, cancelFn: cancel}
}

func (p *pending) resolve(v any, err error) {
	p.once.Do(func() {
		p.value, p.err = v, err
		close(p.done)
		p.wake()
	})
}

// isFetch tells a fetch's pending result from a forward's: only a fetch can
// be canceled.
func (p *pending) isFetch() bool { return p.cancelFn != nil }

func (p *pending) ready() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cancel gives up on the result; a value that arrives anyway is released.
func (p *pending) cancel() {
	if p.cancelFn == nil {
		return
	}
	p.cancelFn()
	go func() {
		<-p.done
		if r, ok := p.value.(*fetchedResponse); ok {
			r.close()
		}
	}()
}

// newInstanceData is plugins.Config.NewData for Workers: every instance logs
// through logs.
func newInstanceData(logs *guestLogs) func() (any, io.Writer, io.Writer) {
	return func() (any, io.Writer, io.Writer) {
		g := newGuest(logs)
		return g, &lineWriter{g: g, logs: logs, level: slog.LevelInfo, name: "stdout"},
			&lineWriter{g: g, logs: logs, level: slog.LevelWarn, name: "stderr"}
	}
}
