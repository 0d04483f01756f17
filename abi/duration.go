package abi

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// ParseDuration reads a duration as wharf.toml and the SDK write them: a Go
// duration such as "30s", "5m" or "1h", or a whole number of seconds. It
// must be positive.
func ParseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if secs, serr := strconv.ParseInt(s, 10, 64); serr == nil { // negative too, refused below
		if secs > math.MaxUint32 {
			return 0, fmt.Errorf("duration %q is too long: at most %d seconds", s, uint64(math.MaxUint32))
		}
		v, err = time.Duration(secs)*time.Second, nil
	}
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use e.g. \"30s\", \"5m\", \"1h\" or a number of seconds", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return v, nil
}
