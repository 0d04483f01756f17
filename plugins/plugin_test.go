package plugins

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bytecodealliance/wasmtime-go/v39"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestMain removes what the tests built (testutil.Run).
func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// loadSpec writes a hand-assembled module and loads it the way the host
// does, with one wharf_v2 import known to the host.
func loadSpec(t *testing.T, engine, name string, wasm []byte) (*Plugin, string, error) {
	t.Helper()
	path := testutil.WriteFile(t, name, wasm)
	p, err := Load(context.Background(), Config{
		Name: "t", Path: path, Engine: engine, CacheDir: filepath.Join(t.TempDir(), "cache"),
		HostModules: map[string][]HostFunc{abi.ImportModule: {
			{Name: "ping", Results: []ValueType{I32}, Fn: func(_ context.Context, _ Caller, s []uint64) { s[0] = 0 }},
			{Name: abi.ImportClose, Params: []ValueType{I32}, Results: []ValueType{I32}, Fn: func(_ context.Context, _ Caller, s []uint64) { s[0] = 0 }},
		}},
	})
	if p != nil {
		t.Cleanup(func() { p.Close(context.Background()) })
	}
	return p, path, err
}

var goodExports = map[string]int32{abi.ExportStart: 0}

// TestLoadValidModule loads a command and runs it: its main returns at once,
// which ends the instance with ErrMainReturned.
func TestLoadValidModule(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		p, _, err := loadSpec(t, engine, "ok.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{abi.ImportModule, "ping"}},
			Exports: goodExports,
		}.Wasm())
		require.NoError(t, err)
		inst, err := p.Launch(context.Background(), nil, nil, nil)
		require.NoError(t, err)
		<-inst.Done()
		assert.ErrorIs(t, inst.Err(), ErrMainReturned)
	})
}

func TestUnknownEngineIsRefused(t *testing.T) {
	_, _, err := loadSpec(t, "v8", "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
	assert.ErrorContains(t, err, `unknown engine "v8" (want wazero or wasmtime)`)
}

func TestLoadRefusesBadModules(t *testing.T) {
	cases := []struct {
		name string
		wasm []byte
		want string
	}{
		{"text.wasm", []byte("this is not wasm\n"), "not a WebAssembly module"},
		{"truncated.wasm", []byte{0x00, 'a', 's', 'm', 0x01}, "invalid plugin module"},
		{"reactor.wasm", testutil.ModuleSpec{Exports: map[string]int32{"_initialize": 0}}.Wasm(),
			"missing required export _start (a plugin is a WASI command: build it with GOOS=wasip1 GOARCH=wasm go build, without -buildmode=c-shared, and make its main call sdk.Serve())"},
		{"unknownimport.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{abi.ImportModule, "teleport"}}, Exports: goodExports}.Wasm(),
			"unknown import wharf_v2.teleport"},
		{"badsignature.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{abi.ImportModule, abi.ImportClose}}, Exports: goodExports}.Wasm(),
			"import wharf_v2.close has signature () -> (i32), the host's is (i32) -> (i32)"},
		{"unknownmodule.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{"env", "abort"}}, Exports: goodExports}.Wasm(),
			`imports env.abort from unknown module "env"`},
		{"v1.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{abi.ImportModuleV1, "log"}}, Exports: map[string]int32{"wharf_abi_version": 1}}.Wasm(),
			"the module was built against wharf ABI version 1 (it imports wharf_v1.log); this host runs version 2: rebuild it with this wharf's SDK (wharf build)"},
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				_, path, err := loadSpec(t, engine, c.name, c.wasm)
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalidModule)
				assert.Contains(t, err.Error(), c.want)
				assert.Contains(t, err.Error(), path, "the error names the file")
				assert.NotContains(t, err.Error(), "backtrace", "the engine's own stack is no reason")
			})
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(context.Background(), Config{Path: "/nonexistent/x.wasm"})
		assert.ErrorContains(t, err, "/nonexistent/x.wasm")
	})
}

