// Command sandbox is a code runner: POST a shell script to /run/{session}
// and the session's Durable Object runs it in its own container, streaming
// the output back as it is produced; a script that fails ends the output
// with a line "[exit status N]". Each session keeps its container (and
// files) between runs: PUT /files/{session}/{path} uploads a file into
// it (making the directories it lacks), GET /files/{session}/{path}
// downloads one, and GET /files/{session}/{dir}/ lists a directory
// (/files/{session} the container's root).
//
// A session also runs background processes that outlive the request that
// started them, such as a dev server: POST its command to
// /start/{session}/{id}, follow its output with GET
// /logs/{session}/{id}?from=start (or from=now) from any later request,
// list them with GET /ps/{session}, and stop one with POST
// /kill/{session}/{id} (SIGTERM, then SIGKILL 5 s later).
//
// A script (of /run or /start) is read whole before it runs, and is at
// most 1 MiB.
//
// POST /signal/{session}/{signal} signals the session's container: STOP
// pauses everything running in it (scripts still start), CONT lets it go
// on; the others (TERM, KILL, HUP, INT, QUIT, USR1, USR2) end its main
// shell, and so the container (the next request of another route starts
// it again), a paused one when it goes on, but KILL at once. A signal
// starts no container: to one that does not run, it is a 409, as is a
// request of any route that meets the container exiting.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/sdk"
)

// Sandbox is a Durable Object with a container.
type Sandbox struct {
	state *sdk.ObjectState
	mux   *http.ServeMux
}

