package host

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/objects"
)

// sdkErrorNames are the SDK's exported errors, as the objects guest names
// them.
var sdkErrorNames = []string{"ErrAborted", "ErrBusy", "ErrClosed", "ErrEventOver", "ErrEvicted", "ErrExecFailed",
	"ErrInvalidArgument", "ErrNotFound", "ErrNotRunning", "ErrOutputAfterRead", "ErrPortRefused", "ErrSignalRange",
	"ErrTimeout", "ErrTooLarge", "ErrWouldBlock"}

// matchedBy is what an error that is the SDK error name matches.
func matchedBy(name string) string {
	if name == "ErrEventOver" {
		return "ErrEventOver,ErrTimeout" // it matches ErrTimeout too
	}
	return name
}

// failSeen is the guest's FailSeen.
type failSeen struct{ Error, Matches, Caller, Callee string }

// relayFail has object caller call Fail on object callee, with the SDK
// error name, wrapped or not.
func (w *testWorker) relayFail(t *testing.T, caller, callee, name string, wrapped bool) failSeen {
	t.Helper()
	var seen failSeen
	out := w.mustCall(t, "STORE", caller, "RelayFail", map[string]any{"Name": callee, "How": map[string]any{"Name": name, "Wrapped": wrapped}})
	require.NoError(t, json.Unmarshal([]byte(out), &seen), out)
	return seen
}

// assertTravelled checks what the caller of Fail saw of the SDK error
// name, wrapped or not.
func assertTravelled(t *testing.T, seen failSeen, name string, wrapped bool) {
	t.Helper()
	assert.Equal(t, matchedBy(name), seen.Matches, "%s (wrapped: %t): %s", name, wrapped, seen.Error)
	if wrapped {
		assert.Regexp(t, `^call Fail: loading config: wharf: \S`, seen.Error, "the method's message, as it said it")
	} else {
		assert.Regexp(t, `^call Fail: \S`, seen.Error)
		assert.NotContains(t, seen.Error, "wharf: ")
	}
}

// TestSentinelsTravelAcrossCalls: an object method's error that is one of
// the SDK's errors, or wraps one, matches it at the caller of
// Stub.CallContext (a Worker, an object on the callee's instance), with
// the method's message; an error of the method's own matches none.
func TestSentinelsTravelAcrossCalls(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance)
	w.mustCall(t, "STORE", "callee", "Events", nil) // live and idle: the Worker's next calls run inline
	for _, name := range sdkErrorNames {
		for _, wrapped := range []bool{false, true} {
			body, _ := json.Marshal(map[string]any{"Name": name, "Wrapped": wrapped})
			resp, err := http.Post(w.url+"/call/STORE/callee/Fail", "application/json", strings.NewReader(string(body)))
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, matchedBy(name), resp.Header.Get("X-Matches"), "the Worker's call: %s (wrapped: %t)", name, wrapped)

			seen := w.relayFail(t, "caller", "callee", name, wrapped)
			assert.Equal(t, seen.Caller, seen.Callee, "one instance")
			assertTravelled(t, seen, name, wrapped)
		}
	}
	code, out := w.call(t, "STORE", "callee", "Get", "missing")
	assert.Equal(t, 500, code)
	assert.Equal(t, `call Get: no key "missing"`, out)
	resp, err := http.Post(w.url+"/call/STORE/callee/Get", "application/json", strings.NewReader(`"missing"`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "", resp.Header.Get("X-Matches"), "an error of the method's own matches none of the SDK's")
}

// TestSentinelsTravelBetweenInstances: an object's call to an object on
// another instance of the plugin gets the SDK errors of its method's error
// as well.
func TestSentinelsTravelBetweenInstances(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	w.mustCall(t, "STORE", "caller", "Events", nil)
	// Objects go to the least loaded instance: one of these is not on the
	// caller's.
	callee := ""
	for i := 0; callee == "" && i < 10; i++ {
		name := fmt.Sprint("callee", i)
		if seen := w.relayFail(t, "caller", name, "ErrBusy", false); seen.Caller != seen.Callee {
			callee = name
		}
	}
	require.NotEmpty(t, callee, "no callee on the other instance")
	for _, name := range sdkErrorNames {
		for _, wrapped := range []bool{false, true} {
			seen := w.relayFail(t, "caller", callee, name, wrapped)
			assert.NotEqual(t, seen.Caller, seen.Callee, "two instances")
			assertTravelled(t, seen, name, wrapped)
		}
	}
}

// TestCallReturnRefusesABadErrorRecord: call_return with
// abi.CallReturnRecord refuses a record that does not decode, or an OK
// status, as INVAL, and the call stays unanswered; a good record answers
// it.
func TestCallReturnRefusesABadErrorRecord(t *testing.T) {
	var table guestio.Table[*guest]
	g := &guest{table: &table}
	h := table.Add(abi.KindCall, objects.NewCall("M", nil, guestio.NewPending(func() {}, func() {})), g)
	mem := &testMemory{}
	callReturn := func(status uint32, data []byte) error {
		copy(mem.b[:], data)
		return importCallReturn(context.Background(), g, mem, []uint64{uint64(h), uint64(status), 0, uint64(len(data))})
	}
	for _, c := range []struct {
		status uint32
		data   []byte
		want   string
	}{
		{abi.CallReturnRecord | uint32(abi.StatusIO), []byte("a plain message"), "INVAL: call_return's error record: malformed field list"},
		{abi.CallReturnRecord | uint32(abi.StatusIO), abi.CallError{Message: "m", Codes: []string{"two words"}}.Encode(nil),
			`INVAL: call_return's error record: error code "two words" is not 1 to 64 ASCII letters, digits, '_', '.' or '-'`},
		{abi.CallReturnRecord, abi.CallError{Message: "m"}.Encode(nil), "INVAL: call_return: an error record (flag 0x10000) needs an error status, not 0"},
	} {
		err := callReturn(c.status, c.data)
		assert.EqualError(t, err, c.want)
		assert.ErrorIs(t, err, abi.StatusInvalid)
	}
	require.NoError(t, callReturn(abi.CallReturnRecord|uint32(abi.StatusNotFound), abi.CallError{Message: "m", Codes: []string{"ErrNotRunning"}}.Encode(nil)),
		"the refused answers left the call unanswered")
	assert.ErrorIs(t, callReturn(uint32(abi.StatusIO), []byte("again")), abi.StatusBusy, "answered once")
}

// testMemory is a guest memory of 4 KiB for imports called directly.
type testMemory struct{ b [4096]byte }

func (m *testMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m.b)) {
		return nil, false
	}
	return m.b[off : off+n], true
}

func (m *testMemory) Write(off uint32, data []byte) bool {
	if uint64(off)+uint64(len(data)) > uint64(len(m.b)) {
		return false
	}
	copy(m.b[off:], data)
	return true
}

func (m *testMemory) ReadUint32(off uint32) (uint32, bool) {
	b, ok := m.Read(off, 4)
	if !ok {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b), true
}

func (m *testMemory) WriteUint32(off, v uint32) bool {
	return m.Write(off, binary.LittleEndian.AppendUint32(nil, v))
}

func (m *testMemory) Size() uint64 { return uint64(len(m.b)) }
