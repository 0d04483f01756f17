package plugins

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/abi"
)

// DefaultCPUSlice is the CPU slice of a Config that sets none.
const DefaultCPUSlice = 5 * time.Second

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
	// CPUSlice is how long an instance may compute without calling the
	// host before it is stopped; zero means DefaultCPUSlice.
	CPUSlice time.Duration
	// HostModules are the host functions by import module name.
	HostModules map[string][]HostFunc
	// Interpret runs the module on wazero's interpreter, whatever Engine
	// says: it loads about three times faster and runs several times
	// slower (wharf dev serves a new build this way while it compiles).
	Interpret bool
	// CacheLimitBytes is the size CacheDir is kept under, least recently
	// used code removed first; zero means DefaultCacheLimitBytes.
	CacheLimitBytes int64
	// Logger, if set, hears about compiles that take a while (a cold
	// cache) and about a cache that cannot be written.
	Logger *slog.Logger
	// CompileApart, if set, is called when CacheDir lacks the module's
	// code, to compile it there in another process (one that runs
	// Precompile), from which Load then maps it. The compiler's memory
	// leaves with that process, and ctx's end stops it at once, where no
	// engine stops a compile half-way. If it fails, the module compiles in
	// this process.
	CompileApart func(ctx context.Context, cfg Config) error

	// cacheUnwritable is set, by the engine openEngine made, to why
	// compiled code could not be stored in CacheDir.
	cacheUnwritable *atomic.Pointer[error]
}

// Plugin is a loaded, validated and compiled module.
type Plugin struct {
	cfg    Config
	engine Engine
	module CompiledModule
}

// Load reads, validates and compiles the module at cfg.Path. Errors name the
// file.
func Load(ctx context.Context, cfg Config) (*Plugin, error) {
	p, err := load(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", cfg.Path, err)
	}
	return p, nil
}

func load(ctx context.Context, cfg Config) (*Plugin, error) {
	engine, wasm, err := openEngine(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	module, err := compile(ctx, engine, cfg, wasm)
	if err == nil {
		err = validateModule(module, cfg.HostModules, []string{abi.ExportStart})
	} else if b, readErr := wasm.Bytes(); readErr == nil {
		if tooSmall := memoryTooSmall(b, cfg.MemoryLimitBytes); tooSmall != nil {
			engine.Close(ctx)
			return nil, tooSmall
		}
	}
	if err != nil {
		engine.Close(ctx)
		if !errors.Is(err, ErrInvalidModule) {
			err = fmt.Errorf("%w: %w", ErrInvalidModule, err)
		}
		return nil, err
	}
	return &Plugin{cfg: cfg, engine: engine, module: module}, nil
}

// Precompile compiles the module at cfg.Path into cfg.CacheDir, where a
// Load with the same Engine and MemoryLimitBytes finds it, without
// instantiating it (cfg.HostModules are not needed). A process can run it
// apart, to be killed when its result is no longer wanted: an engine
// cannot stop a compile half-way. A cache that cannot be written is an
// error (a Load would compile the module all over again), found before
// the compile when it can be.
func Precompile(ctx context.Context, cfg Config) error {
	if cfg.CacheDir == "" || cfg.Interpret {
		return errors.New("precompiling needs a cache directory and a compiling engine")
	}
	cfg.CompileApart = nil // this is the process apart
	engine, wasm, err := openEngine(ctx, &cfg)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", cfg.Path, err)
	}
	defer engine.Close(ctx)
	// A read-only cache (a filesystem mounted so, say) is found only when
	// the engine stores the code it compiled: Load would then compile it
	// all over again.
	if err := unix.Access(cfg.CacheDir, unix.W_OK); err != nil {
		why := error(&os.PathError{Op: "access", Path: cfg.CacheDir, Err: err})
		cfg.cacheUnwritable.CompareAndSwap(nil, &why)
	}
	unwritable := func() error {
		if why := cfg.cacheUnwritable.Load(); why != nil {
			return fmt.Errorf("plugin %s: the compile cache cannot be written: %w", cfg.Path, *why)
		}
		return nil
	}
	if err := unwritable(); err != nil {
		return err
	}
	if _, err := compile(ctx, engine, cfg, wasm); err != nil {
		return fmt.Errorf("plugin %s: %w", cfg.Path, &RefusedModuleError{Reason: err})
	}
	return unwritable()
}