func newSandbox(st *sdk.ObjectState) any {
	s := &Sandbox{state: st, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /run", s.run)
	s.mux.HandleFunc("POST /start/{id}", s.startProcess)
	s.mux.HandleFunc("GET /logs/{id}", s.logs)
	s.mux.HandleFunc("GET /ps", s.list)
	s.mux.HandleFunc("POST /kill/{id}", s.kill)
	s.mux.HandleFunc(signalRoute, s.signal)
	s.mux.HandleFunc("PUT /files/{path...}", s.upload)
	s.mux.HandleFunc("GET /files/{path...}", s.download)
	// /files/{session} and /files/{session}/ come as /files: the
	// container's root directory (without these, the mux would redirect
	// them to /files/, a URL of no session).
	s.mux.HandleFunc("PUT /files", s.upload)
	s.mux.HandleFunc("GET /files", s.download)
	return s
}

// signalRoute is the route of signal, which acts on the container as it
// is: it starts none.
const signalRoute = "POST /signal/{signal}"

// ServeHTTP starts the session's container if it does not run, then
// serves the request. A route the sandbox does not have is a 404 (a 405
// for another method) without a container, and a signal to a container
// that does not run is a 409 without one.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" || pattern == signalRoute {
		s.mux.ServeHTTP(w, r)
		return
	}
	c := s.state.Container
	if !c.Running() {
		// The main process only keeps the container alive; scripts run
		// through exec, servers as background processes.
		if err := c.Start(sdk.StartOptions{Entrypoint: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 3600 & wait; done"}}); err != nil {
			fail(w, "starting the sandbox", err, http.StatusServiceUnavailable)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// run runs the request body as a script and streams its output; a
// failing script's output ends with "[exit status N]" (the status line left
// with the first output, so the code comes last).
func (s *Sandbox) run(w http.ResponseWriter, r *http.Request) {
	// The whole script is read before any of it runs: a body cut short
	// (the client gone, a malformed chunk) must not run as the script it
	// begins, and a bounded read keeps one huge body from exhausting the
	// memory of the instance, which serves other sessions too.
	script, ok := readScript(w, r, "running the script")
	if !ok {
		return
	}
	// The script runs in /work, made again if an earlier script removed
	// it (as the exec's Cwd, a removed /work would fail every later run).
	p, err := s.state.Container.Exec([]string{"sh", "-c", "mkdir -p /work && cd /work && exec sh -s"},
		sdk.ExecOptions{StdinPipe: true, Stderr: sdk.StdioCombined})
	if err != nil {
		fail(w, "running the script", err, http.StatusInternalServerError)
		return
	}
	// The shell reads the script while its output is read below: written
	// before that, a script printing more than the pipes hold would wait
	// for its output to be read, and this write for the shell.
	go func() {
		p.Stdin.Write(script) // an error is a shell that exited before reading it all
		p.Stdin.Close()
	}()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// Each piece of output goes to the client as soon as it is read.
	buf := make([]byte, 64<<10)
	for {
		n, err := p.Stdout.Read(buf)
		if n > 0 {
			w.Write(buf[:n])
			w.(http.Flusher).Flush()
		}
		if err != nil {
			break
		}
	}
	// The process lives as long as an event waits for it: this request
	// lasts until the script is done.
	var exit *sdk.ExitError
	switch err := p.Wait(); {
	case errors.As(err, &exit):
		fmt.Fprintf(w, "[exit status %d]\n", exit.Code)
	case err != nil:
		fmt.Fprintf(w, "[the script failed: %v]\n", sdk.Within(err))
	}
}

// upload writes the request body into the container at /{path}, streamed
// through the files API (never held whole in memory), making the
// directories it lacks, as the hosted Sandbox SDK's writeFile does.
func (s *Sandbox) upload(w http.ResponseWriter, r *http.Request) {
	name := "/" + r.PathValue("path")
	files := s.state.Container.Files()
	f, err := files.Create(name)
	if errors.Is(err, fs.ErrNotExist) { // a directory is missing
		if err = files.MkdirAll(path.Dir(name)); err == nil {
			f, err = files.Create(name)
		}
	}
	if err != nil {
		fail(w, "uploading", err, fileStatus(err))
		return
	}
	_, err = io.Copy(f, r.Body)
	if err = errors.Join(err, f.Close()); err != nil {
		fail(w, "uploading", err, fileStatus(err))
		return
	}
	info, err := files.Stat(name)
	if err != nil {
		fail(w, "uploading", err, fileStatus(err))
		return
	}
	writeJSON(w, describe(info))
}

// download sends the container's file /{path}; the host copies it to the
// client. A path ending in "/" is a directory: the answer lists its
// entries (JSON, each as an upload describes its file).
func (s *Sandbox) download(w http.ResponseWriter, r *http.Request) {
	name := "/" + r.PathValue("path")
	files := s.state.Container.Files()
	if strings.HasSuffix(name, "/") {
		list, err := files.List(path.Clean(name))
		if err != nil {
			fail(w, "listing", err, fileStatus(err))
			return
		}
		entries := []fileEntry{} // an empty directory is [], not null
		for _, info := range list {
			entries = append(entries, describe(info))
		}
		writeJSON(w, entries)
		return
	}
	f, err := files.Open(name)
	if err != nil {
		if info, statErr := files.Stat(name); statErr == nil && info.Mode.IsDir() {
			http.Error(w, "downloading: "+name+" is a directory: end its URL with / to list it", http.StatusBadRequest)
			return
		}
		fail(w, "downloading", err, fileStatus(err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if _, err := sdk.Forward(w, f); err != nil {
		fail(w, "downloading", err, http.StatusInternalServerError)
	}
}

// fileEntry describes a file of the container as the hosted Sandbox SDK's
// listFiles does (its FileInfo's names and formats).
type fileEntry struct {
	Name         string `json:"name"`
	AbsolutePath string `json:"absolutePath"`
	// RelativePath is the path from the directory that holds it: the
	// name, as a listing is one level deep.
	RelativePath string `json:"relativePath"`
	// Type is file, directory, symlink (not followed) or other (a device,
	// a named pipe, a socket).
	Type string `json:"type"`
	Size int64  `json:"size"`
	// ModifiedAt is the modification time in RFC 3339, UTC, to the
	// millisecond (as JavaScript's toISOString writes it).
	ModifiedAt string `json:"modifiedAt"`
	// Mode is the nine permission bits as ls shows them, rwxr-xr-x.
	Mode string `json:"mode"`
	// Permissions are the owner's.
	Permissions struct {
		Readable   bool `json:"readable"`
		Writable   bool `json:"writable"`
		Executable bool `json:"executable"`
	} `json:"permissions"`
	// Target is a symbolic link's target.
	Target string `json:"target,omitempty"`
}

// describe is info as the sandbox answers it.
func describe(info sdk.FileInfo) fileEntry {
	e := fileEntry{Name: info.Name, AbsolutePath: info.Path, RelativePath: info.Name, Size: info.Size,
		ModifiedAt: info.Modified().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Mode:       info.Mode.Perm().String()[1:], // without the type's letter
		Target:     info.Target}
	switch {
	case info.Mode.IsDir():
		e.Type = "directory"
	case info.Mode&fs.ModeSymlink != 0:
		e.Type = "symlink"
	case info.Mode.IsRegular():
		e.Type = "file"
	default:
		e.Type = "other"
	}
	owner := info.Mode.Perm() >> 6
	e.Permissions.Readable, e.Permissions.Writable, e.Permissions.Executable = owner&4 != 0, owner&2 != 0, owner&1 != 0
	return e
}

// fail answers the request with status and the error: what failed, then
// why. An SDK error's "wharf: " goes (sdk.Within): said after the
// sandbox's words, it would be in the middle. Whatever the route, a call
// that found the container not running (it exited after ServeHTTP saw it
// run, or a signal ended it) is a 409, as the hosted system's calls that
// need a running container throw; its error also matches sdk.ErrNotFound
// (the host's status), which would say the path or process is missing.
func fail(w http.ResponseWriter, what string, err error, status int) {
	if errors.Is(err, sdk.ErrNotRunning) {
		status = http.StatusConflict
	}
	http.Error(w, what+": "+sdk.Within(err).Error(), status)
}

// maxScript is the largest script /run and /start take (a command line
// of /start fails past 128 KiB anyway); larger inputs go in as files.
const maxScript = 1 << 20

// readScript reads the whole request body as a script, answering a
// failed or cut read with a 400 and a body over maxScript with a 413.
func readScript(w http.ResponseWriter, r *http.Request, what string) ([]byte, bool) {
	script, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxScript))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, fmt.Sprintf("%s: the script is over %d bytes: upload larger inputs with PUT /files/{session}/{path}", what, maxScript),
			http.StatusRequestEntityTooLarge)
		return nil, false
	case err != nil:
		fail(w, what+": reading the script", err, http.StatusBadRequest)
		return nil, false
	}
	return script, true
}

// fileStatus is the HTTP status for a files API error.
func fileStatus(err error) int {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrPermission):
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// startProcess starts the request body as a background process: it keeps
// running after this request, until it exits, is killed or the container
// stops.
func (s *Sandbox) startProcess(w http.ResponseWriter, r *http.Request) {
	script, ok := readScript(w, r, "starting the process")
	if !ok {
		return
	}
	p, err := s.state.Container.StartProcess([]string{"sh", "-c", string(script)},
		sdk.ProcessOptions{ProcessID: r.PathValue("id"), Cwd: "/work"})
	if err != nil {
		fail(w, "starting the process", err, statusOf(err))
		return
	}
	writeJSON(w, p)
}

// logs streams a background process's output (stdout and stderr in the
// order written) until it exits or the client leaves; X-Dropped-Bytes says
// how much of the start was no longer kept.
func (s *Sandbox) logs(w http.ResponseWriter, r *http.Request) {
	logs, err := s.state.Container.StreamProcessLogs(r.PathValue("id"), sdk.LogsFrom(r.URL.Query().Get("from")))
	if err != nil {
		fail(w, "following the log", err, statusOf(err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Dropped-Bytes", strconv.FormatInt(logs.Dropped, 10))
	// The host forwards the log to the client after this event ends, so
	// the session serves other requests while the client follows (an
	// object's events never overlap).
	if _, err := sdk.Forward(w, logs.Stream); err != nil {
		fail(w, "following the log", err, http.StatusInternalServerError)
	}
}

// list describes the session's background processes.
func (s *Sandbox) list(w http.ResponseWriter, r *http.Request) {
	list, err := s.state.Container.ListProcesses()
	if err != nil {
		fail(w, "listing the processes", err, statusOf(err))
		return
	}
	writeJSON(w, list)
}

// kill stops a background process: SIGTERM to its process group, and
// SIGKILL if it is still running after killGrace. It answers with the
// process's final description.
func (s *Sandbox) kill(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c := s.state.Container
	if err := c.KillProcess(id, sdk.SIGTERM); err != nil {
		fail(w, "killing the process", err, statusOf(err))
		return
	}
	for deadline := time.Now().Add(killGrace); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		p, err := c.GetProcess(id)
		if err != nil {
			fail(w, "killing the process", err, statusOf(err))
			return
		}
		if p.ExitCode != nil { // exited (running or paused: not yet)
			writeJSON(w, p)
			return
		}
	}
	if err := c.KillProcess(id, sdk.SIGKILL); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		fail(w, "killing the process", err, statusOf(err))
		return
	}
	p, err := c.WaitProcess(id)
	if err != nil {
		fail(w, "killing the process", err, statusOf(err))
		return
	}
	writeJSON(w, p)
}

// signal sends the container the signal named in the path; a container
// that does not run (never started, or exited) is a 409, as the hosted
// system's calls that need a running container throw.
func (s *Sandbox) signal(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(strings.ToUpper(r.PathValue("signal")), "SIG")
	sig, ok := signals[name]
	if !ok {
		http.Error(w, fmt.Sprintf("signalling the sandbox: %q is not one of %s", r.PathValue("signal"), strings.Join(signalNames, ", ")), http.StatusBadRequest)
		return
	}
	if err := s.state.Container.Signal(sig); err != nil {
		if errors.Is(err, sdk.ErrNotRunning) {
			err = fmt.Errorf("%w: a request to another route (/run, say) starts one", sdk.Within(err))
		}
		fail(w, "signalling the sandbox", err, statusOf(err))
		return
	}
	fmt.Fprintf(w, "sent SIG%s\n", name)
}

// signals are the signals /signal sends, by name.
var signals = map[string]sdk.Signal{"HUP": sdk.SIGHUP, "INT": sdk.SIGINT, "QUIT": sdk.SIGQUIT, "KILL": sdk.SIGKILL,
	"USR1": sdk.SIGUSR1, "USR2": sdk.SIGUSR2, "TERM": sdk.SIGTERM, "CONT": sdk.SIGCONT, "STOP": sdk.SIGSTOP}

// signalNames lists signals' names, for the error.
var signalNames = slices.Sorted(maps.Keys(signals))

// killGrace is how long kill gives a process to end after SIGTERM.
const killGrace = 5 * time.Second

// statusOf is the HTTP status for a background process or signal error.
func statusOf(err error) int {
	switch { // a container that does not run is fail's
	case errors.Is(err, sdk.ErrBusy):
		return http.StatusConflict
	case errors.Is(err, sdk.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, sdk.ErrInvalidArgument), errors.Is(err, sdk.ErrExecFailed):
		return http.StatusBadRequest
	case errors.Is(err, sdk.ErrTooLarge):
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func init() {
	sdk.RegisterClass("Sandbox", newSandbox)
	sandboxes := sdk.GetNamespace("SANDBOX")
	// /{action}/{session}[/{rest}] goes to the session's object as
	// /{action}[/{rest}].
	forward := func(w http.ResponseWriter, r *http.Request) {
		stub, err := sandboxes.GetByName(r.PathValue("session"))
		if err != nil {
			fail(w, "reaching the session", err, http.StatusInternalServerError)
			return
		}
		path := "/" + strings.SplitN(r.URL.Path, "/", 3)[1]
		if rest := r.PathValue("rest"); rest != "" {
			path += "/" + rest
		}
		// The path is decoded: built as a URL, a '?' or '#' of a file's
		// name stays in the path (escaped) rather than starting a query.
		u := url.URL{Scheme: "http", Host: "sandbox", Path: path, RawQuery: r.URL.RawQuery}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), r.Body)
		if err != nil {
			fail(w, "reaching the session", err, http.StatusBadRequest)
			return
		}
		resp, err := stub.Fetch(req)
		if err != nil {
			fail(w, "reaching the session", err, http.StatusBadGateway)
			return
		}
		sdk.WriteResponse(w, resp) // the host copies the body
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/{action}/{session}", forward)
	mux.HandleFunc("/{action}/{session}/{rest...}", forward)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "POST a shell script to /run/{session}: curl --data-binary 'echo hi; uname -a' http://HOST/run/demo")
		fmt.Fprintln(w, "Files: PUT or GET /files/{session}/{path} (curl -T FILE, curl -o FILE); GET /files/{session}/{dir}/ lists a directory")
		fmt.Fprintln(w, "Background: POST a command to /start/{session}/{id}, GET /logs/{session}/{id}?from=start|now, GET /ps/{session}, POST /kill/{session}/{id}")
		fmt.Fprintln(w, "Pause and resume: POST /signal/{session}/STOP, POST /signal/{session}/CONT (or TERM, KILL, HUP, INT, QUIT, USR1, USR2)")
	})
	sdk.Handle(mux)
}

func main() { sdk.Serve() }
