package agent

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/procstat"
)

// validID is what a chosen id may be.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// backgrounds are the container's background processes: they belong to
// the container, not to the connection that started them.
type backgrounds struct {
	mu    sync.Mutex
	procs []*bgProcess // in the order they started
}

// bgProcess is one background process.
type bgProcess struct {
	out    *ring
	exited chan struct{}
	// info and killed are guarded by backgrounds.mu.
	info   wire.ProcessInfo
	killed bool
}

// background runs one operation on the background processes.
func (a *agent) background(c *net.UnixConn, b wire.Background) {
	var r wire.Reply
	var err error
	switch b.Op {
	case wire.BackgroundStart:
		r.Process, err = a.startBackground(b)
	case wire.BackgroundList:
		a.bg.replyList(c)
		return
	case wire.BackgroundGet:
		var p *bgProcess
		if p, err = a.bg.find(b.ID); err == nil {
			r.Process = a.bg.infoOf(p)
		}
	case wire.BackgroundKill:
		err = a.bg.kill(b.ID, b.Signal)
	case wire.BackgroundLogs:
		a.bg.logs(c, b)
		return
	case wire.BackgroundWait:
		a.bg.wait(c, b.ID)
		return
	default:
		err = &kindError{wire.KindInvalid, fmt.Errorf("unknown background operation %q", b.Op)}
	}
	if err != nil {
		r = errorReply(err)
	}
	reply(c, r)
}

// kindError is an error with the kind the reply gives it.
type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }

// startBackground starts a process whose output goes, through one pipe
// (so the order of stdout and stderr is kept), into its ring buffer.
func (a *agent) startBackground(b wire.Background) (*wire.ProcessInfo, error) {
	if b.Exec == nil {
		return nil, &kindError{wire.KindInvalid, errors.New("start needs a process")}
	}
	bg := a.bg
	bg.mu.Lock()
	defer bg.mu.Unlock()
	id, err := bg.newID(b.ID)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	x := *b.Exec
	x.Stdin, x.Stdout, x.Stderr, x.Terminal = -1, 0, 0, false
	pid, exit, err := a.start(x, []*os.File{w}, nil)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	p := &bgProcess{out: newRing(abi.BackgroundOutputBuffer, r), exited: make(chan struct{}), info: wire.ProcessInfo{
		ID: id, Pid: pid, Command: x.Args, Status: wire.StatusRunning, Started: time.Now().UnixMilli()}}
	bg.procs = append(bg.procs, p)
	go p.out.fill()
	go bg.exit(p, exit)
	return bg.infoLocked(p), nil
}

// newID checks a chosen id, or makes one, and makes room for the process:
// a done process of the same id, or the oldest done one when
// MaxBackground are kept, is forgotten. Called with mu held.
func (bg *backgrounds) newID(id string) (string, error) {
	if id == "" {
		raw := make([]byte, 4)
		rand.Read(raw)
		id = "proc-" + hex.EncodeToString(raw)
	} else if !validID.MatchString(id) {
		return "", &kindError{wire.KindInvalid, fmt.Errorf("a process id is 1 to 64 letters, digits, '.', '_' or '-' (not first), got %q", id)}
	}
	if i := bg.index(id); i >= 0 {
		switch p := bg.procs[i]; {
		case p.info.Status == wire.StatusRunning:
			return "", &kindError{wire.KindExists, fmt.Errorf("background process %q is already running", id)}
		case !p.done():
			return "", &kindError{wire.KindExists, fmt.Errorf("background process %q has exited, but processes it left behind still hold its output: kill it first", id)}
		}
		bg.procs = slices.Delete(bg.procs, i, i+1)
	}
	if len(bg.procs) < abi.MaxBackgroundProcesses {
		return id, nil
	}
	for i, p := range bg.procs {
		if p.done() {
			bg.procs = slices.Delete(bg.procs, i, i+1)
			return id, nil
		}
	}
	return "", &kindError{wire.KindLimit, fmt.Errorf("too many background processes: %d are running, the limit is %d", len(bg.procs), abi.MaxBackgroundProcesses)}
}

// exit records the process's exit code when the reaper hands it over,
// once all the process wrote is in its buffer: a Wait that returns is
// followed by logs that end with the process's last words.
func (bg *backgrounds) exit(p *bgProcess, exit chan int) {
	code := <-exit
	p.out.flush()
	bg.mu.Lock()
	p.info.ExitCode, p.info.Exited = &code, time.Now().UnixMilli()
	switch {
	case p.killed && code != 0:
		p.info.Status = wire.StatusKilled
	case code == 0:
		p.info.Status = wire.StatusCompleted
	default:
		p.info.Status = wire.StatusFailed
	}
	bg.mu.Unlock()
	close(p.exited)
}

