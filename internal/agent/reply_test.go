package agent

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/agent/wire"
)

// TestReplyTooLargeIsARefusal: a reply larger than a message may be (a
// background process's description, whose command is megabytes) reaches
// wharf as a refusal of kind limit that says why, where wharf read only
// the end of the connection; one that fits arrives as it is.
func TestReplyTooLargeIsARefusal(t *testing.T) {
	agentEnd, wharfEnd := unixPair(t)
	huge := wire.ProcessInfo{ID: "big", Command: []string{"sh", "-c", strings.Repeat("x", wire.MaxMessage)}}
	assert.ErrorIs(t, reply(agentEnd, wire.Reply{Process: &huge}), wire.ErrTooLarge)
	require.NoError(t, reply(agentEnd, wire.Reply{Process: &wire.ProcessInfo{ID: "small"}}))
	agentEnd.Close()

	var r wire.Reply
	_, err := wire.Receive(wharfEnd, &r)
	require.NoError(t, err, "an answer, not the end of the connection")
	assert.Equal(t, wire.KindLimit, r.Kind)
	assert.Regexp(t, `^the answer does not fit in one message: agent message too large: \d+ bytes, over the limit of 4194304$`, r.Error)
	assert.Nil(t, r.Process)
	r = wire.Reply{}
	_, err = wire.Receive(wharfEnd, &r)
	require.NoError(t, err)
	assert.Equal(t, "small", r.Process.ID, "the connection's framing is intact")
}

// unixPair is a connected pair of unix stream sockets.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		require.NoError(t, err)
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}
