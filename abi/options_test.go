package abi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// roundTrip checks that decoding what Encode wrote gives back v.
func roundTrip[T interface{ Encode([]byte) []byte }](t *testing.T, v T, decode func([]byte) (T, error)) {
	t.Helper()
	got, err := decode(v.Encode(nil))
	require.NoError(t, err)
	require.Equal(t, v, got)
}

func TestOptionsRoundTrip(t *testing.T) {
	for name, check := range map[string]func(t *testing.T){
		"start empty": func(t *testing.T) { roundTrip(t, StartOptions{}, DecodeStartOptions) },
		"start full": func(t *testing.T) {
			roundTrip(t, StartOptions{Env: []string{"A=1", "B="}, Entrypoint: []string{"sh", "-c", "echo hi"},
				EnableInternet: true, Secrets: []string{"TOKEN"}, Labels: []string{"team=a=b"}}, DecodeStartOptions)
		},
		"exec empty": func(t *testing.T) { roundTrip(t, ExecOptions{}, DecodeExecOptions) },
		"exec full": func(t *testing.T) {
			roundTrip(t, ExecOptions{Args: []string{"ls", "-l", ""}, Env: []string{"X=y"}, Cwd: "/tmp", User: "1000",
				Stdin: "pipe", Stdout: "ignore", Stderr: "combined"}, DecodeExecOptions)
		},
		"file empty": func(t *testing.T) { roundTrip(t, FileOptions{}, DecodeFileOptions) },
		"file full": func(t *testing.T) {
			roundTrip(t, FileOptions{Op: "rename", Path: "/a b", To: "/c", User: "app", Mode: "write",
				Recursive: true, Perm: 0o4755}, DecodeFileOptions)
		},
		"background empty": func(t *testing.T) { roundTrip(t, BackgroundOptions{}, DecodeBackgroundOptions) },
		"background full": func(t *testing.T) {
			roundTrip(t, BackgroundOptions{Op: "start", ID: "dev-server", Args: []string{"httpd", "-f"}, Env: []string{"A=1"},
				Cwd: "/srv", User: "app", Signal: 9, From: "now"}, DecodeBackgroundOptions)
		},
		"egress empty": func(t *testing.T) { roundTrip(t, EgressOptions{}, DecodeEgressOptions) },
		"egress full": func(t *testing.T) {
			roundTrip(t, EgressOptions{Hosts: []string{"*.example.com", "api.test"}}, DecodeEgressOptions)
		},
		"config empty": func(t *testing.T) { roundTrip(t, ContainerConfig{}, DecodeContainerConfig) },
		"config full": func(t *testing.T) {
			roundTrip(t, ContainerConfig{SleepAfter: "5m", HardTimeout: "30", ReadyOn: []ReadyProbe{
				{Port: 8080, Status: 200, Path: "/healthz"}, {Port: 1, Status: 204, Path: "/a path with spaces"}}}, DecodeContainerConfig)
		},
		"list empty": func(t *testing.T) { roundTrip(t, ListOptions{}, DecodeListOptions) },
		"list full": func(t *testing.T) {
			roundTrip(t, ListOptions{Start: []byte{}, StartAfter: []byte("a\x00"), End: []byte("z"), Prefix: []byte("p/"),
				Reverse: true, Limit: 10}, DecodeListOptions)
		},
	} {
		t.Run(name, check)
	}
}

func TestOptionsEmptyListIsFourBytes(t *testing.T) {
	require.Equal(t, []byte{0, 0, 0, 0}, ExecOptions{}.Encode(nil))
	_, err := DecodeExecOptions(nil)
	require.ErrorIs(t, err, ErrMalformedFields)
}

func TestOptionsLastValueWins(t *testing.T) {
	b := NewFieldsBuilder(nil)
	b.Add(OptCwd, "/a")
	b.Add(OptCwd, "/b")
	o, err := DecodeExecOptions(b.Bytes())
	require.NoError(t, err)
	require.Equal(t, "/b", o.Cwd)
}

func TestOptionsRefuseUnknownNames(t *testing.T) {
	for _, c := range []struct {
		decode func([]byte) error
		name   string
		want   string
	}{
		{func(b []byte) error { _, err := DecodeStartOptions(b); return err }, OptArg, `unknown start option "arg"`},
		{func(b []byte) error { _, err := DecodeExecOptions(b); return err }, OptEntrypoint, `unknown exec option "entrypoint"`},
		{func(b []byte) error { _, err := DecodeFileOptions(b); return err }, "x", `unknown file option "x"`},
		{func(b []byte) error { _, err := DecodeEgressOptions(b); return err }, OptEnv, `unknown egress option "env"`},
		{func(b []byte) error { _, err := DecodeContainerConfig(b); return err }, "sleep", `unknown container config option "sleep"`},
		{func(b []byte) error { _, err := DecodeListOptions(b); return err }, "Limit", `unknown list option "Limit"`},
	} {
		b := NewFieldsBuilder(nil)
		b.Add(c.name, "v")
		err := c.decode(b.Bytes())
		require.ErrorIs(t, err, ErrUnknownOption)
		require.EqualError(t, err, c.want)
	}
}

func TestOptionsBadValues(t *testing.T) {
	for _, c := range []struct {
		decode      func([]byte) error
		name, value string
		want        string
	}{
		{func(b []byte) error { _, err := DecodeFileOptions(b); return err }, OptPerm, "9", `perm must be octal permission bits, got "9"`},
		{func(b []byte) error { _, err := DecodeFileOptions(b); return err }, OptPerm, "17777", `perm must be octal permission bits, got "17777"`},
		{func(b []byte) error { _, err := DecodeListOptions(b); return err }, ListLimit, "-1", `list limit "-1" is not a non-negative integer`},
		{func(b []byte) error { _, err := DecodeContainerConfig(b); return err }, OptReadyOn, "80 200", `ready_on must be "port status path", got "80 200"`},
		{func(b []byte) error { _, err := DecodeContainerConfig(b); return err }, OptReadyOn, "x 200 /", `ready_on must be "port status path", got "x 200 /"`},
	} {
		b := NewFieldsBuilder(nil)
		b.Add(c.name, c.value)
		err := c.decode(b.Bytes())
		require.EqualError(t, err, c.want)
		require.NotErrorIs(t, err, ErrUnknownOption)
	}
}
