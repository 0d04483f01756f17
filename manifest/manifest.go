package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
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

// ShortCPUSlice is the CPU slice below which the manifest warns: a
// guest's own garbage collection may run that long without calling the
// host.
const ShortCPUSlice = 100 * time.Millisecond

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
	for _, c := range counts {
		if err := c.check(data, c.field(&m)); err != nil {
			return nil, err
		}
	}
	for _, d := range durations {
		if err := d.check(data, d.field(&m)); err != nil {
			return nil, err
		}
	}
	l := &m.Limits
	if _, set := valueAt(data, "limits.engine"); !set { // engine = "" is an error
		l.Engine = plugins.EngineWazero
	}
	if err := plugins.CheckEngine(l.Engine); err != nil {
		return nil, fmt.Errorf("%s: %w", keyAt(data, "limits.engine"), err)
	}
	sliceAt, sliceSet := valueAt(data, "limits.cpu_slice")
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
		key := strings.Join(de.Key(), ".")
		if m := typeMismatch.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("expected %s, got %s", tomlTypeOf(m[2]), strings.ToLower(m[1]))
		} else if numberTooLarge.MatchString(msg) && key != "" {
			msg = outOfRange(data, key, fmt.Sprintf("%d:%d", row, col))
		}
		if key != "" {
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
		problem := durationProblem(string(p.Raw(v.Raw)), v.Kind == unstable.Integer)
		if problem == "" {
			return nil
		}
		return fmt.Errorf("%s: %s: %s", position(p, v), name, problem)
	})
}

// valueAt is the "line:column" of the value of the dotted key, and whether
// the document sets it.
func valueAt(data []byte, key string) (string, bool) {
	var at string
	err := eachValue(data, func(p *unstable.Parser, name string, v *unstable.Node) error {
		if name != key {
			return nil
		}
		at = position(p, v)
		return errFound
	})
	return at, err == errFound
}

// errFound ends a walk of eachValue that found what it looked for.
var errFound = errors.New("found")

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

// keyAt is "line:column: key" of the dotted key's value, to start an
// error about it (1:1 if the document does not set it).
func keyAt(data []byte, key string) string {
	at, ok := valueAt(data, key)
	if !ok {
		at = "1:1"
	}
	return at + ": " + key
}
