package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/capsec/capsec/api"
)

// An error class set by the agent must survive the socket, so the CLI can
// tell "not found" from "busy" with errors.Is.
func TestErrorClassCrossesTheWire(t *testing.T) {
	for _, class := range []error{api.ErrNotFound, api.ErrAlreadyExists, api.ErrInvalid, api.ErrFailedPrecondition, api.ErrPermission} {
		t.Run(class.Error(), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				name, status := api.Classify(class)
				w.WriteHeader(status)
				json.NewEncoder(w).Encode(api.ErrorBody{Error: "container x: " + class.Error(), Class: name})
			}))
			defer srv.Close()
			c := &Client{Transport: rewrite{srv.URL}}
			_, err := c.Container(context.Background(), "x")
			if !errors.Is(err, class) {
				t.Fatalf("err %v is not %v", err, class)
			}
		})
	}
}

type rewrite struct{ base string }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	u := *req.URL
	u.Scheme, u.Host = "http", r.base[len("http://"):]
	req2 := req.Clone(req.Context())
	req2.URL = &u
	return http.DefaultTransport.RoundTrip(req2)
}
