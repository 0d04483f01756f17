// Package cluster joins wharf hosts into one cluster on etcd: each host
// holds an etcd lease while it lives, an object's owner is decided by an
// etcd transaction that creates the object's placement key under the
// owner's lease, and an object's commits are appended to etcd under that
// placement, so a host that lost it can never write again. etcd decides;
// nothing here is a consensus protocol of its own.
//
// Keys (under "wharf/"):
//
//	hosts/<name>              the host's peer address, under its lease
//	objects/<object>          the owner's name, under its lease; the key's
//	                          create revision is the placement's epoch
//	commits/<object>/<seq>    an object's replicated commits, in order:
//	                          "<epoch> <host>\n" and the commit
//	secrets/<name>            values every host must share (namespace keys)
//	cluster-id                the cluster's identity: random, created by
//	                          the first host that joins; a new etcd (or a
//	                          wiped one) is a new cluster with a new history
package cluster

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultTTL is the lease TTL of a host: how long after its last renewal a
// lost host's objects may move.
const DefaultTTL = 5 * time.Second

const prefix = "wharf/"

// Errors a caller can meet.
var (
	// ErrFenced is a commit or event of a placement that is no longer this
	// host's: the object moved, or this host's lease ran out.
	ErrFenced = errors.New("this host no longer owns the object")
	// ErrUnknownHost names a host that is not (or no longer) in the
	// cluster.
	ErrUnknownHost = errors.New("no such host in the cluster")
)

// Etcd says how to reach the cluster's etcd.
type Etcd struct {
	// Endpoints are etcd's client URLs.
	Endpoints []string
	// TLS, if set, is how etcd's https:// endpoints are reached (see
	// EtcdTLS); without it, they are reached with the system's roots and
	// no client certificate.
	TLS *tls.Config
	// User and Password, if User is set, are the etcd user wharf
	// authenticates as, to an etcd with authentication enabled (etcdctl
	// auth enable); the client takes a token with them and takes a new one
	// when etcd no longer accepts it. An etcd with authentication disabled
	// accepts any, as etcdctl's --user. The user's role needs readwrite on
	// the keys under Prefix (read for ReadStatus).
	User, Password string
	// ReadPassword, if set, reads User's password again (from the file it
	// came from): a running host whose user etcd refuses calls it, no more
	// often than it renews its lease, and signs in with a password that
	// changed.
	ReadPassword func() (string, error)
	// Hint, if set, says what of the host's settings to check when etcd
	// refuses the user or its password (kind ErrEtcdAuthFailed) or wants
	// a user (ErrEtcdNeedsUser): the flags that give them, say. Every
	// error and log line of etcd's refusal says it, a running host's as
	// its start's.
	Hint func(kind error) string
}

// Prefix is the prefix of every key wharf keeps in etcd: an etcd user's
// role needs permission on it (etcdctl role grant-permission ROLE
// --prefix=true readwrite wharf/).
const Prefix = prefix

// Errors of an etcd with authentication enabled that a user can cause:
// errors of Join, of ReadStatus and of a host's lease renewals (logged)
// are these (errors.Is) and say which user and permission they are of.
var (
	// ErrEtcdAuthFailed is etcd refusing Etcd.User or its password.
	ErrEtcdAuthFailed = errors.New("etcd refused the user or its password")
	// ErrEtcdNeedsUser is an etcd with authentication enabled reached
	// without a user.
	ErrEtcdNeedsUser = errors.New("etcd has authentication enabled and no user was given")
	// ErrEtcdPermission is etcd refusing the user a request on wharf's
	// keys: its role lacks a permission on Prefix.
	ErrEtcdPermission = errors.New("etcd denied the user permission on wharf's keys")
)

// etcdAuthError is one of the errors above (kind), saying so in its own
// words, around etcd's error.
type etcdAuthError struct {
	kind, err error
	msg       string
}

func (e *etcdAuthError) Error() string   { return e.msg }
func (e *etcdAuthError) Unwrap() []error { return []error{e.kind, e.err} }

// Config says how a host joins the cluster.
type Config struct {
	// Etcd is how the host reaches the cluster's etcd.
	Etcd Etcd
	// Name identifies the host; unique among every host on the etcd
	// (CheckHostName says which names are valid).
	Name string
	// Plugin is the name of the plugin the host serves: objects move only
	// between hosts serving the same one.
	Plugin string
	// Advertise is the host:port where other hosts reach this one's peer
	// server.
	Advertise string
	// TTL is the host's lease TTL, in whole seconds; 0 means DefaultTTL.
	TTL time.Duration
	// Build identifies the build of the plugin the host serves (BuildOf
	// its module). Hosts of one plugin should serve the same build; while
	// a rolling upgrade runs they differ: a host logs a warning naming the
	// hosts of its plugin that serve another build, when it joins and when
	// one joins later, and wharf cluster status shows each host's build.
	Build string
	// CheckID, if set, is called by Join with the cluster's identity (see
	// Member.ClusterID) before the host registers: an error refuses the
	// join, and Join returns it as it is.
	CheckID func(clusterID string) error
	// Logger receives lease events; nil means slog.Default().
	Logger *slog.Logger
}

// BuildOf is the build identity of a plugin's module: the start of its
// SHA-256, in hex.
func BuildOf(module []byte) string {
	sum := sha256.Sum256(module)
	return hex.EncodeToString(sum[:6])
}

// States of a host.
const (
	StateStarting = "starting" // joined, not yet serving (compiling, say)
	StateServing  = "serving"
	StateDraining = "draining" // takes no new objects
)

// MaxTTL bounds the lease TTL: a lost host's objects are unavailable that
// long.
const MaxTTL = time.Minute

