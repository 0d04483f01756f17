package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/plugins"
)

func TestManifestDefaults(t *testing.T) {
	m, err := Parse([]byte("name = \"hello\"\nmain = \".\"\n"))
	require.NoError(t, err)
	assert.Equal(t, DefaultListen, m.Listen)
	assert.Equal(t, DefaultMemoryMiB, m.Limits.MemoryMiB)
	assert.Equal(t, DefaultTimeout, m.Limits.Timeout.Duration)
	assert.Equal(t, runtime.NumCPU(), m.Limits.Instances)
	assert.Equal(t, plugins.DefaultCPUSlice, m.Limits.CPUSlice.Duration)
	assert.Equal(t, plugins.EngineWazero, m.Limits.Engine)
	assert.Equal(t, DefaultLogLineBytes, m.Limits.LogLineBytes)
	assert.Equal(t, DefaultLogLines, m.Limits.LogLinesPerSecond)
	assert.Equal(t, DefaultLogBurst, m.Limits.LogBurst)
	assert.Equal(t, DefaultMaxConns, m.Limits.MaxConnections)
	assert.Equal(t, DefaultMaxHeader, m.Limits.MaxHeaderBytes)
	assert.Equal(t, DefaultHeaderTimeout, m.Limits.HeaderTimeout.Duration)
	assert.Equal(t, DefaultConnIdle, m.Limits.IdleTimeout.Duration)
	assert.True(t, m.NeedsBuild())
}

func TestManifestValues(t *testing.T) {
	m, err := Parse([]byte(`name = "x"
main = "plugin.wasm"
listen = "127.0.0.1:9000"
[limits]
memory_mib = 32
timeout = "1500ms"
instances = 3
cpu_slice = "2s"
engine = "wasmtime"
log_line_bytes = 1000
log_lines_per_second = 5
log_burst = 20
max_connections = 7
max_header_bytes = 8192
header_timeout = "2s"
idle_timeout = 3
`))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", m.Listen)
	assert.Equal(t, Limits{MemoryMiB: 32, Timeout: Duration{1500 * time.Millisecond}, Instances: 3, CPUSlice: Duration{2 * time.Second}, Engine: plugins.EngineWasmtime,
		LogLineBytes: 1000, LogLinesPerSecond: 5, LogBurst: 20,
		MaxConnections: 7, MaxHeaderBytes: 8192, HeaderTimeout: Duration{2 * time.Second}, IdleTimeout: Duration{3 * time.Second}}, m.Limits)
	assert.False(t, m.NeedsBuild())
}

