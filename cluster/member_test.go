package cluster

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestPlaceOnALeaseRunOutSaysSo: a host whose cluster lease has run out
// places no object, saying its lease ran out; it is ErrFenced to the
// caller. It said "this host no longer owns the object" of objects it had
// never owned.
func TestPlaceOnALeaseRunOutSaysSo(t *testing.T) {
	_, err := (&Member{}).Place(context.Background(), "obj")
	assert.EqualError(t, err, "this host's cluster lease has run out (etcd was not reached in time): it places no object until it rejoins the cluster")
	assert.ErrorIs(t, err, ErrFenced)
}
