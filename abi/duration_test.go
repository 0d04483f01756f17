package abi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestParseDurationBounds: a duration past MaxDurationSeconds is too long
// however it is written, also past what a time.Duration holds; a negative
// one is not positive, however long; what is not a duration is invalid.
func TestParseDurationBounds(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"4294967295":     MaxDurationSeconds * time.Second,
		"1193046h28m15s": MaxDurationSeconds * time.Second,
		"1.5s":           1500 * time.Millisecond,
		"+5":             5 * time.Second,
	} {
		d, err := ParseDuration(s)
		if assert.NoError(t, err, s) {
			assert.Equal(t, want, d, s)
		}
	}
	for s, want := range map[string]string{
		"4294967296":            `duration "4294967296" is too long: at most 4294967295 seconds`,
		"99999999999999999999":  `duration "99999999999999999999" is too long: at most 4294967295 seconds`,
		"1193046h28m16s":        `duration "1193046h28m16s" is too long: at most 4294967295 seconds`,
		"10000000h":             `duration "10000000h" is too long: at most 4294967295 seconds`,
		"1.5e10h":               `invalid duration "1.5e10h": use e.g. "30s", "5m", "1h" or a number of seconds`,
		"-10000000h":            `duration "-10000000h" must be positive`,
		"-99999999999999999999": `duration "-99999999999999999999" must be positive`,
		"0s":                    `duration "0s" must be positive`,
		"9999999999999999999":   `duration "9999999999999999999" is too long: at most 4294967295 seconds`,
		".s":                    `invalid duration ".s": use e.g. "30s", "5m", "1h" or a number of seconds`,
		"":                      `invalid duration "": use e.g. "30s", "5m", "1h" or a number of seconds`,
	} {
		_, err := ParseDuration(s)
		assert.EqualError(t, err, want, s)
	}
}