// done reports whether p has exited and so has every process it left
// behind holding its output: only then may it be forgotten, for its
// children stay within reach of a kill and its buffer counts against the
// limit until they exit. Called with backgrounds.mu held.
func (p *bgProcess) done() bool {
	return p.info.Status != wire.StatusRunning && p.out.hasEnded()
}

// index is the position of id in procs, or -1. Called with mu held.
func (bg *backgrounds) index(id string) int {
	return slices.IndexFunc(bg.procs, func(p *bgProcess) bool { return p.info.ID == id })
}

// find returns the process id.
func (bg *backgrounds) find(id string) (*bgProcess, error) {
	bg.mu.Lock()
	defer bg.mu.Unlock()
	if i := bg.index(id); i >= 0 {
		return bg.procs[i], nil
	}
	return nil, &kindError{wire.KindNotFound, fmt.Errorf("no background process %q", id)}
}

// infoOf returns a copy of p's description.
func (bg *backgrounds) infoOf(p *bgProcess) *wire.ProcessInfo {
	bg.mu.Lock()
	defer bg.mu.Unlock()
	return bg.infoLocked(p)
}

// infoLocked is infoOf with mu held. A running process that is stopped
// (its container paused, or a SIGSTOP of its own) is told as paused.
func (bg *backgrounds) infoLocked(p *bgProcess) *wire.ProcessInfo {
	info := p.info
	if info.Status == wire.StatusRunning && procstat.Stopped(info.Pid) {
		info.Status = wire.StatusPaused
	}
	return &info
}

// replyList answers a list with a Reply per process kept, in the order
// they started, More set on each but the last (none kept: one empty
// Reply): a description holds the process's command, which may be
// megabytes, so all of them in one Reply could be more than a message may
// hold.
func (bg *backgrounds) replyList(c *net.UnixConn) {
	list := bg.list()
	if len(list) == 0 {
		reply(c, wire.Reply{})
		return
	}
	for i := range list {
		if reply(c, wire.Reply{Processes: list[i : i+1], More: i < len(list)-1}) != nil {
			return
		}
	}
}

// list describes every process kept, in the order they started.
func (bg *backgrounds) list() []wire.ProcessInfo {
	bg.mu.Lock()
	defer bg.mu.Unlock()
	out := make([]wire.ProcessInfo, 0, len(bg.procs))
	for _, p := range bg.procs {
		out = append(out, *bg.infoLocked(p))
	}
	return out
}

// kill sends sig to the process's group: the process and the children it
// started (a dev server's workers, a shell's commands). A process that
// exited while children it left behind still hold its output (`sleep 1000
// &` in a shell) can still be killed: its group lives on in them, and the
// kernel does not give the group's number to another process while it
// has members. SIGTERM is followed by SIGCONT, as a stop's is
// (containerd.Container.Terminate): in a container its object paused
// (SIGSTOP) the SIGTERM would stay pending in the stopped group, and a
// kill would wait out its grace and end with SIGKILL.
func (bg *backgrounds) kill(id string, sig int) error {
	if sig < 1 || sig > 64 {
		return &kindError{wire.KindInvalid, fmt.Errorf("%s, got %d", abi.SignalOutOfRange, sig)}
	}
	bg.mu.Lock()
	defer bg.mu.Unlock()
	i := bg.index(id)
	if i < 0 {
		return &kindError{wire.KindNotFound, fmt.Errorf("no background process %q", id)}
	}
	p := bg.procs[i]
	if p.done() {
		return &kindError{wire.KindNotFound, fmt.Errorf("background process %q has exited", id)}
	}
	p.killed = p.killed || p.info.Status == wire.StatusRunning
	if err := syscall.Kill(-p.info.Pid, syscall.Signal(sig)); err != nil && err != syscall.ESRCH {
		return err
	}
	if sig == int(syscall.SIGTERM) {
		if err := syscall.Kill(-p.info.Pid, syscall.SIGCONT); err != nil && err != syscall.ESRCH {
			return err
		}
	}
	return nil
}

// hangup returns a channel closed when wharf closes its end of c (it
// sends nothing more on it).
func hangup(c *net.UnixConn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, c)
	}()
	return done
}

// wait answers once the process has exited, unless wharf hangs up first.
func (bg *backgrounds) wait(c *net.UnixConn, id string) {
	p, err := bg.find(id)
	if err != nil {
		reply(c, errorReply(err))
		return
	}
	select {
	case <-p.exited:
		info := bg.infoOf(p)
		reply(c, wire.Reply{Exited: true, Code: *info.ExitCode, Process: info})
	case <-hangup(c):
	}
}

