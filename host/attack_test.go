package host

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Attacks on the guest runtime by a hostile plugin: each must end in a
// clear error for the one event while the host keeps serving.

// endlessSQL never finishes on its own: it counts an infinite recursive
// table.
const endlessSQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"

func TestEndlessSQLEndsAtTheEventDeadline(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ntimeout = \"2s\"\ninstances = 1\n")
	w.mustCall(t, "STORE", "bystander", "Put", map[string]string{"key": "k", "value": "v"})
	start := time.Now()
	code, body := w.call(t, "STORE", "spinner", "SQL", []any{endlessSQL})
	assert.Less(t, time.Since(start), 10*time.Second, "the statement stops at the event's deadline")
	assert.Equal(t, http.StatusGatewayTimeout, code, body)
	assert.Contains(t, body, "exceeded its time limit")
	start = time.Now()
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "bystander", "Get", "k"), "the instance serves on")
	assert.Less(t, time.Since(start), 2*time.Second)
}
