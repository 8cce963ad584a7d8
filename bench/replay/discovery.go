package main

// Discovery documents recorded from the real API server (bench/fixtures/discovery), served with
// the same negotiation as kube-apiserver 1.36: /api and /apis answer the aggregated v2 form when any
// Accept range asks for it (whatever its position), the classic form otherwise.

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

const aggregatedType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

type doc struct {
	body []byte
	etag string // aggregated documents only
}

type discovery struct {
	version    []byte
	classic    map[string][]byte // "/api", "/apis", "/api/v1", "/apis/<group>/<version>"
	aggregated map[string]doc    // "/api", "/apis"
}

func loadDiscovery(dir string) (*discovery, error) {
	d := &discovery{classic: map[string][]byte{}, aggregated: map[string]doc{}}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("discovery fixture: %w", err)
		}
		return b, nil
	}
	var err error
	if d.version, err = read("version.json"); err != nil {
		return nil, err
	}
	for path, file := range map[string]string{"/api": "api.json", "/apis": "apis.json", "/api/v1": "api-v1.json"} {
		if d.classic[path], err = read(file); err != nil {
			return nil, err
		}
	}
	for path, file := range map[string]string{"/api": "api.aggregated.json", "/apis": "apis.aggregated.json"} {
		b, err := read(file)
		if err != nil {
			return nil, err
		}
		sum := sha512.Sum512(b)
		d.aggregated[path] = doc{body: b, etag: `"` + strings.ToUpper(hex.EncodeToString(sum[:])) + `"`}
	}
	groups, err := filepath.Glob(filepath.Join(dir, "apis", "*", "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range groups {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		gv := strings.TrimSuffix(filepath.Base(f), ".json")
		d.classic["/apis/"+filepath.Base(filepath.Dir(f))+"/"+gv] = b
	}
	return d, nil
}

// acceptKinds reports whether any Accept range asks for aggregated v2 discovery, and whether any
// range accepts a classic document (which is always answered as JSON, even if protobuf came first).
func acceptKinds(accept string) (aggregated, classic bool) {
	if strings.TrimSpace(accept) == "" {
		return false, true
	}
	for _, r := range strings.Split(accept, ",") {
		parts := strings.Split(r, ";")
		typ := strings.ToLower(strings.TrimSpace(parts[0]))
		params := map[string]string{}
		for _, p := range parts[1:] {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok {
				params[strings.ToLower(k)] = v
			}
		}
		if params["as"] != "" || params["g"] != "" {
			if typ == "application/json" && params["g"] == "apidiscovery.k8s.io" &&
				params["v"] == "v2" && params["as"] == "APIGroupDiscoveryList" {
				aggregated = true
			}
			continue
		}
		switch typ {
		case "application/json", "application/*", "*/*", "application/yaml",
			"application/vnd.kubernetes.protobuf":
			classic = true
		}
	}
	return aggregated, classic
}

// serve answers a discovery path; false when the path is not a discovery document.
func (d *discovery) serve(w http.ResponseWriter, r *http.Request) bool {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/version" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache, private")
		_, _ = w.Write(d.version)
		return true
	}
	body, ok := d.classic[path]
	if !ok {
		return false
	}
	agg, classic := acceptKinds(r.Header.Get("Accept"))
	if a, ok := d.aggregated[path]; ok && agg {
		h := w.Header()
		h.Set("Content-Type", aggregatedType)
		h.Set("Cache-Control", "public")
		h.Set("Vary", "Accept")
		h.Set("Etag", a.etag)
		if r.Header.Get("If-None-Match") == a.etag {
			w.WriteHeader(http.StatusNotModified)
			return true
		}
		_, _ = w.Write(a.body)
		return true
	}
	if !classic {
		writeStatus(w, http.StatusNotAcceptable, "NotAcceptable",
			"only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf")
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	_, _ = w.Write(body)
	return true
}
