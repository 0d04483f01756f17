package sdk

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// acrossACall is err as the caller of Stub.Call gets it when a method
// returns it: the status and codes the method's object answers with, the
// record they cross the host in, and the caller's error from the
// message the host keeps in last_error and the codes call_result hands
// over.
func acrossACall(t *testing.T, err error) error {
	t.Helper()
	status := wharf.AnswerStatus(err)
	rec, derr := abi.DecodeCallError(abi.CallError{Message: err.Error(), Codes: errorCodes(err)}.Encode(nil))
	require.NoError(t, derr)
	codes, derr := abi.DecodeCallError(abi.CallError{Codes: rec.Codes}.Encode(nil))
	require.NoError(t, derr)
	return calleeError(wharf.NewError(abi.ImportCallResult, status, status.String()+": "+rec.Message), codes.Codes)
}

// TestSentinelsTravelAcrossACall: an error a method returns that is one
// of the SDK's errors, or wraps one, matches it at the caller too, with
// the method's message unchanged; the status it is answered with is that
// sentinel's (ErrNotFound: NOTFOUND), or IO for one without a status.
func TestSentinelsTravelAcrossACall(t *testing.T) {
	statuses := map[error]abi.Status{ErrInvalidArgument: abi.StatusInvalid, ErrNotFound: abi.StatusNotFound,
		ErrTooLarge: abi.StatusTooLarge, ErrTimeout: abi.StatusTimeout, ErrClosed: abi.StatusClosed, ErrAborted: abi.StatusAborted,
		ErrBusy: abi.StatusBusy, ErrPortRefused: abi.StatusRefused, ErrEventOver: abi.StatusTimeout}
	for _, tr := range travelling {
		for _, err := range []error{tr.err, fmt.Errorf("loading config: %w", tr.err)} {
			got := acrossACall(t, err)
			assert.ErrorIs(t, got, tr.err, "%s: %v", tr.code, err)
			assert.Equal(t, err.Error(), got.Error(), "the message is the method's")
			want, ok := statuses[tr.err]
			if !ok {
				want = abi.StatusIO
			}
			assert.ErrorIs(t, got, want, "%s: %v", tr.code, err)
			for _, other := range travelling {
				if !errors.Is(err, other.err) {
					assert.NotErrorIs(t, got, other.err, "%s matches only what it matched: not %s", tr.code, other.code)
				}
			}
		}
	}
	// A host error with a sentinel keeps both, and the host's status.
	notRunning := containerError(wharf.NewError("container_exec", abi.StatusNotFound, "NOTFOUND: "+abi.ContainerNotRunning), ErrInvalidArgument)
	got := acrossACall(t, fmt.Errorf("running the build: %w", Within(notRunning)))
	assert.EqualError(t, got, "running the build: the container is not running")
	for _, want := range []error{ErrNotRunning, ErrNotFound, abi.StatusNotFound} {
		assert.ErrorIs(t, got, want)
	}
	got = acrossACall(t, errors.Join(ErrBusy, ErrTooLarge))
	assert.ErrorIs(t, got, ErrBusy)
	assert.ErrorIs(t, got, ErrTooLarge, "a second sentinel with a status travels as a code")
	plain := acrossACall(t, errors.New("no such user"))
	assert.EqualError(t, plain, "no such user")
	assert.ErrorIs(t, plain, abi.StatusIO)
	for _, tr := range travelling {
		assert.NotErrorIs(t, plain, tr.err, "an error of its own matches none of the SDK's")
	}
}

// TestUnknownCodesOfANewerSDKAreLeftOut: codes the caller's SDK does not
// know (an object built with a newer one) change nothing but their own
// absence; the status and the known codes still match.
func TestUnknownCodesOfANewerSDKAreLeftOut(t *testing.T) {
	got := calleeError(wharf.NewError(abi.ImportCallResult, abi.StatusNotFound, "NOTFOUND: gone"), []string{"ErrFromANewerSDK", "ErrNotRunning", "x"})
	assert.EqualError(t, got, "gone")
	assert.ErrorIs(t, got, ErrNotFound)
	assert.ErrorIs(t, got, ErrNotRunning)
	got = calleeError(wharf.NewError(abi.ImportCallResult, abi.Status(99), "STATUS(99): from a newer host"), []string{"ErrFromANewerSDK"})
	assert.EqualError(t, got, "from a newer host")
	assert.ErrorIs(t, got, abi.Status(99))
}

// TestEveryExportedErrorTravels: each exported Err* variable of the
// package is in travelling, under its own name, and their codes fit in
// one abi.CallError.
func TestEveryExportedErrorTravels(t *testing.T) {
	sources, err := filepath.Glob("*.go")
	require.NoError(t, err)
	var exported []string
	for _, name := range sources {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		require.NoError(t, err)
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
				for _, s := range g.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
							exported = append(exported, n.Name)
						}
					}
				}
			}
		}
	}
	var codes []string
	for _, tr := range travelling {
		codes = append(codes, tr.code)
	}
	assert.ElementsMatch(t, exported, codes)
	assert.LessOrEqual(t, len(travelling), abi.MaxCallErrorCodes)
	all, err := abi.DecodeCallError(abi.CallError{Codes: codes}.Encode(nil))
	require.NoError(t, err)
	assert.Equal(t, codes, all.Codes)
}
