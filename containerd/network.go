package containerd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Every container gets its own network namespace joined to the host by a
// veth pair with a /30 of its own: the host side is the first address, the
// container (eth0) the second. The host can then dial the container
// directly. The container's default route points at the host, where the
// egress gateway's nft table decides what may leave.

// Name prefixes of what the network layer creates on the host, so leftovers
// can be found.
const (
	netnsPrefix = "wharf-"
	vethPrefix  = "wh"
)

// DefaultSubnet is where container /30s are taken from.
var DefaultSubnet = netip.MustParsePrefix("10.209.0.0/16")

// Network hands out /30 subnets and sets up container namespaces. Its
// scope, part of every name it creates, keeps two wharf hosts on one
// machine (or two test runs) from touching each other's links.
type Network struct {
	subnet netip.Prefix
	scope  string
	mu     sync.Mutex
	used   map[int]bool // /30 indexes
}

// NewNetwork allocates container subnets from subnet (at least a /28) for
// the wharf whose data lives at dataDir (any stable string), in its scope
// (see Scope). It takes no hold of the scope, as a Manager does.
func NewNetwork(subnet netip.Prefix, dataDir string) *Network {
	return newNetwork(subnet, Scope(dataDir))
}

// newNetwork is a Network whose names carry scope tag.
func newNetwork(subnet netip.Prefix, tag string) *Network {
	return &Network{subnet: subnet.Masked(), scope: tag, used: map[int]bool{}}
}

// Endpoint is one container's network: its namespace and addresses.
type Endpoint struct {
	// NetNSPath is the namespace to run the container in.
	NetNSPath string
	// HostIP and ContainerIP are the two ends of the veth pair.
	HostIP, ContainerIP netip.Addr
	id                  string
	name                string
	hostLink            string
	slot                int
	net                 *Network
	released            bool // Teardown gave the slot back
}

// newEndpoint names the namespace and link of container id.
func newEndpoint(n *Network, id string, slot int) *Endpoint {
	sum := sha256.Sum256([]byte(id))
	tag := n.scope + hex.EncodeToString(sum[:4])
	ep := &Endpoint{id: id, name: netnsPrefix + tag, hostLink: vethPrefix + tag, slot: slot, net: n}
	ep.NetNSPath = "/var/run/netns/" + ep.name
	return ep
}

func (n *Network) allocate() (int, netip.Addr, netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	inUse := map[netip.Addr]bool{} // addresses on the host, e.g. another wharf's
	if addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4); err == nil {
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
				inUse[ip] = true
			}
		}
	}
	slots := 1 << (32 - n.subnet.Bits() - 2)
	for i := 1; i < slots; i++ { // slot 0 is left alone
		if n.used[i] {
			continue
		}
		base := n.subnet.Addr().As4()
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		v += uint32(i) * 4
		host := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v + 1)})
		ctr := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v + 2)})
		if inUse[host] {
			continue
		}
		n.used[i] = true
		return i, host, ctr, nil
	}
	return 0, netip.Addr{}, netip.Addr{}, fmt.Errorf("no free /30 left in %s", n.subnet)
}

// Gateway is the address of slot 0, which no container gets: every host
// end of a container link carries it as well, and the egress proxy and
// resolver listen on it, so they are reachable from containers and from
// nowhere else.
func (n *Network) Gateway() netip.Addr { return n.subnet.Addr().Next() }

// reserveSlot marks a slot an adopted container already uses.
func (n *Network) reserveSlot(slot int) {
	n.mu.Lock()
	n.used[slot] = true
	n.mu.Unlock()
}

func (n *Network) release(slot int) {
	n.mu.Lock()
	delete(n.used, slot)
	n.mu.Unlock()
}

// Setup creates the namespace and veth pair for container id, with a
// default route via the host's end.
func (n *Network) Setup(id string) (*Endpoint, error) {
	ep, err := n.reserve(id)
	if err != nil {
		return nil, err
	}
	return n.claim(id, ep, nil)
}

// errAddressTaken is a container address another wharf on this host put on
// one of its links after this one reserved it.
var errAddressTaken = errors.New("another wharf on this host took the address meanwhile")

// claim creates ep (see create). If another wharf on this host took its
// address since it was reserved, claim reserves the next free /30 and
// tries again, a few times; reserved (if not nil) hears of each new
// reservation before its namespace and link are made.
func (n *Network) claim(id string, ep *Endpoint, reserved func(*Endpoint) error) (*Endpoint, error) {
	for tries := 1; ; tries++ {
		err := ep.create()
		if !errors.Is(err, errAddressTaken) || tries == 5 {
			return ep, err
		}
		// create tore ep down and freed its slot; the next reservation
		// skips the address, which is now on the other wharf's link.
		next, err := n.reserve(id)
		if err != nil {
			return ep, err
		}
		ep = next
		if reserved != nil {
			if err := reserved(ep); err != nil {
				return ep, err
			}
		}
	}
}

// networkLockPath is the lock wharf processes on a host take while they
// check that a container's host address is free and put it on its link.
const networkLockPath = "/run/wharf-network.lock"

// addHostAddress puts hostIP/30 on link unless a link on the host already
// has it (another wharf's container, which would then share a route with
// this one): errAddressTaken. Wharfs on one host serialise this step.
func addHostAddress(link netlink.Link, hostIP netip.Addr) error {
	f, err := os.OpenFile(networkLockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("host network lock: %w", err)
	}
	defer f.Close() // and with it the lock
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("host network lock %s: %w", networkLockPath, err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == hostIP {
			return fmt.Errorf("%s: %w", hostIP, errAddressTaken)
		}
	}
	return netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(hostIP, 30)})
}