// TestRemovedLimitsAreExplained: keys of the per-event instance pool name
// what replaced them.
func TestRemovedLimitsAreExplained(t *testing.T) {
	_, err := Parse([]byte("name = \"x\"\nmain = \".\"\n[limits]\nwarm_instances = 2\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `4:1: unknown key "limits.warm_instances" (removed: instances are long-running`)
	_, err = Parse([]byte("name = \"x\"\nmain = \".\"\n[limits]\ncpu_slice = \"-1s\"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `4:13: limits.cpu_slice: duration "-1s" must be positive`)
}

// TestCPUSliceLongerThanTimeoutWarns: a cpu_slice set longer than the
// timeout is accepted (the timeout caps it) with a warning naming both;
// the default slice is capped without one. A slice under 100ms, set or
// capped by a short timeout, is warned of at the setting that makes it.
func TestCPUSliceLongerThanTimeoutWarns(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	require.NoError(t, os.WriteFile(path, []byte("name = \"x\"\nmain = \".\"\n[limits]\ntimeout = \"1500ms\"\ncpu_slice = \"2s\"\n"), 0o644))
	m, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, []string{path + `:5:13: limits.cpu_slice: 2s is longer than limits.timeout, which caps it: an instance computing 1.5s without calling the host is stopped`}, m.Warnings)

	for text, want := range map[string]string{
		"[limits]\ntimeout = \"10ms\"\n":                       "4:11: limits.timeout: an instance computing 10ms without calling the host is stopped and replaced, and a garbage collection alone may take that long (100ms or more is safer)",
		"[limits]\ncpu_slice = \"20ms\"\n":                     "4:13: limits.cpu_slice: an instance computing 20ms without calling the host",
		"[limits]\ntimeout = \"50ms\"\ncpu_slice = \"20ms\"\n": "5:13: limits.cpu_slice: an instance computing 20ms without calling the host",
	} {
		m, err := Parse([]byte("name = \"x\"\nmain = \".\"\n" + text))
		require.NoError(t, err)
		if assert.Len(t, m.Warnings, 1, text) {
			assert.Contains(t, m.Warnings[0], want)
		}
	}
	for _, text := range []string{"[limits]\ntimeout = 1\n", "[limits]\ntimeout = 2\ncpu_slice = 2\n", "[limits]\ncpu_slice = \"100ms\"\n", ""} {
		m, err := Parse([]byte("name = \"x\"\nmain = \".\"\n" + text))
		require.NoError(t, err)
		assert.Empty(t, m.Warnings, text)
	}
}

func TestDurationAcceptsSeconds(t *testing.T) {
	m, err := Parse([]byte("name = \"x\"\nmain = \".\"\n[limits]\ntimeout = 45\n"))
	require.NoError(t, err)
	assert.Equal(t, 45*time.Second, m.Limits.Timeout.Duration)
}

func TestManifestErrorsNameKeyAndLine(t *testing.T) {
	cases := map[string]string{
		"name = \"a\"\nmain = \".\"\nbogus = 1\n":                                                                  `3:1: unknown key "bogus"`,
		"name = \"a\"\nmain = \".\"\nengine = \"wasmtime\"\n":                                                      `3:1: unknown key "engine" (did you mean [limits] engine?)`,
		"name = \"a\"\nmain = \".\"\nidle_timeout = \"5s\"\n":                                                      `3:1: unknown key "idle_timeout" (did you mean [durable_objects] idle_timeout or [limits] idle_timeout?)`,
		"name = \"a\"\nmain = \".\"\nimage = \"i\"\n":                                                              `3:1: unknown key "image" (did you mean [[containers]] image?)`,
		"name = \"a\"\nmain = \".\"\n[limits]\nfoo = 1\n":                                                          `4:1: unknown key "limits.foo"`,
		"name = \"a\"\nmain = \".\"\n[limits]\nmemory_mib = \"lots\"\n":                                            `4:14: limits.memory_mib: expected integer, got string`,
		"name = \"a\"\nmain = \".\"\n[limits]\ntimeout = \"soon\"\n":                                               `4:11: limits.timeout: invalid duration "soon"`,
		"name = 3\nmain = \".\"\n":                                                                                 `1:8: name: expected string, got integer`,
		"name = \"a\"\nmain = \".\"\n[limits]\ninstances = -2\n":                                                   `4:13: limits.instances: must be at least 1, got -2 (leave it out for the default, ` + strconv.Itoa(runtime.NumCPU()) + `)`,
		"name = \"a\"\nmain = \".\"\n[limits]\nmemory_mib = 5000\n":                                                `4:14: limits.memory_mib: must be at most 4096 (the Wasm maximum), got 5000`,
		"name = \"a\"\nmain = \".\"\n[limits]\ninstances = 100000\n":                                               `4:13: limits.instances: must be at most 1024 (wharf serve runs a scheduler thread per instance), got 100000`,
		"name = \"a\"\nmain = \".\"\n[limits]\n\nengine = \"v8\"\n":                                                `5:10: limits.engine: unknown engine "v8" (want wazero or wasmtime)`,
		"name = \"a\"\nmain = \".\"\n[limits]\nengine = \"\"\n":                                                    `4:10: limits.engine: unknown engine "" (want wazero or wasmtime)`,
		"name = \"a\"\nmain = \".\"\n[limits]\ntimeout = 1\nlog_burst = -1\n":                                      `5:13: limits.log_burst: must be at least 1, got -1 (leave it out for the default, 1000)`,
		"name = \"a\"\nmain = \".\"\n[limits]\nmax_connections = -3\n":                                             `4:19: limits.max_connections: must be at least 1, got -3 (leave it out for the default, 1024)`,
		"name = \"a\"\nmain = \".\"\n[limits]\nmax_connections = 0\n":                                              `4:19: limits.max_connections: must be at least 1, got 0 (leave it out for the default, 1024)`,
		"name = \"a\"\nmain = \".\"\n[limits]\nmemory_mib = 0\n":                                                   `4:14: limits.memory_mib: must be at least 1, got 0 (leave it out for the default, 128)`,
		"name = \"a\"\nmain = \".\"\n[limits]\nmax_header_bytes = 1024\n":                                          `4:20: limits.max_header_bytes: must be at least 4097, got 1024 (leave it out for the default, 65536)`,
		"name = \"a\"\nmain = \".\"\n[durable_objects]\nmax_live = 0\n":                                            `4:12: durable_objects.max_live: must be at least 1, got 0 (leave it out for the default, 10000)`,
		"name = \"a\"\nmain = \".\"\n[durable_objects]\nidle_timeout = \"1s\"\n[limits]\nidle_timeout = \"-1s\"\n": `6:16: limits.idle_timeout: duration "-1s" must be positive`,
		"name = \"a\"\nmain = \".\"\n[limits]\nheader_timeout = \"soon\"\n":                                        `4:18: limits.header_timeout: invalid duration "soon"`,
		"name = \"a\"\nmain = \".\"\n[limits]\ntimeout = true\n":                                                   `4:11: limits.timeout: want a duration such as "30s" or a whole number of seconds, got true`,
		"name = \"a\"\nmain = \".\"\n[limits]\nmemory_mib = 64\ncpu_slice = 1.5\n":                                 `5:13: limits.cpu_slice: want a duration such as "30s" or a whole number of seconds, got 1.5`,
		"name = \"a\"\nmain = \".\"\nlimits = { idle_timeout = 0 }\n":                                              `3:27: limits.idle_timeout: duration "0" must be positive`,
		"name = \"a\"\nmain = \".\"\n[durable_objects]\nidle_timeout = -5\n":                                       `4:16: durable_objects.idle_timeout: duration "-5" must be positive`,
		"name = \"a\"\nmain = \".\"\n[limits]\ntimeout = 99999999999\n":                                            `4:11: limits.timeout: duration "99999999999" is too long: at most 4294967295 seconds`,
		"name = \"a\"\nmain = \".\"\n[limits]\ntimeout = 07:32:00\n":                                               `4:11: limits.timeout: expected string, got local time`,
		"name = \"a\"\nmain = \".\"\n[[durable_objects.bindings]]\nname = \"X\"\nclass_name = \"../../etc\"\n":     `durable_objects.bindings[0]: binding X: class_name "../../etc" must be an identifier`,
		"name = \"a\"\nmain = \".\"\nlisten = \"localhost\"\n":                                                     `3:10: listen: want host:port (127.0.0.1:8787, or :8787 for every address), got "localhost"`,
		"name = \"a\"\nmain = \".\"\nlisten = \"127.0.0.1:99999\"\n":                                               `3:10: listen: port "99999" is neither a number from 0 to 65535 nor a service name, in "127.0.0.1:99999"`,
		"name = \"a\"\nmain = \".\"\nlisten = \":-1\"\n":                                                           `3:10: listen: port "-1" is neither a number from 0 to 65535 nor a service name, in ":-1"`,
		"main = \".\"\n":                          `missing required key "name"`,
		"name = \"a\"\n":                          `missing required key "main"`,
		"name = \"a\"\nmain = \"\"\n":             `2:8: main: must name a Go package directory or a .wasm file, got ""`,
		"name = \"\"\nmain = \".\"\n":             `1:8: name: must be letters, digits, '.', '-' and '_', starting with a letter or digit (it names the built module, .wharf/build/NAME.wasm), got ""`,
		"name = \"../../escape\"\nmain = \".\"\n": `1:8: name: must be letters, digits, '.', '-' and '_', starting with a letter or digit (it names the built module, .wharf/build/NAME.wasm), got "../../escape"`,
		"name = \"my plugin\"\nmain = \".\"\n":    `1:8: name: must be letters`,
		"name = \"a\nmain = 1\n":                  `1:`,
	}
	for text, want := range cases {
		_, err := Parse([]byte(text))
		if assert.Error(t, err, text) {
			assert.Contains(t, err.Error(), want, text)
		}
	}
}

// TestManifestBounds: a setting past its upper bound, a duration past
// what any setting may be and a duration of 0 are refused with the key
// and its position; the bounds themselves are accepted.
func TestManifestBounds(t *testing.T) {
	for text, want := range map[string]string{
		"[limits]\ncpu_slice = \"0s\"\n":                         `4:13: limits.cpu_slice: duration "0s" must be positive`,
		"[limits]\nmax_header_bytes = 1048577\n":                 `4:20: limits.max_header_bytes: must be at most 1048576 (each connection may hold a head that long in memory), got 1048577`,
		"[limits]\nheader_timeout = \"61s\"\n":                   `4:18: limits.header_timeout: must be at most 1m0s (a slow client holds a connection that long), got 1m1s`,
		"[durable_objects]\nidle_timeout = \"25h\"\n":            `4:16: durable_objects.idle_timeout: must be at most 24h0m0s (an idle object keeps its memory and database until it is evicted), got 25h0m0s`,
		"[limits]\nidle_timeout = \"2h\"\n":                      `4:16: limits.idle_timeout: must be at most 1h0m0s (an idle connection holds one of max_connections that long), got 2h0m0s`,
		"[limits]\ntimeout = \"10000000h\"\n":                    `4:11: limits.timeout: duration "10000000h" is too long: at most 4294967295 seconds`,
		"[limits]\ntimeout = \"1193046h28m16s\"\n":               `4:11: limits.timeout: duration "1193046h28m16s" is too long: at most 4294967295 seconds`,
		"[limits]\nheader_timeout = \"99999999999999999999s\"\n": `4:18: limits.header_timeout: duration "99999999999999999999s" is too long: at most 4294967295 seconds`,
		"[durable_objects]\nidle_timeout = \"-10000000h\"\n":     `4:16: durable_objects.idle_timeout: duration "-10000000h" must be positive`,
		"[durable_objects]\nidle_timeout = \"500us\"\n":          `4:16: durable_objects.idle_timeout: must be at least 1ms (a few milliseconds already evict an object between its events), got 500µs`,
	} {
		_, err := Parse([]byte("name = \"a\"\nmain = \".\"\n" + text))
		assert.EqualError(t, err, want, text)
	}
	m, err := Parse([]byte("name = \"a\"\nmain = \".\"\n[limits]\ntimeout = \"1193046h28m15s\"\nmax_header_bytes = 1048576\nheader_timeout = 60\nidle_timeout = \"1h\"\n[durable_objects]\nidle_timeout = \"24h\"\n"))
	require.NoError(t, err)
	shortest, err := Parse([]byte("name = \"a\"\nmain = \".\"\n[durable_objects]\nidle_timeout = \"1ms\"\n"))
	require.NoError(t, err)
	assert.Equal(t, MinIdleTimeout, shortest.DurableObjects.IdleTimeout.Duration)
	assert.Equal(t, 4294967295*time.Second, m.Limits.Timeout.Duration)
	assert.Equal(t, MaxMaxHeader, m.Limits.MaxHeaderBytes)
	assert.Equal(t, MaxHeaderTimeout, m.Limits.HeaderTimeout.Duration)
	assert.Equal(t, MaxConnIdle, m.Limits.IdleTimeout.Duration)
	assert.Equal(t, MaxIdleTimeout, m.DurableObjects.IdleTimeout.Duration)
}

func TestLoadFromDirAndFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \".\"\nextra = true\n"), 0o644))
	_, err := Load(dir)
	assert.ErrorContains(t, err, path+":3:1: unknown key \"extra\"")

	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \".\"\n[limits]\ntimeout = true\n"), 0o644))
	_, err = Load(dir)
	assert.EqualError(t, err, path+`:4:11: limits.timeout: want a duration such as "30s" or a whole number of seconds, got true`)

	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \"sub\"\n"), 0o644))
	m, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, dir, m.Dir)
	assert.Equal(t, filepath.Join(dir, ".wharf", "build", "a.wasm"), m.WasmPath())

	abs := filepath.Join(t.TempDir(), "elsewhere.wasm") // an absolute main is taken as it is
	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \""+abs+"\"\n"), 0o644))
	m, err = Load(path)
	require.NoError(t, err)
	assert.Equal(t, abs, m.WasmPath())
}

