package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/internal/filekind"
	"github.com/wharfhq/wharf/manifest"
)

// etcdFlags say where the cluster's etcd is and, served over https or
// with authentication enabled, how to reach it: wharf serve's and wharf
// cluster status's.
type etcdFlags struct {
	cluster string
	// cacert, cert and key are the files of cluster.EtcdTLS.
	cacert, cert, key string
	// user and passwordFile are the etcd user and the file of its
	// password (cluster.Etcd's User and Password).
	user, passwordFile string
}

// etcdTLSFlags are the names of the flags of etcd's TLS, by the file of
// cluster.EtcdTLS each gives.
var etcdTLSFlags = [...]string{cluster.EtcdCA: "cluster-etcd-cacert", cluster.EtcdCert: "cluster-etcd-cert", cluster.EtcdKey: "cluster-etcd-key"}

// The flags of etcd's user (etcd's authentication).
const (
	etcdUserFlag         = "cluster-etcd-user"
	etcdPasswordFileFlag = "cluster-etcd-password-file"
)

// maxPasswordFile bounds what is read of --cluster-etcd-password-file.
const maxPasswordFile = 4 << 10

// etcdAccessFlags are the names of the flags of how etcd is reached,
// besides --cluster: each needs --cluster.
var etcdAccessFlags = append(etcdTLSFlags[:], etcdUserFlag, etcdPasswordFileFlag)

func (f *etcdFlags) register(fs *pflag.FlagSet, usage string) {
	fs.StringVar(&f.cluster, "cluster", "", usage)
	fs.StringVar(&f.cacert, etcdTLSFlags[cluster.EtcdCA], "", "CA certificate (PEM) that signed the server certificate of an etcd served over https:// (default: the system's roots)")
	fs.StringVar(&f.cert, etcdTLSFlags[cluster.EtcdCert], "", "client certificate (PEM) to present to an etcd served over https:// that checks its clients (--client-cert-auth), with --cluster-etcd-key")
	fs.StringVar(&f.key, etcdTLSFlags[cluster.EtcdKey], "", "private key (PEM) of --cluster-etcd-cert")
	fs.StringVar(&f.user, etcdUserFlag, "", "etcd user to authenticate as, to an etcd with authentication enabled (its role needs readwrite on the prefix "+cluster.Prefix+"; read for wharf cluster status), with --"+etcdPasswordFileFlag)
	fs.StringVar(&f.passwordFile, etcdPasswordFileFlag, "", "file holding the password of --"+etcdUserFlag+" (a trailing newline is not part of it; read again by a running host when etcd refuses the password)")
}

// connection parses --cluster and reads how to reach etcd: its TLS (nil
// for etcd served over http; the TLS flags need https:// endpoints) and
// its user.
func (f *etcdFlags) connection() (cluster.Etcd, error) {
	endpoints, etcdTLS, err := f.transport()
	if err != nil {
		return cluster.Etcd{}, err
	}
	etcd := cluster.Etcd{Endpoints: endpoints, TLS: etcdTLS, User: f.user, Hint: f.hint}
	switch {
	case f.user != "" && f.passwordFile == "":
		return cluster.Etcd{}, fmt.Errorf("--%s needs --%s, a file holding the user's password (a password is not given on the command line, where ps shows it)", etcdUserFlag, etcdPasswordFileFlag)
	case f.user == "" && f.passwordFile != "":
		return cluster.Etcd{}, fmt.Errorf("--%s needs --%s, the etcd user whose password the file holds", etcdPasswordFileFlag, etcdUserFlag)
	case f.user != "":
		if etcd.Password, err = f.readPassword(); err != nil {
			return cluster.Etcd{}, err
		}
		etcd.ReadPassword = f.readPassword // a running host's, when etcd refuses it
	}
	return etcd, nil
}

// readPassword reads --cluster-etcd-password-file.
func (f *etcdFlags) readPassword() (string, error) {
	b, err := filekind.ReadSmall(f.passwordFile, "a password file", maxPasswordFile)
	if err != nil {
		return "", fmt.Errorf("--%s: the password of etcd user %q: %w", etcdPasswordFileFlag, f.user, err)
	}
	password := strings.TrimRight(string(b), "\r\n")
	if password == "" {
		return "", fmt.Errorf("--%s: the password of etcd user %q: %s is empty", etcdPasswordFileFlag, f.user, f.passwordFile)
	}
	return password, nil
}

// hint says which flags to look at for an etcd refusal of kind that the
// flags can cause (cluster.Etcd.Hint).
func (f *etcdFlags) hint(kind error) string {
	switch kind {
	case cluster.ErrEtcdAuthFailed:
		return fmt.Sprintf("check --%s and the password in --%s %s", etcdUserFlag, etcdPasswordFileFlag, f.passwordFile)
	case cluster.ErrEtcdNeedsUser:
		return fmt.Sprintf("give its user with --%s and the file of its password with --%s", etcdUserFlag, etcdPasswordFileFlag)
	}
	return ""
}