// Host is one member of the cluster as etcd lists it.
type Host struct {
	Name   string `json:"name"`
	Plugin string `json:"plugin"`
	// Build is the build of the plugin the host serves (Config.Build).
	Build     string `json:"build,omitempty"`
	Advertise string `json:"advertise"`
	State     string `json:"state"`
	// Lease is the host's etcd lease and TTL its remaining seconds.
	Lease int64 `json:"lease"`
	TTL   int64 `json:"ttl"`
}

// Placement says which host owns an object and since when.
type Placement struct {
	Owner string
	// Epoch is the create revision of the object's placement key: a fencing
	// token that grows with every new placement.
	Epoch int64
	// term is this host's lease term the placement was made in (ours only).
	term uint64
}

// Member is this host's membership: its lease, kept alive until Close.
type Member struct {
	// cli is etcd's client: swapped for one signed in anew when the
	// user's password changed (signInAgain).
	cli    atomic.Pointer[clientv3.Client]
	cfg    Config
	logger *slog.Logger
	ttl    int64 // seconds

	mu    sync.Mutex
	lease clientv3.LeaseID
	term  uint64
	state string
	// validUntil (unix ns) is when the lease may expire at the earliest, as
	// far as this host knows: it serves its objects only until then.
	validUntil atomic.Int64
	// denied is why this host serves nothing while its etcd user may not
	// write wharf's keys (nil: it may); renewErr why its last renewal
	// failed (nil: it did not).
	denied, renewErr atomic.Pointer[error]
	// onLost is called when the lease expired (the host's objects may run
	// elsewhere now).
	onLost atomic.Pointer[func()]

	addrs sync.Map // host name -> advertise address

	clusterID string

	stop      context.CancelFunc
	done      chan struct{} // keepAlive returned
	watchDone chan struct{} // watchBuilds returned
}

// client is etcd's client now.
func (m *Member) client() *clientv3.Client { return m.cli.Load() }

// Check refuses a host name or a lease TTL that Join would refuse, without
// connecting to anything.
func (cfg Config) Check() error {
	if err := CheckHostName(cfg.Name); err != nil {
		return err
	}
	if cfg.TTL != 0 && (cfg.TTL < 2*time.Second || cfg.TTL > MaxTTL) {
		return fmt.Errorf("cluster lease TTL %s: must be between 2s (etcd's minimum) and %s", cfg.TTL, MaxTTL)
	}
	return nil
}

// Join connects to etcd, takes a lease and registers the host. It fails if
// another live host has the same name.
func Join(ctx context.Context, cfg Config) (*Member, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if clear := cfg.Etcd.InClear(); len(clear) > 0 {
		cfg.Logger.Warn("etcd's password crosses the network in clear: serve etcd over https://", "user", cfg.Etcd.User, "endpoints", strings.Join(clear, ","))
	}
	joinErr := func(err error) error {
		return fmt.Errorf("joining the cluster through etcd %s: %w", strings.Join(cfg.Etcd.Endpoints, ","), cfg.Etcd.explain(err, readWrite))
	}
	// A host restarted after a crash finds its old lease still alive for up
	// to a TTL: it waits that long for the name before giving up.
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second+cfg.TTL)
	defer cancel()
	cli, err := connect(jctx, cfg.Etcd)
	if err != nil {
		return nil, joinErr(err)
	}
	m := &Member{cfg: cfg, logger: cfg.Logger, ttl: int64((cfg.TTL + time.Second - 1) / time.Second), state: StateStarting,
		done: make(chan struct{}), watchDone: make(chan struct{})}
	m.cli.Store(cli)
	if m.clusterID, err = clusterID(jctx, cli); err != nil {
		cli.Close()
		return nil, joinErr(err)
	}
	if cfg.CheckID != nil {
		if err := cfg.CheckID(m.clusterID); err != nil {
			cli.Close()
			return nil, err
		}
	}
	for {
		err = m.register(jctx)
		if err == nil {
			break
		}
		if errors.Is(err, errNameTaken) && jctx.Err() == nil {
			select {
			case <-jctx.Done():
			case <-time.After(500 * time.Millisecond):
				continue
			}
		}
		cli.Close()
		if errors.Is(err, errNameTaken) {
			return nil, fmt.Errorf("a live host is already named %q (a host of that name that died less than %s ago would have let it go by now)", cfg.Name, cfg.TTL)
		}
		return nil, joinErr(err)
	}
	kctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	go m.keepAlive(kctx)
	go m.watchBuilds(kctx)
	return m, nil
}

// clusterIDKey holds the cluster's identity.
const clusterIDKey = prefix + "cluster-id"

// clusterID returns the cluster's identity, creating it if this is the
// first host to join. It is not etcd's own cluster ID: that one is derived
// from etcd's member names, peer URLs and cluster token, so an etcd wiped
// and started again with the same settings has the same one, and a new
// history.
func clusterID(ctx context.Context, cli *clientv3.Client) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	proposed := hex.EncodeToString(b[:])
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(clusterIDKey), "=", 0)).
		Then(clientv3.OpPut(clusterIDKey, proposed)).
		Else(clientv3.OpGet(clusterIDKey)).
		Commit()
	if err != nil {
		return "", err
	}
	if resp.Succeeded {
		return proposed, nil
	}
	return string(resp.Responses[0].GetResponseRange().Kvs[0].Value), nil
}

// currentClusterID reads the cluster's identity ("" if there is none).
func (m *Member) currentClusterID(ctx context.Context) (string, error) {
	resp, err := m.client().Get(ctx, clusterIDKey)
	if err != nil || len(resp.Kvs) == 0 {
		return "", err
	}
	return string(resp.Kvs[0].Value), nil
}

// ClusterID is the identity of the cluster this host joined: the same for
// every host of one etcd, and new when etcd's data is new (wiped, or
// another etcd), whose log is another history of every object.
func (m *Member) ClusterID() string { return m.clusterID }

// Name is this host's name.
func (m *Member) Name() string { return m.cfg.Name }

