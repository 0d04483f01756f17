// Command objects is a guest for the Durable Object tests: a Worker that
// routes /{class}/{name}/{method} to RPC calls and fetches, and classes that
// exercise storage, SQL, alarms and failures.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk"
)

// Store exposes its storage through RPC methods.
type Store struct {
	state  *sdk.ObjectState
	events int // in memory only: shows whether the instance survived
	// later carries what a goroutine started by Later or PutLater
	// delivers to a later event (Received).
	later chan string
}

// KV is one entry in RPC arguments and results.
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (s *Store) Put(kv KV) error { s.events++; return s.state.Storage.Put(kv.Key, []byte(kv.Value)) }

// NotYet fails with an error of status AGAIN, which a caller must still
// get as this method's failure.
func (s *Store) NotYet() error { return fmt.Errorf("not yet: %w", abi.StatusAgain) }

func (s *Store) Get(key string) (string, error) {
	s.events++
	v, ok, err := s.state.Storage.Get(key)
	if !ok && err == nil {
		return "", fmt.Errorf("no key %q", key)
	}
	return string(v), err
}

func (s *Store) PutMany(kvs []KV) error {
	m := map[string][]byte{}
	for _, kv := range kvs {
		m[kv.Key] = []byte(kv.Value)
	}
	return s.state.Storage.PutMany(m)
}

func (s *Store) GetMany(keys []string) (map[string]string, error) {
	m, err := s.state.Storage.GetMany(keys...)
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out, err
}

func (s *Store) Delete(key string) (bool, error) { return s.state.Storage.Delete(key) }

func (s *Store) DeleteMany(keys []string) (int, error) { return s.state.Storage.DeleteMany(keys...) }

func (s *Store) List(o sdk.ListOptions) ([]string, error) {
	entries, err := s.state.Storage.List(o)
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Key+"="+string(e.Value))
	}
	return keys, err
}

func (s *Store) DeleteAll() error { return s.state.Storage.DeleteAll() }

// PutBig writes a value of n bytes under a key of k bytes.
func (s *Store) PutBig(sizes [2]int) error {
	return s.state.Storage.Put(strings.Repeat("k", sizes[0]), make([]byte, sizes[1]))
}

// SQL runs a statement and returns its rows as JSON-friendly values.
func (s *Store) SQL(args []any) ([][]any, error) {
	c, err := s.state.Storage.Exec(args[0].(string), args[1:]...)
	if err != nil {
		return nil, err
	}
	return c.All(), nil
}

// TxFail writes inside a transaction that fails: nothing must remain.
func (s *Store) TxFail(key string) error {
	err := s.state.Storage.Transaction(func() error {
		s.state.Storage.Put(key, []byte("x"))
		return fmt.Errorf("rolled back on purpose")
	})
	if err == nil {
		return fmt.Errorf("transaction should have failed")
	}
	_, ok, _ := s.state.Storage.Get(key)
	if ok {
		return fmt.Errorf("write survived the rollback")
	}
	return nil
}

// PutThenPanic writes and then crashes the event: the write must be undone.
func (s *Store) PutThenPanic(key string) error {
	s.state.Storage.Put(key, []byte("lost"))
	panic("object panicked on purpose")
}

// PutThenTrap writes and then kills the guest runtime.
func (s *Store) PutThenTrap(key string) error {
	s.state.Storage.Put(key, []byte("lost"))
	done := make(chan struct{})
	go func() { panic("object trapped on purpose") }()
	<-done
	return nil
}

func (s *Store) Events() (int, error) { return s.events, nil }

func (s *Store) Sleep(ms int) error { time.Sleep(time.Duration(ms) * time.Millisecond); return nil }

// Later starts a goroutine that outlives the event and hands v to whichever
// later event asks (Received).
func (s *Store) Later(v string) error {
	s.later = make(chan string, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.later <- v
	}()
	return nil
}

// PutLater starts a goroutine that writes key ms from now, after the event
// ended; Received returns what the host said to the write.
func (s *Store) PutLater(args struct {
	Key string
	MS  int
}) error {
	s.later = make(chan string, 1)
	go func() {
		time.Sleep(time.Duration(args.MS) * time.Millisecond)
		err := s.state.Storage.Put(args.Key, []byte("too late"))
		s.later <- fmt.Sprintf("put after the event: %v (ErrTimeout: %t)", sdk.Within(err), errors.Is(err, sdk.ErrTimeout))
	}()
	return nil
}

// TxLater starts a transaction in the event that writes key and commits
// ms after the event ended; Received returns what the commit got.
func (s *Store) TxLater(args struct {
	Key string
	MS  int
}) error {
	s.later = make(chan string, 1)
	written := make(chan error)
	go func() {
		err := s.state.Storage.Transaction(func() error {
			written <- s.state.Storage.Put(args.Key, []byte("committed too late"))
			time.Sleep(time.Duration(args.MS) * time.Millisecond)
			return nil
		})
		s.later <- fmt.Sprintf("commit after the event: %v (ErrEventOver: %t)", sdk.Within(err), errors.Is(err, sdk.ErrEventOver))
	}()
	return <-written
}

// LogBoth logs word through the object's Logger in its event, then from a
// goroutine after it.
func (s *Store) LogBoth(word string) error {
	s.state.Logger.Info("in the event", "word", word)
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.state.Logger.Info("after the event", "word", word)
	}()
	return nil
}

// Received waits for what Later's goroutine sends.
func (s *Store) Received() (string, error) {
	select {
	case v := <-s.later:
		return v, nil
	case <-time.After(5 * time.Second):
		return "", errors.New("nothing arrived from the earlier event's goroutine")
	}
}

// CallSelf calls the object named name (itself, refused) on behalf of
// its event and returns its event count.
func (s *Store) CallSelf(ctx context.Context, name string) (int, error) {
	stub, err := stores.GetByName(name)
	if err != nil {
		return 0, err
	}
	var n int
	err = stub.CallContext(ctx, "Events", nil, &n)
	return n, err
}

// Chain calls Chain on the Store named names[0] with the rest of names,
// and returns the event count of the last one: a chain of calls from
// object to object (names may come back to an object on the way).
func (s *Store) Chain(ctx context.Context, names []string) (int, error) {
	if len(names) == 0 {
		return s.events, nil
	}
	stub, err := stores.GetByName(names[0])
	if err != nil {
		return 0, err
	}
	var n int
	err = stub.CallContext(ctx, "Chain", names[1:], &n)
	return n, err
}

// GetAsNumber calls Get on the object named Name and decodes its string
// result into an int, and returns the error that gives.
func (s *Store) GetAsNumber(args struct{ Name, Key string }) (string, error) {
	stub, err := stores.GetByName(args.Name)
	if err != nil {
		return "", err
	}
	var n int
	return fmt.Sprint(stub.Call("Get", args.Key, &n)), nil
}

// sdkErrors are the SDK's exported errors, by name.
var sdkErrors = map[string]error{
	"ErrInvalidArgument": sdk.ErrInvalidArgument, "ErrNotFound": sdk.ErrNotFound, "ErrTooLarge": sdk.ErrTooLarge,
	"ErrTimeout": sdk.ErrTimeout, "ErrClosed": sdk.ErrClosed, "ErrAborted": sdk.ErrAborted, "ErrBusy": sdk.ErrBusy,
	"ErrPortRefused": sdk.ErrPortRefused, "ErrEventOver": sdk.ErrEventOver, "ErrWouldBlock": sdk.ErrWouldBlock,
	"ErrNotRunning": sdk.ErrNotRunning, "ErrSignalRange": sdk.ErrSignalRange, "ErrExecFailed": sdk.ErrExecFailed,
	"ErrEvicted": sdk.ErrEvicted, "ErrOutputAfterRead": sdk.ErrOutputAfterRead,
}

