package jsonlog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDurationsAreText(t *testing.T) {
	var buf bytes.Buffer
	slog.New(New(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).
		WithGroup("g").Debug("done", "took", 1500*time.Millisecond, "n", 3)
	var line struct {
		Level string
		G     map[string]any
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	assert.Equal(t, "DEBUG", line.Level, "the options' level is kept")
	assert.Equal(t, map[string]any{"took": "1.5s", "n": 3.0}, line.G)
}
