// Command egress shows a container's outbound traffic governed by its
// Durable Object: the container has no internet, calls
// http://api.internal.test/ and https://secrets.internal.test/, and the
// Worker answers both, adding a header the container never had to know.
// GET /call/{agent} runs those calls in the agent's container and returns
// what the container saw.
package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/wharfhq/wharf/sdk"
)

// Agent is a Durable Object whose container is a client of mocked APIs.
type Agent struct{ state *sdk.ObjectState }

// ServeHTTP makes sure the container runs with its rules, then runs the
// calls inside it.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := a.state.Container
	if !c.Running() {
		// Rules may be set before Start; they apply to every connection
		// the container opens.
		if err := c.InterceptOutboundHTTP("api.internal.test", "api"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := c.InterceptOutboundHTTPS("secrets.internal.test", "secrets"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		err := c.Start(sdk.StartOptions{EnableInternet: false, Entrypoint: []string{"sleep", "infinity"}})
		if err != nil {
			http.Error(w, "starting the container: "+sdk.Within(err).Error(), http.StatusServiceUnavailable)
			return
		}
	}
	var out strings.Builder
	for _, call := range [][]string{
		// probe, the test image's HTTP client, prints the status, the X-
		// headers and the body; for HTTPS it verifies the certificate
		// against wharf's CA.
		{"probe", "get", "http://api.internal.test/v1/status"},
		{"probe", "get", "https://secrets.internal.test/v1/token", "/etc/wharf/ca.crt"},
		{"wget", "-q", "-O", "-", "http://www.evil.test/"},
	} {
		p, err := c.Exec(call, sdk.ExecOptions{Stderr: "combined"})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		stdout, _, err := p.Output()
		var exit *sdk.ExitError
		if err != nil && !errors.As(err, &exit) { // a non-zero exit is shown below
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(&out, "$ %s\n%s\n(exit %d)\n\n", strings.Join(call, " "), strings.TrimSpace(string(stdout)), p.ExitCode())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, out.String())
}

func init() {
	sdk.RegisterClass("Agent", func(st *sdk.ObjectState) any { return &Agent{state: st} })

	// The handlers the rules name. They run in the Worker, with the
	// original URL and the container's object in the request.
	sdk.HandleOutbound("api", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, id, _ := sdk.OutboundSource(r)
		w.Header().Set("X-Injected-By", "wharf-worker")
		fmt.Fprintf(w, `{"url":%q,"agent":%q,"status":"ok"}`, r.URL.String(), id[:8])
	}))
	sdk.HandleOutbound("secrets", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Injected-By", "wharf-worker")
		fmt.Fprintf(w, `{"url":%q,"token":"minted-by-the-worker"}`, r.URL.String())
	}))

	agents := sdk.GetNamespace("AGENT")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /call/{agent}", func(w http.ResponseWriter, r *http.Request) {
		stub, err := agents.GetByName(r.PathValue("agent"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), "GET", "http://agent/", nil)
		resp, err := stub.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		sdk.WriteResponse(w, resp) // the host copies the body
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "GET /call/{agent}: the agent's container calls two APIs the Worker answers")
	})
	sdk.Handle(mux)
}

func main() { sdk.Serve() }