func TestCompiledCodeIsCachedOnDisk(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		path := testutil.WriteFile(t, "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
		cfg := Config{Name: "t", Path: path, Engine: engine, CacheDir: dir}
		load := func() {
			p, err := Load(context.Background(), cfg)
			require.NoError(t, err)
			p.Close(context.Background())
		}
		load()
		first, err := filepath.Glob(filepath.Join(dir, "*", "*"))
		require.NoError(t, err)
		assert.NotEmpty(t, first, "compiled code was written to the cache dir")
		load() // from the cache
		again, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		assert.Equal(t, first, again, "a cached module is not compiled again")

		rebuilt := testutil.ModuleSpec{Exports: map[string]int32{abi.ExportStart: 7}}.Wasm()
		require.NoError(t, os.WriteFile(path, rebuilt, 0o644))
		load()
		after, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		assert.Greater(t, len(after), len(first), "a rebuilt module is compiled anew, never run from stale code")
	})
}

// TestWasmtimeServesFreshlyCompiledCodeFromItsCacheFile: code wasmtime
// has just compiled runs from the file it was cached in, as code found in
// the cache does, not from a copy in the heap (a cold start of hello held
// 300 MB, a warm one 92 MB).
func TestWasmtimeServesFreshlyCompiledCodeFromItsCacheFile(t *testing.T) {
	dir := t.TempDir()
	path := testutil.WriteFile(t, "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
	p, err := Load(context.Background(), Config{Name: "t", Path: path, Engine: EngineWasmtime, CacheDir: dir})
	require.NoError(t, err)
	defer p.Close(context.Background())
	code, err := filepath.Glob(filepath.Join(dir, "wasmtime", "*.cwasm"))
	require.NoError(t, err)
	require.Len(t, code, 1, "compiled and cached")
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(maps), code[0]), "%s is not mapped", code[0])
}

func TestOpenModuleRehashesAFileWrittenSinceItsDigest(t *testing.T) {
	cache := t.TempDir()
	original := testutil.ModuleSpec{Exports: goodExports}.Wasm()
	path := testutil.WriteFile(t, "m.wasm", original)
	first, err := OpenModule(path, cache)
	require.NoError(t, err)
	assert.Equal(t, ModuleBytes(original).Digest, first.Digest)
	again, err := OpenModule(path, cache)
	require.NoError(t, err)
	assert.Equal(t, first.Digest, again.Digest)
	assert.Nil(t, again.wasm, "an unchanged file's digest comes from the index, without reading it")

	// Same size, modification time put back: the change time still differs.
	st, err := os.Stat(path)
	require.NoError(t, err)
	changed := bytes.Clone(original)
	changed[len(changed)-1] ^= 0xff
	require.NoError(t, os.WriteFile(path, changed, 0o644))
	require.NoError(t, os.Chtimes(path, st.ModTime(), st.ModTime()))
	rewritten, err := OpenModule(path, cache)
	require.NoError(t, err)
	assert.Equal(t, ModuleBytes(changed).Digest, rewritten.Digest)

	_, err = OpenModule(testutil.WriteFile(t, "x.wasm", []byte("not wasm")), cache)
	assert.ErrorContains(t, err, "not a WebAssembly module")
}