// TTL is the host's lease TTL (Join sets the default for none).
func (m *Member) TTL() time.Duration { return m.cfg.TTL }

// OnLeaseLost sets what runs when the host's lease expired: every object it
// owned may already run elsewhere.
func (m *Member) OnLeaseLost(f func()) { m.onLost.Store(&f) }

// errNameTaken is a host name another live host holds.
var errNameTaken = errors.New("host name taken")

// record is the host's key's value.
func (m *Member) record() string {
	m.mu.Lock()
	state := m.state
	m.mu.Unlock()
	val, _ := json.Marshal(Host{Name: m.cfg.Name, Plugin: m.cfg.Plugin, Build: m.cfg.Build, Advertise: m.cfg.Advertise, State: state})
	return string(val)
}

// setState records the host's state in etcd. The host is in it from the
// start (a draining host takes no object while etcd is told); if etcd is
// not told, the host is back in the state it was in (unless another state
// was set meanwhile), and the error says why, naming the etcd user and the
// permission if etcd refused them.
func (m *Member) setState(ctx context.Context, state string) error {
	m.mu.Lock()
	was := m.state
	m.state = state
	lease := m.lease
	m.mu.Unlock()
	_, err := m.client().Put(ctx, prefix+"hosts/"+m.cfg.Name, m.record(), clientv3.WithLease(lease))
	if err != nil {
		m.mu.Lock()
		if m.state == state {
			m.state = was
		}
		m.mu.Unlock()
		return m.explainRefusal(err, readWrite)
	}
	return nil
}

// Serving marks the host as ready: its peer server answers. If etcd is
// not told, nothing changes (see setState).
func (m *Member) Serving(ctx context.Context) error { return m.setState(ctx, StateServing) }

// CheckHostName accepts names of letters, digits, '.' and '-', starting
// with a letter or digit, at most 63 bytes (a DNS label's length): names
// that are safe as file names and in URLs.
func CheckHostName(name string) error {
	ok := name != "" && len(name) <= 63 && name != "ca"
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case (r == '.' || r == '-') && i > 0:
		default:
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("cluster host name %q: use letters, digits, '.' and '-' (at most 63, starting with a letter or digit; not \"ca\")", name)
	}
	return nil
}

// register takes a new lease and puts the host's key under it, unless a
// live host already has the name.
func (m *Member) register(ctx context.Context) error {
	start := time.Now()
	g, err := m.client().Grant(ctx, m.ttl)
	if err != nil {
		return err
	}
	k := prefix + "hosts/" + m.cfg.Name
	resp, err := m.client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, m.record(), clientv3.WithLease(g.ID))).
		Commit()
	if err != nil {
		m.client().Revoke(context.Background(), g.ID)
		return err
	}
	if !resp.Succeeded {
		m.client().Revoke(context.Background(), g.ID)
		return errNameTaken
	}
	m.mu.Lock()
	m.lease = g.ID
	m.term++
	m.mu.Unlock()
	m.validUntil.Store(start.Add(time.Duration(g.TTL) * time.Second).UnixNano())
	return nil
}

// keepAlive renews the lease every third of its TTL. If etcd cannot be
// reached the host stops serving its objects when the lease may have run
// out; if the lease expired, it takes a new one. A host whose etcd user
// may no longer write wharf's keys (etcd refuses its renewal, or a
// placement or commit: noteDenied) serves nothing and lets its lease run
// out, for hosts that may to take its objects, checking its permission
// once a renewal (checkPermission) until it may again. etcd refusing the
// user's password, the host reads it again (signInAgain).
func (m *Member) keepAlive(ctx context.Context) {
	defer close(m.done)
	interval := time.Duration(m.ttl) * time.Second / 3
	password := m.cfg.Etcd.Password // the client's
	for {
		m.mu.Lock()
		lease := m.lease
		m.mu.Unlock()
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, interval)
		var resp *clientv3.LeaseKeepAliveResponse
		var err error
		// While the user may not write, the lease is not renewed: only
		// checked again.
		if m.denied.Load() != nil {
			if err = m.checkPermission(rctx); err == nil {
				m.denied.Store(nil)
				if m.cfg.Etcd.User == "" {
					m.logger.Info("etcd takes this host's requests without a user again")
				} else {
					m.logger.Info("this host's etcd user may write the cluster's keys again", "user", m.cfg.Etcd.User)
				}
			}
		}
		if err == nil {
			resp, err = m.client().KeepAliveOnce(rctx, lease)
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			m.renewErr.Store(nil)
			if m.denied.Load() == nil { // not since a commit was denied (noteDenied)
				m.validUntil.Store(start.Add(time.Duration(resp.TTL) * time.Second).UnixNano())
			}
		case isDenied(err):
			// It serves nothing from now on: what it would write, etcd
			// refuses.
			m.noteDenied(err)
			if m.cfg.Etcd.User == "" { // authentication enabled under it
				m.logger.Error("etcd has authentication enabled and this host was given no etcd user: it serves no object and lets its cluster lease run out, so that hosts that may write take its objects; it serves again once etcd's authentication is disabled, or restarted with an etcd user",
					"err", m.cfg.Etcd.explain(err, readWrite))
				break
			}
			m.logger.Error("this host's etcd user may not write the cluster's keys: it serves no object and lets its cluster lease run out, so that hosts that may write take its objects; it serves again once the user may",
				"user", m.cfg.Etcd.User, "err", m.cfg.Etcd.explain(err, readWrite))
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			m.logger.Error("cluster lease expired: this host's objects may run elsewhere now; rejoining")
			m.validUntil.Store(0)
			if f := m.onLost.Load(); f != nil {
				(*f)()
			}
			// The lease may be gone with all of etcd's data (wiped, or
			// another etcd at the address): that is another cluster,
			// whose log does not continue this host's objects.
			id, err := m.currentClusterID(ctx)
			switch {
			case err != nil:
				m.logger.Error("rejoining the cluster", "err", err)
			case id != m.clusterID:
				m.logger.Error("the cluster's etcd lost its data (wiped or replaced): this host leaves the cluster and serves no object until it is restarted, "+
					"and then refuses to serve the object data it holds on this cluster unless started with --cluster-adopt", "joined", m.clusterID, "now", cmp.Or(id, "none"))
				return
			default:
				if err := m.register(ctx); err != nil {
					m.noteDenied(err) // then checked once a renewal
					m.logger.Error("rejoining the cluster", "err", m.cfg.Etcd.explain(err, readWrite))
				} else { // the ERROR above was the last word on it
					m.renewErr.Store(nil)
					m.logger.Info("rejoined the cluster", "host", m.cfg.Name, "cluster", m.clusterID)
				}
			}
		default:
			// gRPC says only that the deadline passed: say what a
			// connection to etcd meets (refused, no answer).
			why := m.cfg.Etcd.explain(err, readWrite)
			if errors.Is(why, ErrEtcdAuthFailed) && m.signInAgain(&password) {
				continue // renew at once, as the new client
			}
			stored := error(&leaseRunOutError{why: fmt.Errorf("renewing it failed: %w", why)})
			m.renewErr.Store(&stored)
			m.logger.Warn("renewing the cluster lease", "etcd", strings.Join(m.cfg.Etcd.Endpoints, ","), "err", why,
				"serving_until", time.Unix(0, m.validUntil.Load()).Format(time.RFC3339Nano))
			interval := interval / 4 // retry soon
			if errors.Is(why, ErrEtcdAuthFailed) {
				// Not sooner than a renewal: a refused user fails at
				// once, and each try costs etcd a password hash
				// (bcrypt), from every host.
				interval *= 4
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// isDenied reports whether err is etcd refusing the user (or, with
// authentication enabled, its lack) a request on wharf's keys.
func isDenied(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserEmpty)
}

// permissionKey is a key checkPermission asks etcd to write, and etcd
// never does.
const permissionKey = prefix + "permission-check"

// checkPermission asks etcd whether the host's user may read and write
// wharf's keys, without touching its lease (which etcd renews only for a
// user that may write its keys) or writing anything: etcd checks each
// operation of a transaction, those of the branch it does not take too,
// and this one's compare is never true.
func (m *Member) checkPermission(ctx context.Context) error {
	_, err := m.client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(permissionKey), "<", 0)).
		Then(clientv3.OpPut(permissionKey, "")).
		Else(clientv3.OpGet(prefix, clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly())).
		Commit()
	return err
}

