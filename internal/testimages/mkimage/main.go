// Command mkimage writes the busybox image archive the sandbox example (and
// make demo) runs, built from Debian's busybox-static (no registry involved):
//
//	go run ./internal/testimages/mkimage DIR
package main

import (
	"fmt"
	"os"

	"github.com/wharfhq/wharf/internal/testimages"
)

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	path, err := testimages.Busybox(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(path)
}