// precompiled precompiles a small module for engine into a new cache and
// returns its config and the cache's entries.
func precompiled(t *testing.T, engine string) (Config, []string) {
	t.Helper()
	dir := t.TempDir()
	path := testutil.WriteFile(t, "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
	cfg := Config{Name: "t", Path: path, Engine: engine, CacheDir: dir}
	require.NoError(t, Precompile(context.Background(), cfg))
	entries, err := filepath.Glob(filepath.Join(dir, "*", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	return cfg, entries
}

// TestPrecompileFillsTheCache: a module Precompile compiled (as wharf dev's
// compile process does) loads from the cache, without compiling again; a
// module that is not wasm is refused with its file named.
func TestPrecompileFillsTheCache(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		cfg, compiled := precompiled(t, engine)
		dir, path := cfg.CacheDir, cfg.Path

		var log bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
		p, err := Load(context.Background(), cfg)
		require.NoError(t, err)
		p.Close(context.Background())
		assert.NotContains(t, log.String(), "compiling", "Load found the precompiled code")
		again, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		assert.Equal(t, compiled, again)

		bad := testutil.WriteFile(t, "text.wasm", []byte("this is not wasm\n"))
		err = Precompile(context.Background(), Config{Path: bad, Engine: engine, CacheDir: dir})
		assert.ErrorIs(t, err, ErrInvalidModule)
		assert.ErrorContains(t, err, bad)
		assert.ErrorContains(t, Precompile(context.Background(), Config{Path: path, Engine: engine}), "needs a cache directory")
	})
}

// TestLoadCompilesApart: Load on a cold cache hands the compile to
// CompileApart (as wharf serve's compile process) and maps the code it
// stored; a warm cache needs no compile. If CompileApart fails, the module
// compiles in this process and the failure is told, unless the engine
// refused the module; if the load's context ends meanwhile, Load returns
// its cause at once.
func TestLoadCompilesApart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		path := testutil.WriteFile(t, "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
		load := func(ctx context.Context, apart func(context.Context, Config) error) (string, error) {
			var log bytes.Buffer
			cfg := Config{Name: "t", Path: path, Engine: engine, CacheDir: t.TempDir(), CompileApart: apart,
				Logger: slog.New(slog.NewTextHandler(&log, nil))}
			p, err := Load(ctx, cfg)
			if err == nil {
				p.Close(ctx)
				p, err = Load(ctx, cfg) // warm
			}
			if err == nil {
				p.Close(ctx)
			}
			return log.String(), err
		}

		calls := 0
		logs, err := load(context.Background(), func(ctx context.Context, cfg Config) error {
			calls++
			return Precompile(ctx, cfg)
		})
		require.NoError(t, err)
		assert.Equal(t, 1, calls, "called on the cold cache only")
		assert.NotContains(t, logs, "compiled in this process")

		logs, err = load(context.Background(), func(context.Context, Config) error { return errors.New("no such binary") })
		require.NoError(t, err)
		assert.Contains(t, logs, `msg="compiled in this process, as compiling in a process of its own failed" plugin=t engine=`+engine+` err="no such binary"`)

		// A module the process apart found the engine refuses is not
		// compiled again (this one would compile).
		_, err = load(context.Background(), func(context.Context, Config) error {
			return &RefusedModuleError{Reason: errors.New("bad function body")}
		})
		assert.ErrorIs(t, err, ErrInvalidModule)
		assert.EqualError(t, err, "plugin "+path+": invalid plugin module: bad function body")

		ctx, cancel := context.WithCancelCause(context.Background())
		stopped := errors.New("stopped")
		_, err = load(ctx, func(ctx context.Context, _ Config) error {
			cancel(stopped)
			return ctx.Err()
		})
		assert.ErrorIs(t, err, stopped)
	})
}

// TestLoadSweepsKilledWritersTemps: temporary files a compile killed
// mid-write left in the cache (wharf dev kills one at each save) go at the
// next load once they are a minute old; younger ones, maybe still being
// written, and the cache's entries stay.
func TestLoadSweepsKilledWritersTemps(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		cfg, entries := precompiled(t, engine)
		dir := cfg.CacheDir
		for _, e := range entries {
			old := time.Now().Add(-time.Hour)
			require.NoError(t, os.Chtimes(e, old, old))
		}

		wazeroDir, _ := filepath.Glob(filepath.Join(dir, "wazero-*"))
		stale := []string{filepath.Join(dir, "wasmtime", ".writing-123"), filepath.Join(dir, "instrumented", ".writing-456")}
		fresh := []string{filepath.Join(dir, "wasmtime", ".writing-789")}
		if len(wazeroDir) == 1 {
			stale = append(stale, filepath.Join(wazeroDir[0], "abc.123.tmp"))
			fresh = append(fresh, filepath.Join(wazeroDir[0], "abc.456.tmp"))
		}
		for _, f := range append(slices.Clone(stale), fresh...) {
			require.NoError(t, os.MkdirAll(filepath.Dir(f), 0o755))
			require.NoError(t, os.WriteFile(f, []byte("half a module"), 0o600))
		}
		for _, f := range stale {
			old := time.Now().Add(-2 * time.Minute)
			require.NoError(t, os.Chtimes(f, old, old))
		}

		p, err := Load(context.Background(), cfg)
		require.NoError(t, err)
		p.Close(context.Background())
		for _, f := range stale {
			assert.NoFileExists(t, f)
		}
		for _, f := range append(fresh, entries...) {
			assert.FileExists(t, f)
		}
	})
}

