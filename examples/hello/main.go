// Command hello is the smallest useful wharf Worker: it answers GET /,
// echoes a streamed request body on POST /echo, and fetches a URL on
// GET /fetch?url=... through the host.
package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/wharfhq/wharf/sdk"
)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Hello from wharf!")
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := io.Copy(w, r.Body); err != nil {
			sdk.Logger.ErrorContext(r.Context(), "echo failed", "err", err)
		}
	})
	mux.HandleFunc("GET /fetch", func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("url")
		if target == "" {
			http.Error(w, "missing the url parameter: GET /fetch?url=<URL to fetch>", http.StatusBadRequest)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), "GET", target, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		sdk.Logger.InfoContext(r.Context(), "fetched", "url", target, "status", resp.StatusCode)
		w.Header().Set("X-Upstream-Status", fmt.Sprint(resp.StatusCode))
		io.Copy(w, resp.Body)
	})
	sdk.Handle(mux)
}

func main() { sdk.Serve() }
