// Command webapp is a Worker in front of a Container class: every session
// name gets its own Durable Object and container (busybox httpd on port
// 8080). The first request starts the container and waits until it is
// ready; later requests are proxied to it; after sleep_after without
// requests it stops, and the next request wakes it.
//
//	GET /s/{session}/...       proxied to the session's container
//	GET /s/{session}/_state    the container's state
package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/wharfhq/wharf/sdk"
)

// The container writes a page naming itself and when it started, then
// serves it. wharf-init (PID 1) forwards SIGTERM (a stop, or sleep) to the
// shell, whose trap ends it at once with code 0: without the trap a shell
// waiting on a job would also die of it, but with code 143.
const server = `mkdir -p /www
echo "session container $(hostname), started $(date +%s) #$RANDOM" > /www/index.html
trap 'exit 0' TERM
echo "serving $(cat /www/index.html) on :8080"
httpd -f -p 8080 -h /www & wait`

// App is the session's Durable Object: a Container class.
type App struct{ sdk.ContainerClass }

func newApp(st *sdk.ObjectState) any {
	no := false
	a := &App{sdk.ContainerClass{
		DefaultPort:    8080,
		Entrypoint:     []string{"sh", "-c", server},
		EnableInternet: &no,
	}}
	a.OnStart = func() error {
		st.Logger.Info("session container ready") // tagged with the object's event: wharf tail --class App shows it
		return nil
	}
	if err := a.Bind(st); err != nil {
		panic(err)
	}
	return a
}

func init() {
	sdk.RegisterClass("App", newApp)
	apps := sdk.GetNamespace("APP")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /s/{session}/_state", func(w http.ResponseWriter, r *http.Request) {
		c, err := sdk.GetContainer(apps, r.PathValue("session"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		st, err := c.State()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/s/{session}/", func(w http.ResponseWriter, r *http.Request) {
		c, err := sdk.GetContainer(apps, r.PathValue("session"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rest := strings.TrimPrefix(r.URL.Path, "/s/"+r.PathValue("session"))
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://app"+rest, r.Body)
		req.Header = r.Header.Clone() // headers and body pass on (a WebSocket upgrade too)
		resp, err := c.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		sdk.WriteResponse(w, resp) // the host copies the body
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "GET /s/{session}/ reaches the session's own web server; /s/{session}/_state tells its state\n")
	})
	sdk.Handle(mux)
}

func main() { sdk.Serve() }