// logs streams the process's output on c: what the buffer keeps (from the
// start) or what comes from now on, until the output ends (every process
// holding it has closed it) or wharf hangs up. A reader that falls more
// than the buffer behind skips what was overwritten.
func (bg *backgrounds) logs(c *net.UnixConn, b wire.Background) {
	p, err := bg.find(b.ID)
	if err != nil {
		reply(c, errorReply(err))
		return
	}
	from, dropped := p.out.begin(b.FromStart)
	if err := reply(c, wire.Reply{Dropped: dropped}); err != nil {
		return
	}
	gone := hangup(c)
	buf := make([]byte, 64<<10)
	for {
		n, next, ended, changed := p.out.read(from, buf)
		from = next
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			continue
		}
		if ended {
			return
		}
		select {
		case <-changed:
		case <-gone:
			return
		}
	}
}

// ring keeps the last size bytes of a process's output, read from src.
type ring struct {
	src  *os.File
	mu   sync.Mutex
	size int
	// data grows up to size bytes; the byte at offset o of the output is
	// data[o % size] while o is one of the last len(data) written.
	data    []byte
	written int64
	ended   bool
	// changed is closed, and replaced, when bytes arrive or the output
	// ends.
	changed chan struct{}
	// flushes are closed once what src held when they were asked for is
	// in data.
	flushes []chan struct{}
}

func newRing(size int, src *os.File) *ring {
	return &ring{src: src, size: size, changed: make(chan struct{})}
}

// fill copies the output from src until it ends.
func (r *ring) fill() {
	defer r.src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.src.Read(buf)
		r.write(buf[:n])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = r.drain(buf)
		}
		if err != nil {
			break
		}
	}
	r.mu.Lock()
	r.ended = true
	close(r.changed)
	closeAll(r.flushes)
	r.flushes = nil
	r.mu.Unlock()
}

// flush returns once what the pipe holds now is in the buffer, or the
// output has ended. It interrupts fill's read with a deadline in the past.
func (r *ring) flush() {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	done := make(chan struct{})
	r.flushes = append(r.flushes, done)
	r.src.SetReadDeadline(time.Unix(1, 0))
	r.mu.Unlock()
	<-done
}

// drain answers the flushes that interrupted fill's read: with the
// deadline lifted, it copies what the pipe holds without waiting for more.
// Its error is io.EOF when the output ended.
func (r *ring) drain(buf []byte) error {
	r.mu.Lock()
	r.src.SetReadDeadline(time.Time{})
	waiting := r.flushes
	r.flushes = nil
	r.mu.Unlock()
	defer closeAll(waiting)
	raw, err := r.src.SyscallConn()
	if err != nil {
		return err
	}
	var readErr error
	err = raw.Read(func(fd uintptr) bool {
		for {
			n, err := syscall.Read(int(fd), buf)
			switch {
			case n > 0:
				r.write(buf[:n])
			case err == syscall.EINTR:
			case err == syscall.EAGAIN:
				return true
			default:
				readErr = cmp.Or(err, io.EOF)
				return true
			}
		}
	})
	return cmp.Or(err, readErr)
}

// closeAll closes each channel.
func closeAll(chans []chan struct{}) {
	for _, c := range chans {
		close(c)
	}
}

// hasEnded reports whether the output has ended: every process holding
// it has exited.
func (r *ring) hasEnded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended
}

func (r *ring) write(p []byte) {
	if len(p) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(p) > 0 {
		pos := int(r.written % int64(r.size))
		var n int
		if pos == len(r.data) { // still growing
			n = min(len(p), r.size-pos)
			r.data = append(r.data, p[:n]...)
		} else {
			n = copy(r.data[pos:], p)
		}
		p = p[n:]
		r.written += int64(n)
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// begin returns the offset a reader starts at, and for one from the start
// how many bytes were overwritten before it.
func (r *ring) begin(fromStart bool) (from, dropped int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !fromStart {
		return r.written, 0
	}
	first := r.written - int64(len(r.data))
	return first, first
}

// read copies bytes from offset from into p and returns how many, the
// next offset, whether the output has ended (and all of it was read) and
// a channel closed when there is more.
func (r *ring) read(from int64, p []byte) (n int, next int64, ended bool, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if first := r.written - int64(len(r.data)); from < first {
		from = first
	}
	if avail := r.written - from; avail > 0 {
		pos := int(from % int64(r.size))
		n = copy(p, r.data[pos:pos+int(min(avail, int64(len(r.data)-pos)))])
		return n, from + int64(n), false, r.changed
	}
	return 0, from, r.ended, r.changed
}
