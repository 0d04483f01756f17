package plugins

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/wharfhq/wharf/abi"
)

// Config describes a plugin to load.
type Config struct {
	// Name identifies the plugin in logs and errors.
	Name string
	// Path is the .wasm file.
	Path string
	// Engine is the Wasm runtime, one of Engines; empty means wazero.
	Engine string
	// CacheDir holds compiled code; empty disables the on-disk cache.
	CacheDir string
	// MemoryLimitBytes caps each instance's linear memory.
	MemoryLimitBytes uint64
	// EventTimeout bounds one call into the guest, initialisation included.
	EventTimeout time.Duration
	// Pool sizes the warm pool.
	Pool PoolConfig
	// HostModules are the host functions by import module name.
	HostModules map[string][]HostFunc
	// RequiredExports must all be exported by the module.
	RequiredExports []string
	// NewData makes the per-instance value host functions see as
	// Caller.Data, and the writers for the guest's stdout and stderr.
	NewData func() (data any, stdout, stderr io.Writer)
	// OnPoolError reports a background refill that failed.
	OnPoolError func(error)
	// Logger, if set, hears about compiles that take a while (a cold
	// cache).
	Logger *slog.Logger
}

// Plugin is a loaded, validated module with its warm pool.
type Plugin struct {
	cfg    Config
	engine Engine
	module CompiledModule
	pool   *Pool
	pools  []*Pool
}

// Instance is one initialised guest checked out of a plugin's pool.
type Instance struct {
	inst   ModuleInstance
	plugin *Plugin
	events int
	broken bool
	// Data is the value Config.NewData made for this instance.
	Data any
}

// Load reads, validates and compiles the module at cfg.Path and fills its
// warm pool. Its first instance is initialised synchronously so a module
// reporting another ABI version is refused here. Errors name the file.
func Load(ctx context.Context, cfg Config) (*Plugin, error) {
	p, err := load(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", cfg.Path, err)
	}
	return p, nil
}

func load(ctx context.Context, cfg Config) (*Plugin, error) {
	if cfg.EventTimeout <= 0 {
		cfg.EventTimeout = 30 * time.Second
	}
	if cfg.OnPoolError == nil {
		cfg.OnPoolError = func(error) {}
	}
	wasm, err := os.ReadFile(cfg.Path)
	if err != nil {
		return nil, err
	}
	if err := checkMagic(wasm); err != nil {
		return nil, err
	}
	cacheDir := cfg.CacheDir
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return nil, err
		}
	}
	engine, err := NewEngine(ctx, cfg.Engine, EngineConfig{
		CacheDir:         cacheDir,
		MemoryLimitBytes: cfg.MemoryLimitBytes,
		HostModules:      cfg.HostModules,
	})
	if err != nil {
		return nil, err
	}
	module, err := compile(ctx, engine, cfg, wasm)
	if err == nil {
		err = validateModule(module, cfg.HostModules, append([]string{abi.ExportABIVersion}, cfg.RequiredExports...))
	}
	if err != nil {
		engine.Close(ctx)
		if !errors.Is(err, ErrInvalidModule) {
			err = fmt.Errorf("%w: %w", ErrInvalidModule, err)
		}
		return nil, err
	}
	p := &Plugin{cfg: cfg, engine: engine, module: module}
	first, err := p.newInstance(ctx)
	if err != nil {
		engine.Close(ctx)
		return nil, err
	}
	p.pool = newPool(cfg.Pool, p.newInstance, cfg.OnPoolError)
	p.pool.mu.Lock()
	p.pool.idle = append(p.pool.idle, first)
	p.pool.created++
	p.pool.mu.Unlock()
	return p, nil
}