// transport parses --cluster and loads etcd's TLS: nil for etcd served
// over http. The TLS flags need https:// endpoints.
func (f *etcdFlags) transport() (endpoints []string, etcdTLS *tls.Config, err error) {
	if endpoints, err = f.endpoints(); err != nil {
		return nil, nil, err
	}
	https := 0
	for _, e := range endpoints {
		if strings.HasPrefix(e, "https://") {
			https++
		}
	}
	if https == 0 {
		if given := cmp.Or(f.cacert, f.cert, f.key); given != "" {
			return nil, nil, fmt.Errorf("--cluster-etcd-cacert, --cluster-etcd-cert and --cluster-etcd-key are for an etcd served over https: write its endpoints as https://host:port in --cluster (got %q)", f.cluster)
		}
		return endpoints, nil, nil
	}
	if https < len(endpoints) {
		return nil, nil, fmt.Errorf("--cluster: etcd's endpoints are all https:// or none (got %q)", f.cluster)
	}
	if etcdTLS, err = cluster.EtcdTLS(f.cacert, f.cert, f.key); err != nil {
		var fileErr *cluster.EtcdFileError
		if errors.As(err, &fileErr) {
			return nil, nil, fmt.Errorf("--%s: %w", etcdTLSFlags[fileErr.File], err)
		}
		return nil, nil, err
	}
	return endpoints, etcdTLS, nil
}

// clusterFlags are wharf serve's flags for joining a cluster.
type clusterFlags struct {
	etcdFlags
	name      string
	listen    string
	advertise string
	certs     string
	ttl       time.Duration
	adopt     bool
	// flags is where they were registered, to tell which were given.
	flags *pflag.FlagSet
}

func (f *clusterFlags) register(fs *pflag.FlagSet) {
	f.flags = fs
	f.etcdFlags.register(fs, "join a cluster: etcd=<endpoint>[,<endpoint>...] (etcd's client URLs)")
	fs.StringVar(&f.name, "cluster-name", "", "this host's name in the cluster (default: the machine's hostname)")
	fs.StringVar(&f.listen, "cluster-listen", ":7947", "address of the peer server other hosts forward requests to (mutual TLS)")
	fs.StringVar(&f.advertise, "cluster-advertise", "", "host:port other hosts reach the peer server at (default: --cluster-listen's address, or this host's name if it names none)")
	fs.StringVar(&f.certs, "cluster-certs", "cluster-certs", "directory of the cluster CA and this host's certificate, relative to the working directory (wharf cluster init, wharf cluster cert)")
	fs.BoolVar(&f.adopt, "cluster-adopt", false, "serve on this cluster even though the data directory holds object data of another one (its etcd was wiped or replaced): that data is moved aside, and the objects restore from this cluster's log")
	durationFlag(fs, &f.ttl, "cluster-ttl", cluster.DefaultTTL, false, "lease TTL: how soon after this host is lost its objects move (2s to 1m)")
}

// endpoints parses --cluster.
func (f *etcdFlags) endpoints() ([]string, error) {
	v, ok := strings.CutPrefix(f.cluster, "etcd=")
	if !ok || strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("--cluster: want etcd=<endpoint>[,<endpoint>...], got %q", f.cluster)
	}
	endpoints := strings.Split(v, ",")
	for _, e := range endpoints {
		scheme, hostPort, isURL := strings.Cut(e, "://")
		if !isURL {
			scheme, hostPort = "http", e
		}
		if _, _, err := net.SplitHostPort(strings.TrimSuffix(hostPort, "/")); err != nil || (scheme != "http" && scheme != "https") {
			return nil, fmt.Errorf("--cluster: etcd endpoint %q: want host:port or an http:// or https:// URL", e)
		}
	}
	return endpoints, nil
}

// peerNode is this host's side of a cluster: its membership and its peer
// server.
type peerNode struct {
	member    *cluster.Member
	ln        net.Listener
	srv       *http.Server
	config    *objects.ClusterConfig
	advertise string // the peer address other hosts reach it at
}

// peerSetup is a host's cluster settings, checked, with its peer server's
// address taken: everything --cluster's flags can get wrong is refused
// before a build, while joining (which makes the host a member that others
// send events to) waits until its plugin is loaded.
type peerSetup struct {
	config               cluster.Config
	serverTLS, clientTLS *tls.Config
	ln                   net.Listener
}