// TestLoadWithAnUnwritableCache: a compile cache on a full disk, or one
// that cannot be created, costs a warning, not the start: the module
// loads, compiled without storing its code, and runs. Precompile, whose
// purpose is the cache, fails.
func TestLoadWithAnUnwritableCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs: run it as root")
	}
	full := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", full, "tmpfs", 0, "size=64k"))
	t.Cleanup(func() { unix.Unmount(full, unix.MNT_DETACH) })
	filler, err := os.Create(filepath.Join(full, "filler"))
	require.NoError(t, err)
	_, err = filler.Write(make([]byte, 1<<20))
	require.ErrorIs(t, err, unix.ENOSPC, "the tmpfs is full")
	filler.Close()
	notADir := testutil.WriteFile(t, "file", []byte("a file, not a directory\n"))

	wasm, err := wasmtime.Wat2Wasm(`(module (memory (export "memory") 1)
	  (func (export "_start") (loop $l (br_if $l (i32.const 0)))))`)
	require.NoError(t, err)
	path := testutil.WriteFile(t, "start.wasm", wasm)
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, cache := range []struct{ dir, err string }{
			{filepath.Join(full, "cache"), "no space left on device"},
			{filepath.Join(notADir, "cache"), "not a directory"},
		} {
			var log bytes.Buffer
			p, err := Load(context.Background(), Config{Name: "t", Path: path, Engine: engine, CacheDir: cache.dir,
				Logger: slog.New(slog.NewTextHandler(&log, nil))})
			require.NoError(t, err, cache.dir)
			assert.Contains(t, log.String(), `level=WARN msg="the compile cache cannot be written: this start compiles without storing the code"`)
			assert.Contains(t, log.String(), cache.err)
			assert.NotRegexp(t, `msg="compiled start.wasm".* cache=`, log.String(), "the compile is not said to be cached")
			assert.NoFileExists(t, filepath.Join(cache.dir, "compiled", engine+"-"+digestOf(wasm)), "nor recorded as such")
			inst, err := p.module.Instantiate(context.Background(), InstanceConfig{})
			require.NoError(t, err)
			_, err = inst.Call(context.Background(), abi.ExportStart)
			assert.NoError(t, err, "the module runs")
			inst.Close(context.Background())
			p.Close(context.Background())

			// The interpreter, which wharf dev serves a new build on at
			// once, caches no code: no warning.
			log.Reset()
			p, err = Load(context.Background(), Config{Name: "t", Path: path, Engine: engine, CacheDir: cache.dir, Interpret: true,
				Logger: slog.New(slog.NewTextHandler(&log, nil))})
			require.NoError(t, err)
			p.Close(context.Background())
			assert.NotContains(t, log.String(), "level=WARN", "interpreted")

			// wharf dev's compile process: storing the code is its
			// purpose, so it fails, saying why.
			err = Precompile(context.Background(), Config{Name: "t", Path: path, Engine: engine, CacheDir: cache.dir})
			assert.ErrorContains(t, err, "plugin "+path+": the compile cache cannot be written: ")
			assert.ErrorContains(t, err, cache.err)
		}
	})
}

// TestFullDiskMakesRoomInTheCache: when storing a module's code fails for
// lack of space, the least recently used half of the cache's code goes, so
// that the next start stores it; a cache that had filled the disk stayed
// full, and every start compiled again.
func TestFullDiskMakesRoomInTheCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs: run it as root")
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		full := t.TempDir()
		require.NoError(t, unix.Mount("tmpfs", full, "tmpfs", 0, "size=4m"))
		t.Cleanup(func() { unix.Unmount(full, unix.MNT_DETACH) })
		assert.NotContains(t, loadNamed(t, engine, full, "a", 0), "level=WARN", "a fits")
		filler, err := os.Create(filepath.Join(full, "filler")) // the disk fills up
		require.NoError(t, err)
		for err == nil {
			_, err = filler.Write(make([]byte, 4096))
		}
		require.ErrorIs(t, err, unix.ENOSPC)
		info, err := filler.Stat()
		require.NoError(t, err)
		require.NoError(t, filler.Truncate(info.Size()-4096)) // a page for b's record, once there is room for its code
		filler.Close()

		log := loadNamed(t, engine, full, "b", 0)
		assert.Contains(t, log, "no space left on device", "b does not")
		assert.Contains(t, log, "msg=\"the disk is full: removed the least recently used half of the compiled code (")
		assert.NotContains(t, loadNamed(t, engine, full, "b", 0), "level=WARN", "b is stored at its next start")
		assert.NotContains(t, loadNamed(t, engine, full, "b", 0), "compiling", "and loaded from the cache")
	})
}

