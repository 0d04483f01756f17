package sdk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// ErrPortRefused is returned when nothing listens on a container port.
var ErrPortRefused = errors.New("wharf: nothing listens on the container port")

// Port is a TCP port of the object's container.
type Port struct{ port int }

// GetTCPPort returns port p of the container.
func (*Container) GetTCPPort(p int) *Port { return &Port{port: p} }

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
	r, w, err := wharf.ContainerConnect(uint32(p.port))
	if err != nil {
		if errors.Is(err, abi.StatusRefused) {
			return nil, fmt.Errorf("%w: port %d", ErrPortRefused, p.port)
		}
		return nil, err
	}
	return &Conn{R: &Stream{handle: r}, W: &Stream{handle: w}}, nil
}

// Fetch sends req to the port over HTTP/1.1 and returns the response; its
// body reads from the connection, which closes when the body is closed.
func (p *Port) Fetch(req *http.Request) (*http.Response, error) {
	conn, err := p.Connect()
	if err != nil {
		return nil, err
	}
	req.Close = true // one request per connection
	if req.Host == "" && req.URL != nil {
		req.Host = req.URL.Host
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("wharf: writing the request to port %d: %w", p.port, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("wharf: reading the response from port %d: %w", p.port, err)
	}
	resp.Body = &connBody{ReadCloser: resp.Body, conn: conn}
	return resp, nil
}

// connBody closes the connection with the response body.
type connBody struct {
	io.ReadCloser
	conn *Conn
}

func (b *connBody) Close() error { return errors.Join(b.ReadCloser.Close(), b.conn.Close()) }
