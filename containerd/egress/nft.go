package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The firewall is one nft table (family ip) in the host namespace, named
// after the wharf's scope so two wharfs never touch each other's rules.
// Container links are matched by name prefix ("wh<scope>"):
//
//	prerouting (nat):  DNS (udp/tcp 53) → the resolver; all other TCP → the proxy
//	                   (both at the listen address every container link carries)
//	input:             from containers only the resolver and proxy ports (and
//	                   what belongs to their connections); no ICMP
//	forward:           containers in @internet may send (UDP, ICMP) out, never
//	                   to wharf's own ranges (internal, the synthetic range,
//	                   link-local); replies come back
//	postrouting (nat): masquerade @internet leaving through a non-container link
//
// TCP never crosses forward: the proxy dials out itself, so every TCP
// connection meets the policy. So nothing from a container reaches wharf's
// ranges or the host but the proxy and the resolver.
const (
	tablePrefix = "wharf-"
	internetSet = "internet"
)

// SyntheticRange is where names a rule intercepts resolve to; the proxy
// maps those addresses back to their names. (198.18.0.0/15 is the
// benchmarking range, never routed on the internet.)
var SyntheticRange = netip.MustParsePrefix("198.18.0.0/15")

var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

type firewall struct {
	table *nftables.Table
	set   *nftables.Set
}

// TableName is the name of the nft table (family ip) of the wharf whose
// scope tag is scope.
func TableName(scope string) string { return tablePrefix + scope }

// installFirewall creates the table for links named linkPrefix*, sending
// DNS to listen:dnsPort and TCP to listen:proxyPort and forwarding nothing
// to internal.
// A table left by a crashed run of the same scope is replaced: the caller
// holds the scope, which no other running wharf shares (see
// containerd.Scope), so such a table is never another one's.
func installFirewall(scope, linkPrefix string, listen netip.Addr, dnsPort, proxyPort uint16, internal []netip.Prefix) (*firewall, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	fw := &firewall{table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName(scope)}}
	if old, err := c.ListTableOfFamily(fw.table.Name, fw.table.Family); err == nil && old != nil {
		c.DelTable(fw.table)
		if err := c.Flush(); err != nil {
			return nil, fmt.Errorf("removing the old nft table %s: %w", fw.table.Name, err)
		}
	}
	c.AddTable(fw.table)
	fw.set = &nftables.Set{Table: fw.table, Name: internetSet, KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(fw.set, nil); err != nil {
		return nil, err
	}
	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: fw.table, Type: typ, Hooknum: hook, Priority: prio})
	}
	pre := chain("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	input := chain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	fwd := chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	post := chain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)

	fromCtr := ifname(expr.MetaKeyIIFNAME, linkPrefix, expr.CmpOpEq)
	toCtr := ifname(expr.MetaKeyOIFNAME, linkPrefix, expr.CmpOpEq)
	notToCtr := ifname(expr.MetaKeyOIFNAME, linkPrefix, expr.CmpOpNeq)
	add := func(ch *nftables.Chain, exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		c.AddRule(&nftables.Rule{Table: fw.table, Chain: ch, Exprs: all})
	}
	// DNS to the resolver, whatever server the container asked.
	add(pre, fromCtr, l4(unix.IPPROTO_UDP), dport(53), dnat(listen, dnsPort))
	add(pre, fromCtr, l4(unix.IPPROTO_TCP), dport(53), dnat(listen, dnsPort))
	add(pre, fromCtr, l4(unix.IPPROTO_TCP), dnat(listen, proxyPort))

	add(input, fromCtr, established(), verdict(expr.VerdictAccept))
	add(input, fromCtr, l4(unix.IPPROTO_TCP), dport(proxyPort), verdict(expr.VerdictAccept))
	add(input, fromCtr, l4(unix.IPPROTO_TCP), dport(dnsPort), verdict(expr.VerdictAccept))
	add(input, fromCtr, l4(unix.IPPROTO_UDP), dport(dnsPort), verdict(expr.VerdictAccept))
	add(input, fromCtr, verdict(expr.VerdictDrop))

	for _, p := range append([]netip.Prefix{SyntheticRange, linkLocal}, internal...) { // link-local: e.g. cloud metadata
		add(fwd, fromCtr, daddrIn(p, expr.CmpOpEq), verdict(expr.VerdictDrop))
	}
	add(fwd, fromCtr, notToCtr, saddrInSet(fw.set), verdict(expr.VerdictAccept))
	add(fwd, fromCtr, verdict(expr.VerdictDrop))
	add(fwd, toCtr, established(), verdict(expr.VerdictAccept))
	add(fwd, toCtr, verdict(expr.VerdictDrop))

	add(post, notToCtr, saddrInSet(fw.set), []expr.Any{&expr.Masq{}})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("installing the nft table %s: %w", fw.table.Name, err)
	}
	return fw, nil
}

