package wire

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSendRefusesWhatReceiveWould: a message over the limit fails in
// Send with its size, and nothing is written (the agent would have hung
// up on it, and wharf seen only a broken pipe). What HTML would escape
// is sent as it is.
// connPair is the two ends of a connected Unix stream socket pair.
func connPair(t *testing.T) [2]*net.UnixConn {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socket")
		c, err := net.FileConn(f) // a copy of f's descriptor
		f.Close()
		require.NoError(t, err)
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
	}
	return conns
}

// TestSendThatWroteNothingSaysSo: a send cut off before its first byte
// (its deadline passed) is ErrNothingSent, and the connection still
// carries the next message whole.
func TestSendThatWroteNothingSaysSo(t *testing.T) {
	conns := connPair(t)
	require.NoError(t, conns[0].SetWriteDeadline(time.Now().Add(-time.Second)))
	err := Send(conns[0], Request{Signal: 10})
	assert.ErrorIs(t, err, ErrNothingSent)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, conns[0].SetWriteDeadline(time.Time{}))
	require.NoError(t, Send(conns[0], Request{Signal: 12}))
	var got Request
	_, err = Receive(conns[1], &got)
	require.NoError(t, err)
	assert.Equal(t, 12, got.Signal)
}

func TestSendRefusesWhatReceiveWould(t *testing.T) {
	conns := connPair(t)
	err := Send(conns[0], Request{File: &File{Op: FileStat, Path: "/" + strings.Repeat("x", MaxMessage)}})
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.EqualError(t, err, "agent message too large: 4194337 bytes, over the limit of 4194304")
	// "<", ">" and "&" take one byte each, not the six of HTML escaping.
	var big Request
	received := make(chan error, 1)
	go func() { _, err := Receive(conns[1], &big); received <- err }()
	require.NoError(t, Send(conns[0], Request{File: &File{Op: FileStat, Path: "/" + strings.Repeat("<", MaxMessage-100)}}))
	require.NoError(t, <-received)
	assert.Equal(t, "/"+strings.Repeat("<", MaxMessage-100), big.File.Path)
	require.NoError(t, Send(conns[0], Request{File: &File{Op: FileStat, Path: "/ok"}}))
	var req Request
	_, err = Receive(conns[1], &req)
	require.NoError(t, err)
	assert.Equal(t, "/ok", req.File.Path, "the refused message left nothing on the connection")
}
