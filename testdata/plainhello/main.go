// Command plainhello is the baseline of BenchmarkWarmStart: a plain Go
// net/http server answering GET / like examples/hello.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8787", "address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Hello from plain Go!")
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}
