package abi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Option lists are field lists (see fields.go) whose names are options. Each
// list has one struct here with an Encode method, used by the SDK, and a
// Decode function, used by the host. The one rule for every list: a name the
// list does not define is refused with an *UnknownOptionError, which matches
// ErrUnknownOption. A single-valued option given twice keeps the last value.
// Decoding checks only the encoding and the syntax of values (an octal perm,
// a decimal limit); what values mean is checked by the import that uses them.

// ErrUnknownOption reports an option name the list does not define.
var ErrUnknownOption = errors.New("unknown option")

// UnknownOptionError names the list and the option it does not define.
type UnknownOptionError struct {
	List string // "start", "exec", "file", "list", "egress" or "container config"
	Name string
}

// Error reads e.g. `unknown exec option "entrypoint"`.
func (e *UnknownOptionError) Error() string {
	return fmt.Sprintf("unknown %s option %q", e.List, Excerpt(e.Name))
}

// Excerpt is s, or its first 80 bytes and "...": what a message quotes of
// a name or value a guest passed, which may be as large as its memory.
func Excerpt(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "..."
}

// Is makes the error match ErrUnknownOption.
func (e *UnknownOptionError) Is(target error) bool { return target == ErrUnknownOption }

// decodeOptions walks an option list, calling set for each pair; set returns
// false for a name the list does not define, or an error for a bad value.
func decodeOptions(raw []byte, list string, set func(name, value string) (bool, error)) error {
	var bad error
	err := RangeFields(raw, func(n, v []byte) bool {
		if len(n) > 80 { // no option's name is so long: refused without a copy
			bad = &UnknownOptionError{List: list, Name: string(n[:81])}
			return false
		}
		known, err := set(string(n), string(v))
		switch {
		case err != nil:
			bad = err
		case !known:
			bad = &UnknownOptionError{List: list, Name: string(n)}
		}
		return bad == nil
	})
	if err != nil {
		return err
	}
	return bad
}

// addAll adds one name/value pair per value.
func addAll(b *FieldsBuilder, name string, values []string) {
	for _, v := range values {
		b.Add(name, v)
	}
}

// addSet adds name only when value is not empty.
func addSet(b *FieldsBuilder, name, value string) {
	if value != "" {
		b.Add(name, value)
	}
}

// StartOptions are the options of container_start.
type StartOptions struct {
	Env            []string // OptEnv, KEY=VALUE
	Entrypoint     []string // OptEntrypoint
	EnableInternet bool     // OptEnableInternet: the value "1"; any other value is false
	Secrets        []string // OptSecret
	Labels         []string // OptLabel, KEY=VALUE
}

// Encode appends the options as a field list to buf[:0].
func (o StartOptions) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	addAll(b, OptEnv, o.Env)
	addAll(b, OptEntrypoint, o.Entrypoint)
	if o.EnableInternet {
		b.Add(OptEnableInternet, "1")
	}
	addAll(b, OptSecret, o.Secrets)
	addAll(b, OptLabel, o.Labels)
	return b.Bytes()
}

// DecodeStartOptions reads the options of container_start.
func DecodeStartOptions(raw []byte) (StartOptions, error) {
	var o StartOptions
	err := decodeOptions(raw, "start", func(n, v string) (bool, error) {
		switch n {
		case OptEnv:
			o.Env = append(o.Env, v)
		case OptEntrypoint:
			o.Entrypoint = append(o.Entrypoint, v)
		case OptEnableInternet:
			o.EnableInternet = v == "1"
		case OptSecret:
			o.Secrets = append(o.Secrets, v)
		case OptLabel:
			o.Labels = append(o.Labels, v)
		default:
			return false, nil
		}
		return true, nil
	})
	return o, err
}

// ExecOptions are the options of container_exec. Empty strings are absent.
type ExecOptions struct {
	Args   []string // OptArg
	Env    []string // OptEnv, KEY=VALUE
	Cwd    string   // OptCwd
	User   string   // OptUser
	Stdin  string   // OptStdin: "pipe" or absent
	Stdout string   // OptStdout: "pipe" (when absent) or "ignore"
	Stderr string   // OptStderr: "pipe" (when absent), "ignore" or "combined"
}

// Encode appends the options as a field list to buf[:0].
func (o ExecOptions) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	addAll(b, OptArg, o.Args)
	addAll(b, OptEnv, o.Env)
	addSet(b, OptCwd, o.Cwd)
	addSet(b, OptUser, o.User)
	addSet(b, OptStdin, o.Stdin)
	addSet(b, OptStdout, o.Stdout)
	addSet(b, OptStderr, o.Stderr)
	return b.Bytes()
}

