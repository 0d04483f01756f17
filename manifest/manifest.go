package manifest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/plugins"
)

// FileName is the manifest's file name in a plugin directory.
const FileName = "wharf.toml"

// Manifest is a parsed wharf.toml. Its shape follows wrangler.toml where the
// concepts match.
type Manifest struct {
	// Name names the plugin.
	Name string `toml:"name"`
	// Main is a Go package directory or a .wasm file, relative to Dir.
	Main string `toml:"main"`
	// Listen is the HTTP address wharf serve listens on.
	Listen string `toml:"listen"`
	// Limits bounds each guest instance, its logs and wharf serve's HTTP
	// connections.
	Limits Limits `toml:"limits"`
	// DurableObjects binds object classes of the module to names.
	DurableObjects DurableObjects `toml:"durable_objects"`
	// Containers give Durable Object classes a container each.
	Containers []Container `toml:"containers"`

	// Path is the manifest file; Dir is its directory.
	Path string `toml:"-"`
	Dir  string `toml:"-"`
	// shown is the manifest's path as the user gave it, which messages
	// about it start with.
	shown string

	// Warnings are what the manifest sets that works otherwise than it
	// reads, each "line:column: key: ..." as errors are (Load puts the
	// file name first); the host logs them when it starts.
	Warnings []string `toml:"-"`

	// mainAt is the "line:column" of main's value, for errors about the
	// package or file it names; listenAt is listen's, "" when it is the
	// default.
	mainAt, listenAt string
}

// Limits are the [limits] table.
type Limits struct {
	// MemoryMiB caps one instance's linear memory.
	MemoryMiB int `toml:"memory_mib"`
	// Timeout bounds one event (a request handler's run), e.g. "30s".
	Timeout Duration `toml:"timeout"`
	// Instances is how many long-running instances of the plugin serve its
	// Worker and host its Durable Objects; the default is one per CPU.
	Instances int `toml:"instances"`
	// CPUSlice is how long an instance may compute without calling the
	// host (Wasm has no preemption) before it is stopped, e.g. "5s".
	CPUSlice Duration `toml:"cpu_slice"`
	// Engine is the Wasm runtime, one of plugins.Engines; the default is wazero.
	Engine string `toml:"engine"`
	// LogLineBytes caps one guest log line; a longer line is cut and marked.
	LogLineBytes int `toml:"log_line_bytes"`
	// LogLinesPerSecond is how many lines the plugin's guests may log per
	// second, together; lines beyond it are dropped and counted.
	LogLinesPerSecond int `toml:"log_lines_per_second"`
	// LogBurst is how many lines may be logged at once before the rate
	// applies.
	LogBurst int `toml:"log_burst"`

	// MaxConnections caps the client connections wharf serve holds at
	// once; more wait in the listen queue until one closes.
	MaxConnections int `toml:"max_connections"`
	// MaxHeaderBytes caps a request's line and headers; a longer head is
	// answered 431.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// HeaderTimeout bounds reading a request's line and headers, from the
	// connection's start or its first byte after the previous response.
	HeaderTimeout Duration `toml:"header_timeout"`
	// IdleTimeout closes a keep-alive connection that has waited this long
	// for its next request.
	IdleTimeout Duration `toml:"idle_timeout"`
}

// InstanceCPUSlice is how long an instance may compute without calling the
// host: cpu_slice, capped by timeout.
func (l *Limits) InstanceCPUSlice() time.Duration {
	return min(l.CPUSlice.Duration, l.Timeout.Duration)
}

// DurableObjects is the [durable_objects] table.
type DurableObjects struct {
	// Bindings name the classes a Worker can reach, as in wrangler.toml.
	Bindings []Binding `toml:"bindings"`
	// IdleTimeout is how long an object stays live without events before
	// it is evicted, e.g. "30s".
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxLive caps live objects; the least recently used idle one is
	// evicted to make room.
	MaxLive int `toml:"max_live"`
}

// Binding is one [[durable_objects.bindings]] entry.
type Binding struct {
	Name      string `toml:"name"`
	ClassName string `toml:"class_name"`
}