// signInAgain, after etcd refused the user's password, reads it again
// (Etcd.ReadPassword) and, if it is no longer the client's (*password),
// replaces the client by one signed in with it: a client takes its
// password when it is made. It reports whether it did.
func (m *Member) signInAgain(password *string) bool {
	read := m.cfg.Etcd.ReadPassword
	if read == nil {
		return false
	}
	p, err := read()
	if err != nil {
		m.logger.Warn("reading the etcd user's password again, as etcd refused it", "user", m.cfg.Etcd.User, "err", err)
		return false
	}
	if p == *password {
		return false
	}
	etcd := m.cfg.Etcd
	etcd.Password = p
	cli, err := newClient(etcd)
	if err != nil {
		why := etcd.explain(err, readWrite)
		if errors.Is(why, ErrEtcdAuthFailed) {
			m.logger.Warn("etcd refused the etcd user's password read again too", "user", m.cfg.Etcd.User, "err", why)
		} else { // it went, say, right after refusing the password
			m.logger.Warn("signing in to etcd with the etcd user's password read again failed; tried again once etcd refuses the password again", "user", m.cfg.Etcd.User, "err", why)
		}
		return false
	}
	// Every call on the old client fails: etcd revoked its token with the
	// password.
	m.cli.Swap(cli).Close()
	*password = p
	m.logger.Info("etcd refused the etcd user's password: read it again and signed in with the new one", "user", m.cfg.Etcd.User)
	return true
}

// watchBuilds logs a warning when hosts serving this host's plugin serve
// another build of it: once for those there are when it joins, then once
// for each that joins later (or comes back with another build). It does
// not refuse them: a rolling upgrade runs two builds for a while.
func (m *Member) watchBuilds(ctx context.Context) {
	defer close(m.watchDone)
	if m.cfg.Build == "" {
		return
	}
	warned := map[string]string{} // host -> the build it was warned about
	check := func(hosts []Host) {
		var others []string
		for _, h := range hosts {
			if h.Name == m.cfg.Name || h.Plugin != m.cfg.Plugin || h.Build == "" || h.Build == m.cfg.Build || warned[h.Name] == h.Build {
				continue
			}
			warned[h.Name] = h.Build
			others = append(others, h.Name+"="+h.Build)
		}
		if len(others) > 0 {
			m.logger.Warn("hosts of the cluster serve different builds of the plugin: expected only while a rolling upgrade runs (wharf cluster status shows each host's build)",
				"plugin", m.cfg.Plugin, "this_host", m.cfg.Name+"="+m.cfg.Build, "other_hosts", strings.Join(others, ","))
		}
	}
	k := prefix + "hosts/"
	for ctx.Err() == nil {
		resp, err := m.client().Get(ctx, k, clientv3.WithPrefix())
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		var hosts []Host
		for _, kv := range resp.Kvs {
			var h Host
			if json.Unmarshal(kv.Value, &h) == nil {
				hosts = append(hosts, h)
			}
		}
		check(hosts)
		// Until the watch fails (its revision was compacted, say): then
		// list the hosts again.
		wctx, cancel := context.WithCancel(ctx)
		for wr := range m.client().Watch(wctx, k, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				var h Host
				switch {
				case ev.Type == clientv3.EventTypeDelete:
					delete(warned, string(ev.Kv.Key[len(k):]))
				case json.Unmarshal(ev.Kv.Value, &h) == nil:
					check([]Host{h})
				}
			}
		}
		cancel()
	}
}

