package sdk

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
)

// TestLogRecordsKeepTheirAttributes: a record crosses to the host as its
// message and one field per attribute, groups named group.member as in
// slog's text handler, so the host logs attributes, not words.
func TestLogRecordsKeepTheirAttributes(t *testing.T) {
	var h slog.Handler = logHandler{}
	h = h.WithAttrs([]slog.Attr{slog.String("svc", "api")}).WithGroup("req")
	h = h.WithAttrs([]slog.Attr{slog.Int("id", 7)})
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "slow answer", 0)
	r.AddAttrs(slog.Duration("took", 1500*time.Millisecond), slog.Group("user", "name", "ann", "admin", true),
		slog.Attr{}, slog.Group("", slog.String("inline", "yes")))
	var got []string
	require.NoError(t, abi.RangeFields(h.(logHandler).encode(r, nil), func(name, value []byte) bool {
		got = append(got, string(name)+"="+string(value))
		return true
	}))
	assert.Equal(t, []string{":msg=slow answer", "svc=api", "req.id=7", "req.took=1.5s", "req.user.name=ann", "req.user.admin=true", "req.inline=yes"}, got)
}

// TestLogRecordTimesReadAsSlogWritesThem: a time attribute crosses as RFC
// 3339, as slog's handlers write one, not as time.Time.String's
// "2026-01-02 03:04:05.006 +0000 UTC".
func TestLogRecordTimesReadAsSlogWritesThem(t *testing.T) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.Time("at", time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)), slog.Any("t", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))))
	var got []string
	require.NoError(t, abi.RangeFields(logHandler{}.encode(r, nil), func(name, value []byte) bool {
		got = append(got, string(name)+"="+string(value))
		return true
	}))
	assert.Equal(t, []string{":msg=m", "at=2026-01-02T03:04:05.006Z", "t=2026-01-02T03:04:05+01:00"}, got)
}
