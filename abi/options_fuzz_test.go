package abi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzDecode checks, for arbitrary bytes, that decode does not panic and
// that what it accepts is stable: decode, encode and decode again gives the
// same value and the same bytes.
func fuzzDecode[T interface{ Encode([]byte) []byte }](f *testing.F, decode func([]byte) (T, error), seeds ...T) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 'x', 0, 0, 0, 0})
	for _, s := range seeds {
		f.Add(s.Encode(nil))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := decode(raw)
		if err != nil {
			return
		}
		enc := v.Encode(nil)
		again, err := decode(enc)
		require.NoError(t, err)
		require.Equal(t, v, again)
		require.Equal(t, enc, again.Encode(nil))
	})
}

func FuzzDecodeStartOptions(f *testing.F) {
	fuzzDecode(f, DecodeStartOptions, StartOptions{Env: []string{"A=1"}, Entrypoint: []string{"sh"}, EnableInternet: true,
		Secrets: []string{"S"}, Labels: []string{"k=v"}})
}

func FuzzDecodeExecOptions(f *testing.F) {
	fuzzDecode(f, DecodeExecOptions, ExecOptions{Args: []string{"ls"}, Env: []string{"A=1"}, Cwd: "/", User: "root",
		Stdin: "pipe", Stdout: "pipe", Stderr: "combined"})
}

func FuzzDecodeFileOptions(f *testing.F) {
	fuzzDecode(f, DecodeFileOptions, FileOptions{Op: "remove", Path: "/x", To: "/y", User: "1", Mode: "write",
		Recursive: true, Perm: 0o600})
}

func FuzzDecodeEgressOptions(f *testing.F) {
	fuzzDecode(f, DecodeEgressOptions, EgressOptions{Hosts: []string{"*.test"}})
}

func FuzzDecodeContainerConfig(f *testing.F) {
	fuzzDecode(f, DecodeContainerConfig, ContainerConfig{SleepAfter: "1m", HardTimeout: "2h",
		ReadyOn: []ReadyProbe{{Port: 80, Status: 200, Path: "/"}}})
}

func FuzzDecodeListOptions(f *testing.F) {
	fuzzDecode(f, DecodeListOptions, ListOptions{Start: []byte("a"), End: []byte("b"), Prefix: []byte{}, Reverse: true, Limit: 3})
}