// Valid reports whether this host's lease is certainly still alive.
func (m *Member) Valid() bool { return time.Now().UnixNano() < m.validUntil.Load() }

// Owns reports whether p is this host's and still in force as far as this
// host can tell (its lease has not run out since p was made).
func (m *Member) Owns(p Placement) bool {
	m.mu.Lock()
	term := m.term
	m.mu.Unlock()
	return p.Owner == m.cfg.Name && p.term == term && m.Valid()
}

func objectKey(object string) string { return prefix + "objects/" + object }

func commitPrefix(object string) string { return prefix + "commits/" + object + "/" }

func commitKey(object string, seq uint64) string {
	return fmt.Sprintf("%s%016x", commitPrefix(object), seq)
}

// leaseRunOutError is a placement asked of a host whose cluster lease has
// run out: it owns no object until it rejoins. It is ErrFenced to a
// caller, whose words ("no longer owns the object") misled where this
// host never owned it: a host that forwarded it tries again until the
// object moved. why, if known, says why the lease was not renewed; denied
// is a host whose etcd user may not write.
type leaseRunOutError struct {
	why    error
	denied bool
}

func (e *leaseRunOutError) Error() string {
	switch {
	case e.denied:
		return fmt.Sprintf("this host may not write the cluster's keys in etcd (%v): it places no object and lets its cluster lease run out until its etcd user may", e.why)
	case e.why != nil:
		return fmt.Sprintf("this host's cluster lease may have run out: %v: it places no object until it rejoins the cluster", e.why)
	}
	return "this host's cluster lease has run out (etcd was not reached in time): it places no object until it rejoins the cluster"
}

// Outcome says why in a few words, without etcd's details, to whoever
// sent an event this failed (guestio.Failure).
func (e *leaseRunOutError) Outcome() string {
	if e.denied {
		return "could not run: this host may not write the cluster's keys in etcd now (its log says why)"
	}
	return "could not run: this host's cluster lease may have run out (its log says why)"
}

// Is makes the error ErrFenced.
func (*leaseRunOutError) Is(target error) bool { return target == ErrFenced }

func (e *leaseRunOutError) Unwrap() error { return e.why }

// noteDenied returns err, a request to etcd that failed; if etcd denied
// the user the request, the host serves nothing from now on, as it will
// once keepAlive checks its permission (and says so): its other objects'
// commits would fail too.
func (m *Member) noteDenied(err error) error {
	if isDenied(err) {
		why := error(&leaseRunOutError{why: m.cfg.Etcd.explain(err, readWrite), denied: true})
		m.validUntil.Store(0)
		m.denied.Store(&why)
		return why
	}
	return err
}

// whyInvalid is why this host's lease is not certainly alive.
func (m *Member) whyInvalid() error {
	for _, p := range []*error{m.denied.Load(), m.renewErr.Load()} {
		if p != nil {
			return *p
		}
	}
	return &leaseRunOutError{}
}

// Place returns the object's owner, making this host the owner if it has
// none (unless this host is draining).
func (m *Member) Place(ctx context.Context, object string) (Placement, error) {
	m.mu.Lock()
	lease, term, draining := m.lease, m.term, m.state == StateDraining
	m.mu.Unlock()
	k := objectKey(object)
	if draining {
		resp, err := m.client().Get(ctx, k)
		if err != nil {
			return Placement{}, err
		}
		if len(resp.Kvs) == 0 {
			return Placement{}, nil
		}
		return m.placement(resp.Kvs[0].Value, resp.Kvs[0].CreateRevision, term), nil
	}
	if !m.Valid() {
		return Placement{}, m.whyInvalid()
	}
	resp, err := m.client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, m.cfg.Name, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return Placement{}, m.noteDenied(err)
	}
	if resp.Succeeded {
		return Placement{Owner: m.cfg.Name, Epoch: resp.Header.Revision, term: term}, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 { // released between the compare and the get: try again
		return m.Place(ctx, object)
	}
	return m.placement(kvs[0].Value, kvs[0].CreateRevision, term), nil
}

func (m *Member) placement(owner []byte, epoch int64, term uint64) Placement {
	p := Placement{Owner: string(owner), Epoch: epoch}
	if p.Owner == m.cfg.Name {
		p.term = term
	}
	return p
}

// Release gives up an object this host owns, if p is still its placement.
func (m *Member) Release(ctx context.Context, object string, p Placement) error {
	k := objectKey(object)
	_, err := m.client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", p.Epoch)).
		Then(clientv3.OpDelete(k)).
		Commit()
	return err
}

// Append stores commit seq of the object, if p is still its placement and
// the commit is new; it returns ErrFenced otherwise.
func (m *Member) Append(ctx context.Context, object string, p Placement, seq uint64, commit []byte) error {
	if !m.Owns(p) {
		return ErrFenced
	}
	ck := commitKey(object, seq)
	resp, err := m.client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(objectKey(object)), "=", p.Epoch),
			clientv3.Compare(clientv3.CreateRevision(ck), "=", 0)).
		Then(clientv3.OpPut(ck, fmt.Sprintf("%d %s\n%s", p.Epoch, m.cfg.Name, commit))).
		Commit()
	if err != nil {
		return m.noteDenied(err)
	}
	if !resp.Succeeded {
		return ErrFenced
	}
	return nil
}

// Commit is one replicated commit of an object.
type Commit struct {
	Seq  uint64
	Data []byte
	// Epoch and Host are the placement that wrote it; Revision is etcd's
	// revision of the write.
	Epoch    int64
	Host     string
	Revision int64
}

// Commits returns the object's commits after seq, in order.
func (m *Member) Commits(ctx context.Context, object string, after uint64) ([]Commit, error) {
	return readCommits(ctx, m.client(), object, after)
}

