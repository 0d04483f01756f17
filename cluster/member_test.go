package cluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wharfhq/wharf/internal/testetcd"
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

// TestServingEtcdRefusesChangesNothing: a host whose mark as serving etcd
// refuses (its etcd user lost its permission on wharf/) stays as it was,
// saying which user and permission, as a refused drain does: it was left
// serving by its own record, which it registers again after its lease ran
// out, although etcd was never told.
func TestServingEtcdRefusesChangesNothing(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret", testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: Prefix})
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, Username: "root", Password: "root-secret", DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer root.Close()
	m, err := Join(context.Background(), Config{Name: "h1", Plugin: "counter", Advertise: "127.0.0.1:1", TTL: 2 * time.Second,
		Etcd: Etcd{Endpoints: []string{etcd}, User: "wharf", Password: "wharf-secret"}})
	require.NoError(t, err)
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	state := func() string {
		var h Host
		require.NoError(t, json.Unmarshal([]byte(m.record()), &h))
		return h.State
	}

	_, err = root.RoleRevokePermission(ctx, "wharf", Prefix, clientv3.GetPrefixRangeEnd(Prefix))
	require.NoError(t, err)
	err = m.Serving(ctx)
	assert.ErrorContains(t, err, `etcd user "wharf" may not read and write the keys under wharf/ (etcdserver: permission denied): its role needs readwrite permission on the prefix wharf/`)
	assert.Equal(t, StateStarting, state(), "a refused mark as serving changes nothing")

	_, err = root.RoleGrantPermission(ctx, "wharf", Prefix, clientv3.GetPrefixRangeEnd(Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	require.NoError(t, m.Serving(ctx))
	assert.Equal(t, StateServing, state())
	resp, err := root.Get(ctx, Prefix+"hosts/h1")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	assert.Contains(t, string(resp.Kvs[0].Value), `"state":"serving"`)
}
