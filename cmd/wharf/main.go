// Command wharf builds and serves Workers compiled to WebAssembly.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/wharfhq/wharf/admin"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "wharf:", err)
		if errors.Is(err, admin.ErrNotRunning) {
			fmt.Fprintln(os.Stderr, "wharf: run this in the plugin's directory, or pass the --data-dir wharf serve uses")
		}
		if e := (*admin.ExecError)(nil); errors.As(err, &e) && e.ExitCode != 0 {
			os.Exit(e.ExitCode) // as a shell would: the command could not be run
		}
		os.Exit(1)
	}
}
