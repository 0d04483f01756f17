package containerd

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd/egress"
)

// Every RUN step of a build runs in a network namespace of its own, as
// docker build's do: buildkitd's CNI mode (package build writes its
// configuration, BuildCNIConfig), with the ptp plugin (a veth pair to the
// host, no bridge left on the host) and host-local addresses from
// BuildSubnet; the data directory's nft table (OpenBuildNetwork)
// masquerades what leaves and keeps the steps from the host. A step
// reaches the internet, and never the host's loopback: lo is its own.
// Its link has no IPv6 (the tuning plugin turns it off there): with the
// link-local address every link gets, a step reached any service of the
// host listening on all IPv6 addresses ([::]) through the host's end of
// its veth pair, which the nft table (family ip) does not see.

// BuildSubnet is where the build steps' network namespaces take their
// addresses. It is one for every wharf on the host, whose builds share the
// record of the addresses taken (buildIPAMDir).
var BuildSubnet = netip.MustParsePrefix("10.218.0.0/16")

// buildCNINetwork is the CNI network's name, and the directory of its
// addresses in buildIPAMDir.
const buildCNINetwork = "wharf-build"

// buildIPAMDir is where host-local records the addresses taken, one file an
// address holding the namespace's id. It is one for every wharf on the
// host, so that no two steps get one address, and in /run, so that a
// reboot empties it with the namespaces.
const buildIPAMDir = "/run/wharf-build-cni"

// BuildCNIConfig is the CNI network of the build steps (see above), a
// configuration list for buildkitd's cniConfigPath.
func BuildCNIConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [{
    "type": "ptp",
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }, {
    "type": "tuning",
    "sysctl": {"net.ipv6.conf.IFNAME.disable_ipv6": "1"}
  }]
}
`, buildCNINetwork, buildIPAMDir, BuildSubnet)
}

// OpenBuildNetwork installs the nft table of this data directory's build
// steps (see egress.InstallBuildFirewall): they may reach the internet
// through the host, and nothing of the host but DNS.
// RemoveBuildLeftovers removes it.
// It first releases the addresses of the host's build steps that are
// lost (releaseLostAddresses).
func (b *Backend) OpenBuildNetwork() error {
	return errors.Join(releaseLostAddresses(time.Now()), egress.InstallBuildFirewall(buildTag(b.RuncRoot), BuildSubnet))
}

// lostAfter is how long after host-local recorded an address its step's
// network is surely set up: ptp routes the address through the host's end
// of its veth pair within the same CNI ADD, seconds at most.
const lostAfter = time.Minute

// releaseLostAddresses releases the addresses recorded in buildIPAMDir,
// by any wharf of the host, whose step's network namespace is gone: the
// host has no route to them (ptp's, through the host's end of the veth
// pair, which goes with the namespace) and they were recorded more than
// lostAfter before now. Such a record outlives its namespace when nothing
// asks the plugins to remove it nor calls UnmountBuild on its data
// directory: the data directory of a killed wharf removed (rm -rf) and its
// steps swept by another wharf (removeOrphanedScope), or its processes
// killed by hand. The address then stayed taken until a reboot. It holds
// host-local's lock (the file "lock" there) meanwhile.
func releaseLostAddresses(now time.Time) error {
	dir := filepath.Join(buildIPAMDir, buildCNINetwork)
	lock, err := os.Open(filepath.Join(dir, "lock"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no build ran since the host started
	} else if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing the host's routes: %w", err)
	}
	routed := map[netip.Addr]bool{}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones != 32 {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok {
			routed[a] = true
		}
	}
	taken, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range taken {
		a, err := netip.ParseAddr(e.Name())
		if err != nil || !BuildSubnet.Contains(a) || routed[a] {
			continue // "lock", "last_reserved_ip.0", or in use
		}
		if info, err := e.Info(); err != nil || now.Sub(info.ModTime()) < lostAfter {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeBuildFirewall removes the nft table OpenBuildNetwork installed,
// if it is there.
func (b *Backend) removeBuildFirewall() error {
	if len(egress.FirewallLeftovers(buildTag(b.RuncRoot))) == 0 {
		return nil
	}
	return egress.RemoveFirewall(buildTag(b.RuncRoot))
}

// stepNetworks is where the buildkitd whose state is at dir (BuildDir)
// keeps its steps' network namespaces, one file (a bind mount while in
// use) each, named by its id.
func stepNetworks(dir string) string { return filepath.Join(dir, "root", "net", "cni") }

// UnmountBuild unmounts what a buildkitd whose state is at dir (BuildDir)
// left mounted (see UnmountUnder), which must no longer run: its steps'
// network namespaces too, whose veth pairs go with them, and releases
// their addresses and removes their files. buildkitd would ask the
// plugins to remove each at its next start, which ptp refuses for a file
// that is no namespace, and their addresses stayed taken.
func UnmountBuild(dir string) error {
	left, _ := os.ReadDir(stepNetworks(dir))
	err := UnmountUnder(dir)
	ids := map[string]bool{}
	for _, e := range left {
		ids[e.Name()] = true
	}
	taken, _ := os.ReadDir(filepath.Join(buildIPAMDir, buildCNINetwork))
	errs := []error{err}
	for _, a := range taken {
		p := filepath.Join(buildIPAMDir, buildCNINetwork, a.Name())
		if ids[firstLine(p)] {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(append(errs, os.RemoveAll(stepNetworks(dir)))...)
}

// firstLine is the first line of the file at p ("" if it cannot be read):
// the id of the namespace a host-local address file names.
func firstLine(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan()
	return s.Text()
}
