package host

import (
	"context"
	"net/http"
)

// Drain moves this host's objects to the other hosts of the cluster (see
// objects.Objects.Drain).
func (w *Worker) Drain(ctx context.Context) error { return w.services.objects.Drain(ctx) }

// PeerHandler serves the events other hosts forward to this Worker's
// objects (see objects.Objects.PeerHandler).
func (w *Worker) PeerHandler() http.Handler { return w.services.objects.PeerHandler() }
