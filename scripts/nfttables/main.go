// Command nfttables lists the nft tables of every wharf in the network
// namespace it runs in, one per line (for scripts/leftovers.sh).
package main

import (
	"fmt"
	"os"

	"github.com/wharfhq/wharf/containerd/egress"
)

func main() {
	tables, err := egress.Firewalls()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nfttables:", err)
		os.Exit(1)
	}
	for _, t := range tables {
		fmt.Println(t)
	}
}
