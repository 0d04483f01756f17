package logtap

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListenersGetEveryRecordWhileListening(t *testing.T) {
	var out bytes.Buffer
	h, tap := New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log := slog.New(h).With("plugin", "p")
	log.Info("before anyone listens")
	assert.False(t, h.Enabled(context.Background(), slog.LevelDebug), "debug costs nothing without listeners")

	lines, stop := tap.Listen()
	log.Debug("below the log's level", "n", 1)
	log.Info("hello")
	require.Len(t, lines, 2)
	assert.Regexp(t, `^\{"time":"[^"]+","level":"DEBUG","msg":"below the log's level","plugin":"p","n":1\}\n$`, string(<-lines))
	assert.Contains(t, string(<-lines), `"msg":"hello","plugin":"p"`)
	assert.NotContains(t, out.String(), "below the log's level", "the log itself keeps its level")
	assert.Contains(t, out.String(), "msg=hello plugin=p")

	stop()
	log.Info("after")
	assert.Empty(t, lines)
}