// Defaults applied to fields a manifest leaves out.
const (
	DefaultListen        = "127.0.0.1:8787"
	DefaultMemoryMiB     = 128
	DefaultTimeout       = 30 * time.Second
	DefaultIdleTimeout   = 30 * time.Second
	DefaultMaxLive       = 10_000
	DefaultLogLineBytes  = 16 << 10
	DefaultLogLines      = 100
	DefaultLogBurst      = 1000
	DefaultMaxConns      = 1024
	DefaultMaxHeader     = 64 << 10
	DefaultHeaderTimeout = 10 * time.Second
	DefaultConnIdle      = 30 * time.Second
)

// Upper bounds of [limits] settings.
const (
	// MaxMemoryMiB is the most memory_mib may be: 4 GiB, all a 32-bit Wasm
	// memory addresses.
	MaxMemoryMiB = 4096
	// MaxInstances is the most instances may be: wharf serve gives Go's
	// scheduler a P per instance (GOMAXPROCS), and 100000 of them exhaust
	// Go's 10000 OS threads (a fatal error) before the first instance runs.
	MaxInstances = 1024
	// MaxMaxHeader is the most max_header_bytes may be: each of
	// max_connections connections may hold a head that long in memory
	// (1 GiB with the default 1024 connections).
	MaxMaxHeader = 1 << 20
	// MaxHeaderTimeout is the longest header_timeout may be: it is the
	// defence against slowloris clients, which hold each of
	// max_connections connections for that long without sending a head.
	MaxHeaderTimeout = time.Minute
	// MaxConnIdle is the longest limits.idle_timeout may be: an idle
	// keep-alive connection holds one of max_connections that long.
	MaxConnIdle = time.Hour
)

// MaxIdleTimeout is the longest durable_objects.idle_timeout may be: an
// idle object keeps its memory in an instance, its database open and its
// place under max_live until it is evicted.
const MaxIdleTimeout = 24 * time.Hour

// ShortCPUSlice is the CPU slice below which the manifest warns: a
// guest's own garbage collection may run that long without calling the
// host.
const ShortCPUSlice = 100 * time.Millisecond

// MinMaxHeader is the least max_header_bytes: net/http lets a head run
// 4 KiB past the limit it is given, which must be at least 1.
const MinMaxHeader = 4<<10 + 1

// Duration is a time.Duration written as a string such as "30s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string such as "30s", or a whole
// number of seconds (abi.ParseDuration).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := abi.ParseDuration(string(b))
	d.Duration = v
	return err
}

// Load reads a manifest from a file or from the wharf.toml of a
// directory. Unknown keys and values of the wrong type are errors naming the
// key, file and line.
func Load(path string) (*Manifest, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no plugin at %s: give a plugin's directory or its %s (wharf init makes one): %w", path, FileName, err)
	}
	if err != nil {
		return nil, err
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	for i, w := range m.Warnings {
		m.Warnings[i] = path + ":" + w
	}
	m.Path, _ = filepath.Abs(path)
	m.Dir = filepath.Dir(m.Path)
	m.shown = path
	if err := m.checkImages(data); err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	return m, nil
}