// matches names the SDK errors err matches, sorted and comma-separated.
func matches(err error) string {
	var names []string
	for name, e := range sdkErrors {
		if errors.Is(err, e) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// FailHow says what Fail returns: the SDK error named Name, as it is or
// wrapped in words of the method's own.
type FailHow struct {
	Name    string
	Wrapped bool
}

// Fail returns the SDK error how names.
func (s *Store) Fail(how FailHow) error {
	err := sdkErrors[how.Name]
	if how.Wrapped {
		return fmt.Errorf("loading config: %w", err)
	}
	return err
}

// instance names the instance the guest runs as.
var instance = rand.Text()

// Instance names the instance the object lives on.
func (s *Store) Instance() (string, error) { return instance, nil }

// FailSeen is what RelayFail's caller saw of Fail's error, and the
// instances the caller and the callee ran on.
type FailSeen struct {
	Error, Matches string
	Caller, Callee string
}

// RelayFail calls Fail on the object named Name with how.
func (s *Store) RelayFail(ctx context.Context, args struct {
	Name string
	How  FailHow
}) (FailSeen, error) {
	stub, err := stores.GetByName(args.Name)
	if err != nil {
		return FailSeen{}, err
	}
	seen := FailSeen{Caller: instance}
	if err := stub.CallContext(ctx, "Instance", nil, &seen.Callee); err != nil {
		return FailSeen{}, err
	}
	err = stub.CallContext(ctx, "Fail", args.How, nil)
	seen.Error, seen.Matches = fmt.Sprint(err), matches(err)
	return seen, nil
}

// Spin computes forever without calling the host.
func (s *Store) Spin() error {
	for n := 0; ; n++ {
		if n < 0 {
			return nil
		}
	}
}

// ServeHTTP echoes the request body with the object's id; /chain/b/c
// fetches /chain/c from the Store named b (/chain/ answers with the event
// count); /stream streams a response after a write, in flushed pieces;
// /answer-early ends its answer, then works on and writes; /stream-panic
// panics once its head is flushed.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stream" {
		s.state.Storage.Put("streamed", []byte("yes"))
		for _, part := range []string{"one ", "two ", "three"} {
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
		return
	}
	if r.URL.Path == "/answer-early" { // the whole answer, then more work
		s.events++
		if body, err := w.(interface{ BodyStream() (*sdk.Stream, error) }).BodyStream(); err == nil {
			body.Write([]byte("answered"))
			body.Close()
		}
		time.Sleep(300 * time.Millisecond) // its caller has finished by now
		s.state.Storage.Put("lingered", []byte("yes"))
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/chain/"); ok { // /chain/b/c: fetch /chain/c from Store b
		if rest == "" {
			fmt.Fprint(w, s.events)
			return
		}
		name, next, _ := strings.Cut(rest, "/")
		stub, err := stores.GetByName(name)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), "GET", "http://object/chain/"+next, nil)
		resp, err := stub.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		sdk.WriteResponse(w, resp)
		return
	}
	if r.URL.Path == "/stream-panic" {
		w.(http.Flusher).Flush()
		panic("object panicked after streaming on purpose")
	}
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%s %s %s %s", s.state.Class, s.state.ID[:8], r.URL.Path, body)
}

// Alarmed records each alarm run; it fails the first `fail` runs.
type Alarmed struct{ state *sdk.ObjectState }

func (a *Alarmed) Schedule(args [2]int) error { // ms from now, failures wanted
	a.state.Storage.Put("fail", []byte(strconv.Itoa(args[1])))
	return a.state.Storage.SetAlarm(time.Now().Add(time.Duration(args[0]) * time.Millisecond))
}

func (a *Alarmed) Cancel() error { return a.state.Storage.DeleteAlarm() }

func (a *Alarmed) Pending() (bool, error) {
	_, ok, err := a.state.Storage.GetAlarm()
	return ok, err
}

func (a *Alarmed) Runs() (string, error) {
	v, _, err := a.state.Storage.Get("runs")
	return string(v), err
}

func (a *Alarmed) Alarm(retry int) error {
	v, _, _ := a.state.Storage.Get("runs")
	a.state.Storage.Put("runs", append(v, []byte(fmt.Sprintf("%d,", retry))...))
	f, _, _ := a.state.Storage.Get("fail")
	if n, _ := strconv.Atoi(string(f)); retry < n {
		return fmt.Errorf("failing alarm run %d on purpose", retry)
	}
	return nil
}

// Box drives its container through ctx.container.
type Box struct {
	state *sdk.ObjectState
	// watched receives what a Monitor started by WatchInBackground
	// returned.
	watched chan error
}

// WatchInBackground calls Monitor from a goroutine that outlives the event;
// Watched, in a later event, returns what it got.
func (b *Box) WatchInBackground() error {
	b.watched = make(chan error, 1)
	go func() { b.watched <- b.state.Container.Monitor() }()
	return nil
}

// Watched returns what the background Monitor returned: its error's text,
// "exited cleanly" for nil, or "waiting" while it waits. It never blocks:
// the exit reaches the object as an event of its own, which a blocked
// event would hold up.
func (b *Box) Watched() (string, error) {
	if b.watched == nil {
		return "", errors.New("call WatchInBackground first")
	}
	select {
	case err := <-b.watched:
		b.watched = nil
		if err != nil {
			return err.Error(), nil
		}
		return "exited cleanly", nil
	default:
		return "waiting", nil
	}
}

func (b *Box) Start(entrypoint []string) error {
	return b.state.Container.Start(sdk.StartOptions{Entrypoint: entrypoint, Env: map[string]string{"FROM_START": "yes"}})
}

func (b *Box) Running() (bool, error) { return b.state.Container.Running(), nil }

// ArmAlarm sets the alarm ms from now; the alarm starts the container.
func (b *Box) ArmAlarm(ms int) error {
	return b.state.Storage.SetAlarm(time.Now().Add(time.Duration(ms) * time.Millisecond))
}

// Alarm records its retry number and starts the container (sleep 3600):
// an alarm that needs the container.
func (b *Box) Alarm(retry int) error {
	v, _, _ := b.state.Storage.Get("alarm-runs")
	b.state.Storage.Put("alarm-runs", append(v, []byte(fmt.Sprintf("%d,", retry))...))
	if b.state.Container.Running() {
		return nil
	}
	return b.Start([]string{"sleep", "3600"})
}

// AlarmRuns lists the retry numbers of the alarm runs that succeeded.
func (b *Box) AlarmRuns() (string, error) {
	v, _, err := b.state.Storage.Get("alarm-runs")
	return string(v), err
}

func (b *Box) Destroy(reason string) error { return b.state.Container.Destroy(reason) }

// DestroyDuringStart starts the container from a goroutine and destroys it
// (reason "during start") after Delay, as the start may still be under
// way; it reports both errors and Running once both returned.
func (b *Box) DestroyDuringStart(a struct {
	Entrypoint []string
	Delay      string
}) (string, error) {
	d, _ := time.ParseDuration(a.Delay)
	done := b.startAside(a.Entrypoint)
	time.Sleep(d)
	derr := b.state.Container.Destroy("during start")
	serr := <-done
	return fmt.Sprintf("start=%v destroy=%v running=%v", serr, derr, b.state.Container.Running()), nil
}

