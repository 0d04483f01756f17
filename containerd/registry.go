package containerd

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
)

// ErrRegistryAuth means a registry refused the credentials given (or asked
// for some and none were given).
var ErrRegistryAuth = errors.New("registry refused the credentials")

// Registries is how wharf speaks to registries, for pulls and for builds.
type Registries struct {
	// Auth are the credentials, in docker's config.json format (never nil
	// once loaded).
	Auth *configfile.ConfigFile
	// Insecure are hosts (host[:port]) spoken to over plain HTTP; loopback
	// registries always are.
	Insecure []string
}

// LoadRegistryAuth reads registry credentials from path (--registry-auth)
// or, when path is empty, from docker's usual ~/.docker/config.json
// ($DOCKER_CONFIG honoured; none if it does not exist).
func LoadRegistryAuth(path string) (*configfile.ConfigFile, error) {
	if path == "" {
		cfg, err := config.Load(config.Dir())
		if err != nil {
			return nil, fmt.Errorf("reading registry credentials: %w", err)
		}
		return cfg, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--registry-auth: %w", err)
	}
	defer f.Close()
	cfg, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("--registry-auth %s: %w", path, err)
	}
	cfg.Filename = path
	return cfg, nil
}

// plainHTTP reports whether host is spoken to over HTTP: loopback or listed
// as insecure.
func (r Registries) plainHTTP(host string) (bool, error) {
	if slices.Contains(r.Insecure, host) {
		return true, nil
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback(), nil
}

// credentials returns the user and secret stored for host.
func (r Registries) credentials(host string) (string, string, error) {
	if r.Auth == nil {
		return "", "", nil
	}
	key := host
	if host == "registry-1.docker.io" || host == "docker.io" {
		key = "https://index.docker.io/v1/"
	}
	ac, err := r.Auth.GetAuthConfig(key)
	if err != nil {
		return "", "", err
	}
	if ac.IdentityToken != "" {
		return "", ac.IdentityToken, nil
	}
	return ac.Username, ac.Password, nil
}

// resolver is a containerd resolver with these credentials and schemes.
func (r Registries) resolver() docker.ResolverOptions {
	return docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(r.plainHTTP),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(r.credentials))),
	)}
}

// explain turns a registry's refusal of credentials into ErrRegistryAuth
// (see RefusedCredentials).
func (r Registries) explain(ref string, err error) error {
	var status remoteerrors.ErrUnexpectedStatus
	refused := errors.Is(err, docker.ErrInvalidAuthorization) ||
		(errors.As(err, &status) && (status.StatusCode == http.StatusUnauthorized || status.StatusCode == http.StatusForbidden))
	if !refused {
		return err
	}
	return RefusedCredentials(r.Auth, ref, err)
}

// RefusedCredentials is the error for a registry that refused the
// credentials for ref (or asked for some): ErrRegistryAuth, saying where
// credentials came from (auth; nil for the default) and how to give
// others, and the registry's answer err.
func RefusedCredentials(auth *configfile.ConfigFile, ref string, err error) error {
	from := "~/.docker/config.json"
	if auth != nil && auth.Filename != "" {
		from = auth.Filename
	}
	return fmt.Errorf("%w for %s (credentials from %s; log in with docker login or pass --registry-auth FILE): %v", ErrRegistryAuth, ref, from, err)
}
