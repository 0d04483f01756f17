package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLinkTreeSharesFilesAndTakesReplacedOnes: linkTree links what the
// other tree lacks, leaves what both hold as the same file, and takes a
// file replaced since (a record rewritten and renamed) over the old one.
func TestLinkTreeSharesFilesAndTakesReplacedOnes(t *testing.T) {
	shared, data := t.TempDir(), filepath.Join(t.TempDir(), "cache")
	write := func(path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".new", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := linkTree(filepath.Join(shared, "absent"), data); err != nil {
		t.Fatalf("a missing tree is an empty one: %v", err)
	}
	write(filepath.Join(shared, "code", "a"), "code a")
	write(filepath.Join(shared, "compiled", "rec"), "record 1")
	if err := linkTree(shared, data); err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(data, "code", "a")); got != "code a" {
		t.Fatalf("seeded %q", got)
	}
	write(filepath.Join(data, "compiled", "rec"), "record 2") // rewritten by the serve
	write(filepath.Join(data, "code", "b"), "code b")         // compiled by it
	if err := linkTree(data, shared); err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(shared, "compiled", "rec")); got != "record 2" {
		t.Fatalf("the shared record is %q, want the rewritten one", got)
	}
	if got := read(filepath.Join(shared, "code", "b")); got != "code b" {
		t.Fatalf("kept %q", got)
	}
	a1, err := os.Stat(filepath.Join(shared, "code", "a"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := os.Stat(filepath.Join(data, "code", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(a1, a2) {
		t.Fatal("a file both trees held was not left as one")
	}
}