// allowForward adds or removes a container address from @internet.
func (fw *firewall) allowForward(ip netip.Addr, on bool) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	el := []nftables.SetElement{{Key: ip.AsSlice()}}
	if on {
		err = c.SetAddElements(fw.set, el)
	} else {
		err = c.SetDeleteElements(fw.set, el)
	}
	if err != nil {
		return err
	}
	return c.Flush()
}

// remove deletes the table with its chains, rules and set.
func (fw *firewall) remove() error {
	c, err := nftables.New()
	if err == nil {
		c.DelTable(fw.table)
		err = c.Flush()
	}
	if err != nil {
		return fmt.Errorf("removing the nft table %s: %w", fw.table.Name, err)
	}
	return nil
}

// RemoveFirewall deletes the nft table of the wharf whose scope tag is
// scope, one a killed wharf left (see containerd's removeOrphan).
func RemoveFirewall(scope string) error {
	return (&firewall{table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName(scope)}}).remove()
}

// FirewallLeftovers lists the nft tables of the wharf whose scope tag is
// scope (its set elements go with it).
func FirewallLeftovers(scope string) []string {
	all, err := Firewalls()
	if err != nil {
		return []string{err.Error()}
	}
	return slices.DeleteFunc(all, func(t string) bool { return t != "nft table ip "+TableName(scope) })
}

// Firewalls lists the nft tables of every wharf in this network namespace
// ("nft table ip wharf-<scope>").
func Firewalls() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	var out []string
	for _, t := range tables {
		if strings.HasPrefix(t.Name, tablePrefix) {
			out = append(out, "nft table ip "+t.Name)
		}
	}
	return out, nil
}

// enableForwarding turns on IPv4 forwarding, which NAT for containers with
// internet needs (as Docker does). It is left on.
func enableForwarding() (changed bool, err error) {
	const knob = "/proc/sys/net/ipv4/ip_forward"
	v, err := os.ReadFile(knob)
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(string(v)) == "1" {
		return false, nil
	}
	if err := os.WriteFile(knob, []byte("1\n"), 0o644); err != nil {
		return false, errors.Join(errors.New("enabling net.ipv4.ip_forward for containers with internet"), err)
	}
	return true, nil
}

func ifname(key expr.MetaKey, prefix string, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(prefix)}, // a prefix compare is nft's "name*"
	}
}

func l4(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func dnat(addr netip.Addr, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: addr.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func established() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func saddrInSet(s *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

// daddrIn matches a destination address in p (op CmpOpEq) or outside it
// (CmpOpNeq).
func daddrIn(p netip.Prefix, op expr.CmpOp) []expr.Any { return addrIn(16, p, op) }

// saddrIn matches a source address in p.
func saddrIn(p netip.Prefix) []expr.Any { return addrIn(12, p, expr.CmpOpEq) }

// addrIn compares the IPv4 address at offset of the network header (12:
// source, 16: destination) with p.
func addrIn(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

// InstallBuildFirewall creates the nft table (TableName(scope)) of the
// build steps whose network namespaces take their addresses from subnet,
// replacing one a killed run left:
//
//	input:             from subnet only DNS (udp/tcp 53) and what belongs to
//	                   the steps' own connections: no service of the host
//	forward:           nothing from subnet to subnet: no step reaches
//	                   another (each is routed through the host), of its
//	                   own build or another wharf's; to link-local
//	                   addresses (a cloud's metadata server and its
//	                   credentials, 169.254.169.254) only DNS, which some
//	                   clouds serve there
//	postrouting (nat): masquerade subnet leaving it
//
// and turns on IPv4 forwarding (see enableForwarding), so that a RUN
// reaches the internet as docker build's does, and never the host.
// RemoveFirewall removes it.
func InstallBuildFirewall(scope string, subnet netip.Prefix) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName(scope)}
	if old, err := c.ListTableOfFamily(table.Name, table.Family); err == nil && old != nil {
		c.DelTable(table)
	}
	c.AddTable(table)
	input := c.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	add := func(ch *nftables.Chain, exprs ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: slices.Concat(exprs...)})
	}
	fromSteps := saddrIn(subnet)
	add(input, fromSteps, established(), verdict(expr.VerdictAccept))
	acceptDNS := func(ch *nftables.Chain, match ...[]expr.Any) {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			add(ch, slices.Concat(match...), l4(proto), dport(53), verdict(expr.VerdictAccept))
		}
	}
	acceptDNS(input, fromSteps)
	add(input, fromSteps, verdict(expr.VerdictDrop))
	add(fwd, fromSteps, daddrIn(subnet, expr.CmpOpEq), verdict(expr.VerdictDrop))
	toLinkLocal := daddrIn(linkLocal, expr.CmpOpEq)
	acceptDNS(fwd, fromSteps, toLinkLocal)
	add(fwd, fromSteps, toLinkLocal, verdict(expr.VerdictDrop))
	add(post, fromSteps, daddrIn(subnet, expr.CmpOpNeq), []expr.Any{&expr.Masq{}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the nft table %s: %w", table.Name, err)
	}
	if _, err := enableForwarding(); err != nil {
		return errors.Join(RemoveFirewall(scope), err)
	}
	return nil
}