// compile runs engine.Compile. Without compiled code in the cache (no
// record that this module was compiled by this engine into it), it tells
// cfg.Logger what is happening and, afterwards, what it cost.
func compile(ctx context.Context, engine Engine, cfg Config, wasm []byte) (CompiledModule, error) {
	if cfg.Logger == nil || cfg.CacheDir == "" {
		return engine.Compile(ctx, wasm)
	}
	engineName := cmp.Or(cfg.Engine, EngineWazero)
	sum := sha256.Sum256(wasm)
	record := filepath.Join(cfg.CacheDir, "compiled", engineName+"-"+hex.EncodeToString(sum[:16]))
	if _, err := os.Stat(record); err == nil {
		return engine.Compile(ctx, wasm)
	}
	file := filepath.Base(cfg.Path)
	cfg.Logger.Info(fmt.Sprintf("compiling %s (%.1f MB)…", file, float64(len(wasm))/1e6), "plugin", cfg.Name, "engine", engineName)
	start := time.Now()
	m, err := engine.Compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	cfg.Logger.Info("compiled "+file, "plugin", cfg.Name, "engine", engineName, "took", time.Since(start).Round(time.Millisecond), "cache", cfg.CacheDir)
	if err := os.MkdirAll(filepath.Dir(record), 0o755); err == nil {
		os.WriteFile(record, nil, 0o644)
	}
	return m, nil
}

// Name is the plugin's name.
func (p *Plugin) Name() string { return p.cfg.Name }

// HasExport reports whether the module exports function name.
func (p *Plugin) HasExport(name string) bool {
	return slices.Contains(p.module.Exports(), name)
}

// newInstance instantiates the module, runs its initialiser and checks the
// ABI version it reports.
func (p *Plugin) newInstance(ctx context.Context) (*Instance, error) {
	var data any
	var stdout, stderr io.Writer
	if p.cfg.NewData != nil {
		data, stdout, stderr = p.cfg.NewData()
	}
	mi, err := p.module.Instantiate(ctx, InstanceConfig{Data: data, Stdout: stdout, Stderr: stderr})
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	inst := &Instance{inst: mi, plugin: p, Data: data}
	if mi.HasExport(abi.ExportInitialize) {
		if _, err := inst.Call(ctx, abi.ExportInitialize); err != nil {
			inst.close()
			return nil, fmt.Errorf("initialise: %w", err)
		}
	}
	v, err := inst.Call(ctx, abi.ExportABIVersion)
	if err != nil {
		inst.close()
		return nil, fmt.Errorf("%s: %w", abi.ExportABIVersion, err)
	}
	if int32(v) != abi.Version {
		inst.close()
		return nil, fmt.Errorf("%w: module is built for ABI version %d, this host implements version %d",
			ErrInvalidModule, int32(v), abi.Version)
	}
	inst.events = 0
	return inst, nil
}

// Get checks out an initialised instance from the plugin's main pool,
// waiting while the pool is at its cap until ctx ends.
func (p *Plugin) Get(ctx context.Context) (*Instance, error) { return p.pool.Get(ctx) }

// Put returns an instance to the main pool; one that broke or is worn out is
// replaced.
func (p *Plugin) Put(inst *Instance) { p.pool.Put(inst) }

// Stats reports the main pool's counters.
func (p *Plugin) Stats() PoolStats { return p.pool.Stats() }

// NewPool makes another pool of the same module, e.g. for instances that
// are dedicated to one Durable Object each. Plugin.Close closes it.
func (p *Plugin) NewPool(cfg PoolConfig) *Pool {
	pool := newPool(cfg, p.newInstance, p.cfg.OnPoolError)
	p.pools = append(p.pools, pool)
	return pool
}

// Close closes the pools and the engine.
func (p *Plugin) Close(ctx context.Context) error {
	p.pool.Close()
	for _, pool := range p.pools {
		pool.Close()
	}
	return p.engine.Close(ctx)
}

// Call runs an export under the plugin's per-event deadline. After an error
// the instance is marked broken and Put discards it.
func (i *Instance) Call(ctx context.Context, name string, args ...uint64) (uint64, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, i.plugin.cfg.EventTimeout,
		fmt.Errorf("%s did not return within %s", name, i.plugin.cfg.EventTimeout))
	defer cancel()
	i.events++
	r, err := i.inst.Call(ctx, name, args...)
	if err != nil {
		i.broken = true
	}
	return r, err
}

// HasExport reports whether the instance's module exports name.
func (i *Instance) HasExport(name string) bool { return i.inst.HasExport(name) }

// Memory is the instance's linear memory.
func (i *Instance) Memory() Memory { return i.inst.Memory() }

// Broken reports whether a call failed, so the instance must not be reused.
func (i *Instance) Broken() bool { return i.broken }

// MarkBroken makes Put discard the instance, e.g. after its host state
// became inconsistent.
func (i *Instance) MarkBroken() { i.broken = true }

func (i *Instance) close() { i.inst.Close(context.Background()) }