// reserve takes a /30 for container id and names its namespace and link,
// creating nothing yet.
func (n *Network) reserve(id string) (*Endpoint, error) {
	slot, hostIP, ctrIP, err := n.allocate()
	if err != nil {
		return nil, err
	}
	ep := newEndpoint(n, id, slot)
	ep.HostIP, ep.ContainerIP = hostIP, ctrIP
	return ep, nil
}

// create makes the endpoint's namespace and veth pair; on failure it
// removes what it made.
func (ep *Endpoint) create() (err error) {
	id := ep.id
	hostIP, ctrIP := ep.HostIP, ep.ContainerIP
	defer func() {
		if err != nil {
			ep.Teardown()
		}
	}()
	ns, err := newNamedNetNS(ep.name)
	if err != nil {
		return fmt.Errorf("network namespace for %s: %w", id, err)
	}
	defer ns.Close()
	peer := ep.hostLink + "c"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ep.hostLink}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth for %s: %w", id, err)
	}
	host, err := netlink.LinkByName(ep.hostLink)
	if err != nil {
		return err
	}
	// No IPv6 on the host end (the egress table is IPv4: a link-local
	// address would reach host services unfiltered), and strict reverse
	// path filtering, so a container cannot send with another's address.
	if err := setLinkSysctls(ep.hostLink); err != nil {
		return err
	}
	if err := addHostAddress(host, hostIP); err != nil {
		return err
	}
	if err := ep.carryGateway(); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	peerLink, err := netlink.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(peerLink, int(ns)); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	inner, err := h.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := h.LinkSetName(inner, "eth0"); err != nil {
		return err
	}
	if err := h.AddrAdd(inner, &netlink.Addr{IPNet: ipNet(ctrIP, 30)}); err != nil {
		return err
	}
	if err := h.LinkSetUp(inner); err != nil {
		return err
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	gw := net.IP(hostIP.AsSlice())
	if err := h.RouteAdd(&netlink.Route{LinkIndex: inner.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route for %s: %w", id, err)
	}
	return nil
}

// carryGateway puts the network's gateway address on the host end of the
// link (links made by an older wharf lack it).
func (ep *Endpoint) carryGateway() error {
	link, err := netlink.LinkByName(ep.hostLink)
	if err == nil {
		err = netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(ep.net.Gateway(), 32)})
	}
	if err != nil {
		return fmt.Errorf("gateway address on %s: %w", ep.hostLink, err)
	}
	return nil
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, 32)}
}

// newNamedNetNS creates a namespace bind-mounted at /var/run/netns/name.
// Creating it moves the current thread into it, so that happens on a
// goroutine of its own; if the thread cannot move back it is not returned
// to the runtime (a locked goroutine that exits takes its thread along).
func newNamedNetNS(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			done <- result{ns, errors.Join(err, serr)}
			return // still locked: the thread dies with the goroutine
		}
		runtime.UnlockOSThread()
		done <- result{ns, err}
	}()
	r := <-done
	return r.ns, r.err
}

// Teardown removes the veth pair and the namespace.
func (ep *Endpoint) Teardown() error {
	var errs []error
	if link, err := netlink.LinkByName(ep.hostLink); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("removing link %s: %w", ep.hostLink, err))
		}
	}
	err := netns.DeleteNamed(ep.name)
	if errors.Is(err, unix.EINVAL) { // not mounted: a crash came between creating the file and mounting it
		err = removeIfExists(ep.NetNSPath)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("network namespace %s: %w", ep.NetNSPath, err))
	}
	if !ep.released {
		ep.net.release(ep.slot)
		ep.released = true
	}
	return errors.Join(errs...)
}

// NetworkLeftovers lists the network namespaces and veth links on the host
// that the wharf with data at dataDir created (those named with its Scope).
func NetworkLeftovers(dataDir string) []string {
	return networkNamesOf(Scope(dataDir))
}

// networkNamesOf lists the network namespaces and veth links on the host
// of the wharf whose scope is tag, as leftovers are named.
func networkNamesOf(tag string) []string {
	namespaces, links := scopeNetwork(tag)
	var out []string
	for _, name := range namespaces {
		out = append(out, "network namespace "+name)
	}
	for _, name := range links {
		out = append(out, "link "+name)
	}
	return out
}

// scopeNetwork lists the network namespaces and host links that
// newEndpoint names in scope tag: its prefix, the scope, 8 hex digits.
func scopeNetwork(tag string) (namespaces, links []string) {
	named := func(name, prefix string) bool {
		rest, ok := strings.CutPrefix(name, prefix+tag)
		return ok && len(rest) == 8 && validScope(rest[:4]) && validScope(rest[4:])
	}
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if named(e.Name(), netnsPrefix) {
			namespaces = append(namespaces, e.Name())
		}
	}
	all, _ := netlink.LinkList()
	for _, l := range all {
		if named(l.Attrs().Name, vethPrefix) {
			links = append(links, l.Attrs().Name)
		}
	}
	return namespaces, links
}

func setLinkSysctls(link string) error {
	for path, v := range map[string]string{
		"/proc/sys/net/ipv6/conf/" + link + "/disable_ipv6": "1",
		"/proc/sys/net/ipv4/conf/" + link + "/rp_filter":    "1",
	} {
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("setting %s: %w", path, err)
		}
	}
	return nil
}
