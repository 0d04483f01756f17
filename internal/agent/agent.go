// Package agent is wharf-init, the agent that runs as PID 1 in a
// container: it starts the image's entrypoint as its child, reaps every
// zombie, forwards signals to the child and exits with its exit code. On a
// unix socket that only callers outside the container's PID namespace may
// use (that is, wharf), it starts processes with the descriptors wharf
// passes, so their output goes straight to wharf, works on the container's
// files, and keeps background processes with their output.
package agent

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/execpath"
)

// Config is what the agent runs.
type Config struct {
	// Socket is the path the agent listens on.
	Socket string
	// Main is the container's main process (its arguments) and User the
	// user it and, by default, every exec runs as.
	Main []string
	User wire.Cred
}

// Run starts the main process, serves wharf, and returns the main
// process's exit code once it has exited.
func Run(cfg Config) int {
	// Not dumpable: no process of the container may ptrace the agent (root
	// there has the same uid and capabilities, and seccomp allows ptrace),
	// and one stopped by a tracer would answer wharf nothing. The processes
	// it starts are dumpable again once they exec.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.Printf("wharf-init: %v", err)
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	a := &agent{user: cfg.User, children: map[int]chan int{}, bg: &backgrounds{}}
	mainPid, mainExit, err := a.start(wire.Exec{Args: cfg.Main, Env: os.Environ(), Stdin: 0, Stdout: 1, Stderr: 2},
		[]*os.File{os.Stdin, os.Stdout, os.Stderr}, nil)
	if err != nil {
		log.Printf("wharf-init: %v", err)
		// wharf, waiting for the socket, reads why instead.
		r := errorReply(err)
		if werr := os.WriteFile(filepath.Join(filepath.Dir(cfg.Socket), wire.StartErrorName), []byte(r.Kind+"\n"+r.Error), 0o600); werr != nil {
			log.Printf("wharf-init: %v", werr)
		}
		return 127
	}
	if err := a.listen(cfg.Socket); err != nil {
		log.Printf("wharf-init: %v", err)
	}
	for {
		select {
		case code := <-mainExit:
			return code
		case sig := <-sigs:
			switch sig {
			case syscall.SIGCHLD:
				a.reap()
			case syscall.SIGURG, syscall.SIGPIPE: // the Go runtime's own
			case syscall.SIGCONT:
				// wharf sends SIGCONT to every process of the container
				// itself, and to the agent only in case it was stopped.
				// Passed on, it reached the main process late (the
				// agent under its CPU quota), after a SIGSTOP that
				// followed it: the main process escaped that pause.
			default:
				syscall.Kill(mainPid, sig.(syscall.Signal))
			}
		}
	}
}

type agent struct {
	user wire.Cred
	// mu is held while a child is started and registered, and while a
	// reaped status is handed over, so no exit is seen before its child is
	// known.
	mu       sync.Mutex
	children map[int]chan int
	bg       *backgrounds
}

// reap collects every exited child (the container's orphans too) and
// hands the exit codes of ours to their waiters.
func (a *agent) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		code := ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		a.mu.Lock()
		if ch, ok := a.children[pid]; ok {
			ch <- code
			delete(a.children, pid)
		}
		a.mu.Unlock()
	}
}

// start starts a process with files as its descriptors (indexes from x);
// tty, if set, is the terminal it runs on. It returns the pid and a
// channel that receives the exit code.
func (a *agent) start(x wire.Exec, files []*os.File, tty *os.File) (int, chan int, error) {
	if len(x.Args) == 0 {
		return 0, nil, errors.New("exec needs a command")
	}
	argv0, err := execpath.Find(x.Args[0], execpath.FromEnv(x.Env), x.Cwd, os.Stat)
	if err != nil {
		return 0, nil, err
	}
	if x.Cwd != "" {
		if st, err := os.Stat(x.Cwd); err != nil { // not wrapped: the program was found
			return 0, nil, fmt.Errorf("cwd %s: %v", x.Cwd, err)
		} else if !st.IsDir() {
			return 0, nil, fmt.Errorf("cwd %s: not a directory", x.Cwd)
		}
	}
	cred := a.user
	if x.User != nil {
		cred = *x.User
	}
	attr := &syscall.ProcAttr{Dir: x.Cwd, Env: x.Env, Sys: &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups},
	}}
	if tty != nil {
		attr.Files = []uintptr{tty.Fd(), tty.Fd(), tty.Fd()}
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
	} else {
		attr.Sys.Setpgid = true
		devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return 0, nil, err
		}
		defer devNull.Close()
		for _, idx := range []int{x.Stdin, x.Stdout, x.Stderr} {
			f := devNull
			if idx >= 0 && idx < len(files) {
				f = files[idx]
			}
			attr.Files = append(attr.Files, f.Fd())
		}
	}
	exit := make(chan int, 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	pid, err := syscall.ForkExec(argv0, x.Args, attr)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			program := argv0
			if !filepath.IsAbs(program) { // the child ran it from the exec's directory
				program = filepath.Join(x.Cwd, program)
			}
			if _, statErr := os.Stat(program); statErr == nil { // found: what it needs to run is not
				return 0, nil, fmt.Errorf("starting %s: %w (the interpreter of its #! line, or the loader it needs, does not exist)", x.Args[0], err)
			}
			return 0, nil, fmt.Errorf("%w: %s", execpath.ErrNotFound, x.Args[0])
		}
		return 0, nil, fmt.Errorf("starting %s: %w", x.Args[0], err)
	}
	a.children[pid] = exit
	return pid, exit, nil
}

