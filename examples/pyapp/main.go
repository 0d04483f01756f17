// Command pyapp is a Worker in front of a Container class whose image is
// built from container/Dockerfile: a small Python JSON API on a Debian
// base. Every tenant gets its own object and container; the first request
// starts it and waits for /health (ready_on), later ones are proxied.
//
//	ANY /t/{tenant}/...    proxied to the tenant's API (GET /notes, POST /notes)
package main

import (
	"io"
	"net/http"
	"strings"

	"github.com/wharfhq/wharf/sdk"
)

// Api is the tenant's Durable Object: a Container class running the
// image's own CMD (python3 /app/app.py) on port 8000.
type Api struct{ sdk.ContainerClass }

func newApi(st *sdk.ObjectState) any {
	no := false
	a := &Api{sdk.ContainerClass{DefaultPort: 8000, EnableInternet: &no}}
	if err := a.Bind(st); err != nil {
		panic(err)
	}
	return a
}

func init() {
	sdk.RegisterClass("Api", newApi)
	apis := sdk.GetNamespace("API")
	mux := http.NewServeMux()
	mux.HandleFunc("/t/{tenant}/", func(w http.ResponseWriter, r *http.Request) {
		c, err := sdk.GetContainer(apis, r.PathValue("tenant"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rest := strings.TrimPrefix(r.URL.Path, "/t/"+r.PathValue("tenant"))
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://api"+rest, r.Body)
		req.Header = r.Header.Clone()
		resp, err := c.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		sdk.WriteResponse(w, resp)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "GET|POST /t/{tenant}/notes reaches the tenant's Python API\n")
	})
	sdk.Handle(mux)
}

func main() { sdk.Serve() }
