package abi

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxDurationSeconds is the longest duration ParseDuration accepts, in
// seconds, however it is written.
const MaxDurationSeconds = math.MaxUint32

// ParseDuration reads a duration as wharf.toml and the SDK write them: a Go
// duration such as "30s", "5m" or "1h", or a whole number of seconds. It
// must be positive and at most MaxDurationSeconds.
func ParseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if secs, serr := strconv.ParseInt(s, 10, 64); serr == nil { // negative too, refused below
		v, err = time.Duration(min(max(secs, -1), MaxDurationSeconds+1))*time.Second, nil
	} else if err != nil && durationSyntax.MatchString(s) {
		// Well formed, so past what a time.Duration holds (2562047h),
		// which time.ParseDuration calls invalid.
		v, err = math.MaxInt64, nil
		if strings.HasPrefix(s, "-") {
			v = -1
		}
	}
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use e.g. \"30s\", \"5m\", \"1h\" or a number of seconds", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	if v > MaxDurationSeconds*time.Second {
		return 0, fmt.Errorf("duration %q is too long: at most %d seconds", s, uint64(MaxDurationSeconds))
	}
	return v, nil
}

// durationSyntax is what time.ParseDuration or strconv.ParseInt reads,
// whatever the size of the numbers: a whole number, or numbers each with a
// unit.
var durationSyntax = regexp.MustCompile(`^[-+]?(\d+|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$`)
