package textlog

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStackOnLinesOfItsOwn(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(New(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})).With("plugin", "p")
	log.Error("panic serving request: boom", StackKey, "goroutine 1 [running]:\nmain.f()\n\t/x/main.go:3\n", "request_id", "r-1")
	log.Info("plain", "n", 1)
	assert.Equal(t, "level=ERROR msg=\"panic serving request: boom\" plugin=p request_id=r-1\n"+
		"\tgoroutine 1 [running]:\n\tmain.f()\n\t\t/x/main.go:3\n"+
		"level=INFO msg=plain plugin=p n=1\n", out.String())
}
