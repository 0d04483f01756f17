package objects

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestObjectIDs(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadIDs(filepath.Join(dir, "a.key"))
	require.NoError(t, err)
	again, err := LoadIDs(filepath.Join(dir, "a.key"))
	require.NoError(t, err)
	b, err := LoadIDs(filepath.Join(dir, "b.key"))
	require.NoError(t, err)

	id := a.FromName("alice")
	assert.Len(t, id, 64)
	assert.Equal(t, id, again.FromName("alice"), "stable across restarts")
	assert.NotEqual(t, id, a.FromName("bob"))
	assert.NotEqual(t, id, b.FromName("alice"), "namespaces differ")
	u1, u2 := a.Unique(), a.Unique()
	assert.NotEqual(t, u1, u2)

	for _, good := range []string{id, u1} {
		got, err := a.Parse(good)
		require.NoError(t, err)
		assert.Equal(t, good, got)
	}
	_, err = b.Parse(id)
	assert.ErrorIs(t, err, ErrForeignID)
	for _, bad := range []string{"", "xyz", id[:63], id + "0", strings.ToUpper(id), "zz" + id[2:]} {
		_, err := a.Parse(bad)
		assert.ErrorIs(t, err, ErrMalformedID, bad)
	}
	flipped := []byte(id)
	flipped[0] = map[bool]byte{true: '1', false: '0'}[flipped[0] == '0']
	_, err = a.Parse(string(flipped))
	assert.ErrorIs(t, err, ErrForeignID, "a tampered id fails its tag")
}

// TestIDFromNameRemembers: a namespace gives a name the id IDs.FromName
// makes, the first time and from memory after, and so past the names it
// remembers; it names the ids it remembers.
func TestIDFromNameRemembers(t *testing.T) {
	ids, err := LoadIDs(filepath.Join(t.TempDir(), "a.key"))
	require.NoError(t, err)
	ns := &Namespace{class: "C", ids: ids}
	for round := range 2 {
		for _, i := range []int{0, 1, maxNames - 1, maxNames, maxNames + 1} {
			if round == 0 && i >= maxNames {
				for j := 2; j < maxNames-1; j++ { // fill what it remembers
					ns.IDFromName(fmt.Sprint("n", j))
				}
			}
			name := fmt.Sprint("n", i)
			id := ns.IDFromName(name)
			assert.Equal(t, ids.FromName(name), id, "round %d, %s", round, name)
			got, known := ns.Name(id)
			assert.Equal(t, i < maxNames, known, name)
			if known {
				assert.Equal(t, name, got)
			}
		}
	}
}

// TestLearnNameTakesOnlyTheIDsOwnName: a name another host sends with an
// object's event (a client's header may pose as it) is remembered only if
// the id was made from it.
func TestLearnNameTakesOnlyTheIDsOwnName(t *testing.T) {
	ids, err := LoadIDs(filepath.Join(t.TempDir(), "a.key"))
	require.NoError(t, err)
	ns := &Namespace{class: "C", ids: ids}
	alice, unique := ids.FromName("alice"), ids.Unique()
	ns.learnName(alice, "bob")
	ns.learnName(unique, "alice")
	for _, id := range []string{alice, unique} {
		_, known := ns.Name(id)
		assert.False(t, known, "a name the id was not made from")
	}
	ns.learnName(alice, "alice")
	name, known := ns.Name(alice)
	assert.True(t, known)
	assert.Equal(t, "alice", name)
}