// startAside starts the container with entrypoint from a goroutine, which
// asks for the start (and waits for it off the instance's thread) before
// startAside returns; the start's error comes on the channel.
func (b *Box) startAside(entrypoint []string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.state.Container.Start(sdk.StartOptions{Entrypoint: entrypoint}) }()
	yield()
	return done
}

// yield lets the goroutines just started run until they wait, on a host
// call: a few yields, as one alone did not always let them run first (the
// scheduler now and then takes the yielding goroutine back at once).
func yield() {
	for range 3 {
		runtime.Gosched()
	}
}

// DuringStart starts the container from a goroutine and makes Call while
// the start is under way: "signal" (SIGTERM), "exec" (Cmd, its output),
// "monitor", "fetch" (Port, Path "/passwd"), "connect" (Port, an HTTP/1.0
// request by hand), "waitport" (Port, 10 s), "start" (another start: its
// output says whether the error is ErrBusy), "destroy-exec" (a destroy
// from another goroutine, then an exec of Cmd) or "destroy-start-exec" (a
// destroy from another goroutine, another start, then an exec of Cmd). It reports whether the
// container ran as the call was made, the call's outcome (and whether its
// error is ErrNotRunning), and the start's error.
func (b *Box) DuringStart(a struct {
	Entrypoint []string
	Call       string
	Cmd        []string
	Port       int
}) (string, error) {
	done := b.startAside(a.Entrypoint)
	before := b.state.Container.Running()
	var out string
	var err error
	switch a.Call {
	case "signal":
		err = b.Signal(int(sdk.SIGTERM))
	case "exec":
		var p *sdk.Process
		if p, err = b.state.Container.Exec(a.Cmd, sdk.ExecOptions{}); err == nil {
			o, _, _ := p.Output()
			out = string(o)
		}
	case "monitor":
		err = b.state.Container.Monitor()
	case "fetch":
		out, err = b.Fetch(struct {
			Port int
			Path string
		}{a.Port, "/passwd"})
	case "connect":
		out, err = b.Raw(a.Port)
	case "waitport":
		out, err = b.WaitPort(struct {
			Port    int
			Timeout string
		}{a.Port, "10s"})
	case "start":
		err = b.state.Container.Start(sdk.StartOptions{Entrypoint: a.Entrypoint})
		out = fmt.Sprintf("busy=%v", errors.Is(err, sdk.ErrBusy))
	case "destroy-start-exec":
		destroyed := make(chan error, 1)
		go func() { destroyed <- b.state.Container.Destroy("during start") }()
		yield() // the destroy is asked for
		serr := b.state.Container.Start(sdk.StartOptions{Entrypoint: a.Entrypoint})
		var p *sdk.Process
		if p, err = b.state.Container.Exec(a.Cmd, sdk.ExecOptions{}); err == nil {
			o, _, _ := p.Output()
			out = string(o)
		}
		out += fmt.Sprintf(" start-again=%v destroy=%v", serr, <-destroyed)
	case "destroy-exec":
		destroyed := make(chan error, 1)
		go func() { destroyed <- b.state.Container.Destroy("during start") }()
		yield() // the destroy is asked for
		var p *sdk.Process
		if p, err = b.state.Container.Exec(a.Cmd, sdk.ExecOptions{}); err == nil {
			o, _, _ := p.Output()
			out = string(o)
		}
		out += fmt.Sprintf(" destroy=%v", <-destroyed)
	default:
		return "", fmt.Errorf("no call %q", a.Call)
	}
	serr := <-done
	return fmt.Sprintf("running-before=%v call=%q err=%v (not-running=%v) start=%v", before, out, err, errors.Is(err, sdk.ErrNotRunning), serr), nil
}

// EndDuringStart starts the container from a goroutine and, after Delay,
// ends the event while the start may be under way, as End says: "trap" (a
// goroutine panics: the instance ends), "panic" (the event panics) or
// "error" (the event fails).
func (b *Box) EndDuringStart(a struct {
	Entrypoint []string
	End        string
	Delay      string
}) (string, error) {
	d, _ := time.ParseDuration(a.Delay)
	b.startAside(a.Entrypoint)
	time.Sleep(d)
	switch a.End {
	case "trap":
		go func() { panic("trapped during a start on purpose") }()
		select {}
	case "panic":
		panic("panicked during a start on purpose")
	case "error":
		return "", errors.New("failed during a start on purpose")
	}
	return "", fmt.Errorf("no end %q", a.End)
}

// MonitorDuringDestroy destroys the container (for Reason) from a
// goroutine and calls Monitor while that destroy is under way; with
// Entrypoint, an unawaited Start of it comes first. It reports what
// Monitor returned, whether that is an *sdk.ExitError, and the destroy's
// error. With Again, a second destroy (for Again, from another goroutine)
// is asked for after the first, before the Monitor; its error is reported
// too.
func (b *Box) MonitorDuringDestroy(a struct {
	Reason, Again string
	Entrypoint    []string
}) (string, error) {
	c := b.state.Container
	if len(a.Entrypoint) > 0 {
		b.startAside(a.Entrypoint)
	}
	done := make(chan error, 1)
	go func() { done <- c.Destroy(a.Reason) }()
	yield() // the destroy is asked for
	again := make(chan error, 1)
	if a.Again != "" {
		go func() { again <- c.Destroy(a.Again) }()
		yield()
	}
	err := c.Monitor()
	var exit *sdk.ExitError
	out := fmt.Sprintf("monitor=%v exit=%v destroy=%v", err, errors.As(err, &exit), <-done)
	if a.Again != "" {
		out += fmt.Sprintf(" again=%v", <-again)
	}
	return out, nil
}

func (b *Box) Signal(n int) error { return b.state.Container.Signal(sdk.Signal(n)) }

func (b *Box) Monitor() (string, error) {
	if err := b.state.Container.Monitor(); err != nil {
		return err.Error(), nil
	}
	return "exited cleanly", nil
}

// ExecArgs and ExecResult carry Exec over RPC.
type ExecArgs struct {
	Cmd            []string
	Stdin          string
	Stdout, Stderr string
	Cwd, User      string
	Env            map[string]string
}

type ExecResult struct {
	Stdout, Stderr string
	Code           int
}

func (b *Box) Exec(a ExecArgs) (ExecResult, error) {
	opts := sdk.ExecOptions{Stdout: sdk.Stdio(a.Stdout), Stderr: sdk.Stdio(a.Stderr), Cwd: a.Cwd, User: a.User, Env: a.Env}
	if a.Stdin != "" {
		opts.Stdin = strings.NewReader(a.Stdin)
	}
	p, err := b.state.Container.Exec(a.Cmd, opts)
	if err != nil {
		return ExecResult{}, err
	}
	out, errOut, err := p.Output()
	return ExecResult{Stdout: string(out), Stderr: string(errOut), Code: p.ExitCode()}, exitOK(err)
}

// ExecStdinEarly starts cmd with a stdin pipe, closes stdin at once, then
// writes to it: the write's error, whether it is ErrClosed, and the
// output.
func (b *Box) ExecStdinEarly(cmd []string) (string, error) {
	p, err := b.state.Container.Exec(cmd, sdk.ExecOptions{StdinPipe: true})
	if err != nil {
		return "", err
	}
	p.Stdin.Close()
	_, werr := io.WriteString(p.Stdin, "late")
	out, _, err := p.Output()
	return fmt.Sprintf("write=%v (closed=%v) out=%q err=%v", werr, errors.Is(werr, sdk.ErrClosed), out, err), nil
}