// loadNamed loads a small module exporting name, from name.wasm beside
// cache dir (written once, so that its digest is remembered once), with
// the cache kept under limit (0: the default), and returns its log.
func loadNamed(t *testing.T, engine, dir, name string, limit int64) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(dir), name+".wasm")
	if _, err := os.Stat(path); err != nil {
		wasm, err := wasmtime.Wat2Wasm(`(module (memory (export "memory") 1)
		  (func (export "_start")) (func (export "` + name + `") (result i32) i32.const 7))`)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, wasm, 0o644))
	}
	var log bytes.Buffer
	p, err := Load(context.Background(), Config{Name: "t", Path: path, Engine: engine,
		CacheDir: dir, CacheLimitBytes: limit, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	require.NoError(t, err)
	p.Close(context.Background())
	return log.String()
}

// TestCacheKeptUnderItsLimit: the compile cache stays under
// CacheLimitBytes (wharf dev adds a build's code at every save) by
// removing the least recently used code: a module loaded again is kept, one
// left alone goes and compiles again, saying so.
func TestCacheKeptUnderItsLimit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		var log string
		load := func(name string, limit int64) {
			t.Helper()
			log = loadNamed(t, engine, dir, name, limit)
		}
		size := func() int64 { return codeSize(codeFiles(dir)) }
		load("a", 1<<30)
		one := size()
		require.Positive(t, one)
		limit := one*5/2 + one/4 // room for two modules' code, not three
		load("b", limit)
		time.Sleep(20 * time.Millisecond) // mtimes order the uses
		load("a", limit)
		assert.NotContains(t, log, "compiling", "a is in the cache")
		time.Sleep(20 * time.Millisecond)
		load("c", limit)
		assert.LessOrEqual(t, size(), limit)
		records, _ := os.ReadDir(filepath.Join(dir, recordsDir))
		assert.Len(t, records, 2, "b's record went with its code")

		load("a", limit)
		assert.NotContains(t, log, "compiling", "a was used after b, so b's code went")
		load("b", limit)
		assert.Contains(t, log, "compiling b.wasm", "b compiles again, and says so")
	})
}

// TestCacheRecordFindsCodeItDidNotWrite: a module whose record is empty
// (an older wharf wrote empty records) or gone (deleted, or its writer
// killed after the engine stored the code) while its code is in the cache
// still has its code kept as it is used. Its record was rewritten empty,
// which said "cached" without naming a file: its code, unlisted, went
// first at a trim however recently it was loaded, and then compiled again
// without 'compiling…'.
func TestCacheRecordFindsCodeItDidNotWrite(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, damage := range []string{"emptied", "removed"} {
			t.Run(damage, func(t *testing.T) {
				dir := t.TempDir()
				var log string
				load := func(name string, limit int64) {
					t.Helper()
					log = loadNamed(t, engine, dir, name, limit)
				}
				load("a", 1<<30)
				one := codeSize(codeFiles(dir))
				records, err := filepath.Glob(filepath.Join(dir, recordsDir, "*"))
				require.NoError(t, err)
				require.Len(t, records, 1)
				recordOfA := records[0]
				if damage == "emptied" {
					require.NoError(t, os.WriteFile(recordOfA, nil, 0o644))
				} else {
					require.NoError(t, os.Remove(recordOfA))
				}

				load("a", 1<<30)
				assert.Contains(t, log, "compiling a.wasm", "without a record naming its code, a load cannot tell it is cached")
				limit := one*5/2 + one/4 // room for two modules' code, not three
				time.Sleep(20 * time.Millisecond)
				load("b", limit)
				time.Sleep(20 * time.Millisecond)
				load("a", limit)
				assert.NotContains(t, log, "compiling")
				time.Sleep(20 * time.Millisecond)
				load("c", limit)

				data, err := os.ReadFile(recordOfA)
				require.NoError(t, err)
				files := strings.Fields(string(data))
				assert.NotEmpty(t, files, "a's record names its code")
				code := codeFiles(dir)
				for _, f := range files {
					assert.Contains(t, code, f, "a was used after b, so its code stays")
				}
				load("b", limit)
				assert.Contains(t, log, "compiling b.wasm", "b, used least recently, went")
			})
		}
	})
}

