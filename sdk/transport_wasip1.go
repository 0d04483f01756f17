//go:build wasip1

package sdk

import "net/http"

// In a plugin, net/http's default client fetches through the host.
func init() {
	http.DefaultTransport = Transport{}
}