// DecodeExecOptions reads the options of container_exec.
func DecodeExecOptions(raw []byte) (ExecOptions, error) {
	var o ExecOptions
	err := decodeOptions(raw, "exec", func(n, v string) (bool, error) {
		switch n {
		case OptArg:
			o.Args = append(o.Args, v)
		case OptEnv:
			o.Env = append(o.Env, v)
		case OptCwd:
			o.Cwd = v
		case OptUser:
			o.User = v
		case OptStdin:
			o.Stdin = v
		case OptStdout:
			o.Stdout = v
		case OptStderr:
			o.Stderr = v
		default:
			return false, nil
		}
		return true, nil
	})
	return o, err
}

// FileOptions are the options of file_open and file_op. Empty strings are
// absent.
type FileOptions struct {
	Op        string // OptFileOp (file_op): stat, list, mkdir, remove or rename
	Path      string // OptPath
	To        string // OptTo: rename's destination
	User      string // OptUser
	Mode      string // OptFileMode (file_open): read (when absent), write or watch
	Recursive bool   // OptRecursive: the value "true"; any other value is false
	Perm      uint32 // OptPerm, octal; 0 is absent (the default, 644)
}

// Encode appends the options as a field list to buf[:0].
func (o FileOptions) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	addSet(b, OptFileOp, o.Op)
	addSet(b, OptPath, o.Path)
	addSet(b, OptTo, o.To)
	addSet(b, OptUser, o.User)
	addSet(b, OptFileMode, o.Mode)
	if o.Recursive {
		b.Add(OptRecursive, "true")
	}
	if o.Perm != 0 {
		b.Add(OptPerm, strconv.FormatUint(uint64(o.Perm), 8))
	}
	return b.Bytes()
}

// DecodeFileOptions reads the options of file_open and file_op.
func DecodeFileOptions(raw []byte) (FileOptions, error) {
	var o FileOptions
	err := decodeOptions(raw, "file", func(n, v string) (bool, error) {
		switch n {
		case OptFileOp:
			o.Op = v
		case OptPath:
			o.Path = v
		case OptTo:
			o.To = v
		case OptUser:
			o.User = v
		case OptFileMode:
			o.Mode = v
		case OptRecursive:
			o.Recursive = v == "true"
		case OptPerm:
			perm, err := strconv.ParseUint(v, 8, 32)
			if err != nil || perm > 0o7777 {
				return true, fmt.Errorf("perm must be octal permission bits, got %q", v)
			}
			o.Perm = uint32(perm)
		default:
			return false, nil
		}
		return true, nil
	})
	return o, err
}

// BackgroundOptions are the options of background_op, background_logs
// and background_wait. Empty strings are absent.
type BackgroundOptions struct {
	Op     string   // OptBackgroundOp (background_op): start, list, get or kill
	ID     string   // OptID
	Args   []string // OptArg (start)
	Env    []string // OptEnv (start), KEY=VALUE
	Cwd    string   // OptCwd (start)
	User   string   // OptUser (start)
	Signal uint32   // OptSignal (kill), decimal; 0 is absent (the default, 15)
	From   string   // OptFrom (background_logs): start (when absent) or now
}

// Encode appends the options as a field list to buf[:0].
func (o BackgroundOptions) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	addSet(b, OptBackgroundOp, o.Op)
	addSet(b, OptID, o.ID)
	addAll(b, OptArg, o.Args)
	addAll(b, OptEnv, o.Env)
	addSet(b, OptCwd, o.Cwd)
	addSet(b, OptUser, o.User)
	if o.Signal != 0 {
		b.Add(OptSignal, strconv.FormatUint(uint64(o.Signal), 10))
	}
	addSet(b, OptFrom, o.From)
	return b.Bytes()
}

// DecodeBackgroundOptions reads the options of background_op,
// background_logs and background_wait.
func DecodeBackgroundOptions(raw []byte) (BackgroundOptions, error) {
	var o BackgroundOptions
	err := decodeOptions(raw, "background", func(n, v string) (bool, error) {
		switch n {
		case OptBackgroundOp:
			o.Op = v
		case OptID:
			o.ID = v
		case OptArg:
			o.Args = append(o.Args, v)
		case OptEnv:
			o.Env = append(o.Env, v)
		case OptCwd:
			o.Cwd = v
		case OptUser:
			o.User = v
		case OptSignal:
			sig, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return true, fmt.Errorf("signal must be a decimal number, got %q", v)
			}
			o.Signal = uint32(sig)
		case OptFrom:
			o.From = v
		default:
			return false, nil
		}
		return true, nil
	})
	return o, err
}

