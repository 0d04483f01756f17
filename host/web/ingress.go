package web

import (
	"log/slog"
	"net"
	"net/http"

	"golang.org/x/net/netutil"

	"github.com/wharfhq/wharf/manifest"
)

// Ingress is the HTTP server wharf serve puts in front of a Worker, bounded
// by the manifest's [limits]: a connection that takes longer than
// header_timeout to send a request's head (slowloris) or waits idle longer
// than idle_timeout is closed, a head over max_header_bytes is answered 431,
// and at most max_connections connections are held at once; others wait in
// the kernel's listen queue until one closes.
type Ingress struct {
	srv *http.Server
	ln  net.Listener
}

// ListenIngress listens on addr (TCP). Until Serve, connections wait in the
// kernel's listen queue: wharf serve listens before it loads the plugin, so
// a request sent while it starts is answered once it is ready rather than
// refused, and an address in use is reported before a long compile.
func ListenIngress(addr string, lim manifest.Limits, logger *slog.Logger) (*Ingress, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Ingress{
		srv: &http.Server{
			ReadHeaderTimeout: lim.HeaderTimeout.Duration,
			IdleTimeout:       lim.IdleTimeout.Duration,
			MaxHeaderBytes:    lim.MaxHeaderBytes - headSlop,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		ln: netutil.LimitListener(ln, lim.MaxConnections),
	}, nil
}

// headSlop is how far net/http lets a request's head run past its
// Server.MaxHeaderBytes (its read limit is that plus 4 KiB), taken off
// [limits] max_header_bytes so that a head longer than the setting gets
// 431; manifest.MinMaxHeader keeps what is left at least 1.
const headSlop = 4 << 10

// Close stops listening; for a server that serves, Shutdown or Close it
// first.
func (i *Ingress) Close() error { return i.ln.Close() }

// Addr is the address the ingress listens on.
func (i *Ingress) Addr() net.Addr { return i.ln.Addr() }

// Server is the ingress's HTTP server, for Serve, Shutdown and Close.
func (i *Ingress) Server() *http.Server { return i.srv }

// Serve accepts connections for h until the server is shut down.
func (i *Ingress) Serve(h http.Handler) error {
	i.srv.Handler = h
	return i.srv.Serve(i.ln)
}