// TestCacheRecordOfANewBuildNamesTheCodeItReads: the record of a module
// loaded by a new build of wharf names the code that build reads, the
// previous build's wazero code included (wazero's key did not change), and
// not the previous build's instrumented module, read no more. Naming only
// what a load wrote, it named the new instrumented module alone: the code
// went with the previous build's record when that aged, and the module
// then compiled again without 'compiling…'.
func TestCacheRecordOfANewBuildNamesTheCodeItReads(t *testing.T) {
	exe := executableIdentity
	t.Cleanup(func() { executableIdentity = exe })
	dir := t.TempDir()
	for _, build := range []string{"build1", "build2"} {
		executableIdentity = func() (string, error) { return build, nil }
		loadNamed(t, EngineWazero, dir, "a", 0)
	}
	code, err := filepath.Glob(filepath.Join(dir, "wazero-*", "*"))
	require.NoError(t, err)
	require.Len(t, code, 1, "build2's wazero found build1's code")
	records, err := filepath.Glob(filepath.Join(dir, recordsDir, "*-build2"))
	require.NoError(t, err)
	require.Len(t, records, 1)
	data, err := os.ReadFile(records[0])
	require.NoError(t, err)
	assert.Contains(t, string(data), "-build2.wasm")
	assert.Contains(t, string(data), filepath.Base(code[0]), "build2 reads that code")
	assert.NotContains(t, string(data), "-build1.wasm", "build1's instrumented module is read no more")
}

// TestTrimKeepsAFileALaterRecordNames: a file two records name (loads of
// two modules at once in processes sharing the cache each see the other's
// opens) goes with the record used later, not with the older one, whose
// trim took the code of a module in use.
func TestTrimKeepsAFileALaterRecordNames(t *testing.T) {
	dir := t.TempDir()
	write := func(path string, size int, used time.Time) {
		t.Helper()
		path = filepath.Join(dir, path)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte{'x'}, size), 0o644))
		require.NoError(t, os.Chtimes(path, used, used))
	}
	now := time.Now()
	write("wasmtime/old.cwasm", 100, now.Add(-time.Hour))
	write("wasmtime/new.cwasm", 100, now)
	write(filepath.Join(recordsDir, "wasmtime-old"), 0, now.Add(-time.Hour))
	write(filepath.Join(recordsDir, "wasmtime-new"), 0, now)
	require.NoError(t, os.WriteFile(filepath.Join(dir, recordsDir, "wasmtime-old"), []byte("wasmtime/old.cwasm\nwasmtime/new.cwasm\n"), 0o644))
	require.NoError(t, os.Chtimes(filepath.Join(dir, recordsDir, "wasmtime-old"), now.Add(-time.Hour), now.Add(-time.Hour)))
	require.NoError(t, os.WriteFile(filepath.Join(dir, recordsDir, "wasmtime-new"), []byte("wasmtime/new.cwasm\n"), 0o644))

	trimCache(dir, 150)
	assert.NoFileExists(t, filepath.Join(dir, "wasmtime/old.cwasm"))
	assert.NoFileExists(t, filepath.Join(dir, recordsDir, "wasmtime-old"))
	assert.FileExists(t, filepath.Join(dir, "wasmtime/new.cwasm"), "the later record names it")
	assert.FileExists(t, filepath.Join(dir, recordsDir, "wasmtime-new"))
}

