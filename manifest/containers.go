package manifest

import (
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

// Container is one [[containers]] entry: the container every object of a
// Durable Object class gets.
type Container struct {
	ClassName string `toml:"class_name"`
	// Image is an image reference in wharf's containerd, or (as in
	// wrangler) a Dockerfile or a directory holding one, relative to the
	// manifest, which `wharf serve` builds; see BuildSource.
	Image string `toml:"image"`
	// BuildArgs are the Dockerfile's build arguments (wrangler's
	// image_vars), only with a Dockerfile Image.
	BuildArgs    map[string]string `toml:"build_args"`
	MaxInstances int               `toml:"max_instances"`
	// InstanceType is a name ("lite", "basic", "standard-1"…"standard-4")
	// or a table {vcpu, memory_mib, disk_mb}; see Resources.
	InstanceType any `toml:"instance_type"`
	// AllowedHosts are host globs the container may reach even with
	// enableInternet off; DeniedHosts it may never reach (reference 004's
	// allowedHosts and deniedHosts). Objects can change both at run time.
	AllowedHosts []string `toml:"allowed_hosts"`
	DeniedHosts  []string `toml:"denied_hosts"`
	// SleepAfter and HardTimeout are the Container class's idle timeout
	// and lifetime cap ("30s", "5m", "1h" or seconds); the SDK's values
	// win when set.
	SleepAfter  string `toml:"sleep_after"`
	HardTimeout string `toml:"hard_timeout"`
	// ReadyOn are readiness probes that gate the Container class's
	// proxying.
	ReadyOn []ReadyProbe `toml:"ready_on"`
	// Secrets name environment variables of `wharf serve` injected into
	// the container's environment at every start.
	Secrets []string `toml:"secrets"`
	// Labels are put on every container of the class (and shown by
	// `wharf ps`).
	Labels map[string]string `toml:"labels"`
	// PersistentDirs are absolute paths in the container kept per object
	// across container and host restarts, until the object's storage is
	// deleted.
	PersistentDirs []string `toml:"persistent_dirs"`
	// PersistentMB caps the persistent directories together (0: the
	// instance type's disk_mb).
	PersistentMB int `toml:"persistent_mb"`
	// Capabilities are Linux capabilities the class's containers get
	// beyond the default set, without the CAP_ prefix; only those in
	// GrantableCapabilities may be asked for.
	Capabilities []string `toml:"capabilities"`

	// Init (default true) runs wharf-init as the container's PID 1, with
	// the image's entrypoint as its child: signals are forwarded, zombies
	// reaped, and exec goes through it. false keeps the entrypoint as
	// PID 1 and exec through runc, for an image that must be its own init.
	Init *bool `toml:"init"`

	// Resources is InstanceType resolved.
	Resources InstanceType `toml:"-"`
}

// BuildSource returns the Dockerfile or directory Image names, resolved
// against the manifest's directory dir, when Image is a path that exists
// rather than an image reference.
func (c Container) BuildSource(dir string) (string, bool) {
	p := c.Image
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return p, true
}

// looksLikePath reports whether an image is written as a path.
func looksLikePath(image string) bool {
	return strings.HasPrefix(image, "./") || strings.HasPrefix(image, "../") || strings.HasPrefix(image, "/")
}

// RunsInit reports whether the class's containers run wharf-init.
func (c Container) RunsInit() bool { return c.Init == nil || *c.Init }

// ReadyProbe is one readiness check: an HTTP GET of Path on Port (0: the
// class's default port) that must answer Status (0: 200).
type ReadyProbe struct {
	Path   string `toml:"path"`
	Port   int    `toml:"port"`
	Status int    `toml:"status"`
}

// InstanceType is the CPU, memory and disk a container may use.
type InstanceType struct {
	VCPU      float64
	MemoryMiB int
	DiskMB    int
}

// InstanceTypes are the named sizes of the hosted system.
var InstanceTypes = map[string]InstanceType{
	"lite":       {VCPU: 1.0 / 16, MemoryMiB: 256, DiskMB: 2000},
	"basic":      {VCPU: 0.25, MemoryMiB: 1024, DiskMB: 4000},
	"standard-1": {VCPU: 0.5, MemoryMiB: 4096, DiskMB: 8000},
	"standard-2": {VCPU: 1, MemoryMiB: 6144, DiskMB: 12000},
	"standard-3": {VCPU: 2, MemoryMiB: 8192, DiskMB: 16000},
	"standard-4": {VCPU: 4, MemoryMiB: 12288, DiskMB: 20000},
}

// GrantableCapabilities are the capabilities a class may add to its
// containers' default set (containerd's, without NET_RAW): NET_RAW, for
// ping and raw sockets.
var GrantableCapabilities = []string{"NET_RAW"}

// DefaultInstanceType is used when a container names none, as in the
// hosted system.
const DefaultInstanceType = "lite"

// checkContainers resolves instance types and checks every container
// belongs to a bound class.
func (m *Manifest) checkContainers(data []byte) error {
	seen := map[string]bool{}
	for i := range m.Containers {
		c := &m.Containers[i]
		where := fmt.Sprintf("%s: containers[%d]", tableLine(data, "[[containers]]", i), i)
		switch {
		case c.ClassName == "":
			return fmt.Errorf("%s: missing required key \"class_name\"", where)
		case c.Image == "":
			return fmt.Errorf("%s: class %s: missing required key \"image\"", where, c.ClassName)
		case c.MaxInstances < 0:
			return fmt.Errorf("%s: containers[%d]: class %s: max_instances must not be negative, got %d", entryValueAt(data, "containers", i, "max_instances"), i, c.ClassName, c.MaxInstances)
		case c.MaxInstances > MaxContainerInstances:
			return fmt.Errorf("%s: containers[%d]: class %s: max_instances %s", entryValueAt(data, "containers", i, "max_instances"), i, c.ClassName,
				beyond("at most", MaxContainerInstances, "a host has addresses for that many containers; 0 is no cap", c.MaxInstances))
		case seen[c.ClassName]:
			return fmt.Errorf("%s: class %s has two [[containers]] entries", where, c.ClassName)
		}
		seen[c.ClassName] = true
		if !slices.ContainsFunc(m.DurableObjects.Bindings, func(b Binding) bool { return b.ClassName == c.ClassName }) {
			return fmt.Errorf("%s: class %q has no [[durable_objects.bindings]] entry; containers belong to Durable Object classes", where, c.ClassName)
		}
		at := func(key string) string {
			return entryValueAt(data, "containers", i, key) + fmt.Sprintf(": containers[%d]", i)
		}
		r, err := resolveInstanceType(c.InstanceType)
		if err != nil {
			return fmt.Errorf("%s: class %s: instance_type: %w", at("instance_type"), c.ClassName, err)
		}
		c.Resources = r
		switch {
		case c.PersistentMB < 0 || c.PersistentMB > MaxDiskMB:
			return fmt.Errorf("%s: class %s: persistent_mb must be between 0 and %d, got %d", at("persistent_mb"), c.ClassName, MaxDiskMB, c.PersistentMB)
		case c.PersistentMB == 0:
			c.PersistentMB = r.DiskMB
		}
		if key, err := c.checkLifecycle(); err != nil {
			return fmt.Errorf("%s: class %s: %s: %w", at(key), c.ClassName, key, err)
		}
		if err := checkPersistentDirs(c.PersistentDirs); err != nil {
			return fmt.Errorf("%s: class %s: persistent_dirs: %w", at("persistent_dirs"), c.ClassName, err)
		}
	}
	return nil
}

// checkImages checks images written as paths exist (relative to m.Dir)
// and build_args come with a Dockerfile.
func (m *Manifest) checkImages(data []byte) error {
	for i, c := range m.Containers {
		where := fmt.Sprintf("%s: containers[%d]: class %s", tableLine(data, "[[containers]]", i), i, c.ClassName)
		_, build := c.BuildSource(m.Dir)
		switch {
		case !build && looksLikePath(c.Image):
			return fmt.Errorf("%s: image %q: no such Dockerfile or directory", where, c.Image)
		case !build && len(c.BuildArgs) > 0:
			return fmt.Errorf("%s: build_args needs image to be a Dockerfile or a directory holding one, got the reference %q", where, c.Image)
		}
	}
	return nil
}

func resolveInstanceType(v any) (InstanceType, error) {
	switch t := v.(type) {
	case nil:
		return InstanceTypes[DefaultInstanceType], nil
	case string:
		if r, ok := InstanceTypes[t]; ok {
			return r, nil
		}
		names := make([]string, 0, len(InstanceTypes))
		for n := range InstanceTypes {
			names = append(names, n)
		}
		sort.Strings(names)
		return InstanceType{}, fmt.Errorf("unknown instance type %q (use one of %s, or {vcpu, memory_mib, disk_mb})", t, strings.Join(names, ", "))
	case map[string]any:
		var r InstanceType
		for k, val := range t {
			limit, ok := instanceTypeLimits[k]
			if !ok {
				return InstanceType{}, fmt.Errorf("unknown key %q (use vcpu, memory_mib, disk_mb)", k)
			}
			num, ok := toFloat(val)
			if !ok || !(num > 0 && num <= limit) { // also refuses NaN
				return InstanceType{}, fmt.Errorf("%s must be a number above 0 and at most %s, got %v", k, strconv.FormatFloat(limit, 'f', -1, 64), val)
			}
			if k != "vcpu" && num != math.Trunc(num) {
				return InstanceType{}, fmt.Errorf("%s must be a whole number, got %v", k, val)
			}
			switch k {
			case "vcpu":
				r.VCPU = num
			case "memory_mib":
				r.MemoryMiB = int(num)
			case "disk_mb":
				r.DiskMB = int(num)
			}
		}
		if r.VCPU == 0 || r.MemoryMiB == 0 {
			return InstanceType{}, fmt.Errorf("a custom instance type needs vcpu and memory_mib")
		}
		if r.DiskMB == 0 {
			r.DiskMB = InstanceTypes[DefaultInstanceType].DiskMB
		}
		return r, nil
	}
	return InstanceType{}, fmt.Errorf("must be a name or a table, got %v", v)
}

// instanceTypeLimits are the largest values a custom instance type may
// ask for: beyond them a size no longer fits the cgroup and filesystem
// arithmetic, and a host this large does not exist.
var instanceTypeLimits = map[string]float64{
	"vcpu":       1024,
	"memory_mib": 1 << 24, // 16 TiB
	"disk_mb":    MaxDiskMB,
}

// MaxDiskMB is the largest disk_mb or persistent_mb (1 PiB).
const MaxDiskMB = 1 << 30

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// tableLine is the "line:col" of the i-th occurrence of an array-of-tables
// header such as [[containers]].
func tableLine(data []byte, header string, i int) string {
	_, n := tableAt(data, header, i)
	return fmt.Sprintf("%d:1", n+1)
}

// tableAt returns the manifest's lines and the index of the i-th line
// holding header (0 if there is none).
func tableAt(data []byte, header string, i int) ([]string, int) {
	lines := strings.Split(string(data), "\n")
	for n, line := range lines {
		if strings.ReplaceAll(strings.TrimSpace(line), " ", "") == header {
			if i == 0 {
				return lines, n
			}
			i--
		}
	}
	return lines, 0
}

// checkLifecycle validates the Container class settings; it names the key
// of the value it refuses.
func (c *Container) checkLifecycle() (string, error) {
	for key, v := range map[string]string{"sleep_after": c.SleepAfter, "hard_timeout": c.HardTimeout} {
		if v != "" {
			if _, err := abi.ParseDuration(v); err != nil {
				return key, err
			}
		}
	}
	for i, p := range c.ReadyOn {
		if p.Port < 0 || p.Port > 65535 || p.Status < 0 || p.Status > 599 {
			return "ready_on", fmt.Errorf("[%d]: port must be 1-65535 and status 100-599", i)
		}
	}
	for _, name := range c.Secrets {
		if name == "" || strings.ContainsAny(name, "= ") {
			return "secrets", fmt.Errorf("%q is not an environment variable name", name)
		}
	}
	for _, name := range c.Capabilities {
		if !slices.Contains(GrantableCapabilities, name) {
			return "capabilities", fmt.Errorf("%q cannot be granted (a class may ask for %s)", name, strings.Join(GrantableCapabilities, ", "))
		}
	}
	return "", nil
}

// ReservedDirs are the container directories its runtime provides (and
// wharf's agent uses): no persistent directory may be one or inside one.
var ReservedDirs = []string{"/proc", "/dev", "/sys", wire.SocketDir}

// checkPersistentDirs refuses persistent directories that are not clean
// absolute paths, are reserved, listed twice or inside one another (each
// is a mount; one inside another would hide or duplicate the other).
func checkPersistentDirs(dirs []string) error {
	for i, d := range dirs {
		if !path.IsAbs(d) || path.Clean(d) != d || d == "/" {
			return fmt.Errorf("%q must be a clean absolute path other than /", d)
		}
		for _, r := range ReservedDirs {
			if within(d, r) {
				return fmt.Errorf("%q is inside %s, which the container's runtime provides; choose another directory", d, r)
			}
		}
		for _, other := range dirs[:i] {
			switch {
			case d == other:
				return fmt.Errorf("%q is listed twice", d)
			case within(d, other), within(other, d):
				outer, inner := other, d
				if within(other, d) {
					outer, inner = d, other
				}
				return fmt.Errorf("%q is inside %q; list only %q (it keeps everything below it)", inner, outer, outer)
			}
		}
	}
	return nil
}

// within reports whether the clean absolute path p is dir or below it.
func within(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// entryValueAt is the "line:column" of key's value in the i-th table of the
// array of tables named table (its header's line if the table does not set
// key), for an error about that value.
func entryValueAt(data []byte, table string, i int, key string) string {
	var p unstable.Parser
	p.Reset(data)
	entry := -1
	for p.NextExpression() {
		expr := p.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			if entry == i {
				return tableLine(data, "[["+table+"]]", i)
			}
			if expr.Kind == unstable.ArrayTable && strings.Join(keyParts(expr), ".") == table {
				entry++
			}
		case unstable.KeyValue:
			if entry != i {
				continue
			}
			if strings.Join(keyParts(expr), ".") != key {
				continue
			}
			if v := expr.Value(); v.Raw.Length > 0 {
				return position(&p, v)
			}
			first := expr.Key() // an array or inline table has no span of its own: its key's
			first.Next()
			return position(&p, first.Node())
		}
	}
	return tableLine(data, "[["+table+"]]", i)
}
