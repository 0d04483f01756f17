package manifest

import (
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/plugins"
)

// Bounds of [limits], [durable_objects] and [[containers]] settings;
// counts and durations list those outside [[containers]] with why each is
// the bound.
const (
	// MaxMemoryMiB is the most memory_mib may be: 4 GiB, all a 32-bit Wasm
	// memory addresses.
	MaxMemoryMiB = 4096
	// MaxInstances is the most instances may be: wharf serve gives Go's
	// scheduler a P per instance (GOMAXPROCS), and 100000 of them exhaust
	// Go's 10000 OS threads (a fatal error) before the first instance runs.
	MaxInstances = 1024
	// MinMaxHeader is the least max_header_bytes: net/http lets a head run
	// 4 KiB past the limit it is given, which must be at least 1.
	MinMaxHeader = 4<<10 + 1
	// MaxMaxHeader is the most max_header_bytes may be: each of
	// max_connections connections may hold a head that long in memory
	// (1 GiB with the default 1024 connections).
	MaxMaxHeader = 1 << 20
	// MaxLogLineBytes is the most log_line_bytes may be: a guest's line
	// is held in the host's memory and written to its log whole.
	MaxLogLineBytes = 1 << 20
	// MaxLogLines is the most log_lines_per_second may be, and
	// MaxLogBurst the most log_burst may be: the rate is what keeps a
	// plugin's logs from filling the host's disk.
	MaxLogLines = 100_000
	MaxLogBurst = 1_000_000
	// MaxMaxConns is the most max_connections may be: each connection
	// holds a file descriptor and may hold max_header_bytes of memory.
	MaxMaxConns = 1 << 16
	// MaxMaxLive is the most durable_objects.max_live may be: each live
	// object holds its memory in an instance and its database open.
	MaxMaxLive = 1_000_000

	// MinCPUSlice is the shortest cpu_slice, and timeout, which caps it,
	// may be: an instance's watchdog wakes four times a slice (a slice
	// under 4ns made its ticker panic and crash wharf serve).
	MinCPUSlice = 10 * time.Millisecond
	// MinHeaderTimeout is the shortest header_timeout may be: a client
	// on a slow network takes that long to send a request's head (at 1ns
	// wharf serve closed every connection at once).
	MinHeaderTimeout = time.Second
	// MaxHeaderTimeout is the longest header_timeout may be: it is the
	// defence against slowloris clients, which hold each of
	// max_connections connections for that long without sending a head.
	MaxHeaderTimeout = time.Minute
	// MinConnIdle is the shortest limits.idle_timeout may be: a client
	// sends its next request on a keep-alive connection about then, and
	// finds it closed.
	MinConnIdle = time.Second
	// MaxConnIdle is the longest limits.idle_timeout may be: an idle
	// keep-alive connection holds one of max_connections that long.
	MaxConnIdle = time.Hour
	// MinIdleTimeout is the shortest durable_objects.idle_timeout may be:
	// a few milliseconds already evict an object between its events, as a
	// test that checks its state survives eviction wants (wharf's own use
	// 2 and 3 ms); a shorter one is a unit mistaken.
	MinIdleTimeout = time.Millisecond
	// MaxIdleTimeout is the longest durable_objects.idle_timeout may be:
	// an idle object keeps its memory in an instance, its database open
	// and its place under max_live until it is evicted.
	MaxIdleTimeout = 24 * time.Hour

	// MaxContainerInstances is the most a [[containers]] max_instances
	// may be: a host gives each container a /30 of its container subnet
	// (containerd.DefaultSubnet, a /16, whose first it leaves alone), so
	// it never runs more, and a larger cap would never bind. 0 is no cap.
	MaxContainerInstances = 1<<14 - 1
)

// count is a whole-number setting: its bounds, and its default when the
// manifest leaves it out.
type count struct {
	key   string
	field func(*Manifest) *int
	least int // 1 or more: 0 is not taken for the default
	def   int
	most  int
	why   string // why most is the bound
}

// counts are the manifest's whole-number settings outside [[containers]].
var counts = []count{
	{"limits.memory_mib", func(m *Manifest) *int { return &m.Limits.MemoryMiB }, 1, DefaultMemoryMiB, MaxMemoryMiB, "the Wasm maximum"},
	{"limits.instances", func(m *Manifest) *int { return &m.Limits.Instances }, 1, runtime.NumCPU(), MaxInstances, "wharf serve runs a scheduler thread per instance"},
	{"limits.log_line_bytes", func(m *Manifest) *int { return &m.Limits.LogLineBytes }, 1, DefaultLogLineBytes, MaxLogLineBytes, "a line is held in memory and logged whole"},
	{"limits.log_lines_per_second", func(m *Manifest) *int { return &m.Limits.LogLinesPerSecond }, 1, DefaultLogLines, MaxLogLines, "it keeps guest logs from filling the host's disk"},
	{"limits.log_burst", func(m *Manifest) *int { return &m.Limits.LogBurst }, 1, DefaultLogBurst, MaxLogBurst, "it keeps guest logs from filling the host's disk"},
	{"limits.max_connections", func(m *Manifest) *int { return &m.Limits.MaxConnections }, 1, DefaultMaxConns, MaxMaxConns, "each connection holds a file descriptor and up to max_header_bytes of memory"},
	{"limits.max_header_bytes", func(m *Manifest) *int { return &m.Limits.MaxHeaderBytes }, MinMaxHeader, DefaultMaxHeader, MaxMaxHeader, "each connection may hold a head that long in memory"},
	{"durable_objects.max_live", func(m *Manifest) *int { return &m.DurableObjects.MaxLive }, 1, DefaultMaxLive, MaxMaxLive, "each live object holds its memory and its open database"},
}