func TestManifestContainers(t *testing.T) {
	base := "name = \"x\"\nmain = \".\"\n[[durable_objects.bindings]]\nname = \"S\"\nclass_name = \"Sandbox\"\n"
	m, err := Parse([]byte(base + "[[containers]]\nclass_name = \"Sandbox\"\nimage = \"wharf.test/busybox:latest\"\nmax_instances = 3\ninstance_type = \"standard-1\"\n"))
	require.NoError(t, err)
	require.Len(t, m.Containers, 1)
	assert.Equal(t, InstanceType{VCPU: 0.5, MemoryMiB: 4096, DiskMB: 8000}, m.Containers[0].Resources)
	assert.Equal(t, 3, m.Containers[0].MaxInstances)
	for _, most := range []int{0, MaxContainerInstances} { // no cap, and the highest
		m, err = Parse([]byte(base + fmt.Sprintf("[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\nmax_instances = %d\n", most)))
		require.NoError(t, err)
		assert.Equal(t, most, m.Containers[0].MaxInstances)
	}

	m, err = Parse([]byte(base + "[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\n"))
	require.NoError(t, err)
	assert.Equal(t, InstanceTypes["lite"], m.Containers[0].Resources, "lite by default")

	m, err = Parse([]byte(base + "[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = 0.75, memory_mib = 512, disk_mb = 1000 }\n"))
	require.NoError(t, err)
	assert.Equal(t, InstanceType{VCPU: 0.75, MemoryMiB: 512, DiskMB: 1000}, m.Containers[0].Resources)
	assert.Equal(t, 1000, m.Containers[0].PersistentMB, "persistent directories get the instance type's disk by default")
	m, err = Parse([]byte(base + "[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = 1, memory_mib = 512 }\npersistent_mb = 300\n"))
	require.NoError(t, err)
	assert.Equal(t, InstanceType{VCPU: 1, MemoryMiB: 512, DiskMB: 2000}, m.Containers[0].Resources, "a custom type without disk_mb gets lite's disk")
	assert.Equal(t, 300, m.Containers[0].PersistentMB)

	cases := map[string]string{
		"[[containers]]\nimage = \"i\"\n":                                                                                                          `6:1: containers[0]: missing required key "class_name"`,
		"[[containers]]\nclass_name = \"Sandbox\"\n":                                                                                               `class Sandbox: missing required key "image"`,
		"[[containers]]\nclass_name = \"Other\"\nimage = \"i\"\n":                                                                                  `class "Other" has no [[durable_objects.bindings]] entry`,
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = \"huge\"\n":                                                      `9:17: containers[0]: class Sandbox: instance_type: unknown instance type "huge" (use one of basic, lite, standard-1`,
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = 1 }\n":                                                  "a custom instance type needs vcpu and memory_mib",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { cpus = 1 }\n":                                                  `unknown key "cpus"`,
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\nmax_instances = -1\n":                                                            "9:17: containers[0]: class Sandbox: max_instances must not be negative, got -1",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\nmax_instances = 16384\n":                                                         "9:17: containers[0]: class Sandbox: max_instances must be at most 16383 (a host has addresses for that many containers; 0 is no cap), got 16384",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\nmax_instances = 9223372036854775807\n":                                           "9:17: containers[0]: class Sandbox: max_instances must be at most 16383 (a host has addresses for that many containers; 0 is no cap), got 9223372036854775807",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\npersistent_mb = -5\n":                                                            "9:17: containers[0]: class Sandbox: persistent_mb must be between 0 and 1073741824, got -5",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\npersistent_mb = 9223372036854775807\n":                                           "class Sandbox: persistent_mb must be between 0 and 1073741824, got 9223372036854775807",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = nan, memory_mib = 512 }\n":                              "vcpu must be a number above 0 and at most 1024, got NaN",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = inf, memory_mib = 512 }\n":                              "vcpu must be a number above 0 and at most 1024, got +Inf",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = 1, memory_mib = 1e300 }\n":                              "memory_mib must be a number above 0 and at most 16777216, got 1e+300",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = 1, memory_mib = 512, disk_mb = 0.5 }\n":                 "disk_mb must be a whole number, got 0.5",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ninstance_type = { vcpu = 1, memory_mib = 512, disk_mb = 9223372036854775807 }\n": "disk_mb must be a number above 0 and at most 1073741824",
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\ncapabilities = [\"SYS_ADMIN\"]\n":                                                `9:1: containers[0]: class Sandbox: capabilities: "SYS_ADMIN" cannot be granted (a class may ask for NET_RAW)`,
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\n\nsleep_after = \"soon\"\n":                                                      `10:15: containers[0]: class Sandbox: sleep_after: `,
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\nhard_timeout = \"10000000h\"\n":                                                  `9:16: containers[0]: class Sandbox: hard_timeout: duration "10000000h" is too long: at most 4294967295 seconds`,
		"[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\nports = 1\n":                                                                     `unknown key "containers.ports"`,
	}
	for extra, want := range cases {
		_, err := Parse([]byte(base + extra))
		if assert.Error(t, err, extra) {
			assert.Contains(t, err.Error(), want, extra)
		}
	}
}

