// Command nop is a benchmark guest: it imports a host function that does
// nothing, to measure the cost of one guest→host→guest round trip through
// the engine. It is not a wharf plugin.
package main

//go:wasmimport bench nop
func nop() int32

//go:noinline
func nothing(i int32) int32 { return i }

//go:wasmexport loop_nop
func loopNop(n int32) int32 {
	var s int32
	for i := int32(0); i < n; i++ {
		s += nop()
	}
	return s
}

//go:wasmexport loop_go
func loopGo(n int32) int32 {
	var s int32
	for i := int32(0); i < n; i++ {
		s += nothing(i)
	}
	return s
}

//go:wasmexport wharf_abi_version
func abiVersion() int32 { return 1 }

func main() {}

var sink int32

// spin loops without calling anything, like a guest stuck in `for {}`.
//
//go:wasmexport spin
func spin(n int32) int32 {
	for i := int32(0); ; i++ {
		sink += i & 1
	}
}