// exitOK drops the error of a non-zero exit code, which the caller reports
// as the code.
func exitOK(err error) error {
	var exit *sdk.ExitError
	if errors.As(err, &exit) {
		return nil
	}
	return err
}

// ExecBeyondCap keeps 64 sleeps running in this event, its cap of
// processes, and starts a 65th. It reports that exec's error and how an
// exec fares once the sleeps were killed.
func (b *Box) ExecBeyondCap() (string, error) {
	c := b.state.Container
	quiet := sdk.ExecOptions{Stdout: sdk.StdioIgnore, Stderr: sdk.StdioIgnore}
	var sleeps []*sdk.Process
	for range 64 {
		p, err := c.Exec([]string{"sleep", "600"}, quiet)
		if err != nil {
			return "", err
		}
		sleeps = append(sleeps, p)
	}
	_, beyond := c.Exec([]string{"sleep", "601"}, quiet)
	for _, p := range sleeps {
		p.Kill(sdk.SIGKILL)
		p.Wait()
	}
	p, err := c.Exec([]string{"true"}, quiet)
	if err == nil {
		err = p.Wait()
	}
	return fmt.Sprintf("65th: %v (too-large=%v); after: %v", sdk.Within(beyond), errors.Is(beyond, sdk.ErrTooLarge), sdk.Within(err)), nil
}

// ExecWait runs cmd and waits without reading its output.
func (b *Box) ExecWait(cmd []string) (int, error) {
	p, err := b.state.Container.Exec(cmd, sdk.ExecOptions{})
	if err != nil {
		return 0, err
	}
	err = exitOK(p.Wait())
	return p.ExitCode(), err
}

// PipeAndKill exercises StdinPipe, Kill and Output's rules: it writes to
// cat through a pipe, reads one line, checks Output now refuses, and kills
// a sleep.
func (b *Box) PipeAndKill() (string, error) {
	p, err := b.state.Container.Exec([]string{"cat"}, sdk.ExecOptions{StdinPipe: true})
	if err != nil {
		return "", err
	}
	io.WriteString(p.Stdin, "through the pipe\n")
	p.Stdin.Close()
	line := make([]byte, 17)
	if _, err := io.ReadFull(p.Stdout, line); err != nil {
		return "", err
	}
	_, _, outErr := p.Output()
	if err := exitOK(p.Wait()); err != nil {
		return "", err
	}
	code := p.ExitCode()
	sleeper, err := b.state.Container.Exec([]string{"sleep", "100"}, sdk.ExecOptions{})
	if err != nil {
		return "", err
	}
	if err := sleeper.Kill(0); err != nil {
		return "", err
	}
	err = exitOK(sleeper.Wait())
	killed := sleeper.ExitCode()
	badKill := sleeper.Kill(65)
	return fmt.Sprintf("%q cat=%d output-after-read=%v killed=%d bad-kill=%v", line, code, outErr, killed, badKill), err
}

// KillSleep starts a sleep and sends it sig with Process.Kill, then
// SIGKILL, then SIGKILL again once it exited: the first kill's error, the
// sleep's exit code, and the last kill's error.
func (b *Box) KillSleep(sig int) (string, error) {
	p, err := b.state.Container.Exec([]string{"sleep", "100"}, sdk.ExecOptions{})
	if err != nil {
		return "", err
	}
	killErr := p.Kill(sdk.Signal(sig))
	if err := p.Kill(sdk.SIGKILL); err != nil {
		return "", err
	}
	p.Wait()
	again := p.Kill(sdk.SIGKILL)
	return fmt.Sprintf("kill=%v code=%d again=%v (not-found=%v not-running=%v)", killErr, p.ExitCode(),
		again, errors.Is(again, sdk.ErrNotFound), errors.Is(again, sdk.ErrNotRunning)), nil
}