// Parse decodes manifest text and applies defaults. Errors start
// with "line:column: " so a caller can prefix the file name.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, describeTOMLError(data, err)
	}
	nameAt, ok := valueAt(data, "name")
	switch {
	case !ok:
		return nil, errors.New("1:1: missing required key \"name\"")
	case !pluginName.MatchString(m.Name):
		return nil, fmt.Errorf("%s: name: must be letters, digits, '.', '-' and '_', starting with a letter or digit (it names the built module, .wharf/build/NAME.wasm), got %q", nameAt, m.Name)
	}
	mainAt, ok := valueAt(data, "main")
	if !ok {
		return nil, errors.New("1:1: missing required key \"main\"")
	}
	if m.Main == "" {
		return nil, fmt.Errorf("%s: main: must name a Go package directory or a .wasm file, got \"\"", mainAt)
	}
	m.mainAt = mainAt
	m.listenAt, _ = valueAt(data, "listen")
	if m.Listen == "" {
		m.Listen = DefaultListen
	}
	if _, port, err := net.SplitHostPort(m.Listen); err != nil || port == "" {
		return nil, fmt.Errorf("%s: want host:port (%s, or :8787 for every address), got %q", keyAt(data, "listen"), DefaultListen, m.Listen)
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return nil, fmt.Errorf("%s: port %q is neither a number from 0 to 65535 nor a service name, in %q", keyAt(data, "listen"), port, m.Listen)
	}
	l := &m.Limits
	for _, c := range []struct {
		key        string
		v          *int
		least, def int
		most       int    // 0: no upper bound
		mostWhy    string // what the upper bound is
	}{
		{"limits.memory_mib", &l.MemoryMiB, 1, DefaultMemoryMiB, MaxMemoryMiB, "the Wasm maximum"},
		{"limits.instances", &l.Instances, 1, runtime.NumCPU(), MaxInstances, "wharf serve runs a scheduler thread per instance"},
		{"limits.log_line_bytes", &l.LogLineBytes, 1, DefaultLogLineBytes, 0, ""},
		{"limits.log_lines_per_second", &l.LogLinesPerSecond, 1, DefaultLogLines, 0, ""},
		{"limits.log_burst", &l.LogBurst, 1, DefaultLogBurst, 0, ""},
		{"limits.max_connections", &l.MaxConnections, 1, DefaultMaxConns, 0, ""},
		{"limits.max_header_bytes", &l.MaxHeaderBytes, MinMaxHeader, DefaultMaxHeader, MaxMaxHeader, "each connection may hold a head that long in memory"},
	} {
		if err := atLeastOrDefault(data, c.key, c.v, c.least, c.def); err != nil {
			return nil, err
		}
		if c.most > 0 {
			if err := atMost(data, c.key, *c.v, c.most, c.mostWhy); err != nil {
				return nil, err
			}
		}
	}
	if _, set := valueAt(data, "limits.engine"); !set { // engine = "" is an error
		l.Engine = plugins.EngineWazero
	}
	if err := plugins.CheckEngine(l.Engine); err != nil {
		return nil, fmt.Errorf("%s: %w", keyAt(data, "limits.engine"), err)
	}
	if l.Timeout.Duration == 0 {
		l.Timeout.Duration = DefaultTimeout
	}
	sliceAt, sliceSet := valueAt(data, "limits.cpu_slice")
	l.CPUSlice.Duration = cmp.Or(l.CPUSlice.Duration, plugins.DefaultCPUSlice)
	switch {
	case sliceSet && l.CPUSlice.Duration > l.Timeout.Duration: // the default slice is capped silently
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s: limits.cpu_slice: %s is longer than limits.timeout, which caps it: an instance computing %s without calling the host is stopped",
			sliceAt, l.CPUSlice.Duration, l.Timeout.Duration))
	case l.InstanceCPUSlice() < ShortCPUSlice:
		key := "limits.timeout" // capping the default slice
		if sliceSet {
			key = "limits.cpu_slice"
		}
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s: an instance computing %s without calling the host is stopped and replaced, and a garbage collection alone may take that long (%s or more is safer)",
			keyAt(data, key), l.InstanceCPUSlice(), ShortCPUSlice))
	}
	l.HeaderTimeout.Duration = cmp.Or(l.HeaderTimeout.Duration, DefaultHeaderTimeout)
	if err := atMost(data, "limits.header_timeout", l.HeaderTimeout.Duration, MaxHeaderTimeout, "a slow client holds a connection that long"); err != nil {
		return nil, err
	}
	l.IdleTimeout.Duration = cmp.Or(l.IdleTimeout.Duration, DefaultConnIdle)
	if err := atMost(data, "limits.idle_timeout", l.IdleTimeout.Duration, MaxConnIdle, "an idle connection holds one of max_connections that long"); err != nil {
		return nil, err
	}
	if err := m.DurableObjects.check(data); err != nil {
		return nil, err
	}
	if err := m.checkContainers(data); err != nil {
		return nil, err
	}
	return &m, nil
}

