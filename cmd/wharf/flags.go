package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wharfhq/wharf/abi"
)

// durationValue is a duration flag read as wharf.toml reads durations
// (abi.ParseDuration): "30s", "5m" or a whole number of seconds, and
// positive; with zeroOK, 0 too.
type durationValue struct {
	d      *time.Duration
	zeroOK bool
}

// durationFlag defines a duration flag of that syntax, set to value.
func durationFlag(fs *pflag.FlagSet, p *time.Duration, name string, value time.Duration, zeroOK bool, usage string) {
	*p = value
	fs.Var(&durationValue{d: p, zeroOK: zeroOK}, name, usage)
}

func (v *durationValue) Set(s string) error {
	d, err := abi.ParseDuration(s)
	if err != nil && v.zeroOK {
		// ParseDuration refuses 0 ("0", "0s"), which zeroOK allows, and
		// negative durations ("-1s", "-1"), which it does not.
		if abs, negative := strings.CutPrefix(s, "-"); negative {
			if _, absErr := abi.ParseDuration(abs); absErr == nil {
				return fmt.Errorf("duration %q must not be negative", s)
			}
		}
		if raw, rawErr := time.ParseDuration(s); rawErr == nil && raw == 0 {
			d, err = 0, nil
		}
	}
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (v *durationValue) String() string { return v.d.String() }

func (v *durationValue) Type() string { return "duration" }
