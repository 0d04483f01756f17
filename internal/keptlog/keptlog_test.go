package keptlog

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLinesRotateWhole: the two files stay within the bound and hold whole
// lines; a follower reads every byte in order across rotations, and a new
// reader gets the newest lines.
func TestLinesRotateWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	w, err := Create(path, 100)
	require.NoError(t, err)
	r, err := Open(path)
	require.NoError(t, err)
	defer r.Close()
	var written, followed strings.Builder
	for i := range 20 {
		line := fmt.Sprintf("line %04d\n", i) // 10 bytes: 5 to a file
		_, err := w.Write([]byte(line))
		require.NoError(t, err)
		written.WriteString(line)
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		followed.Write(got)
		for _, f := range []string{path, Previous(path)} {
			assert.LessOrEqual(t, size(f), int64(50))
			assert.True(t, size(f) == 0 || strings.HasPrefix(read(t, f), "line "), "%s starts with a whole line", f)
		}
	}
	assert.Equal(t, written.String(), followed.String(), "the follower's bytes are the written ones, in order")
	assert.Equal(t, written.String()[written.Len()-100:], readAll(t, path), "a new reader gets the newest lines")

	// A line that does not fit starts the next file.
	_, err = w.Write([]byte("a longer line\n"))
	require.NoError(t, err)
	assert.Equal(t, "a longer line\n", read(t, path))
	require.NoError(t, w.Close())

	w, err = Create(path, 100) // a restart appends to what is kept
	require.NoError(t, err)
	_, err = w.Write([]byte("again\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	assert.Equal(t, "a longer line\nagain\n", read(t, path))
}

// TestLongLinesAreCut: output without line ends is cut at half the bound.
func TestLongLinesAreCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	w, err := Create(path, 100)
	require.NoError(t, err)
	long := strings.Repeat("x", 260) + strings.Repeat("y", 7)
	n, err := w.Write([]byte(long))
	require.NoError(t, err)
	assert.Equal(t, len(long), n)
	require.NoError(t, w.Close())
	assert.Equal(t, int64(50), size(Previous(path)))
	assert.Equal(t, long[len(long)-67:], readAll(t, path), "the newest bytes are kept")
}

func size(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func read(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ""
	}
	require.NoError(t, err)
	return string(b)
}

func readAll(t *testing.T, path string) string {
	r, err := Open(path)
	require.NoError(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}
