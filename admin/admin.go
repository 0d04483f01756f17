// Package admin is the operator API of a running `wharf serve`: HTTP over
// a unix socket in the data directory (owner-only, never TCP), used by
// `wharf ps`, `inspect`, `stats`, `tail`, `exec`, `logs`, `stop` and `destroy`. It holds the wire
// types, the exec framing and the client; host/adminserver serves it.
package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SocketName is the admin socket's name in the data directory.
const SocketName = "admin.sock"

// SocketPath is the admin socket of the wharf whose data is in dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// Container describes one object's container, as `wharf ps` shows it.
type Container struct {
	Bindings []string          `json:"bindings"`
	Class    string            `json:"class"`
	Object   string            `json:"object"`
	Name     string            `json:"name,omitempty"` // what the id was made from, when known
	State    string            `json:"state"`          // StateRunning, StatePaused, or "exited (code N)" and why
	Started  time.Time         `json:"started"`
	Address  string            `json:"address"`
	Pid      uint32            `json:"pid"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// States of a container that has not exited.
const (
	StateRunning = "running"
	StatePaused  = "paused" // SIGSTOP from its object: what runs in it is stopped
)

// Exited reports whether the container's main process has exited.
func (c Container) Exited() bool { return c.State != StateRunning && c.State != StatePaused }

// ContainerStats is one container's resource use from its cgroup, as
// `wharf stats` shows it; counters are totals since the container started.
type ContainerStats struct {
	Bindings         []string  `json:"bindings"`
	Name             string    `json:"name,omitempty"`
	Class            string    `json:"class"`
	Object           string    `json:"object"`
	At               time.Time `json:"at"`
	CPUNanos         uint64    `json:"cpu_ns"`
	MemoryBytes      uint64    `json:"memory_bytes"`
	MemoryLimitBytes uint64    `json:"memory_limit_bytes"`
	Pids             uint64    `json:"pids"`
	ReadBytes        uint64    `json:"read_bytes"`
	WriteBytes       uint64    `json:"write_bytes"`
}

// Object is an object's full state, as `wharf inspect` prints it.
type Object struct {
	Bindings []string `json:"bindings"`
	Class    string   `json:"class"`
	Object   string   `json:"object"`
	Name     string   `json:"name,omitempty"`
	// Live is whether the object has an instance now.
	Live bool `json:"live"`
	// Storage is its SQLite file; empty while it has none (its first
	// storage call, a read too, makes it).
	Storage string `json:"storage"`
	// Image is its class's container image, if the class has one.
	Image       string            `json:"image,omitempty"`
	Container   *Container        `json:"container,omitempty"`
	ContainerID string            `json:"container_id,omitempty"`
	AllLabels   map[string]string `json:"all_labels,omitempty"`
	Stats       *ContainerStats   `json:"stats,omitempty"`
}

// ExecRequest is the command `wharf exec` runs.
type ExecRequest struct {
	Cmd []string `json:"cmd"`
	// User runs it as this user instead of the container's, as
	// containers.ExecSpec's User: a name or a uid.
	User string `json:"user,omitempty"`
	TTY  bool   `json:"tty"`
	Cols uint16 `json:"cols,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
}

// Exec frames: after the upgrade both sides exchange frames of a type
// byte, a big-endian u32 length and the payload.
const (
	FrameStdin    byte = 0 // client → server: input bytes
	FrameStdout   byte = 1 // server → client
	FrameStderr   byte = 2 // server → client (not with a TTY)
	FrameExit     byte = 3 // server → client: the exit code, u32; last frame
	FrameResize   byte = 4 // client → server: cols, rows as two u16
	FrameStdinEOF byte = 5 // client → server: no more input
	// FrameError is server → client: the exec failed, an ExecError as
	// JSON; last frame.
	FrameError byte = 6
)

// ExecError is an exec that failed. ExitCode is what a shell exits with
// for it (127: no such program, 126: the program may not be run), 0 if it
// is not the program's failure.
type ExecError struct {
	Message  string `json:"error"`
	ExitCode int    `json:"exit_code,omitempty"`
}

func (e *ExecError) Error() string { return e.Message }

// WriteExecError writes the FrameError of e.
func WriteExecError(w io.Writer, e ExecError) error {
	p, _ := json.Marshal(e)
	return WriteFrame(w, FrameError, p)
}

// maxFrame bounds a frame's payload.
const maxFrame = 1 << 20

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, typ byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(append(hdr[:], p...)); err != nil {
		return err
	}
	return nil
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("admin: frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return hdr[0], p, err
}

// FrameWriter writes frames of one type, safely from several goroutines
// sharing mu.
type FrameWriter struct {
	W   io.Writer
	Mu  *sync.Mutex
	Typ byte
}

