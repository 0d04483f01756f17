// Command sandbox is a code runner: POST a shell script to /run/{session}
// and the session's Durable Object runs it in its own container, streaming
// the output back as it is produced. Each session keeps its container (and
// files) between runs.
package main

import (
	"fmt"
	"net/http"

	"github.com/wharfhq/wharf/sdk"
)

// Sandbox is a Durable Object with a container.
type Sandbox struct{ state *sdk.ObjectState }

// ServeHTTP runs the request body as a script and streams its output.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := s.state.Container
	if !c.Running() {
		// The main process only keeps the container alive; scripts run
		// through exec.
		if err := c.Start(sdk.StartOptions{Entrypoint: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 3600 & wait; done"}}); err != nil {
			http.Error(w, "starting the sandbox: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	p, err := c.Exec([]string{"sh", "-s"}, sdk.ExecOptions{Stdin: r.Body, Stderr: "combined", Cwd: "/work"})
	if err != nil {
		http.Error(w, "running the script: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// The host copies the output to the client as it comes; the handler
	// returns at once.
	if _, err := sdk.Forward(w, p.Stdout); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func init() {
	sdk.RegisterClass("Sandbox", func(st *sdk.ObjectState) any { return &Sandbox{state: st} })
	sandboxes := sdk.GetNamespace("SANDBOX")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /run/{session}", func(w http.ResponseWriter, r *http.Request) {
		stub, err := sandboxes.GetByName(r.PathValue("session"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), "POST", "http://sandbox/run", r.Body)
		resp, err := stub.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		sdk.WriteResponse(w, resp) // the host copies the body
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "POST a shell script to /run/{session}: curl --data-binary 'echo hi; uname -a' http://HOST/run/demo")
	})
	sdk.Handle(mux)
}

func main() { sdk.Serve() }
