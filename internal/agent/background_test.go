package agent

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

// TestRingKeepsTheLastBytes writes a numbered output in uneven pieces
// through a small ring and checks every reader: from the start (what is
// kept, and how much was dropped), from now, and one that fell behind.
func TestRingKeepsTheLastBytes(t *testing.T) {
	var all bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&all, "line %d\n", i)
	}
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	r := newRing(1000, pr)
	read := func(from int64) (string, int64, bool) {
		var out []byte
		buf := make([]byte, 7) // smaller than the ring: reads in pieces
		for {
			n, next, ended, _ := r.read(from, buf)
			out, from = append(out, buf[:n]...), next
			if n == 0 {
				return string(out), from, ended
			}
		}
	}
	start, dropped := r.begin(true)
	assert.Zero(t, start)
	assert.Zero(t, dropped)
	data := all.Bytes()
	half := len(data) / 2
	for i, n := 0, 1; i < half; i, n = i+n, n%97+13 {
		r.write(data[i:min(i+n, half)])
	}
	early, next, ended := read(0)
	assert.False(t, ended)
	assert.Equal(t, string(data[half-1000:half]), early, "a reader behind the ring skips to what is kept")
	assert.Equal(t, int64(half), next)

	from, _ := r.begin(false)
	assert.Equal(t, int64(half), from)
	r.write(data[half:])
	start, dropped = r.begin(true)
	assert.Equal(t, int64(len(data)-1000), start)
	assert.Equal(t, int64(len(data)-1000), dropped)
	kept, _, _ := read(start)
	assert.Equal(t, string(data[len(data)-1000:]), kept)

	pw.Close()
	r.fill() // the output ends
	_, _, ended = read(int64(len(data)))
	assert.True(t, ended)
}

// TestRingFlush: a flush returns once what the pipe held is in the ring,
// while the output goes on (a child of the exited process still holds the
// pipe), and a flush after the output ended returns at once.
func TestRingFlush(t *testing.T) {
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	r := newRing(1<<20, pr)
	go r.fill()
	for round := 1; round <= 50; round++ {
		_, err := pw.Write(bytes.Repeat([]byte("x"), 1000))
		require.NoError(t, err)
		r.flush()
		written, _ := r.begin(false)
		require.Equal(t, int64(round*1000), written, "round %d", round)
	}
	pw.Close()
	r.flush()
	r.flush()
	_, _, ended, _ := r.read(50000, nil)
	assert.True(t, ended)
}

// TestExitedProcessKeptWhileItsOutputIs: an exited process whose output a
// child it left behind still holds is not forgotten, neither for a new
// process of its id nor to make room, so the child stays within reach of
// a kill and the container's rings stay within the limit; once the
// output ends it is.
func TestExitedProcessKeptWhileItsOutputIs(t *testing.T) {
	bg := &backgrounds{}
	var writers []*os.File
	for i := range abi.MaxBackgroundProcesses {
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		t.Cleanup(func() { pr.Close(); pw.Close() })
		writers = append(writers, pw)
		bg.procs = append(bg.procs, &bgProcess{out: newRing(10, pr), info: wire.ProcessInfo{
			ID: fmt.Sprint("p", i), Status: wire.StatusCompleted}})
	}
	_, err := bg.newID("p3")
	assert.EqualError(t, err, `background process "p3" has exited, but processes it left behind still hold its output: kill it first`)
	_, err = bg.newID("new")
	assert.EqualError(t, err, "too many background processes: 64 are running, the limit is 64")
	assert.Len(t, bg.procs, abi.MaxBackgroundProcesses)

	p3, err := bg.find("p3")
	require.NoError(t, err)
	writers[3].Close()
	p3.out.fill() // the output ends
	id, err := bg.newID("new")
	require.NoError(t, err)
	assert.Equal(t, "new", id)
	assert.Equal(t, -1, bg.index("p3"), "the process whose output ended is forgotten")
	assert.Len(t, bg.procs, abi.MaxBackgroundProcesses-1)
}