// ReadCommits returns every replicated commit of an object (named
// "<plugin>/<class>/<id>"), in order: its history, for operators and tests.
func ReadCommits(ctx context.Context, cli *clientv3.Client, object string) ([]Commit, error) {
	return readCommits(ctx, cli, object, 0)
}

func readCommits(ctx context.Context, cli *clientv3.Client, object string, after uint64) ([]Commit, error) {
	end := clientv3.GetPrefixRangeEnd(commitPrefix(object))
	from := commitKey(object, after+1)
	var out []Commit
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(256))
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			c := Commit{Revision: kv.ModRevision}
			head, data, ok := bytes.Cut(kv.Value, []byte("\n"))
			if _, err := fmt.Sscanf(string(kv.Key[len(commitPrefix(object)):]), "%x", &c.Seq); err != nil || !ok {
				return nil, fmt.Errorf("malformed commit %s", kv.Key)
			}
			if _, err := fmt.Sscanf(string(head), "%d %s", &c.Epoch, &c.Host); err != nil {
				return nil, fmt.Errorf("malformed commit %s: %w", kv.Key, err)
			}
			c.Data = data
			out = append(out, c)
		}
		if !resp.More {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Shared returns the value every host uses for name: the first one any
// host proposed.
func (m *Member) Shared(ctx context.Context, name string, proposed []byte) ([]byte, error) {
	k := prefix + "secrets/" + name
	resp, err := m.client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(proposed))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return nil, err
	}
	if resp.Succeeded {
		return proposed, nil
	}
	return resp.Responses[0].GetResponseRange().Kvs[0].Value, nil
}

// listHosts lists the live hosts, with their leases' remaining TTLs if
// withTTL (one more request per host).
func listHosts(ctx context.Context, cli *clientv3.Client, withTTL bool) ([]Host, error) {
	resp, err := cli.Get(ctx, prefix+"hosts/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []Host
	for _, kv := range resp.Kvs {
		var h Host
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			continue
		}
		h.Lease = kv.Lease
		if withTTL {
			if ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				h.TTL = ttl.TTL
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// Address returns where host name serves its peers.
func (m *Member) Address(ctx context.Context, name string) (string, error) {
	if a, ok := m.addrs.Load(name); ok {
		return a.(string), nil
	}
	resp, err := m.client().Get(ctx, prefix+"hosts/"+name)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("%w: %q", ErrUnknownHost, name)
	}
	var h Host
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		return "", err
	}
	m.addrs.Store(name, h.Advertise)
	return h.Advertise, nil
}

// ForgetAddress drops a cached address (the host did not answer there).
func (m *Member) ForgetAddress(name string) { m.addrs.Delete(name) }

// Status is what wharf cluster status shows: the live hosts and how many
// objects each owns.
type Status struct {
	Hosts   []Host         `json:"hosts"`
	Objects map[string]int `json:"objects"`
}

// ReadStatus reads the cluster's status from etcd without joining it.
func ReadStatus(ctx context.Context, etcd Etcd) (*Status, error) {
	// Where no endpoint can be reached, say why at once: the client would
	// wait out ctx.
	if failed := probeEndpoints(etcd.Endpoints, etcd.TLS); len(failed) == len(etcd.Endpoints) {
		return nil, fmt.Errorf("etcd cannot be reached: %w", errors.Join(failed...))
	}
	statusErr := func(err error) error {
		return fmt.Errorf("etcd %s: %w", strings.Join(etcd.Endpoints, ","), etcd.explain(err, readOnly))
	}
	cli, err := newClient(etcd)
	if err != nil {
		return nil, statusErr(err)
	}
	defer cli.Close()
	hosts, err := listHosts(ctx, cli, true)
	if err != nil {
		return nil, statusErr(err)
	}
	counts, err := objectCounts(ctx, cli)
	if err != nil {
		return nil, statusErr(err)
	}
	return &Status{Hosts: hosts, Objects: counts}, nil
}

func objectCounts(ctx context.Context, cli *clientv3.Client) (map[string]int, error) {
	counts := map[string]int{}
	k := prefix + "objects/"
	from := k
	end := clientv3.GetPrefixRangeEnd(k)
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000))
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			counts[string(kv.Value)]++
		}
		if !resp.More {
			return counts, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// newClient makes etcd's client. With a user, it authenticates at once:
// it fails if etcd cannot be reached within 5 s or refuses the user.
func newClient(etcd Etcd) (*clientv3.Client, error) {
	// Keepalive pings find a connection that stopped carrying packets (a
	// partition) within seconds, so a healed host reconnects at once.
	return clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints, TLS: etcd.TLS, Username: etcd.User, Password: etcd.Password,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 2 * time.Second}) // etcd refuses pings more often than every 5s
}

