package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Port is a TCP port of the object's container.
type Port struct {
	container *Container
	port      int
}

// GetTCPPort returns port p of the container.
func (c *Container) GetTCPPort(p int) *Port { return &Port{container: c, port: p} }

// portPollInterval is how often WaitReady tries the port.
const portPollInterval = 10 * time.Millisecond

// WaitReady waits until something accepts connections on the port, so a
// Fetch or Connect right after Start does not race the server's start-up.
// It fails with ErrNotRunning when the container stops first, and with
// ctx's error (context.DeadlineExceeded, …) when ctx ends first.
func (p *Port) WaitReady(ctx context.Context) error {
	deadline, hasDeadline := ctx.Deadline()
	for {
		conn, err := p.Connect()
		if err == nil {
			conn.Close()
			return nil
		}
		if errors.Is(err, ErrNotRunning) || errors.Is(err, ErrPortRefused) && !p.container.Running() {
			return fmt.Errorf("%w: waiting for port %d", ErrNotRunning, p.port)
		}
		if !errors.Is(err, ErrPortRefused) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for port %d: %w", p.port, err)
		}
		if hasDeadline && !time.Now().Before(deadline) {
			return fmt.Errorf("waiting for port %d: %w", p.port, context.DeadlineExceeded)
		}
		time.Sleep(portPollInterval)
	}
}

// checkPort refuses a port outside 1 to 65535 (see checkRange).
func checkPort(op string, port int) error { return checkRange(op, "port", port, 65535) }

// Conn is a TCP connection to a container port: read its replies, write
// to it, and close (or CloseWrite) when done.
type Conn struct {
	// R reads what the container sends; W writes to it.
	R, W *Stream
}

// Read reads from the connection.
func (c *Conn) Read(p []byte) (int, error) { return c.R.Read(p) }

// Write writes to the connection.
func (c *Conn) Write(p []byte) (int, error) { return c.W.Write(p) }

// CloseWrite sends EOF to the container and keeps reading possible.
func (c *Conn) CloseWrite() error { return c.W.Close() }

// Close closes both directions.
func (c *Conn) Close() error { return errors.Join(c.W.Close(), c.R.Close()) }

// Connect opens a raw TCP connection to the port. A port nobody listens on
// gives an error matching ErrPortRefused.
func (p *Port) Connect() (*Conn, error) {
	if err := checkPort("container_connect", p.port); err != nil {
		return nil, containerError(err, ErrInvalidArgument)
	}
	ev, err := p.container.obj.current()
	if err != nil {
		return nil, err
	}
	r, w, err := ev.ContainerConnect(uint32(p.port))
	if err != nil {
		if errors.Is(err, abi.StatusRefused) {
			return nil, fmt.Errorf("%w: port %d", ErrPortRefused, p.port)
		}
		return nil, containerError(err, ErrInvalidArgument)
	}
	return &Conn{R: &Stream{ev: ev, handle: r}, W: &Stream{ev: ev, handle: w}}, nil
}

// Fetch sends req to the port over HTTP/1.1 and returns the response, on
// behalf of the object's current event (whatever req's context says). The
// host makes the request (keeping connections to the container alive), so
// the body is a host stream that Forward can pass on without copying it
// through the guest. req's URL may be a path or absolute (its host is the
// Host header). Nothing listening gives ErrPortRefused.
func (p *Port) Fetch(req *http.Request) (*http.Response, error) {
	if err := checkPort("container_fetch", p.port); err != nil {
		return nil, requestError(req, containerError(err, ErrInvalidArgument))
	}
	ev, err := p.container.obj.current()
	if err != nil {
		return nil, err
	}
	resp, err := roundTrip(req.WithContext(withEvent(req.Context(), ev)),
		func(ev wharf.Event, head []byte, flags uint32) (uint32, uint32, error) {
			return ev.ContainerFetch(uint32(p.port), head, flags)
		})
	if errors.Is(err, abi.StatusRefused) {
		return nil, requestError(req, withSentinel(ErrPortRefused, err))
	}
	return resp, requestError(req, containerError(err, ErrInvalidArgument))
}