// removedKeys are keys of earlier versions, with what replaced them.
var removedKeys = map[string]string{
	"limits.warm_instances":      "removed: instances are long-running and always warm; limits.instances sets how many",
	"limits.events_per_instance": "removed: instances are long-running; one whose memory grew too large is replaced by itself",
}

// describeTOMLError turns go-toml's errors into "line:col: key: problem".
func describeTOMLError(data []byte, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		var msgs []string
		for _, e := range strict.Errors {
			row, col := e.Position()
			key := strings.Join(e.Key(), ".")
			msg := fmt.Sprintf("%d:%d: unknown key %q", row, col, key)
			why, ok := removedKeys[key]
			if !ok && len(e.Key()) == 1 {
				why = tablesWith(key)
			}
			if why != "" {
				msg += " (" + why + ")"
			}
			msgs = append(msgs, msg)
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := typeMismatch.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("expected %s, got %s", tomlTypeOf(m[2]), strings.ToLower(m[1]))
		}
		if key := strings.Join(de.Key(), "."); key != "" {
			msg = fmt.Sprintf("%s: %s", key, msg)
		}
		return fmt.Errorf("%d:%d: %s", row, col, msg)
	}
	if derr := durationValueError(data); derr != nil {
		return derr
	}
	return fmt.Errorf("1:1: %w", err)
}

// durationValueError describes the first duration key whose value is not a
// string and not a valid whole number of seconds. go-toml hands such a
// value to Duration.UnmarshalText and returns its error without the key
// or position, so the document is walked again to find them.
func durationValueError(data []byte) error {
	return eachValue(data, func(p *unstable.Parser, name string, v *unstable.Node) error {
		if manifestKeys[name] != reflect.TypeFor[Duration]() || v.Kind == unstable.String {
			return nil
		}
		raw := p.Raw(v.Raw)
		var problem string
		if v.Kind != unstable.Integer {
			problem = fmt.Sprintf("want a duration such as \"30s\" or a whole number of seconds, got %s", raw)
		} else if _, err := abi.ParseDuration(string(raw)); err != nil {
			problem = err.Error()
		} else {
			return nil
		}
		return fmt.Errorf("%s: %s: %s", position(p, v), name, problem)
	})
}

// valueAt is the "line:column" of the value of the dotted key, and whether
// the document sets it.
func valueAt(data []byte, key string) (string, bool) {
	found := errors.New("found")
	var at string
	err := eachValue(data, func(p *unstable.Parser, name string, v *unstable.Node) error {
		if name != key {
			return nil
		}
		at = position(p, v)
		return found
	})
	return at, err == found
}

// position is the "line:column" of a parsed node.
func position(p *unstable.Parser, n *unstable.Node) string {
	pos := p.Shape(n.Raw).Start
	return fmt.Sprintf("%d:%d", pos.Line, pos.Column)
}

// keyParts is the parts of the dotted key of a key-value or a table's
// header.
func keyParts(n *unstable.Node) []string {
	var parts []string
	for it := n.Key(); it.Next(); {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// eachValue calls fn with every value of the document that is not an
// inline table, and its dotted key (an array of tables contributes its
// key without an index), until fn returns an error, which it returns.
func eachValue(data []byte, fn func(p *unstable.Parser, key string, v *unstable.Node) error) error {
	var p unstable.Parser
	p.Reset(data)
	var table []string
	var visit func(prefix []string, kv *unstable.Node) error
	visit = func(prefix []string, kv *unstable.Node) error {
		key := append(slices.Clone(prefix), keyParts(kv)...)
		v := kv.Value()
		if v.Kind == unstable.InlineTable {
			for it := v.Children(); it.Next(); {
				if err := visit(key, it.Node()); err != nil {
					return err
				}
			}
			return nil
		}
		return fn(&p, strings.Join(key, "."), v)
	}
	for p.NextExpression() {
		expr := p.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(expr)
		case unstable.KeyValue:
			if err := visit(table, expr); err != nil {
				return err
			}
		}
	}
	return nil
}

// manifestKeys are the manifest's dotted keys, tables' included, each with
// its Go type; an array of tables contributes its keys without an index.
var manifestKeys = func() map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			keys[prefix+name] = f.Type
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]() {
				walk(ft, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[Manifest](), "")
	return keys
}()