// connect is newClient that waits for etcd until ctx is done, as a host
// does at any start: without a user, the client connects lazily and the
// first request waits; with one, authenticating fails after newClient's 5
// s. etcd refusing the user is not waited out.
func connect(ctx context.Context, etcd Etcd) (*clientv3.Client, error) {
	for {
		cli, err := newClient(etcd)
		if err == nil || errors.Is(err, rpctypes.ErrAuthFailed) || ctx.Err() != nil {
			return cli, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// InClear lists the endpoints over which e's password crosses a network
// unencrypted: those over http:// (a bare host:port is) to a host that is
// not loopback. None without a user.
func (e Etcd) InClear() []string {
	if e.User == "" {
		return nil
	}
	var clear []string
	for _, endpoint := range e.Endpoints {
		scheme, hostPort, isURL := strings.Cut(endpoint, "://")
		if isURL && scheme != "http" {
			continue
		}
		if !isURL {
			hostPort = endpoint
		}
		host, _, _ := net.SplitHostPort(strings.TrimSuffix(hostPort, "/"))
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			clear = append(clear, endpoint)
		}
	}
	return clear
}

// The permissions on Prefix an etcd user's role needs, for explain.
const (
	readOnly  = "read"
	readWrite = "readwrite"
)

// explain says what err, a call to etcd that failed, means: etcd refusing
// the user, or its role lacking need (readOnly or readWrite) on Prefix,
// or, for none of those, what a connection to each endpoint meets
// (whyUnreachable).
func (e Etcd) explain(err error, need string) error {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return &etcdAuthError{kind: ErrEtcdAuthFailed, err: err, msg: fmt.Sprintf("etcd user %q: %v", e.User, err) + e.hint(ErrEtcdAuthFailed)}
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return &etcdAuthError{kind: ErrEtcdNeedsUser, err: err, msg: fmt.Sprintf("etcd has authentication enabled (%v)", err) + e.hint(ErrEtcdNeedsUser)}
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		what := map[string]string{readOnly: "read", readWrite: "read and write"}[need]
		return &etcdAuthError{kind: ErrEtcdPermission, err: err, msg: fmt.Sprintf(
			"etcd user %q may not %s the keys under %s (%v): its role needs %s permission on the prefix %s: etcdctl role grant-permission ROLE --prefix=true %s %s",
			e.User, what, Prefix, err, need, Prefix, need, Prefix)}
	}
	return whyUnreachable(e.Endpoints, e.TLS, err)
}

// hint is Hint's words for kind, after a colon; empty without.
func (e Etcd) hint(kind error) string {
	if e.Hint == nil {
		return ""
	}
	if h := e.Hint(kind); h != "" {
		return ": " + h
	}
	return ""
}

// whyUnreachable adds to err, a call to etcd that failed, what a
// connection to each endpoint meets, if that fails: gRPC retries a
// refused connection or a failed TLS handshake until the call's deadline
// and then says only that it passed.
func whyUnreachable(endpoints []string, etcdTLS *tls.Config, err error) error {
	reasons := probeEndpoints(endpoints, etcdTLS)
	if len(reasons) == 0 {
		return err
	}
	return fmt.Errorf("%w: %w", err, errors.Join(reasons...))
}

// probeEndpoints probes each of etcd's endpoints (probeEndpoint) and
// returns what failed.
func probeEndpoints(endpoints []string, etcdTLS *tls.Config) []error {
	var failed []error
	for _, e := range endpoints {
		if why := probeEndpoint(e, etcdTLS); why != nil {
			failed = append(failed, why)
		}
	}
	return failed
}

// probeEndpoint connects to etcd's endpoint e as its client does, with
// TLS for https://, and returns what failed. An endpoint written with the
// scheme etcd does not serve there is named as such: gRPC's own failure
// says nothing (http:// to TLS) or "EOF" (https:// to plain).
func probeEndpoint(e string, etcdTLS *tls.Config) error {
	scheme, hostPort, ok := strings.Cut(e, "://")
	if !ok {
		scheme, hostPort = "http", e
	}
	hostPort = strings.TrimSuffix(hostPort, "/")
	conn, err := net.DialTimeout("tcp", hostPort, probeTimeout)
	if err != nil {
		return fmt.Errorf("%s: %w (is etcd running there?)", e, err)
	}
	defer conn.Close()
	if scheme != "https" {
		switch {
		case servesTLS(hostPort):
			return fmt.Errorf("%s: etcd serves TLS there: write the endpoint as https://%s", e, hostPort)
		case !servesPlainHTTP(hostPort):
			return fmt.Errorf("%s: no answer to HTTP within %s (is this etcd's client port?)", e, probeTimeout)
		}
		return nil
	}
	cfg := &tls.Config{}
	if etcdTLS != nil {
		cfg = etcdTLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(hostPort)
	}
	// A client certificate not signed by a CA etcd names in its request for
	// one is not sent (etcd says "certificate required", as to none): the
	// probe sends it and says why etcd would not take it.
	var notAccepted error
	if certs := cfg.Certificates; len(certs) > 0 && cfg.GetClientCertificate == nil {
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			notAccepted = cri.SupportsCertificate(&certs[0])
			return &certs[0], nil
		}
	}
	refused := func(err error) error {
		if notAccepted != nil {
			return fmt.Errorf("%s: TLS: %w: etcd does not accept the client certificate: %w (it takes those signed by the CA of its --trusted-ca-file)", e, err, notAccepted)
		}
		return fmt.Errorf("%s: TLS: %w", e, err)
	}
	tc := tls.Client(conn, cfg)
	tc.SetDeadline(time.Now().Add(probeTimeout))
	if err := tc.Handshake(); err != nil {
		var netErr net.Error
		switch {
		case errors.As(err, &netErr) && netErr.Timeout():
			return fmt.Errorf("%s: TLS: no answer to the handshake within %s (is this etcd's client port?)", e, probeTimeout)
		case servesPlainHTTP(hostPort):
			return fmt.Errorf("%s: TLS: %w: etcd serves plain HTTP there, not TLS: write the endpoint as http://%s", e, err, hostPort)
		}
		return refused(err)
	}
	// In TLS 1.3 a server refuses the client's certificate, or its lack,
	// after the handshake: the first read says so.
	tc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var netErr net.Error
	if _, err := tc.Read(make([]byte, 1)); err != nil && !(errors.As(err, &netErr) && netErr.Timeout()) {
		return refused(err)
	}
	return nil
}

