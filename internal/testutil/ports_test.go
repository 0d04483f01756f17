package testutil

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFreeLoopbackAddrIsOutsideTheEphemeralRangeAndNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		addr := FreeLoopbackAddr(t)
		require.False(t, seen[addr], "handed out twice: %s", addr)
		seen[addr] = true
		host, portText, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1", host)
		port, err := strconv.Atoi(portText)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, port, lowestFixedPort)
		assert.Less(t, port, ephemeralLow())
	}
	ln, err := net.Listen("tcp", FreeLoopbackAddr(t))
	require.NoError(t, err)
	ln.Close()
}