// tablesWith suggests where an unknown top-level key belongs: the
// top-level tables that have it, as in "did you mean [limits] engine?".
func tablesWith(key string) string {
	var where []string
	for k := range manifestKeys {
		table, leaf, ok := strings.Cut(k, ".")
		if !ok || leaf != key {
			continue
		}
		if manifestKeys[table].Kind() == reflect.Slice {
			where = append(where, "[["+table+"]] "+key)
		} else {
			where = append(where, "["+table+"] "+key)
		}
	}
	if len(where) == 0 {
		return ""
	}
	slices.Sort(where)
	return "did you mean " + strings.Join(where, " or ") + "?"
}

func (d *DurableObjects) check(data []byte) error {
	if err := atLeastOrDefault(data, "durable_objects.max_live", &d.MaxLive, 1, DefaultMaxLive); err != nil {
		return err
	}
	if d.IdleTimeout.Duration == 0 {
		d.IdleTimeout.Duration = DefaultIdleTimeout
	}
	if err := atMost(data, "durable_objects.idle_timeout", d.IdleTimeout.Duration, MaxIdleTimeout, "an idle object keeps its memory and database until it is evicted"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, b := range d.Bindings {
		where := fmt.Sprintf("%s: durable_objects.bindings[%d]", tableLine(data, "[[durable_objects.bindings]]", i), i)
		switch {
		case b.Name == "":
			return fmt.Errorf("%s: missing required key \"name\"", where)
		case b.ClassName == "":
			return fmt.Errorf("%s: binding %s: missing required key \"class_name\"", where, b.Name)
		case !className.MatchString(b.ClassName):
			return fmt.Errorf("%s: binding %s: class_name %q must be an identifier (letters, digits and _, not starting with a digit): it names the class's storage directory", where, b.Name, b.ClassName)
		case seen[b.Name]:
			return fmt.Errorf("%s: binding name %q is used twice", where, b.Name)
		}
		seen[b.Name] = true
	}
	return nil
}

// className is what a class_name may be: it becomes a directory name
// under the data directory, so it must not be a path.
var className = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// pluginName is what a plugin's name may be: a file name, as the built
// module is named after it.
var pluginName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Binding returns the binding called name.
func (d *DurableObjects) Binding(name string) (Binding, bool) {
	for _, b := range d.Bindings {
		if b.Name == name {
			return b, true
		}
	}
	return Binding{}, false
}

var typeMismatch = regexp.MustCompile(`cannot decode TOML (\w+(?: \w+)?) into struct field \S+ of type (\S+)`)

// tomlTypeOf names the TOML type that decodes into a Go type.
func tomlTypeOf(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "integer"
	case strings.HasPrefix(goType, "float"):
		return "float"
	case goType == "bool":
		return "boolean"
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case goType == "string", strings.HasSuffix(goType, "Duration"):
		return "string"
	}
	return "table"
}

// atLeastOrDefault sets *v to def when the document leaves key out; a
// value it sets must be at least least, which is 1 or more (an explicit 0
// is not taken for the default, nor for "no limit").
func atLeastOrDefault(data []byte, key string, v *int, least, def int) error {
	if *v >= least {
		return nil
	}
	if at, set := valueAt(data, key); set {
		return fmt.Errorf("%s: %s: must be at least %d, got %d (leave it out for the default, %d)", at, key, least, *v, def)
	}
	*v = def
	return nil
}

// atMost refuses a value of key above most, saying why that is the bound.
func atMost[T int | time.Duration](data []byte, key string, v, most T, why string) error {
	if v > most {
		return fmt.Errorf("%s: must be at most %v (%s), got %v", keyAt(data, key), most, why, v)
	}
	return nil
}

// keyAt is "line:column: key" of the dotted key's value, to start an
// error about it (1:1 if the document does not set it).
func keyAt(data []byte, key string) string {
	at, ok := valueAt(data, key)
	if !ok {
		at = "1:1"
	}
	return at + ": " + key
}