// TestNewBuildOfWharfAnnouncesItsCompile: a new build of wharf that brings
// another wazero (which keeps its code apart, by version) compiles a module
// again, and says so. The module's record, naming the old build's code
// (all of it still there), said it was cached: half a minute's compile of
// examples/hello without 'compiling…'.
func TestNewBuildOfWharfAnnouncesItsCompile(t *testing.T) {
	exe := executableIdentity
	t.Cleanup(func() { executableIdentity = exe })
	dir := t.TempDir()
	var log string
	load := func(build string) {
		t.Helper()
		executableIdentity = func() (string, error) { return build, nil }
		log = loadNamed(t, EngineWazero, dir, "a", 0)
	}
	load("build1")
	load("build1")
	assert.NotContains(t, log, "compiling", "cached")

	// build1's wazero was another version: its code is in a directory of
	// its own, which build2's wazero does not read.
	code, err := filepath.Glob(filepath.Join(dir, "wazero-*"))
	require.NoError(t, err)
	require.Len(t, code, 1)
	older := filepath.Join(dir, "wazero-v0.0.1-older")
	require.NoError(t, os.Rename(code[0], older))
	records, err := filepath.Glob(filepath.Join(dir, recordsDir, "*"))
	require.NoError(t, err)
	for _, r := range records {
		data, err := os.ReadFile(r)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(r, bytes.ReplaceAll(data, []byte(filepath.Base(code[0])), []byte(filepath.Base(older))), 0o644))
	}
	load("build2")
	assert.Contains(t, log, "compiling a.wasm", "build2 compiles it")
	load("build2")
	assert.NotContains(t, log, "compiling", "cached")
}

// TestMemoryLimitBelowTheModulesMinimum: a module whose memory starts
// larger than the limit fails with the same error on both engines (wazero
// refuses it as it compiles, wasmtime as it instantiates), naming the
// setting to raise; a module that fits starts.
func TestMemoryLimitBelowTheModulesMinimum(t *testing.T) {
	wasm, err := wasmtime.Wat2Wasm(`(module (memory (export "memory") 120 200)
	  (func (export "_start")))`)
	require.NoError(t, err)
	path := testutil.WriteFile(t, "big.wasm", wasm)
	launch := func(engine string, limit uint64) error {
		p, err := Load(context.Background(), Config{Name: "t", Path: path, Engine: engine,
			CacheDir: filepath.Join(t.TempDir(), "cache"), MemoryLimitBytes: limit})
		if err != nil {
			return err
		}
		defer p.Close(context.Background())
		inst, err := p.Launch(context.Background(), nil, nil, nil)
		if err != nil {
			return err
		}
		<-inst.Done()
		return nil
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		err := launch(engine, 1<<20)
		assert.ErrorContains(t, err, "the module needs 7.5 MiB of linear memory to start (120 pages of 64 KiB), more than its limit of 1.0 MiB: set [limits] memory_mib in wharf.toml to at least 8")
		assert.NoError(t, launch(engine, 8<<20), "a limit it fits in")
	})
}

