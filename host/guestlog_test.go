package host

import (
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
)

// TestGuestLogRecords: log_record's list is the message, then attributes
// that share one budget of log_line_bytes; a list that does not start with
// the message, or is malformed, is refused as INVAL.
func TestGuestLogRecords(t *testing.T) {
	logs := newGuestLogs("p", nil, 20, 1, 1)
	list := func(fields ...string) []byte {
		b := abi.NewFieldsBuilder(nil)
		for i := 0; i < len(fields); i += 2 {
			b.Add(fields[i], fields[i+1])
		}
		return b.Bytes()
	}
	msg, attrs, err := logs.record(list(abi.FieldMessage, "hi", "k", "v", "long", "0123456789abcdef", "dropped", "x"))
	require.NoError(t, err)
	assert.Equal(t, "hi", string(msg))
	assert.Equal(t, []any{slog.String("k", "v"), slog.String("long", "0123456789"+truncatedMarker)}, attrs,
		"the attribute crossing the budget is cut and marked, later ones dropped")
	msg, attrs, err = logs.record(list(abi.FieldMessage, ""))
	require.NoError(t, err)
	assert.Equal(t, "", string(msg))
	assert.Empty(t, attrs)
	for _, bad := range [][]byte{list(), list("k", "v", abi.FieldMessage, "hi"), list(abi.FieldMessage, "hi")[:9]} {
		_, _, err := logs.record(bad)
		assert.ErrorIs(t, err, abi.StatusInvalid, "%q", bad)
	}
	_, _, err = logs.record(list("k", "v"))
	assert.EqualError(t, err, "INVAL: log_record: the list must start with the field :msg")
}

// TestGuestLogRecordsAreBounded: attributes with an empty name and value
// cost their separators, so a list of thousands of them does not make a
// line of any length; a name longer than the budget is cut too.
func TestGuestLogRecordsAreBounded(t *testing.T) {
	logs := newGuestLogs("p", nil, 20, 1, 1)
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldMessage, "empties")
	for range 20000 {
		b.Add("", "")
	}
	_, attrs, err := logs.record(b.Bytes())
	require.NoError(t, err)
	assert.Len(t, attrs, 11, "ten that fit in 20 bytes at 2 each, then the marked one")
	b = abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldMessage, "long name")
	b.Add(strings.Repeat("n", 1<<20), "v")
	_, attrs, err = logs.record(b.Bytes())
	require.NoError(t, err)
	assert.Equal(t, []any{slog.String(strings.Repeat("n", 18), truncatedMarker)}, attrs)
}

// TestGuestLogRecordsKeepTheHostsKeys: a guest attribute named like one of
// the host's own (msg, level, time, source, plugin, request_id) is logged
// as guest.<name>, so the line's level, message, plugin and request id are
// the host's to whoever reads the last of equal keys.
func TestGuestLogRecordsKeepTheHostsKeys(t *testing.T) {
	logs := newGuestLogs("p", nil, 1000, 1, 1)
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldMessage, "spoof")
	for _, k := range []string{"msg", "level", "time", "source", "plugin", "request_id", "k", "guest.plugin"} {
		b.Add(k, "x")
	}
	_, attrs, err := logs.record(b.Bytes())
	require.NoError(t, err)
	assert.Equal(t, []any{slog.String("guest.msg", "x"), slog.String("guest.level", "x"), slog.String("guest.time", "x"),
		slog.String("guest.source", "x"), slog.String("guest.plugin", "x"), slog.String("guest.request_id", "x"),
		slog.String("k", "x"), slog.String("guest.plugin", "x")}, attrs)
}

func TestGuestLogLinesAreCutAndMarked(t *testing.T) {
	w := startWorker(t, "[limits]\nlog_line_bytes = 1000\n")
	code, _ := get(t, w.url+"/logbig")
	require.Equal(t, 200, code)
	logs := w.logs.String()
	for _, line := range strings.Split(logs, "\n") {
		assert.Less(t, len(line), 1300, "a log line is over the limit: %.200s…", line)
		assert.True(t, utf8.ValidString(line), "a cut split a character")
	}
	for _, prefix := range []string{"big-import ", "big-stderr "} {
		assert.Regexp(t, `msg="`+prefix+`(é)+ …\[truncated\]"`, logs, "the cut line is logged, marked")
	}
	assert.NotContains(t, logs, "tail", "the rest of a cut line is discarded")
	assert.Contains(t, logs, `msg="after the big lines"`, "the next line is logged whole")
	w.assertServing(t)
}

var droppedReport = regexp.MustCompile(`guest log lines dropped: the plugin logs more than 50 lines per second" plugin=testworker dropped=(\d+)`)

func TestGuestLogRateIsLimitedAndDropsAreCounted(t *testing.T) {
	w := startWorker(t, "[limits]\nlog_lines_per_second = 50\nlog_burst = 200\n")
	const n = 5000
	start := time.Now()
	code, _ := get(t, w.url+"/logflood?n="+strconv.Itoa(n))
	require.Equal(t, 200, code)
	elapsed := time.Since(start)

	var dropped int
	require.Eventually(t, func() bool {
		dropped = 0
		for _, m := range droppedReport.FindAllStringSubmatch(w.logs.String(), -1) {
			d, _ := strconv.Atoi(m[1])
			dropped += d
		}
		logged := strings.Count(w.logs.String(), `msg="flood `)
		return logged+dropped == n
	}, 5*time.Second, 50*time.Millisecond, "every line is either logged or counted as dropped")
	logged := n - dropped
	assert.GreaterOrEqual(t, logged, 200, "the burst is logged")
	assert.LessOrEqual(t, float64(logged), 200+50*(elapsed.Seconds()+1), "more lines than the rate allows")
	w.assertServing(t)
}

// TestMalformedLogRecordIsRefused: a log_record list that does not start
// with :msg, or is cut in the middle of a field, is INVAL with a message
// saying so; nothing is logged and the Worker keeps serving.
func TestMalformedLogRecordIsRefused(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/logrecordbad")
	require.Equal(t, 200, code)
	inval := int32(abi.StatusInvalid)
	assert.Equal(t, "status="+strconv.Itoa(int(inval))+" msg=INVAL: log_record: the list must start with the field :msg\n"+
		"status="+strconv.Itoa(int(inval))+" msg=INVAL: log_record: malformed field list\n", body)
	assert.NotContains(t, w.logs.String(), "late")
	assert.NotContains(t, w.logs.String(), "msg=cut")
	code, body = get(t, w.url+"/hello?name=after")
	assert.Equal(t, 200, code, "the Worker keeps serving")
	assert.Equal(t, "hello after", body)
}