// check sets *v to the default when the document leaves the key out, and
// refuses a value it sets out of bounds (an explicit 0 is not taken for
// the default, nor for "no limit").
func (c count) check(data []byte, v *int) error {
	at, set := valueAt(data, c.key)
	switch {
	case !set:
		*v = c.def
	case *v < c.least:
		return fmt.Errorf("%s: %s: %s", at, c.key, c.tooSmall(*v))
	case *v > c.most:
		return fmt.Errorf("%s: %s: %s", at, c.key, c.tooLarge(*v))
	}
	return nil
}

// tooSmall says a value, got, is below the bound.
func (c count) tooSmall(got any) string {
	return fmt.Sprintf("must be at least %d, got %v (leave it out for the default, %d)", c.least, got, c.def)
}

// tooLarge says a value, got, is above the bound and why that is it.
func (c count) tooLarge(got any) string { return beyond("at most", c.most, c.why, got) }

// beyond says a value, got, is past a bound ("at least" or "at most"
// bound) and why that is the bound.
func beyond(side string, bound any, why string, got any) string {
	return fmt.Sprintf("must be %s %v (%s), got %v", side, bound, why, got)
}

// span is a duration setting: its bounds (abi.ParseDuration's, positive
// and at most abi.MaxDurationSeconds, where it sets none), and its
// default when the manifest leaves it out.
type span struct {
	key         string
	field       func(*Manifest) *Duration
	def         time.Duration
	least, most time.Duration // 0: abi.ParseDuration's
	leastWhy    string        // why least is the bound
	mostWhy     string        // why most is the bound
}

// durations are the manifest's durations outside [[containers]] (whose
// sleep_after and hard_timeout are the SDK's defaults, bounded as its
// own are).
var durations = []span{
	{"limits.timeout", func(m *Manifest) *Duration { return &m.Limits.Timeout }, DefaultTimeout, MinCPUSlice, 0,
		"it caps cpu_slice, whose watchdog wakes four times a slice", ""},
	{"limits.cpu_slice", func(m *Manifest) *Duration { return &m.Limits.CPUSlice }, plugins.DefaultCPUSlice, MinCPUSlice, 0,
		"the watchdog that enforces it wakes four times a slice", ""},
	{"limits.header_timeout", func(m *Manifest) *Duration { return &m.Limits.HeaderTimeout }, DefaultHeaderTimeout, MinHeaderTimeout, MaxHeaderTimeout,
		"a client on a slow network takes that long to send a request's head", "a slow client holds a connection that long"},
	{"limits.idle_timeout", func(m *Manifest) *Duration { return &m.Limits.IdleTimeout }, DefaultConnIdle, MinConnIdle, MaxConnIdle,
		"a client sends its next request on a keep-alive connection about then", "an idle connection holds one of max_connections that long"},
	{"durable_objects.idle_timeout", func(m *Manifest) *Duration { return &m.DurableObjects.IdleTimeout }, DefaultIdleTimeout, MinIdleTimeout, MaxIdleTimeout,
		"a few milliseconds already evict an object between its events", "an idle object keeps its memory and database until it is evicted"},
}

// check sets *d to the default when the document leaves the key out, and
// refuses a value it sets out of bounds.
func (s span) check(data []byte, d *Duration) error {
	at, set := valueAt(data, s.key)
	switch {
	case !set:
		d.Duration = s.def
	case d.Duration < s.least:
		return fmt.Errorf("%s: %s: %s", at, s.key, beyond("at least", s.least, s.leastWhy, d.Duration))
	case s.most > 0 && d.Duration > s.most:
		return fmt.Errorf("%s: %s: %s", at, s.key, beyond("at most", s.most, s.mostWhy, d.Duration))
	}
	return nil
}

// numberTooLarge is what go-toml says of a number no int64 or float64
// holds, such as 99999999999999999999 or 1e400.
var numberTooLarge = regexp.MustCompile(`number is too large to fit|value out of range`)

// outOfRange describes the value at line:column, of the dotted key, which
// go-toml found too large a number (e.g. 1e400: "strconv.ParseFloat:
// parsing "1e400": value out of range") as the manifest's checks describe
// a value out of their bounds.
func outOfRange(data []byte, key, at string) string {
	var raw string
	var isInt bool
	_ = eachValue(data, func(p *unstable.Parser, _ string, v *unstable.Node) error {
		if position(p, v) != at {
			return nil
		}
		raw, isInt = string(p.Raw(v.Raw)), v.Kind == unstable.Integer
		return errFound
	})
	switch typ := manifestKeys[key]; {
	case raw == "": // in an array, which eachValue does not enter
		return "number out of range"
	case typ == reflect.TypeFor[Duration]():
		return durationProblem(raw, isInt)
	case typ == reflect.TypeFor[int]() && !isInt:
		return "expected integer, got float"
	}
	for _, c := range counts {
		if c.key == key && strings.HasPrefix(raw, "-") {
			return c.tooSmall(raw)
		} else if c.key == key {
			return c.tooLarge(raw)
		}
	}
	return "number out of range, got " + raw
}

// durationProblem is what is wrong with a duration written as a number,
// raw, or "" if nothing is.
func durationProblem(raw string, isInt bool) string {
	if !isInt {
		return fmt.Sprintf("want a duration such as \"30s\" or a whole number of seconds, got %s", raw)
	}
	if _, err := abi.ParseDuration(raw); err != nil {
		return err.Error()
	}
	return ""
}
