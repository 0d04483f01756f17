//go:build wasip1

package sdk

import (
	"net/http"

	"github.com/wharfhq/wharf/abi"
)

func init() {
	http.DefaultTransport = Transport{}
}

//go:wasmexport wharf_abi_version
func abiVersion() int32 { return abi.Version }

//go:wasmexport wharf_on_fetch
func wharfOnFetch(req uint32) int32 { return onFetch(req) }

//go:wasmexport wharf_object_new
func wharfObjectNew() int32 { return onObjectNew() }

//go:wasmexport wharf_on_call
func wharfOnCall(call uint32) int32 { return onCall(call) }

//go:wasmexport wharf_on_alarm
func wharfOnAlarm(retry int32) int32 { return onAlarm(retry) }

//go:wasmexport wharf_on_outbound
func wharfOnOutbound(req uint32) int32 { return onOutbound(req) }