// openEngine reads the module at cfg.Path and makes the engine that
// compiles it, filling in cfg's defaults.
func openEngine(ctx context.Context, cfg *Config) (Engine, *ModuleFile, error) {
	if cfg.CPUSlice <= 0 {
		cfg.CPUSlice = DefaultCPUSlice
	}
	logger := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.cacheUnwritable = new(atomic.Pointer[error])
	unwritable := func(err error) {
		cfg.cacheUnwritable.CompareAndSwap(nil, &err)
		logger.Warn("the compile cache cannot be written: this start compiles without storing the code",
			"plugin", cfg.Name, "cache", cfg.CacheDir, "err", err)
	}
	damaged := func(err error) {
		logger.Warn("compiled code in the cache is damaged (it fails its checksum): it is not run, and the module compiles again",
			"plugin", cfg.Name, "err", err)
	}
	unloadable := func(err error) {
		msg := "compiled code cannot be loaded from the cache: the module compiles at every start"
		if mountedNoexec(cfg.CacheDir) {
			msg += " (the cache's filesystem is mounted noexec: give wharf a --data-dir on another)"
		}
		logger.Warn(msg, "plugin", cfg.Name, "cache", cfg.CacheDir, "err", err)
	}
	cacheDir := cfg.CacheDir
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			if !cfg.Interpret { // which caches no code
				unwritable(err)
			}
			cacheDir, cfg.CacheDir = "", ""
		}
		sweepCache(cacheDir)
	}
	wasm, err := OpenModule(cfg.Path, cacheDir)
	if err != nil {
		return nil, nil, err
	}
	hostModules := map[string][]HostFunc{}
	for name, funcs := range cfg.HostModules {
		hostModules[name] = trackAll(funcs)
	}
	name := cfg.Engine
	if cfg.Interpret {
		name = EngineWazero
	}
	engine, err := NewEngine(ctx, name, EngineConfig{
		CacheDir:         cacheDir,
		MemoryLimitBytes: cfg.MemoryLimitBytes,
		HostModules:      hostModules,
		Interpret:        cfg.Interpret,
		CacheUnwritable:  unwritable,
		CacheDamaged:     damaged,
		CacheUnloadable:  unloadable,
	})
	if err != nil {
		return nil, nil, err
	}
	return engine, wasm, nil
}

// mountedNoexec reports whether dir's filesystem forbids executing code
// mapped from its files.
func mountedNoexec(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_NOEXEC != 0
}

// compile runs engine.Compile. Without compiled code in the cache (no
// record of the files that held this module's code for this engine, or
// one of them gone), it tells cfg.Logger, if set, what is happening and,
// afterwards, what it cost. It then records the files holding the code
// (those the engine opened in the cache, and those it wrote), marks them
// used and trims the cache to cfg.CacheLimitBytes, least recently used
// code first.
func compile(ctx context.Context, engine Engine, cfg Config, module *ModuleFile) (CompiledModule, error) {
	if cfg.CacheDir == "" || cfg.Interpret { // the interpreter compiles nothing
		return engine.Compile(ctx, module)
	}
	engineName := cmp.Or(cfg.Engine, EngineWazero)
	record := filepath.Join(cfg.CacheDir, recordsDir, engineName+"-"+codeKey(engineName, module.Digest))
	listed, cached := readRecord(cfg.CacheDir, record)
	before := codeFiles(cfg.CacheDir)
	logger := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	file := filepath.Base(cfg.Path)
	if !cached {
		wasm, err := module.Bytes()
		if err != nil {
			return nil, err
		}
		logger.Info(fmt.Sprintf("compiling %s (%.1f MB)…", file, float64(len(wasm))/1e6), "plugin", cfg.Name, "engine", engineName)
	}
	start := time.Now()
	var apartErr error
	// wasmtime maps its code from the cache file, which a filesystem
	// mounted noexec forbids: this process would compile it all over again.
	if !cached && cfg.CompileApart != nil && (engineName != EngineWasmtime || !mountedNoexec(cfg.CacheDir)) {
		if apartErr = cfg.CompileApart(ctx, cfg); ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if refused := (*RefusedModuleError)(nil); errors.As(apartErr, &refused) {
			return nil, refused // compiling it here would be refused too
		}
	}
	opened := watchOpens(cfg.CacheDir)
	m, err := engine.Compile(ctx, module)
	read, watched := opened()
	if err != nil {
		return nil, err
	}
	if apartErr != nil {
		logger.Info("compiled in this process, as compiling in a process of its own failed", "plugin", cfg.Name, "engine", engineName, "err", apartErr)
	}
	if watched { // the files it read and wrote, not those of a load before
		listed = read
	}
	unwritable := cfg.cacheUnwritable.Load() != nil
	if !cached {
		took := time.Since(start).Round(time.Millisecond)
		if unwritable {
			logger.Info("compiled "+file, "plugin", cfg.Name, "engine", engineName, "took", took)
		} else {
			logger.Info("compiled "+file, "plugin", cfg.Name, "engine", engineName, "took", took, "cache", cfg.CacheDir)
		}
	}
	switch why := cfg.cacheUnwritable.Load(); {
	case why == nil:
		noteUse(cfg.CacheDir, record, listed, before, codeFiles(cfg.CacheDir), cmp.Or(cfg.CacheLimitBytes, DefaultCacheLimitBytes))
	case errors.Is(*why, syscall.ENOSPC):
		if freed := makeRoom(cfg.CacheDir); freed > 0 {
			logger.Info(fmt.Sprintf("the disk is full: removed the least recently used half of the compiled code (%.1f MB) so that the next start can store its own", float64(freed)/1e6),
				"plugin", cfg.Name, "cache", cfg.CacheDir)
		}
	}
	return m, nil
}

// Name is the plugin's name.
func (p *Plugin) Name() string { return p.cfg.Name }

// Close closes the engine; instances must be stopped first.
func (p *Plugin) Close(ctx context.Context) error { return p.engine.Close(ctx) }