// EgressOptions are the options of container_egress.
type EgressOptions struct {
	Hosts []string // OptHost: host globs
}

// Encode appends the options as a field list to buf[:0].
func (o EgressOptions) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	addAll(b, OptHost, o.Hosts)
	return b.Bytes()
}

// DecodeEgressOptions reads the options of container_egress.
func DecodeEgressOptions(raw []byte) (EgressOptions, error) {
	var o EgressOptions
	err := decodeOptions(raw, "egress", func(n, v string) (bool, error) {
		if n != OptHost {
			return false, nil
		}
		o.Hosts = append(o.Hosts, v)
		return true, nil
	})
	return o, err
}

// ReadyProbe is one OptReadyOn entry: the container is ready once an HTTP GET
// of Path on Port answers Status.
type ReadyProbe struct {
	Port, Status int
	Path         string
}

// ContainerConfig is what container_config returns: the class's container
// settings from wharf.toml. Durations are as written there (see
// ParseDuration); empty is absent.
type ContainerConfig struct {
	SleepAfter  string       // OptSleepAfter
	HardTimeout string       // OptHardTimeout
	ReadyOn     []ReadyProbe // OptReadyOn: "port status path"
}

// Encode appends the settings as a field list to buf[:0].
func (c ContainerConfig) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	addSet(b, OptSleepAfter, c.SleepAfter)
	addSet(b, OptHardTimeout, c.HardTimeout)
	for _, p := range c.ReadyOn {
		b.Add(OptReadyOn, strconv.Itoa(p.Port)+" "+strconv.Itoa(p.Status)+" "+p.Path)
	}
	return b.Bytes()
}

// DecodeContainerConfig reads what container_config returns.
func DecodeContainerConfig(raw []byte) (ContainerConfig, error) {
	var c ContainerConfig
	err := decodeOptions(raw, "container config", func(n, v string) (bool, error) {
		switch n {
		case OptSleepAfter:
			c.SleepAfter = v
		case OptHardTimeout:
			c.HardTimeout = v
		case OptReadyOn:
			f := strings.SplitN(v, " ", 3)
			if len(f) != 3 {
				return true, fmt.Errorf("ready_on must be \"port status path\", got %q", v)
			}
			port, perr := strconv.Atoi(f[0])
			status, serr := strconv.Atoi(f[1])
			if perr != nil || serr != nil {
				return true, fmt.Errorf("ready_on must be \"port status path\", got %q", v)
			}
			c.ReadyOn = append(c.ReadyOn, ReadyProbe{Port: port, Status: status, Path: f[2]})
		default:
			return false, nil
		}
		return true, nil
	})
	return c, err
}

// ListOptions are the options of storage_list. A nil key is absent; an
// empty one is given.
type ListOptions struct {
	Start      []byte // ListStart: first key included
	StartAfter []byte // ListStartAfter: first key excluded
	End        []byte // ListEnd: end key, excluded
	Prefix     []byte // ListPrefix
	Reverse    bool   // ListReverse: the value "1"; any other value is false
	Limit      int    // ListLimit, decimal; 0 is all
}

// Encode appends the options as a field list to buf[:0].
func (o ListOptions) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	for _, kv := range []struct {
		name string
		key  []byte
	}{{ListStart, o.Start}, {ListStartAfter, o.StartAfter}, {ListEnd, o.End}, {ListPrefix, o.Prefix}} {
		if kv.key != nil {
			b.Add(kv.name, string(kv.key))
		}
	}
	if o.Reverse {
		b.Add(ListReverse, "1")
	}
	if o.Limit != 0 {
		b.Add(ListLimit, strconv.Itoa(o.Limit))
	}
	return b.Bytes()
}

// DecodeListOptions reads the options of storage_list.
func DecodeListOptions(raw []byte) (ListOptions, error) {
	var o ListOptions
	err := decodeOptions(raw, "list", func(n, v string) (bool, error) {
		switch n {
		case ListStart:
			o.Start = append([]byte{}, v...)
		case ListStartAfter:
			o.StartAfter = append([]byte{}, v...)
		case ListEnd:
			o.End = append([]byte{}, v...)
		case ListPrefix:
			o.Prefix = append([]byte{}, v...)
		case ListReverse:
			o.Reverse = v == "1"
		case ListLimit:
			limit, err := strconv.Atoi(v)
			if err != nil || limit < 0 {
				return true, fmt.Errorf("list limit %q is not a non-negative integer", v)
			}
			o.Limit = limit
		default:
			return false, nil
		}
		return true, nil
	})
	return o, err
}