// TestCacheDirectoriesThatAreLinksAreRemoved: a symbolic link in place of
// one of the cache's directories would take its reads and writes out of
// the cache: a load removes the link, never what it names (a named pipe
// there, which a sweep that followed it would remove), and compiles again
// into a directory of the cache.
func TestCacheDirectoriesThatAreLinksAreRemoved(t *testing.T) {
	path := answerModule(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		cfg := Config{Name: "t", Path: path, Engine: engine, CacheDir: t.TempDir()}
		require.NoError(t, Precompile(context.Background(), cfg))
		dirs, err := os.ReadDir(cfg.CacheDir)
		require.NoError(t, err)
		require.NotEmpty(t, dirs)
		outside := t.TempDir()
		var kept, pipes []string
		for _, d := range dirs {
			require.True(t, d.IsDir(), d.Name())
			elsewhere := filepath.Join(outside, d.Name())
			require.NoError(t, os.Rename(filepath.Join(cfg.CacheDir, d.Name()), elsewhere))
			pipes = append(pipes, filepath.Join(elsewhere, "pipe"))
			require.NoError(t, unix.Mkfifo(pipes[len(pipes)-1], 0o600))
			require.NoError(t, os.Symlink(elsewhere, filepath.Join(cfg.CacheDir, d.Name())))
			files, err := filepath.Glob(filepath.Join(elsewhere, "*"))
			require.NoError(t, err)
			kept = append(kept, files...)
		}
		type result struct {
			answer uint64
			log    string
		}
		loaded := make(chan result, 1)
		go func() {
			answer, log := loadAndAnswer(t, cfg)
			loaded <- result{answer, log}
		}()
		var r result
		select {
		case r = <-loaded:
		case <-time.After(time.Minute):
			t.Error("the load, which went through the link, still waits on a named pipe there after a minute")
			for _, p := range pipes { // what it waits on ends
				if f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			}
			r = <-loaded
		}
		assert.Equal(t, uint64(42), r.answer)
		assert.Contains(t, r.log, "compiling", "the code is not read through the link")
		for _, d := range dirs {
			st, err := os.Lstat(filepath.Join(cfg.CacheDir, d.Name()))
			if err == nil {
				assert.True(t, st.IsDir(), "%s is a %v, not a directory of the cache", d.Name(), st.Mode().Type())
			}
		}
		for _, f := range kept {
			assert.FileExists(t, f, "what the link named is left as it was")
		}
		after, err := filepath.Glob(filepath.Join(outside, "*", "*"))
		require.NoError(t, err)
		assert.ElementsMatch(t, kept, after, "nothing was written through the link")
	})
}

// TestCacheEntriesThatAreNotFilesAreRemoved: a named pipe where the cache
// keeps a module's digest, its instrumented code or its compiled code
// (wharf writes none) does not block a start on opening it forever: a
// load removes every entry of the cache that is not a regular file and
// compiles again.
func TestCacheEntriesThatAreNotFilesAreRemoved(t *testing.T) {
	path := answerModule(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		cfg := Config{Name: "t", Path: path, Engine: engine, CacheDir: t.TempDir()}
		require.NoError(t, Precompile(context.Background(), cfg))
		files, err := filepath.Glob(filepath.Join(cfg.CacheDir, "*", "*"))
		require.NoError(t, err)
		require.NotEmpty(t, files)
		for _, f := range files {
			require.NoError(t, os.Remove(f))
			require.NoError(t, unix.Mkfifo(f, 0o600))
		}
		loaded := make(chan uint64, 1)
		go func() {
			answer, _ := loadAndAnswer(t, cfg)
			loaded <- answer
		}()
		select {
		case answer := <-loaded:
			assert.Equal(t, uint64(42), answer)
		case <-time.After(time.Minute):
			t.Fatal("the load is still waiting on a named pipe in the cache after a minute")
		}
		after, err := filepath.Glob(filepath.Join(cfg.CacheDir, "*", "*"))
		require.NoError(t, err)
		for _, f := range after {
			st, err := os.Lstat(f)
			require.NoError(t, err)
			assert.True(t, st.Mode().IsRegular(), "%s is a %v", f, st.Mode().Type())
		}
	})
}

// TestModuleWithAStartFunctionIsRefused: a start function runs as the
// module is instantiated, outside any event, where neither engine stops
// it: one that looped (loop br 0 end) hung wharf serve for good. Such a
// module is refused as it is compiled, on both engines.
func TestModuleWithAStartFunctionIsRefused(t *testing.T) {
	section := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	loop := []byte{0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b} // no locals; loop; br 0; end; end
	wasm := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	wasm = append(wasm, section(1, 0x01, 0x60, 0x00, 0x00)...) // type 0: () -> ()
	wasm = append(wasm, section(3, 0x01, 0x00)...)             // function 0 of type 0
	wasm = append(wasm, section(startSection, 0x00)...)        // start: function 0
	wasm = append(wasm, section(10, append([]byte{0x01, byte(len(loop))}, loop...)...)...)
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			e, err := NewEngine(context.Background(), engine, EngineConfig{})
			require.NoError(t, err)
			defer e.Close(context.Background())
			_, err = e.Compile(context.Background(), ModuleBytes(wasm))
			require.ErrorIs(t, err, ErrInvalidModule)
			assert.Contains(t, err.Error(), "the module has a start function (a start section), which wharf does not run")
		})
	}
}