func (f FrameWriter) Write(p []byte) (int, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxFrame)
		if err := WriteFrame(f.W, f.Typ, rest[:n]); err != nil {
			return len(p) - len(rest), err
		}
		rest = rest[n:]
	}
	return len(p), nil
}

// Client talks to a running wharf over its admin socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient is a client for the wharf whose data is in dataDir.
func NewClient(dataDir string) *Client {
	socket := SocketPath(dataDir)
	return &Client{socket: socket, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}}
}

// ErrNotRunning is returned when no wharf serves the data directory.
var ErrNotRunning = errors.New("no wharf serve is running with this data directory")

// dialError is err, a request's or a dial's, said for the operator when
// it is a failed dial of the socket, naming the socket and the cause once
// (not the request's internal URL, nor the socket again from the dial
// error): ErrNotRunning when nothing listens there (no socket, or one a
// crash left), else what stopped the dial (a socket this user may not
// use, say). Other errors are returned as they are.
func (c *Client) dialError(err error) error {
	var dial *net.OpError
	if !errors.As(err, &dial) || dial.Op != "dial" {
		return err
	}
	socket, absErr := filepath.Abs(c.socket) // the client may dial it relative
	if absErr != nil {
		socket = c.socket
	}
	switch {
	case errors.Is(dial.Err, syscall.ENOENT):
		return fmt.Errorf("%w: no socket at %s", ErrNotRunning, socket)
	case errors.Is(dial.Err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing listens on %s", ErrNotRunning, socket)
	}
	return fmt.Errorf("reaching wharf serve at %s: %w", socket, dial.Err)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://wharf"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp, nil
}

// responseError is the error a refusing answer carries in its body, or its
// status when the body is empty.
func responseError(resp *http.Response) error {
	msg, _ := io.ReadAll(resp.Body)
	if text := strings.TrimSpace(string(msg)); text != "" {
		return errors.New(text)
	}
	return fmt.Errorf("the running wharf answered %s with no message", resp.Status)
}

// Metrics is the running wharf's Prometheus metrics (/metrics), in the
// text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// ObjectPath is the API path of an object: a binding and a name, or
// "id:<hex>" for an id.
func ObjectPath(binding, name string) string {
	return "/v1/objects/" + url.PathEscape(binding) + "/" + url.PathEscape(name)
}

// Containers lists every container the host runs.
func (c *Client) Containers(ctx context.Context) ([]Container, error) {
	var out []Container
	return out, c.getJSON(ctx, "/v1/containers", &out)
}

// Stats reads every running container's resource use.
func (c *Client) Stats(ctx context.Context) ([]ContainerStats, error) {
	var out []ContainerStats
	return out, c.getJSON(ctx, "/v1/stats", &out)
}

// Inspect returns an object's full state.
func (c *Client) Inspect(ctx context.Context, binding, name string) (*Object, error) {
	var out Object
	return &out, c.getJSON(ctx, ObjectPath(binding, name), &out)
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Stop stops the object's container (SIGTERM, then SIGKILL after 10 s).
func (c *Client) Stop(ctx context.Context, binding, name string) error {
	return c.post(ctx, ObjectPath(binding, name)+"/stop")
}

// Destroy removes the object's container at once.
func (c *Client) Destroy(ctx context.Context, binding, name string) error {
	return c.post(ctx, ObjectPath(binding, name)+"/destroy")
}

// Drain moves the host's Durable Objects to the other hosts of its
// cluster and returns when none is left on it, or, with a timeout (0:
// none), once that has passed, saying which objects are left: the host
// drains on.
func (c *Client) Drain(ctx context.Context, timeout time.Duration) error {
	path := "/v1/cluster/drain"
	if timeout > 0 {
		path += "?" + url.Values{DrainTimeout: {timeout.String()}}.Encode()
	}
	return c.post(ctx, path)
}

// DrainTimeout is the query parameter of a drain's timeout, a Go
// duration.
const DrainTimeout = "timeout"

// ErrDrainNotBegun is matched by the error of a drain that failed before
// it marked the host draining (its timeout passed while it looked for a
// host to move the objects to, say): nothing changed, the host serves on
// as before.
var ErrDrainNotBegun = errors.New("the host was not marked draining: it serves on as before")

func (c *Client) post(ctx context.Context, path string) error {
	resp, err := c.do(ctx, "POST", path, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Logs copies the container's output to w; with follow it keeps copying
// until the container exits or ctx ends.
func (c *Client) Logs(ctx context.Context, binding, name string, follow bool, w io.Writer) error {
	path := ObjectPath(binding, name) + "/logs"
	if follow {
		path += "?follow=1"
	}
	return c.stream(ctx, path, w)
}

// stream copies the answer to a GET of path to w until it ends or ctx
// does (which is not an error).
func (c *Client) stream(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.do(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Exec runs req in the object's container with stdin, stdout and stderr,
// sending terminal sizes from resize, and returns the exit code.
func (c *Client) Exec(ctx context.Context, binding, name string, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan [2]uint16) (int, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.socket)
	if err != nil {
		return 0, c.dialError(err)
	}
	defer conn.Close()
	body, _ := json.Marshal(req)
	fmt.Fprintf(conn, "POST %s/exec HTTP/1.1\r\nHost: wharf\r\nConnection: Upgrade\r\nUpgrade: wharf-exec\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		ObjectPath(binding, name), len(body), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return 0, responseError(resp)
	}
	var mu sync.Mutex
	go func() {
		if stdin != nil {
			io.Copy(FrameWriter{W: conn, Mu: &mu, Typ: FrameStdin}, stdin)
		}
		mu.Lock()
		WriteFrame(conn, FrameStdinEOF, nil)
		mu.Unlock()
	}()
	go func() {
		for size := range resize {
			var p [4]byte
			binary.BigEndian.PutUint16(p[:2], size[0])
			binary.BigEndian.PutUint16(p[2:], size[1])
			mu.Lock()
			WriteFrame(conn, FrameResize, p[:])
			mu.Unlock()
		}
	}()
	for {
		typ, p, err := ReadFrame(br)
		if err != nil {
			return 0, fmt.Errorf("exec: the connection ended early: %w", err)
		}
		switch typ {
		case FrameStdout:
			stdout.Write(p)
		case FrameStderr:
			stderr.Write(p)
		case FrameExit:
			return int(binary.BigEndian.Uint32(p)), nil
		case FrameError:
			e := new(ExecError)
			if err := json.Unmarshal(p, e); err != nil {
				return 0, fmt.Errorf("exec: a bad error frame: %w", err)
			}
			return 0, e
		}
	}
}

// TailFilter picks the log lines `wharf tail` shows; empty fields match
// everything.
type TailFilter struct {
	// Level is the lowest level shown (debug, info, warn, error).
	Level string
	// Class matches lines of a Durable Object class: its events (request
	// ids "Class#…") and its container's lifecycle.
	Class string
	// Object matches lines of objects whose id starts with it.
	Object string
	// Grep matches lines containing it.
	Grep string
}

// Query encodes the filter for the API.
func (f TailFilter) Query() url.Values {
	return url.Values{"level": {f.Level}, "class": {f.Class}, "object": {f.Object}, "grep": {f.Grep}}
}

// TailFilterFrom decodes a filter from the API's query.
func TailFilterFrom(q url.Values) (TailFilter, error) {
	f := TailFilter{Level: q.Get("level"), Class: q.Get("class"), Object: q.Get("object"), Grep: q.Get("grep")}
	if f.Level != "" {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(f.Level)); err != nil {
			return f, fmt.Errorf("--level must be debug, info, warn or error, got %q", f.Level)
		}
	}
	return f, nil
}

// Match reports whether a JSON log line passes the filter.
func (f TailFilter) Match(line []byte) bool {
	if f.Grep != "" && !bytes.Contains(line, []byte(f.Grep)) {
		return false
	}
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		return false
	}
	str := func(k string) string { s, _ := rec[k].(string); return s }
	if f.Level != "" {
		var min, lv slog.Level
		min.UnmarshalText([]byte(f.Level))
		if lv.UnmarshalText([]byte(str("level"))) != nil || lv < min {
			return false
		}
	}
	// Object events are tagged request_id=Class#<8 hex>-n; container
	// lifecycle lines carry class and object.
	eventClass, eventObject, _ := strings.Cut(str("request_id"), "#")
	if f.Class != "" && str("class") != f.Class && eventClass != f.Class {
		return false
	}
	if f.Object != "" {
		short := f.Object[:min(8, len(f.Object))]
		if !strings.HasPrefix(str("object"), f.Object) && !strings.HasPrefix(eventObject, short) {
			return false
		}
	}
	return true
}

// ErrHostStopped is Tail's error when the host stopped while it followed
// the log.
var ErrHostStopped = errors.New("wharf serve stopped")

// Tail copies the host's log lines that pass f to w as JSON lines until
// ctx ends (nil) or the host stops (ErrHostStopped).
func (c *Client) Tail(ctx context.Context, f TailFilter, w io.Writer) error {
	err := c.stream(ctx, "/v1/tail?"+f.Query().Encode(), w)
	if ctx.Err() == nil && (err == nil || errors.Is(err, io.ErrUnexpectedEOF)) {
		return ErrHostStopped // the stream has no end of its own
	}
	return err
}