// TimeExecTrue runs `true` n times and returns the median round trip in
// µs, measured inside the guest.
func (b *Box) TimeExecTrue(n int) (float64, error) {
	var times []float64
	for i := 0; i < n; i++ {
		start := time.Now()
		p, err := b.state.Container.Exec([]string{"true"}, sdk.ExecOptions{Stdout: "ignore", Stderr: "ignore"})
		if err != nil {
			return 0, err
		}
		if err := p.Wait(); err != nil {
			return 0, err
		}
		times = append(times, float64(time.Since(start).Microseconds()))
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// ExecThroughput streams mb MiB of zeros from an exec's stdout through the
// guest and returns MB/s.
func (b *Box) ExecThroughput(mb int) (float64, error) {
	start := time.Now()
	p, err := b.state.Container.Exec([]string{"dd", "if=/dev/zero", "bs=1048576", fmt.Sprintf("count=%d", mb)}, sdk.ExecOptions{Stderr: "ignore"})
	if err != nil {
		return 0, err
	}
	n, err := p.Stdout.WriteTo(io.Discard)
	if err != nil {
		return 0, err
	}
	if err := p.Wait(); err != nil {
		return 0, err
	}
	return float64(n) / 1e6 / time.Since(start).Seconds(), nil
}

// TimeFetch fetches path n times and returns the mean in µs.
func (b *Box) TimeFetch(args struct{ Port, N int }) (float64, error) {
	start := time.Now()
	for i := 0; i < args.N; i++ {
		req, _ := http.NewRequest("GET", "http://container/passwd", nil)
		resp, err := b.state.Container.GetTCPPort(args.Port).Fetch(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return float64(time.Since(start).Microseconds()) / float64(args.N), nil
}

// Errors names the sentinel each bad call matches.
func (b *Box) Errors() ([]string, error) {
	c := b.state.Container
	var out []string
	check := func(what string, err error, sentinels ...error) {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				out = append(out, what+": "+sdk.Within(s).Error())
				return
			}
		}
		out = append(out, fmt.Sprintf("%s: unexpected %v", what, sdk.Within(err)))
	}
	_, err := c.Exec(nil, sdk.ExecOptions{})
	check("empty command", err, sdk.ErrInvalidArgument)
	_, err = c.Exec([]string{"true"}, sdk.ExecOptions{Stdout: "ignore", Stderr: "combined"})
	check("combined without pipe", err, sdk.ErrInvalidArgument)
	_, err = c.Exec([]string{"true"}, sdk.ExecOptions{Stdout: "loud"})
	check("bad mode", err, sdk.ErrInvalidArgument)
	_, err = c.Exec([]string{"/no/such/binary"}, sdk.ExecOptions{})
	check("missing binary", err, sdk.ErrExecFailed)
	_, err = c.Exec([]string{"echo", "a\x00b"}, sdk.ExecOptions{})
	check("NUL in an argument", err, sdk.ErrInvalidArgument)
	_, err = c.Exec([]string{"pwd"}, sdk.ExecOptions{Cwd: "tmp"})
	check("relative cwd", err, sdk.ErrInvalidArgument)
	check("signal 0", c.Signal(0), sdk.ErrSignalRange)
	return out, nil
}

// NotRunningError shows what exec says without a container.
func (b *Box) NotRunningError() (bool, error) {
	_, err := b.state.Container.Exec([]string{"true"}, sdk.ExecOptions{})
	return errors.Is(err, sdk.ErrNotRunning), nil
}

// Fetch GETs path on a port of the container.
func (b *Box) Fetch(args struct {
	Port int
	Path string
}) (string, error) {
	req, _ := http.NewRequest("GET", "http://container"+args.Path, nil)
	resp, err := b.state.Container.GetTCPPort(args.Port).Fetch(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body), err
}

// WaitPort waits up to Timeout for something to listen on Port and says
// how the wait ended.
func (b *Box) WaitPort(args struct {
	Port    int
	Timeout string
}) (string, error) {
	d, err := time.ParseDuration(args.Timeout)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err = b.state.Container.GetTCPPort(args.Port).WaitReady(ctx)
	switch {
	case err == nil:
		return "ready", nil
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout: " + sdk.Within(err).Error(), nil
	case errors.Is(err, sdk.ErrNotRunning):
		return "not running: " + sdk.Within(err).Error(), nil
	}
	return "", err
}

// Raw speaks HTTP/1.0 by hand over a raw connection.
func (b *Box) Raw(port int) (string, error) {
	conn, err := b.state.Container.GetTCPPort(port).Connect()
	if err != nil {
		if errors.Is(err, sdk.ErrPortRefused) {
			return "refused: " + sdk.Within(err).Error(), nil
		}
		return "", err
	}
	defer conn.Close()
	io.WriteString(conn, "GET /passwd HTTP/1.0\r\n\r\n")
	out, err := io.ReadAll(conn)
	return string(out), err
}

// StartArgs starts a Box's container with or without internet.
type StartArgs struct {
	Entrypoint []string
	Internet   bool
}

func (b *Box) StartWith(a StartArgs) error {
	return b.state.Container.Start(sdk.StartOptions{Entrypoint: a.Entrypoint, EnableInternet: a.Internet})
}

// StartThenExec starts the container with entrypoint and execs `true` at
// once, as its main process may be exiting: the exec's error, and whether
// it is ErrNotRunning.
func (b *Box) StartThenExec(entrypoint []string) (string, error) {
	if err := b.state.Container.Start(sdk.StartOptions{Entrypoint: entrypoint}); err != nil {
		return "", err
	}
	p, err := b.state.Container.Exec([]string{"true"}, sdk.ExecOptions{})
	if err == nil {
		err = p.Wait()
	}
	return fmt.Sprintf("%v (not-running=%v)", err, errors.Is(err, sdk.ErrNotRunning)), nil
}

// StartThenSignal starts the container with entrypoint and signals it at
// once, n times: each answer is nil or not running.
func (b *Box) StartThenSignal(entrypoint []string) (string, error) {
	if err := b.state.Container.Start(sdk.StartOptions{Entrypoint: entrypoint}); err != nil {
		return "", err
	}
	var answers []string
	for range 20 {
		err := b.state.Container.Signal(sdk.SIGCONT)
		answers = append(answers, fmt.Sprintf("%v (not-running=%v)", err, errors.Is(err, sdk.ErrNotRunning)))
	}
	return strings.Join(slices.Compact(answers), "; "), nil
}

// InterceptArgs adds an interception rule: Kind is http, all or https.
type InterceptArgs struct{ Kind, Target, Handler string }

func (b *Box) Intercept(a InterceptArgs) error {
	c := b.state.Container
	switch a.Kind {
	case "http":
		return c.InterceptOutboundHTTP(a.Target, a.Handler)
	case "all":
		return c.InterceptAllOutboundHTTP(a.Handler)
	case "https":
		return c.InterceptOutboundHTTPS(a.Target, a.Handler)
	}
	return fmt.Errorf("unknown kind %q", a.Kind)
}

// InterceptMany adds HTTP interceptions of n distinct hosts and returns
// how many were added and the first refusal.
func (b *Box) InterceptMany(n int) (string, error) {
	for i := range n {
		if err := b.state.Container.InterceptOutboundHTTP(fmt.Sprintf("h%d.example.test", i), "other"); err != nil {
			return fmt.Sprintf("%d added, then %v (too-large=%v)", i, sdk.Within(err), errors.Is(err, sdk.ErrTooLarge)), nil
		}
	}
	return fmt.Sprintf("%d added", n), nil
}

// EditArgs edits an egress list: List is allowed or denied, Edit is add,
// remove or set.
type EditArgs struct {
	List, Edit string
	Hosts      []string
}

func (b *Box) EditHosts(a EditArgs) error {
	e := b.state.Container.Egress()
	switch a.List + " " + a.Edit {
	case "allowed add":
		return e.Allow(a.Hosts...)
	case "denied add":
		return e.Deny(a.Hosts...)
	case "allowed remove":
		return e.RemoveAllowed(a.Hosts...)
	case "denied remove":
		return e.RemoveDenied(a.Hosts...)
	case "allowed set":
		return e.SetAllowed(a.Hosts)
	case "denied set":
		return e.SetDenied(a.Hosts)
	}
	return fmt.Errorf("unknown edit %q", a.List+" "+a.Edit)
}

// Outbound handlers for intercepted container requests: inject and other
// answer themselves; count reads the body through, slurp holds it whole;
// upstream fetches the original URL with a secret added
// and streams the answer back from the host side.
func outboundHandlers() {
	sdk.HandleOutbound("inject", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class, id, _ := sdk.OutboundSource(r)
		w.Header().Set("X-Injected", "yes")
		fmt.Fprintf(w, "inject: %s %s from %s/%.8s probe=%s", r.Method, r.URL, class, id, r.Header.Get("X-Probe"))
	}))
	sdk.HandleOutbound("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "other: %s", r.URL)
	}))
	sdk.HandleOutbound("hang", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	sdk.HandleOutbound("panic", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("outbound handler panics on purpose")
	}))
	sdk.HandleOutbound("slurp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "slurped %d bytes, err=%v", len(body), err)
	}))
	sdk.HandleOutbound("count", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "counted %d bytes, err=%v", n, err)
	}))
	sdk.HandleOutbound("upstream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), nil)
		req.Header.Set("X-Secret", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		sdk.WriteResponse(w, resp) // the host copies the body
	}))
}

// Web is a ContainerClass: busybox httpd on 8080, ready once /ready
// exists (half a second after start); it exits 3 when /www/crash appears
// and takes a second to stop on SIGTERM. Hooks are recorded in storage.
type Web struct {
	sdk.ContainerClass
	st *sdk.ObjectState
	// later carries what StateLater's goroutine got (StateReceived).
	later chan string
}

const webScript = `mkdir -p /www; httpd -p 8080 -h /www; (sleep 0.5; echo ok > /www/ready) &
trap 'sleep 1; exit 0' TERM
while [ ! -e /www/crash ]; do sleep 0.1; done; exit 3`

func newWeb(st *sdk.ObjectState) any {
	no := false
	w := &Web{st: st, ContainerClass: sdk.ContainerClass{
		DefaultPort:    8080,
		Entrypoint:     []string{"sh", "-c", webScript},
		EnableInternet: &no,
		ReadyOn:        []sdk.ReadyProbe{{Path: "/ready"}},
	}}
	w.OnStart = func() error { return w.hook("start") }
	w.OnStop = func(i sdk.StopInfo) { w.hook(fmt.Sprintf("stop:%d:%s", i.ExitCode, i.Reason)) }
	w.OnError = func(err error) { w.hook("error:" + err.Error()) }
	if err := w.Bind(st); err != nil {
		panic(err)
	}
	return w
}

func (w *Web) hook(name string) error {
	v, _, _ := w.st.Storage.Get("hooks")
	return w.st.Storage.Put("hooks", append(v, []byte(name+"\n")...))
}

