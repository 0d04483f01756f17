package textlog

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestStackOnLinesOfItsOwn: a panic's stack and a command's output follow
// their line, indented; the other attributes stay on it.
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
	log.Error("reload failed", "err", "exit status 1", OutputKey, "# example.com/p\n./main.go:3:1: syntax error")
	assert.Equal(t, "level=ERROR msg=\"panic serving request: boom\" plugin=p request_id=r-1\n"+
		"\tgoroutine 1 [running]:\n\tmain.f()\n\t\t/x/main.go:3\n"+
		"level=INFO msg=plain plugin=p n=1\n"+
		"level=ERROR msg=\"reload failed\" plugin=p err=\"exit status 1\"\n"+
		"\t# example.com/p\n\t./main.go:3:1: syntax error\n", out.String())
}