// check refuses flags that cannot work, touching nothing: a --cluster-*
// flag without --cluster, a bad --cluster, host name or TTL. It returns
// the cluster's settings, without the peer address; nil without --cluster.
func (f *clusterFlags) check(plugin string) (*cluster.Config, error) {
	if f.cluster == "" {
		for _, name := range append([]string{"cluster-name", "cluster-listen", "cluster-advertise", "cluster-certs", "cluster-ttl", "cluster-adopt"}, etcdAccessFlags...) {
			if f.flags.Changed(name) {
				return nil, fmt.Errorf("--%s needs --cluster etcd=<endpoint>[,<endpoint>...]: without it, this host serves alone", name)
			}
		}
		return nil, nil
	}
	etcd, err := f.connection()
	if err != nil {
		return nil, err
	}
	name := f.name
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("--cluster-name: %w", err)
		}
	}
	if f.advertise != "" { // where other hosts dial this one: a port, and a host to dial
		h, port, err := net.SplitHostPort(f.advertise)
		if n, perr := strconv.Atoi(port); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("--cluster-advertise %q: want host:port, the address other hosts reach this one's --cluster-listen at", f.advertise)
		}
	}
	cfg := &cluster.Config{Etcd: etcd, Name: name, Plugin: plugin, TTL: f.ttl}
	return cfg, cfg.Check()
}

// prepare reads the host's certificates and listens for peers; nil
// without --cluster (cfg nil).
func (f *clusterFlags) prepare(cfg *cluster.Config) (*peerSetup, error) {
	if cfg == nil {
		return nil, nil
	}
	name := cfg.Name
	serverTLS, clientTLS, err := cluster.PeerTLS(f.certs, name)
	if err != nil {
		return nil, err
	}
	cfg.Advertise = f.advertise
	if cfg.Advertise == "" {
		h, port, err := net.SplitHostPort(f.listen)
		if err != nil {
			return nil, fmt.Errorf("--cluster-listen %q: %w", f.listen, err)
		}
		if h == "" || net.ParseIP(h).IsUnspecified() {
			h = name // other hosts reach this one by its name
		}
		cfg.Advertise = net.JoinHostPort(h, port)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-listen: %w", err)
	}
	return &peerSetup{config: *cfg, serverTLS: serverTLS, clientTLS: clientTLS, ln: ln}, nil
}

