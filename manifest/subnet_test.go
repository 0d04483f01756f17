package manifest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/manifest"
)

// TestMaxContainerInstancesIsWhatAHostRuns: max_instances' bound is how
// many containers a host has addresses for, a /30 each of its container
// subnet but the first; a new subnet moves it.
func TestMaxContainerInstancesIsWhatAHostRuns(t *testing.T) {
	slots := 1<<(32-containerd.DefaultSubnet.Bits()-2) - 1
	assert.Equal(t, slots, manifest.MaxContainerInstances, "containers a host runs in %s", containerd.DefaultSubnet)
}