// TestManifestPersistentDirs refuses persistent directories the runtime
// provides, listed twice or inside one another, at the line of the key in
// the class's own table.
func TestManifestPersistentDirs(t *testing.T) {
	base := "name = \"x\"\nmain = \".\"\n[[durable_objects.bindings]]\nname = \"A\"\nclass_name = \"First\"\n" +
		"[[durable_objects.bindings]]\nname = \"B\"\nclass_name = \"Second\"\n" +
		"[[containers]]\nclass_name = \"First\"\nimage = \"i\"\npersistent_dirs = [\"/data\"]\n" + // lines 9-12
		"[[containers]]\nclass_name = \"Second\"\nimage = \"i\"\n" // lines 13-15
	m, err := Parse([]byte(base + "persistent_dirs = [\"/data\", \"/var/lib/app\", \"/database\", \"/devices\"]\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"/data", "/var/lib/app", "/database", "/devices"}, m.Containers[1].PersistentDirs)

	prefix := "16:1: containers[1]: class Second: persistent_dirs: "
	cases := map[string]string{
		`["/proc"]`:              `"/proc" is inside /proc, which the container's runtime provides; choose another directory`,
		`["/dev/shm"]`:           `"/dev/shm" is inside /dev, which the container's runtime provides; choose another directory`,
		`["/sys/fs/cgroup/x"]`:   `"/sys/fs/cgroup/x" is inside /sys, which the container's runtime provides; choose another directory`,
		`["/.wharf"]`:            `"/.wharf" is inside /.wharf, which the container's runtime provides; choose another directory`,
		`["/data", "/data"]`:     `"/data" is listed twice`,
		`["/data", "/data/db"]`:  `"/data/db" is inside "/data"; list only "/data" (it keeps everything below it)`,
		`["/a/b/c", "/x", "/a"]`: `"/a/b/c" is inside "/a"; list only "/a" (it keeps everything below it)`,
		`["data"]`:               `"data" must be a clean absolute path other than /`,
		`["/data/../etc"]`:       `"/data/../etc" must be a clean absolute path other than /`,
		`["/"]`:                  `"/" must be a clean absolute path other than /`,
	}
	for dirs, want := range cases {
		_, err := Parse([]byte(base + "persistent_dirs = " + dirs + "\n"))
		if assert.Error(t, err, dirs) {
			assert.Equal(t, prefix+want, err.Error(), dirs)
		}
	}
	// The first table's line when the error is there.
	_, err = Parse([]byte(strings.Replace(base, `["/data"]`, `["/proc/1"]`, 1)))
	require.Error(t, err)
	assert.Equal(t, `12:1: containers[0]: class First: persistent_dirs: "/proc/1" is inside /proc, which the container's runtime provides; choose another directory`, err.Error())
}

// TestListenErrorNamesWhereTheAddressIsSet: an error met listening names
// the manifest's listen when it is set there, else says it is the default.
func TestListenErrorNamesWhereTheAddressIsSet(t *testing.T) {
	inUse := errors.New("bind: address already in use")
	m, err := Parse([]byte("name = \"a\"\nmain = \".\"\n"))
	require.NoError(t, err)
	assert.EqualError(t, m.ListenError(inUse), "bind: address already in use (the default address: set listen in wharf.toml, or pass --listen)")
	m, err = Parse([]byte("name = \"a\"\nmain = \".\"\nlisten = \"127.0.0.1:9\"\n"))
	require.NoError(t, err)
	assert.EqualError(t, m.ListenError(inUse), ":3:10: listen: bind: address already in use (or pass --listen)")
	assert.ErrorIs(t, m.ListenError(inUse), inUse)
}

// TestEveryCountAndDurationIsBounded: each whole-number and duration
// setting outside [[containers]] accepts its bounds and refuses a value
// past either, at the value's position, naming the key and why the bound
// is there; a number too large for an int64 or a float64 (1e400) is
// refused the same way, not with strconv's "value out of range". A new
// such setting fails the test until it has a row.
func TestEveryCountAndDurationIsBounded(t *testing.T) {
	const durationWanted = `want a duration such as "30s" or a whole number of seconds, got 1e400`
	const tooLong = `duration "99999999999999999999" is too long: at most 4294967295 seconds`
	rows := []struct {
		key  string
		ok   []string
		errs map[string]string // value: the problem after "line:column: key: "
	}{
		{"limits.memory_mib", []string{"1", "4096"}, map[string]string{
			"0":                    "must be at least 1, got 0 (leave it out for the default, 128)",
			"4097":                 "must be at most 4096 (the Wasm maximum), got 4097",
			"99999999999999999999": "must be at most 4096 (the Wasm maximum), got 99999999999999999999",
			"1e400":                "expected integer, got float",
		}},
		{"limits.instances", []string{"1", "1024"}, map[string]string{
			"1025": "must be at most 1024 (wharf serve runs a scheduler thread per instance), got 1025",
		}},
		{"limits.log_line_bytes", []string{"1", "1048576"}, map[string]string{
			"0":                     "must be at least 1, got 0 (leave it out for the default, 16384)",
			"1048577":               "must be at most 1048576 (a line is held in memory and logged whole), got 1048577",
			"9223372036854775807":   "must be at most 1048576 (a line is held in memory and logged whole), got 9223372036854775807",
			"-99999999999999999999": "must be at least 1, got -99999999999999999999 (leave it out for the default, 16384)",
		}},
		{"limits.log_lines_per_second", []string{"1", "100000"}, map[string]string{
			"100001": "must be at most 100000 (it keeps guest logs from filling the host's disk), got 100001",
		}},
		{"limits.log_burst", []string{"1", "1000000"}, map[string]string{
			"1000001": "must be at most 1000000 (it keeps guest logs from filling the host's disk), got 1000001",
		}},
		{"limits.max_connections", []string{"1", "65536"}, map[string]string{
			"0":                   "must be at least 1, got 0 (leave it out for the default, 1024)",
			"65537":               "must be at most 65536 (each connection holds a file descriptor and up to max_header_bytes of memory), got 65537",
			"9223372036854775807": "must be at most 65536 (each connection holds a file descriptor and up to max_header_bytes of memory), got 9223372036854775807",
		}},
		{"limits.max_header_bytes", []string{"4097", "1048576"}, map[string]string{
			"4096":    "must be at least 4097, got 4096 (leave it out for the default, 65536)",
			"1048577": "must be at most 1048576 (each connection may hold a head that long in memory), got 1048577",
		}},
		{"durable_objects.max_live", []string{"1", "1000000"}, map[string]string{
			"1000001": "must be at most 1000000 (each live object holds its memory and its open database), got 1000001",
			"1e400":   "expected integer, got float",
		}},
		{"limits.timeout", []string{`"10ms"`, "4294967295"}, map[string]string{
			`"1ns"`:                "must be at least 10ms (it caps cpu_slice, whose watchdog wakes four times a slice), got 1ns",
			`"9ms"`:                "must be at least 10ms (it caps cpu_slice, whose watchdog wakes four times a slice), got 9ms",
			"4294967296":           `duration "4294967296" is too long: at most 4294967295 seconds`,
			"1e400":                durationWanted,
			"-1e400":               `want a duration such as "30s" or a whole number of seconds, got -1e400`,
			"99999999999999999999": tooLong,
		}},
		{"limits.cpu_slice", []string{`"10ms"`, "4294967295"}, map[string]string{
			`"3ns"`: "must be at least 10ms (the watchdog that enforces it wakes four times a slice), got 3ns",
			"1e400": durationWanted,
		}},
		{"limits.header_timeout", []string{`"1s"`, `"1m"`}, map[string]string{
			`"1ns"`:                 "must be at least 1s (a client on a slow network takes that long to send a request's head), got 1ns",
			`"999ms"`:               "must be at least 1s (a client on a slow network takes that long to send a request's head), got 999ms",
			`"1m0.000000001s"`:      "must be at most 1m0s (a slow client holds a connection that long), got 1m0.000000001s",
			"1e400":                 durationWanted,
			"99999999999999999999":  tooLong,
			"-99999999999999999999": `duration "-99999999999999999999" must be positive`,
		}},
		{"limits.idle_timeout", []string{`"1s"`, `"1h"`}, map[string]string{
			`"1ns"`:    "must be at least 1s (a client sends its next request on a keep-alive connection about then), got 1ns",
			`"3601s"`:  "must be at most 1h0m0s (an idle connection holds one of max_connections that long), got 1h0m1s",
			`"1e400s"`: `invalid duration "1e400s": use e.g. "30s", "5m", "1h" or a number of seconds`,
		}},
		{"durable_objects.idle_timeout", []string{`"1ms"`, `"24h"`}, map[string]string{
			`"1ns"`:     "must be at least 1ms (a few milliseconds already evict an object between its events), got 1ns",
			`"999us"`:   "must be at least 1ms (a few milliseconds already evict an object between its events), got 999µs",
			`"24h0m1s"`: "must be at most 24h0m0s (an idle object keeps its memory and database until it is evicted), got 24h0m1s",
			"1e400":     durationWanted,
		}},
	}
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.key] = true
		table, leaf, _ := strings.Cut(r.key, ".")
		text := func(v string) []byte {
			return []byte("name = \"a\"\nmain = \".\"\n[" + table + "]\n" + leaf + " = " + v + "\n")
		}
		for _, v := range r.ok {
			_, err := Parse(text(v))
			assert.NoError(t, err, "%s = %s", r.key, v)
		}
		for v, want := range r.errs {
			_, err := Parse(text(v))
			assert.EqualError(t, err, fmt.Sprintf("4:%d: %s: %s", len(leaf)+4, r.key, want), "%s = %s", r.key, v)
		}
	}
	for key, typ := range manifestKeys {
		if (typ == reflect.TypeFor[int]() || typ == reflect.TypeFor[Duration]()) && !strings.HasPrefix(key, "containers.") {
			assert.True(t, covered[key], "%s has no bounds in this test", key)
		}
	}
}

// TestOutOfRangeNumbersInContainers: a [[containers]] number too large
// for go-toml is refused at its position without strconv's words.
func TestOutOfRangeNumbersInContainers(t *testing.T) {
	base := "name = \"x\"\nmain = \".\"\n[[durable_objects.bindings]]\nname = \"S\"\nclass_name = \"Sandbox\"\n[[containers]]\nclass_name = \"Sandbox\"\nimage = \"i\"\n"
	for extra, want := range map[string]string{
		"max_instances = 1e400\n":                          "9:17: containers.max_instances: expected integer, got float",
		"persistent_mb = -99999999999999999999\n":          "9:17: containers.persistent_mb: number out of range, got -99999999999999999999",
		"instance_type = {vcpu = 1e400, memory_mib = 5}\n": "9:25: containers.instance_type: number out of range, got 1e400",
		"ready_on = [{port = 99999999999999999999}]\n":     "9:21: containers.ready_on: number out of range",
	} {
		_, err := Parse([]byte(base + extra))
		assert.EqualError(t, err, want, extra)
	}
}
