package objects

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/atomicfile"
)

// Object ids are 32 bytes shown as 64 hex digits: 24 bytes that identify
// the object (an HMAC of its name, or random) and an 8-byte tag, an HMAC of
// those bytes under the namespace's key, so an id from another namespace or a
// mistyped one is refused instead of creating a stray object.

const (
	idBodyLen = 24
	idTagLen  = 8
)

// Errors from parsing ids.
var (
	ErrMalformedID = errors.New("invalid Durable Object id")
	ErrForeignID   = errors.New("Durable Object id belongs to another namespace")
)

// IDs makes and checks the ids of one namespace.
type IDs struct {
	key  []byte
	macs *sync.Pool // of HMACs keyed with key: keying one costs more than using it
}

func newIDs(key []byte) IDs {
	return IDs{key: key, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// LoadIDs reads the namespace's secret key from path, creating it on first
// use, durably (synced, and its name in its directory) before any id is
// made from it. A key file that is not 32 bytes is damaged, and refused
// rather than replaced: every object's id, and so the name of its file,
// is made from the key, so a new one would serve every object as new.
func LoadIDs(path string) (IDs, error) {
	key, err := os.ReadFile(path)
	switch {
	case err == nil && len(key) == 32:
		return newIDs(key), nil
	case err == nil:
		return IDs{}, fmt.Errorf("%s is %d bytes, not 32: it is damaged, and every object's id is made from it (a new key would serve every object as new); restore it from a backup", path, len(key))
	case !errors.Is(err, os.ErrNotExist):
		return IDs{}, err
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return IDs{}, err
	}
	if err := atomicfile.Write(path, key, 0o600, true); err != nil {
		return IDs{}, err
	}
	return newIDs(key), nil
}

// keyKept returns an error if the key file of the namespace in dir is
// missing while the namespace holds databases: their objects' ids were
// made from it, and a new key would serve every one of them as new.
func keyKept(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, "namespace.key")); !errors.Is(err, os.ErrNotExist) {
		return nil // there, or LoadIDs says why not
	}
	dbs, err := filepath.Glob(filepath.Join(dir, "*.sqlite"))
	if err != nil || len(dbs) == 0 {
		return err
	}
	what := fmt.Sprintf("%d objects' databases", len(dbs))
	if len(dbs) == 1 {
		what = "1 object's database"
	}
	return fmt.Errorf("%s is missing, but the namespace holds %s, whose ids were made from it (a new key would serve every object as new); restore it from a backup, or move the databases away to start the namespace afresh", filepath.Join(dir, "namespace.key"), what)
}

// Key is the namespace's secret key.
func (c IDs) Key() []byte { return c.key }

// WithKey is the codec of the namespace whose secret key is key (a
// cluster's, shared by every host so they make the same ids).
func WithKey(key []byte) IDs { return newIDs(key) }

// partEnd ends each part of a MAC's input.
var partEnd = []byte{0}

func (c IDs) mac(parts ...string) []byte {
	m := c.macs.Get().(hash.Hash)
	defer c.macs.Put(m)
	m.Reset()
	for _, p := range parts {
		io.WriteString(m, p)
		m.Write(partEnd)
	}
	return m.Sum(make([]byte, 0, sha256.Size))
}

func (c IDs) withTag(body []byte) string {
	tag := c.mac("tag", string(body))[:idTagLen]
	return hex.EncodeToString(append(body, tag...))
}

// FromName returns the id of name: the same name always maps to the same
// id in this namespace.
func (c IDs) FromName(name string) string {
	return c.withTag(c.mac("name", name)[:idBodyLen])
}

// Unique returns a new random id.
func (c IDs) Unique() string {
	body := make([]byte, idBodyLen)
	rand.Read(body)
	return c.withTag(body)
}

// Parse checks that s is an id of this namespace.
func (c IDs) Parse(s string) (string, error) {
	raw, err := hex.DecodeString(s)
	if err != nil || len(s) != abi.ObjectIDLen || s != hex.EncodeToString(raw) {
		return "", fmt.Errorf("%w %q: must be %d lowercase hexadecimal digits", ErrMalformedID, abi.Excerpt(s), abi.ObjectIDLen)
	}
	if !hmac.Equal(raw[idBodyLen:], c.mac("tag", string(raw[:idBodyLen]))[:idTagLen]) {
		return "", fmt.Errorf("%w: %s was not made by this namespace", ErrForeignID, s)
	}
	return s, nil
}

// maxNames bounds how many names a namespace remembers for its ids.
const maxNames = 100_000

// Names remembers the names ids were made from (IDFromName), so operators
// see `alice` rather than an id; ids cannot be turned back into names. It
// also spares IDFromName its two HMACs for a name it knows. It stops
// learning new names once it holds maxNames.
type Names struct {
	mu    sync.Mutex
	names map[string]string // by id
	ids   map[string]string // by name
}

// Note records that id was made from name.
func (b *Names) Note(id, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.names == nil {
		b.names, b.ids = map[string]string{}, map[string]string{}
	}
	if _, ok := b.names[id]; ok || len(b.names) >= maxNames {
		return
	}
	b.names[id], b.ids[name] = name, id
}

// ID returns the id made from name, if Note recorded it.
func (b *Names) ID(name string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.ids[name]
	return id, ok
}

// Name returns the name id was made from, if known.
func (b *Names) Name(id string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ok := b.names[id]
	return n, ok
}