// servesTLS reports whether the server at hostPort answers a TLS
// handshake as a TLS server (whether or not the client would trust it).
func servesTLS(hostPort string) bool {
	conn, err := net.DialTimeout("tcp", hostPort, probeTimeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // only asks whether it is TLS
	tc.SetDeadline(time.Now().Add(probeTimeout))
	var alert tls.AlertError
	err = tc.Handshake()
	return err == nil || errors.As(err, &alert)
}

// servesPlainHTTP reports whether the server at hostPort answers an HTTP
// request sent without TLS (etcd's client port serves /version).
func servesPlainHTTP(hostPort string) bool {
	conn, err := net.DialTimeout("tcp", hostPort, probeTimeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := io.WriteString(conn, "GET /version HTTP/1.1\r\nHost: "+hostPort+"\r\nConnection: close\r\n\r\n"); err != nil {
		return false
	}
	head := make([]byte, len("HTTP/1."))
	_, err = io.ReadFull(conn, head)
	return err == nil && string(head) == "HTTP/1."
}

// probeTimeout bounds a probe's connection and its TLS handshake.
const probeTimeout = 2 * time.Second

// Close leaves the cluster: the lease is revoked, which releases every
// object this host still owns.
func (m *Member) Close() error {
	m.stop()
	<-m.done
	<-m.watchDone
	m.mu.Lock()
	lease := m.lease
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := m.client().Revoke(ctx, lease)
	return errors.Join(err, m.client().Close())
}

// Drain marks the host as draining: it takes no new objects, and Place
// answers with the current owner or none.
// If etcd is not told, the host serves on as before (see setState).
func (m *Member) Drain(ctx context.Context) error { return m.setState(ctx, StateDraining) }

// explainRefusal is err, a request to etcd that failed, explained
// (Etcd.explain) if etcd refused the user or its permission; other
// errors are returned as they are, without probing etcd's endpoints.
func (m *Member) explainRefusal(err error, need string) error {
	if isDenied(err) || errors.Is(err, rpctypes.ErrAuthFailed) {
		return m.cfg.Etcd.explain(err, need)
	}
	return err
}

// Draining reports whether Drain was called.
func (m *Member) Draining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state == StateDraining
}

// PickHost returns a live host other than this one that serves the same
// plugin and takes new objects, chosen by the object's name so that the
// choice is stable.
func (m *Member) PickHost(ctx context.Context, object string) (string, error) {
	hosts, err := listHosts(ctx, m.client(), false)
	if err != nil {
		return "", m.explainRefusal(err, readOnly)
	}
	var names []string
	for _, h := range hosts {
		if h.Name != m.cfg.Name && h.Plugin == m.cfg.Plugin && h.State == StateServing {
			names = append(names, h.Name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%w: no other host serving plugin %q takes new objects", ErrUnknownHost, m.cfg.Plugin)
	}
	var sum uint32
	for _, c := range []byte(object) {
		sum = sum*31 + uint32(c)
	}
	return names[sum%uint32(len(names))], nil
}

// Snapshots. An object's commits are compacted into a snapshot of its
// database now and then: the file is stored in chunks (etcd takes values of
// about a megabyte at most), and one fenced transaction points at it and
// deletes the commits it holds and older snapshots.

const snapshotChunk = 1 << 20

func snapshotKey(object string) string { return prefix + "snapshot/" + object }

func snapshotChunks(object string, seq uint64) string {
	return fmt.Sprintf("%ssnapshots/%s/%016x/", prefix, object, seq)
}

// SaveSnapshot stores data, the object's database holding commits up to
// seq, and drops those commits, if p is still the object's placement.
func (m *Member) SaveSnapshot(ctx context.Context, object string, p Placement, seq uint64, data []byte) error {
	if !m.Owns(p) {
		return ErrFenced
	}
	chunks := 0
	for off := 0; off < len(data) || chunks == 0; off += snapshotChunk {
		chunk := data[off:min(off+snapshotChunk, len(data))]
		if _, err := m.client().Put(ctx, fmt.Sprintf("%s%06d", snapshotChunks(object, seq), chunks), string(chunk)); err != nil {
			return err
		}
		chunks++
	}
	resp, err := m.client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(objectKey(object)), "=", p.Epoch)).
		Then(clientv3.OpPut(snapshotKey(object), fmt.Sprintf("%d %d", seq, chunks)),
			clientv3.OpDelete(commitKey(object, 1), clientv3.WithRange(commitKey(object, seq+1))),
			clientv3.OpDelete(prefix+"snapshots/"+object+"/", clientv3.WithRange(snapshotChunks(object, seq)))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return ErrFenced // the chunks go with the next snapshot's cleanup
	}
	return nil
}

// LoadSnapshot returns the database of the object's snapshot seq.
func (m *Member) LoadSnapshot(ctx context.Context, object string, seq uint64, chunks int) ([]byte, error) {
	p := snapshotChunks(object, seq)
	resp, err := m.client().Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) != chunks {
		return nil, fmt.Errorf("snapshot %d of %s has %d of its %d chunks", seq, object, len(resp.Kvs), chunks)
	}
	var data []byte
	for _, kv := range resp.Kvs {
		data = append(data, kv.Value...)
	}
	return data, nil
}

// Log is where an object's replicated log stands.
type Log struct {
	// Snapshot is the commit the latest snapshot holds (0: none), in Chunks
	// chunks.
	Snapshot uint64
	Chunks   int
	// Last is the number of the last replicated commit.
	Last uint64
}

// Log reads where the object's replicated log stands.
func (m *Member) Log(ctx context.Context, object string) (Log, error) {
	var l Log
	resp, err := m.client().Get(ctx, snapshotKey(object))
	if err != nil {
		return l, err
	}
	if len(resp.Kvs) > 0 {
		if _, err := fmt.Sscanf(string(resp.Kvs[0].Value), "%d %d", &l.Snapshot, &l.Chunks); err != nil {
			return l, fmt.Errorf("malformed snapshot pointer of %s: %w", object, err)
		}
	}
	resp, err = m.client().Get(ctx, commitPrefix(object), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		return l, err
	}
	l.Last = l.Snapshot
	if len(resp.Kvs) > 0 {
		var last uint64
		fmt.Sscanf(string(resp.Kvs[0].Key[len(commitPrefix(object)):]), "%x", &last)
		l.Last = max(last, l.Snapshot)
	}
	return l, nil
}