// listen serves wharf on a unix socket at path.
func (a *agent) listen(path string) error {
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				log.Printf("wharf-init: accept: %v", err)
				return
			}
			go a.serve(c)
		}
	}()
	return nil
}

// fromHost reports whether the peer of c runs outside this PID namespace:
// the kernel reports the pid of a process this namespace cannot see as 0.
func fromHost(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return err == nil && cred.Pid == 0
}

// serve runs one connection's operation.
func (a *agent) serve(c *net.UnixConn) {
	defer c.Close()
	if !fromHost(c) {
		reply(c, wire.Reply{Error: wire.ErrNotFromHost.Error(), Kind: wire.KindRefused})
		return
	}
	var req wire.Request
	files, err := wire.Receive(c, &req)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return
	}
	switch {
	case req.Exec != nil:
		a.exec(c, *req.Exec, files)
	case req.File != nil:
		a.file(c, *req.File)
	case req.Background != nil:
		a.background(c, *req.Background)
	default:
		reply(c, wire.Reply{Error: "unknown request", Kind: wire.KindInvalid})
	}
}

// reply sends r, with files, on c. A reply larger than a message may be
// (wire.MaxMessage: a background process's description holds its command,
// which may be megabytes) is sent as the refusal it is, of kind limit:
// wharf would read only the end of the connection.
func reply(c *net.UnixConn, r wire.Reply, files ...*os.File) error {
	err := wire.Send(c, r, files...)
	if errors.Is(err, wire.ErrTooLarge) {
		if serr := wire.Send(c, errorReply(&kindError{wire.KindLimit, fmt.Errorf("the answer does not fit in one message: %w", err)})); serr != nil {
			return serr
		}
	}
	return err
}

// exec runs one process for wharf: it replies Started, forwards the
// signals wharf sends, kills the process if wharf hangs up first, and
// replies Exited.
func (a *agent) exec(c *net.UnixConn, x wire.Exec, files []*os.File) {
	var master, tty *os.File
	if x.Terminal {
		var err error
		if master, tty, err = openPty(x.Rows, x.Cols); err != nil {
			reply(c, wire.Reply{Error: err.Error()})
			return
		}
		defer master.Close()
	}
	pid, exit, err := a.start(x, files, tty)
	if tty != nil {
		tty.Close()
	}
	for _, f := range files { // the process has its own copies now
		f.Close()
	}
	if err != nil {
		reply(c, errorReply(err))
		return
	}
	var send []*os.File
	if master != nil {
		send = append(send, master)
	}
	if err := reply(c, wire.Reply{Started: true, Pid: pid}, send...); err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if master != nil {
		master.Close()
	}
	hangup := make(chan struct{})
	go func() {
		defer close(hangup)
		for {
			var req wire.Request
			extra, err := wire.Receive(c, &req)
			for _, f := range extra {
				f.Close()
			}
			if err != nil {
				return
			}
			if req.Signal > 0 {
				syscall.Kill(pid, syscall.Signal(req.Signal))
			}
		}
	}()
	select {
	case code := <-exit:
		reply(c, wire.Reply{Exited: true, Code: code})
	case <-hangup: // nobody waits for it: it goes, with what it started
		select {
		case <-exit: // it had exited as wharf hung up: what it left runs on
			return
		default:
		}
		syscall.Kill(-pid, syscall.SIGKILL) // its group (it leads one: Setpgid or Setsid)
		if x.Terminal {
			killSession(pid)
		}
		<-exit
	}
}

// killSession kills the processes of session sid, which an exec on a
// terminal leads: an interactive shell's job control runs each job in a
// process group of its own, which killing the shell's group leaves running.
// It scans again while it finds some, for those forked meanwhile.
func killSession(sid int) {
	for range 3 {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		found := false
		for _, e := range entries {
			p, err := strconv.Atoi(e.Name())
			if err != nil || p == sid {
				continue
			}
			if s, err := unix.Getsid(p); err == nil && s == sid {
				syscall.Kill(p, syscall.SIGKILL)
				found = true
			}
		}
		if !found {
			return
		}
	}
}

// openPty opens a new pseudo-terminal of rows x cols and returns its
// controlling side and the terminal.
func openPty(rows, cols uint16) (master, tty *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a terminal: %w", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0)
	}
	if err == nil && rows > 0 && cols > 0 {
		err = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}
	if err == nil {
		tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	}
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("opening a terminal: %w", err)
	}
	return master, tty, nil
}
