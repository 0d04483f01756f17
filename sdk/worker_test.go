package sdk

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestURL(t *testing.T) {
	cases := []struct{ raw, path, rawPath, query, uri string }{
		{"http://h:1/a/b?x=1&y=2", "/a/b", "", "x=1&y=2", "/a/b?x=1&y=2"},
		{"http://h", "/", "", "", "/"},
		{"http://h?q", "/", "", "q", "/?q"},
		{"https://h/a%2Fb?z", "/a/b", "/a%2Fb", "z", "/a%2Fb?z"},
		{"http://h/%E2%9C%93", "/✓", "", "", "/%E2%9C%93"},
	}
	for _, c := range cases {
		u, uri, err := requestURL(c.raw)
		require.NoError(t, err, c.raw)
		assert.Equal(t, c.path, u.Path, c.raw)
		assert.Equal(t, c.rawPath, u.RawPath, c.raw)
		assert.Equal(t, c.query, u.RawQuery, c.raw)
		assert.Equal(t, c.uri, uri, c.raw)
	}
	_, _, err := requestURL("http://h/%zz")
	assert.Error(t, err)
}