// Hooks returns the hooks that ran, in order.
func (w *Web) Hooks() (string, error) {
	v, _, err := w.st.Storage.Get("hooks")
	return string(v), err
}

// Status returns the state's status only.
func (w *Web) Status() (string, error) {
	st, err := w.State()
	return string(st.Status), err
}

// Run runs a shell command in the container and returns its output.
func (w *Web) Run(script string) (string, error) {
	p, err := w.st.Container.Exec([]string{"sh", "-c", script}, sdk.ExecOptions{Stderr: "combined"})
	if err != nil {
		return "", err
	}
	out, _, err := p.Output()
	return string(out), exitOK(err)
}

// StartWithSecret starts the raw container with one SDK secret.
func (w *Web) StartWithSecret(name string) error {
	return w.st.Container.Start(sdk.StartOptions{Entrypoint: []string{"sleep", "3600"}, Secrets: []string{name}})
}

// StateLater starts a goroutine that asks for the state after the event
// ended; StateReceived returns what it got.
func (w *Web) StateLater() error {
	w.later = make(chan string, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		st, err := w.State()
		w.later <- fmt.Sprintf("%q %v (ErrEventOver: %t)", st.Status, err, errors.Is(err, sdk.ErrEventOver))
	}()
	return nil
}

// StateReceived returns what StateLater's goroutine got.
func (w *Web) StateReceived() (string, error) {
	select {
	case v := <-w.later:
		return v, nil
	case <-time.After(3 * time.Second):
		return "", errors.New("State has not returned")
	}
}

// Wipe deletes the object's storage (and so its persistent directories).
func (w *Web) Wipe() error { return w.st.Storage.DeleteAll() }

// Echo is a ContainerClass whose container serves WebSocket echo.
type Echo struct{ sdk.ContainerClass }

// Broken panics in its constructor.
type Broken struct{}

// stores is taken at init: a manifest without a STORE binding is refused.
var stores = sdk.GetNamespace("STORE")

func init() {
	sdk.RegisterClass("Store", func(st *sdk.ObjectState) any { return &Store{state: st} })
	sdk.RegisterClass("Alarmed", func(st *sdk.ObjectState) any { return &Alarmed{state: st} })
	sdk.RegisterClass("Box", func(st *sdk.ObjectState) any { return &Box{state: st} })
	sdk.RegisterClass("Broken", func(st *sdk.ObjectState) any { panic("constructor failed on purpose") })
	sdk.RegisterClass("Web", newWeb)
	sdk.RegisterClass("Echo", func(st *sdk.ObjectState) any {
		e := &Echo{sdk.ContainerClass{DefaultPort: 9000, Entrypoint: []string{"probe", "wsecho", "9000"}}}
		if err := e.Bind(st); err != nil {
			panic(err)
		}
		return e
	})
	sdk.RegisterClass("WebHard", newWeb)
	sdk.RegisterClass("Sleeper", func(st *sdk.ObjectState) any { // no ports: healthy once it runs
		w := &Web{st: st, ContainerClass: sdk.ContainerClass{Entrypoint: []string{"sleep", "3600"}}}
		if err := w.Bind(st); err != nil {
			panic(err)
		}
		return w
	})
	sdk.RegisterClass("RuncBox", func(st *sdk.ObjectState) any { return &Box{state: st} }) // init = false
	outboundHandlers()

	mux := http.NewServeMux()
	// POST /call/{binding}/{name}/{method} with JSON args in the body;
	// ?timeout_ms= bounds the call by a context deadline. A failed call's
	// X-Matches names the SDK errors its error matches.
	mux.HandleFunc("POST /call/{binding}/{name}/{method}", func(w http.ResponseWriter, r *http.Request) {
		stub, err := stubFor(r)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		args, _ := io.ReadAll(r.Body)
		var in any
		if len(args) > 0 {
			json.Unmarshal(args, &in)
		}
		ctx := r.Context()
		if ms, err := strconv.Atoi(r.URL.Query().Get("timeout_ms")); err == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
			defer cancel()
		}
		var out any
		if err := stub.CallContext(ctx, r.PathValue("method"), in, &out); err != nil {
			w.Header().Set("X-Matches", matches(err))
			code := 500
			if errors.Is(err, sdk.ErrTimeout) {
				code = 504 // the object's event exceeded its time limit
			}
			if errors.Is(err, context.DeadlineExceeded) {
				code = 408 // the caller's own deadline passed
			}
			http.Error(w, err.Error(), code)
			return
		}
		json.NewEncoder(w).Encode(out)
	})
	// ANY /fetch/{binding}/{name}/... forwards the request to the object.
	mux.HandleFunc("/fetch/{binding}/{name}/", func(w http.ResponseWriter, r *http.Request) {
		stub, err := stubFor(r)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://object/"+strings.Join(strings.Split(r.URL.Path, "/")[4:], "/"), r.Body)
		req.Header = r.Header.Clone() // an Upgrade (WebSocket) passes through
		resp, err := stub.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		sdk.WriteResponse(w, resp)
	})
	// ANY /forward/{binding}/{name}/... passes the request received on to
	// the object as it is.
	mux.HandleFunc("/forward/{binding}/{name}/", func(w http.ResponseWriter, r *http.Request) {
		stub, err := stubFor(r)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		resp, err := stub.Fetch(r)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		sdk.WriteResponse(w, resp)
	})
	// GET /read/{binding}/{name}/... reads the object's whole answer and
	// says what reading it gave: the body, or the error that ended it, and
	// its Content-Type.
	mux.HandleFunc("GET /read/{binding}/{name}/", func(w http.ResponseWriter, r *http.Request) {
		stub, err := stubFor(r)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), "GET", "http://object/"+strings.Join(strings.Split(r.URL.Path, "/")[4:], "/"), nil)
		resp, err := stub.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		body, err := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "%d %q %v type=%q", resp.StatusCode, body, err, resp.Header.Get("Content-Type"))
	})
	// GET /store-id/{name} answers with the id of a Store through a
	// namespace the module took at init, so the host checks the binding at
	// load.
	mux.HandleFunc("GET /store-id/{name}", func(w http.ResponseWriter, r *http.Request) {
		id, err := stores.IDFromName(r.PathValue("name"))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, id)
	})
	// GET /version names the build (reload tests set it with -X).
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, codeVersion)
	})
	// GET /alone answers without any object: the Worker-only baseline.
	mux.HandleFunc("GET /alone", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(0)
	})
	// GET /id/{binding}?from=... checks an id string.
	mux.HandleFunc("GET /id/{binding}", func(w http.ResponseWriter, r *http.Request) {
		ns := sdk.GetNamespace(r.PathValue("binding"))
		var id string
		var err error
		switch {
		case r.URL.Query().Has("from"):
			id, err = ns.IDFromString(r.URL.Query().Get("from"))
		case r.URL.Query().Has("name"):
			id, err = ns.IDFromName(r.URL.Query().Get("name"))
		default:
			id, err = ns.NewUniqueID()
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprint(w, id)
	})
	sdk.Handle(mux)
}

// stubFor resolves /…/{binding}/{name}: a name, or "id:<hex>".
func stubFor(r *http.Request) (*sdk.Stub, error) {
	ns := sdk.GetNamespace(r.PathValue("binding"))
	name := r.PathValue("name")
	if id, ok := strings.CutPrefix(name, "rawid:"); ok { // unchecked, as a careless caller would
		return ns.Get(id), nil
	}
	if id, ok := strings.CutPrefix(name, "id:"); ok {
		checked, err := ns.IDFromString(id)
		if err != nil {
			return nil, err
		}
		return ns.Get(checked), nil
	}
	return ns.GetByName(name)
}