// join joins the cluster; nil without --cluster. The peer node it returns
// owns the peer listener.
func (s *peerSetup) join(ctx context.Context, logger *slog.Logger) (*peerNode, error) {
	if s == nil {
		return nil, nil
	}
	cfg := s.config
	cfg.Logger = logger
	m, err := cluster.Join(ctx, cfg)
	if err != nil {
		return nil, err
	}
	peers := &http.Client{Transport: &http.Transport{
		DialTLSContext:    peerDialer(m, s.clientTLS),
		ForceAttemptHTTP2: true,
		// A peer that stops answering (frozen, cut off) fails the events
		// under way within seconds instead of holding them.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 2 * time.Second, PingTimeout: 2 * time.Second},
	}}
	// Its own errors (a TLS handshake a peer's probe cut short) go to the
	// log in its format, at debug: the sender says what failed.
	srv := &http.Server{TLSConfig: s.serverTLS, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	logger.Info("joined the cluster", "host", cfg.Name, "cluster", m.ClusterID(), "peer_address", cfg.Advertise, "etcd", strings.Join(cfg.Etcd.Endpoints, ","))
	return &peerNode{member: m, ln: s.ln, srv: srv, config: &objects.ClusterConfig{Member: m, Peers: peers}, advertise: cfg.Advertise}, nil
}

// release closes the peer listener if the host did not join (a failed
// build, load or join); closing it again after is harmless.
func (s *peerSetup) release() {
	if s != nil {
		s.ln.Close()
	}
}

// peerDialer connects to a host by its name (URLs name hosts, not
// addresses): it looks the address up in the cluster and checks that the
// certificate there is that host's. Any failure before the connection is
// ready is a dial error, which the sender may retry.
func peerDialer(m *cluster.Member, base *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		name, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		dialErr := func(err error) error { return &net.OpError{Op: "dial", Net: network, Err: err} }
		target, err := m.Address(ctx, name)
		if err != nil {
			return nil, dialErr(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		raw, err := (&net.Dialer{}).DialContext(ctx, network, target)
		if err != nil {
			return nil, dialErr(err)
		}
		cfg := base.Clone()
		cfg.ServerName = name
		cfg.NextProtos = []string{"h2"}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, dialErr(err)
		}
		return conn, nil
	}
}

// serve answers other hosts' forwarded events for w, and then says in the
// cluster that this host serves.
func (p *peerNode) serve(ctx context.Context, w *host.Worker) error {
	p.srv.Handler = w.PeerHandler()
	go p.srv.ServeTLS(p.ln, "", "")
	if err := p.reachesItself(ctx); err != nil {
		return err
	}
	return p.member.Serving(ctx)
}

// reachesItself checks that the peer address this host registered reaches
// it, as other hosts will send to it: an address where nothing answers, or
// where another host does, failed every event they sent it, each after a
// wait, for as long as it held objects.
func (p *peerNode) reachesItself(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+p.member.Name()+"/", nil)
	if err == nil {
		var resp *http.Response
		if resp, err = p.config.Peers.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return fmt.Errorf("this host's peer address %s does not reach it (set --cluster-advertise to an address of this host's --cluster-listen that other hosts reach): %w", p.advertise, err)
}

// stopServing shuts the peer server down with the ingress, as a stopping
// host begins its stop: it tells the other hosts (HTTP/2 GOAWAY) to send
// their next events elsewhere (a refused one is sent again, placed anew
// once close releases the host's objects) and finishes the answers under
// way until ctx ends; then it closes the connections left, which cancels
// their events as closing the ingress cancels a client's request. A
// forwarded event held the stop until its own time limit: the worker
// closes (waiting for its events) before close, and only the ingress's
// requests were cut.
func (p *peerNode) stopServing(ctx context.Context) {
	if p == nil {
		return
	}
	if err := p.srv.Shutdown(ctx); err != nil {
		p.srv.Close()
	}
}

// close leaves the cluster (releasing every object still placed here) and
// closes the peer server (stopServing shut it down gracefully first, on a
// stop).
func (p *peerNode) close() {
	if p == nil {
		return
	}
	p.member.Close()
	p.srv.Close()
	p.ln.Close()
}

// newClusterCommand is wharf cluster: certificates, status and draining.
func newClusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Run several wharf hosts as one: certificates, status, draining"}
	var certs string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the cluster CA that signs every host's certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cluster.InitCA(certs); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster CA created in %s\nnext: wharf cluster cert <host> --certs %s, once per host, and copy %s/ca.pem, <host>.pem and <host>-key.pem to that host\n", certs, cluster.ShellQuote(certs), certs)
			return nil
		},
	}
	certCmd := &cobra.Command{
		Use:   "cert <host>",
		Short: "Sign a certificate for a host with the cluster CA",
		Args:  argsOf(cobra.ExactArgs(1), argKind{article: "a", noun: "host name", hint: " (the --cluster-name that host serves with)"}),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cluster.IssueHost(certs, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate of %s written to %s\n", args[0], certs)
			return nil
		},
	}
	for _, c := range []*cobra.Command{initCmd, certCmd} {
		c.Flags().StringVar(&certs, "certs", "cluster-certs", "directory of the cluster's certificates")
	}
	var etcd etcdFlags
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "List the cluster's hosts, the plugin build each serves, their leases and how many objects each owns",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			access, err := etcd.connection()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st, err := cluster.ReadStatus(ctx, access)
			if err != nil {
				return err
			}
			if len(st.Hosts) == 0 { // a table of its header only said nothing
				accessFlags := ""
				if cmp.Or(etcd.cacert, etcd.cert, etcd.key, etcd.user) != "" {
					accessFlags = " and the --cluster-etcd-* flags of that host"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "no host is in the cluster: a host joins it with wharf serve <plugin> --cluster %s%s\n", cluster.ShellQuote(etcd.cluster), accessFlags)
				return nil
			}
			slices.SortFunc(st.Hosts, func(a, b cluster.Host) int { return strings.Compare(a.Name, b.Name) })
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tPLUGIN\tBUILD\tPEER ADDRESS\tSTATE\tLEASE\tTTL\tOBJECTS")
			for _, h := range st.Hosts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%x\t%ds\t%d\n", h.Name, h.Plugin, cmp.Or(h.Build, "-"), h.Advertise, h.State, h.Lease, h.TTL, st.Objects[h.Name])
			}
			return tw.Flush()
		},
	}
	etcd.register(statusCmd.Flags(), "the cluster: etcd=<endpoint>[,<endpoint>...]")
	var dataDir string
	var drainTimeout time.Duration
	drainCmd := &cobra.Command{
		Use:   "drain",
		Short: "Move a running host's objects to the other hosts (before maintenance); returns when none is left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := admin.NewClient(dataDir).Drain(cmd.Context(), drainTimeout); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "drained: no object and none of their containers is left on this host; it forwards requests until it stops")
			return nil
		},
	}
	drainCmd.Flags().StringVar(&dataDir, "data-dir", manifest.DefaultStateDir, "data directory of the running wharf serve")
	durationFlag(drainCmd.Flags(), &drainTimeout, "timeout", 0, true, "give up waiting after this long, saying which objects are left (the host drains on); 0: wait until none is")
	cmd.AddCommand(initCmd, certCmd, statusCmd, drainCmd)
	return cmd
}
