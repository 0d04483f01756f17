package containerd

import (
	"context"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
)

// Stats are a container's resource use, read from its cgroup through
// containerd (cgroup v1 or v2).
type Stats = hostcontainers.Stats

// Stats reads the container's cgroup counters.
func (c *Container) Stats(ctx context.Context) (Stats, error) {
	m, err := c.task.Metrics(WithNamespace(ctx))
	if err != nil {
		return Stats{}, err
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	switch m := data.(type) {
	case *v1.Metrics:
		s.CPUNanos = m.GetCPU().GetUsage().GetTotal()
		mem := m.GetMemory()
		s.MemoryBytes = saturatingSub(mem.GetUsage().GetUsage(), mem.GetTotalInactiveFile())
		s.MemoryLimitBytes = mem.GetUsage().GetLimit()
		s.Pids = m.GetPids().GetCurrent()
		for _, e := range m.GetBlkio().GetIoServiceBytesRecursive() {
			switch e.GetOp() {
			case "Read", "read":
				s.ReadBytes += e.GetValue()
			case "Write", "write":
				s.WriteBytes += e.GetValue()
			}
		}
	case *v2.Metrics:
		s.CPUNanos = m.GetCPU().GetUsageUsec() * 1000
		mem := m.GetMemory()
		s.MemoryBytes = saturatingSub(mem.GetUsage(), mem.GetInactiveFile())
		s.MemoryLimitBytes = mem.GetUsageLimit()
		s.Pids = m.GetPids().GetCurrent()
		for _, e := range m.GetIo().GetUsage() {
			s.ReadBytes += e.GetRbytes()
			s.WriteBytes += e.GetWbytes()
		}
	default:
		return Stats{}, fmt.Errorf("container %s: unknown metrics type %T", c.ID(), data)
	}
	return s, nil
}

// oomKills counts the processes of the container the kernel killed for
// lack of memory (0 when the cgroup cannot be read).
func (c *Container) oomKills() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.task.Metrics(WithNamespace(ctx))
	if err != nil {
		return 0
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return 0
	}
	switch m := data.(type) {
	case *v1.Metrics:
		return m.GetMemoryOomControl().GetOomKill()
	case *v2.Metrics:
		return m.GetMemoryEvents().GetOomKill()
	}
	return 0
}

func saturatingSub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