// codeVersion names the build: reload tests build the guest again with
// -ldflags=-X main.codeVersion=....
var codeVersion = "1"

func main() { sdk.Serve() }

// FilesRoundTrip writes MB MiB through the files API, reads them back, and
// reports both speeds (MB/s) and, with Check, whether they came back the
// same. Without Check the bytes read are only counted, as a benchmark of the
// files API wants: comparing them runs at Wasm's byte-at-a-time memequal.
func (b *Box) FilesRoundTrip(args struct {
	MB    int
	Check bool
}) (map[string]any, error) {
	mb := args.MB
	files := b.state.Container.Files()
	start := time.Now()
	w, err := files.Create("/tmp/roundtrip.bin")
	if err != nil {
		return nil, err
	}
	chunk := roundTripChunk()
	for i := 0; i < mb; i++ {
		chunk[0] = byte(i)
		if _, err := w.Write(chunk); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil { // returns once the file has it all
		return nil, err
	}
	writeMBps := float64(mb) * 1.048576 / time.Since(start).Seconds()
	start = time.Now()
	r, err := files.Open("/tmp/roundtrip.bin")
	if err != nil {
		return nil, err
	}
	back := &roundTripCheck{chunk: roundTripChunk(), same: true, skip: !args.Check}
	n, err := r.WriteTo(back)
	r.Close()
	if err != nil {
		return nil, err
	}
	readMBps := float64(n) / 1e6 / time.Since(start).Seconds()
	files.Remove("/tmp/roundtrip.bin")
	return map[string]any{"Same": args.Check && back.same && n == int64(mb)<<20, "Read": n,
		"WriteMBps": writeMBps, "ReadMBps": readMBps}, nil
}

// WriteBig writes MB MiB of zeros to Path through Files().Create: the
// errors of the writes (the first that failed) and of Close, and whether
// they are *fs.PathErrors.
func (b *Box) WriteBig(a struct {
	Path string
	MB   int
}) (string, error) {
	w, err := b.state.Container.Files().Create(a.Path)
	if err != nil {
		return "", err
	}
	chunk := make([]byte, 1<<20)
	var werr error
	for i := 0; i < a.MB && werr == nil; i++ {
		_, werr = w.Write(chunk)
	}
	cerr := w.Close()
	var pe *fs.PathError
	return fmt.Sprintf("write=%v close=%v (path errors: %v %v)", werr, cerr, werr == nil || errors.As(werr, &pe), cerr == nil || errors.As(cerr, &pe)), nil
}

// roundTripChunk is a MiB of FilesRoundTrip's content: MiB i of the file is
// it with byte(i) first.
func roundTripChunk() []byte {
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	return chunk
}

// roundTripCheck compares what is written to it with FilesRoundTrip's
// content. It is a comparison, not a checksum: SHA-256 in Wasm runs at
// about 100 MB/s and was what the benchmark measured.
type roundTripCheck struct {
	chunk []byte
	off   int64
	same  bool
	skip  bool // count only
}

func (c *roundTripCheck) Write(p []byte) (int, error) {
	n := len(p)
	if c.skip {
		return n, nil
	}
	for len(p) > 0 {
		j := int(c.off % int64(len(c.chunk)))
		if j == 0 {
			c.chunk[0] = byte(c.off / int64(len(c.chunk)))
		}
		k := min(len(p), len(c.chunk)-j)
		c.same = c.same && bytes.Equal(p[:k], c.chunk[j:j+k])
		p, c.off = p[k:], c.off+int64(k)
	}
	return n, nil
}

// outcomes collects what operations gave, one "what: ok" or "what: error"
// line each; an error matching one of marks is prefixed with it in
// brackets.
type outcomes struct {
	lines []string
	marks []error
}

func (o *outcomes) note(what string, err error) {
	msg := "ok"
	if err != nil {
		msg = sdk.Within(err).Error()
		for _, e := range o.marks {
			if errors.Is(err, e) {
				msg = "[" + sdk.Within(e).Error() + "] " + msg
			}
		}
	}
	o.lines = append(o.lines, what+": "+msg)
}

// FilesOps exercises every file operation and returns what each gave.
func (b *Box) FilesOps() ([]string, error) {
	files := b.state.Container.Files()
	out := &outcomes{marks: []error{fs.ErrNotExist, fs.ErrPermission, sdk.ErrNotRunning}}
	note := out.note
	note("mkdir", files.MkdirAll("/work/x/y"))
	note("write", files.WriteFile("/work/x/y/hello.txt", strings.NewReader("hello files")))
	data, err := files.ReadFile("/work/x/y/hello.txt")
	note("read "+string(data), err)
	info, err := files.Stat("/work/x/y/hello.txt")
	note(fmt.Sprintf("stat %s %d %v %o", info.Name, info.Size, info.IsDir, info.Mode.Perm()), err)
	note("rename", files.Rename("/work/x/y/hello.txt", "/work/x/hello.txt"))
	list, err := files.List("/work/x")
	var names []string
	for _, e := range list {
		names = append(names, fmt.Sprintf("%s(dir=%v)", e.Name, e.IsDir))
	}
	note("list "+strings.Join(names, " "), err)
	note("remove non-empty", files.Remove("/work/x"))
	note("remove all", files.RemoveAll("/work/x"))
	_, err = files.Stat("/work/x")
	note("stat removed", err)
	err = files.Rename("/work/x", "/work/z")
	note(fmt.Sprintf("rename removed (link error=%v)", errors.As(err, new(*os.LinkError))), err)
	_, err = files.List("/etc/passwd")
	note("list a file", err)
	note("write as app into /etc", files.As("app").WriteFile("/etc/app.txt", strings.NewReader("x")))
	_, err = files.As("ghost").Stat("/")
	note("unknown user", err)
	w, err := files.Watch("/tmp")
	if err != nil {
		return nil, err
	}
	defer w.Close()
	touch, err := b.state.Container.Exec([]string{"touch", "/tmp/watched", "/tmp/watched2"}, sdk.ExecOptions{})
	if err != nil {
		return nil, err
	}
	if err := touch.Wait(); err != nil {
		return nil, err
	}
	e, err := w.Next()
	note("watch "+e.Op+" "+e.Path, err)
	// The changes after the first came in the same read: Select must say
	// they are there, though the stream itself has nothing left.
	for {
		ready, err := sdk.Select(5*time.Second, w)
		if err != nil || len(ready) == 0 {
			note("select on the watcher timed out", err)
			break
		}
		if e, err = w.Next(); err != nil || e.Path == "/tmp/watched2" {
			note("select, then watch "+e.Op+" "+e.Path, err)
			break
		}
	}
	return out.lines, nil
}

// FilesHostile tries what a careless or hostile caller could: a named
// pipe read and written (an open that would wait for a peer), a NUL byte
// and a huge name in a path, a device read for a while, watches until
// refused, a watch of a directory that is then removed; and returns what
// each gave.
func (b *Box) FilesHostile() ([]string, error) {
	files := b.state.Container.Files()
	out := &outcomes{}
	note := out.note
	if _, err := b.ExecWait([]string{"sh", "-c", "mkfifo /tmp/fifo && mkdir -p /tmp/gone"}); err != nil {
		return nil, err
	}
	_, err := files.ReadFile("/tmp/fifo")
	note("read fifo", err)
	note("write fifo", files.WriteFile("/tmp/fifo", strings.NewReader("x")))
	_, err = files.Stat("/tmp/a\x00b")
	note("nul byte", err)
	_, err = files.Stat("/tmp/" + strings.Repeat("x", 300))
	note("long name", err)
	_, err = files.Stat("/tmp/the container is not running")
	note(fmt.Sprintf("a name with the words of an error (not-exist=%v not-running=%v)",
		errors.Is(err, fs.ErrNotExist), errors.Is(err, sdk.ErrNotRunning)), err)
	zero, err := files.Open("/dev/zero")
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(io.Discard, io.LimitReader(zero, 4<<20))
	zero.Close()
	note(fmt.Sprintf("read /dev/zero %d", n), err)
	var watches []*sdk.Watcher
	for {
		w, err := files.Watch("/tmp")
		if err != nil {
			note(fmt.Sprintf("watch %d", len(watches)+1), err)
			break
		}
		watches = append(watches, w)
	}
	for _, w := range watches {
		w.Close()
	}
	w, err := files.Watch("/tmp/gone")
	if err != nil {
		return nil, err
	}
	defer w.Close()
	note("remove watched", files.Remove("/tmp/gone"))
	for {
		e, err := w.Next()
		if err != nil {
			note("watch ends", err)
			break
		}
		note("watch "+e.Op+" "+e.Path, nil)
	}
	return out.lines, nil
}

// ReadEndless reads path (say /dev/zero) through the files API until it
// ends or the event's deadline stops it, and reports how it ended.
func (b *Box) ReadEndless(path string) (string, error) {
	r, err := b.state.Container.Files().Open(path)
	if err != nil {
		return "", err
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	return fmt.Sprintf("read %d bytes, then %v", n, sdk.Within(err)), nil
}

// BgArgs carry the background process methods over RPC.
type BgArgs struct {
	ID     string
	Cmd    []string
	User   string
	Signal int
	From   string
	// Lines is how many lines BgLogs reads (0: to the end).
	Lines int
}

// BgStart starts a background process and returns its description.
func (b *Box) BgStart(a BgArgs) (*sdk.BackgroundProcess, error) {
	return b.state.Container.StartProcess(a.Cmd, sdk.ProcessOptions{ProcessID: a.ID, User: a.User, Env: map[string]string{"MODE": "dev"}})
}

// BgList lists the background processes as "id=status" entries.
func (b *Box) BgList() ([]string, error) {
	list, err := b.state.Container.ListProcesses()
	var out []string
	for _, p := range list {
		out = append(out, p.ID+"="+string(p.Status))
	}
	return out, err
}

// BgGet describes one background process.
func (b *Box) BgGet(id string) (*sdk.BackgroundProcess, error) {
	return b.state.Container.GetProcess(id)
}

// ServeHTTP answers GET /logs/{id}: a background process's output from
// the start, handed to the host with Forward, so it keeps flowing after the
// event.
func (b *Box) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/logs/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	logs, err := b.state.Container.StreamProcessLogs(id, sdk.FromStart)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := sdk.Forward(w, logs); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// BgKill signals one.
func (b *Box) BgKill(a BgArgs) error {
	return b.state.Container.KillProcess(a.ID, sdk.Signal(a.Signal))
}

// BgWait waits for one to exit.
func (b *Box) BgWait(id string) (*sdk.BackgroundProcess, error) {
	return b.state.Container.WaitProcess(id)
}

// BgLogs reads Lines lines (0: all) of a background process's output from
// a.From, and how many bytes were dropped before.
func (b *Box) BgLogs(a BgArgs) (map[string]any, error) {
	logs, err := b.state.Container.StreamProcessLogs(a.ID, sdk.LogsFrom(a.From))
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	var out []byte
	if a.Lines == 0 {
		out, err = io.ReadAll(logs)
	} else {
		r := bufio.NewReader(logs)
		for range a.Lines {
			line, rerr := r.ReadBytes('\n')
			out, err = append(out, line...), rerr
			if err != nil {
				break
			}
		}
	}
	return map[string]any{"Output": string(out), "Dropped": logs.Dropped, "Bytes": len(out)}, err
}

// BgErrors returns the errors of background process calls a user can
// cause, each with the sentinel it matches.
func (b *Box) BgErrors() ([]string, error) {
	c := b.state.Container
	var out []string
	note := func(what string, err error) {
		var kinds []string
		for _, k := range []struct {
			name string
			err  error
		}{{"not-found", sdk.ErrNotFound}, {"invalid", sdk.ErrInvalidArgument}, {"signal", sdk.ErrSignalRange},
			{"exec-failed", sdk.ErrExecFailed}, {"not-running", sdk.ErrNotRunning}, {"too-large", sdk.ErrTooLarge}} {
			if errors.Is(err, k.err) {
				kinds = append(kinds, k.name)
			}
		}
		out = append(out, fmt.Sprintf("%s: %v %v", what, kinds, sdk.Within(err)))
	}
	_, err := c.GetProcess("nope")
	note("get unknown", err)
	note("kill unknown", c.KillProcess("nope", 0))
	note("kill signal 65", c.KillProcess("nope", 65))
	_, err = c.StartProcess(nil, sdk.ProcessOptions{})
	note("start nothing", err)
	_, err = c.StartProcess([]string{"true"}, sdk.ProcessOptions{ProcessID: "no spaces"})
	note("bad id", err)
	_, err = c.StartProcess([]string{"no-such-program"}, sdk.ProcessOptions{})
	note("missing program", err)
	_, err = c.StartProcess([]string{"true"}, sdk.ProcessOptions{User: "ghost"})
	note("unknown user", err)
	_, err = c.StreamProcessLogs("nope", sdk.FromStart)
	note("logs unknown", err)
	_, err = c.StreamProcessLogs("nope", "sideways")
	note("logs from sideways", err)
	_, err = c.WaitProcess("nope")
	note("wait unknown", err)
	_, err = c.GetProcess("the container is not running")
	note("get a name with the words of an error", err)
	_, err = c.StartProcess([]string{"true"}, sdk.ProcessOptions{ProcessID: "signal must be from 1 to 64"})
	note("an id with the words of an error", err)
	return out, nil
}

// BgFill starts background sleeps until the container refuses one and
// returns how many started and the refusal.
func (b *Box) BgFill() (string, error) {
	for i := 0; ; i++ {
		if _, err := b.state.Container.StartProcess([]string{"sleep", "3600"}, sdk.ProcessOptions{ProcessID: fmt.Sprint("fill-", i)}); err != nil {
			return fmt.Sprintf("%d started, then %v (too-large=%v)", i, sdk.Within(err), errors.Is(err, sdk.ErrTooLarge)), nil
		}
	}
}

// ExecShellLeftRunning execs a shell that runs `sleep 3598` in the
// background and waits on `sleep 3599`, and returns without waiting.
func (b *Box) ExecShellLeftRunning() error {
	_, err := b.state.Container.Exec([]string{"sh", "-c", "sleep 3598 & sleep 3599"}, sdk.ExecOptions{})
	return err
}

// ExecLeftRunning starts `sleep 3600` with exec and returns its pid
// without waiting: the event's end must kill it.
func (b *Box) ExecLeftRunning() (int, error) {
	p, err := b.state.Container.Exec([]string{"sleep", "3600"}, sdk.ExecOptions{})
	if err != nil {
		return 0, err
	}
	return p.Pid, nil
}
