package main

// LIST and WATCH of the one replayed resource, with the API server's wire format: list items
// without kind/apiVersion, watch events as newline-delimited JSON with kind/apiVersion, the
// initial-events-end bookmark of watch-list, and Status objects for errors.

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// batchSize is the size of the writes handed to net/http: large enough that the HTTP/2 and TLS
// layers send full frames and records, so the server is never the bottleneck.
const batchSize = 64 << 10

const rvBase = 1000

type server struct {
	tmpl    *template
	n, m    int
	delay   time.Duration // pause between the initial state and the MODIFIED events
	token   string
	disc    *discovery
	verbose bool
}

// listRV is the resourceVersion of the list, and of the initial-events-end bookmark.
func (s *server) listRV() int64 { return rvBase + int64(s.n) }

func writeStatus(w http.ResponseWriter, code int, reason, message string) {
	out := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":` +
		string(jsonString(message)) + `,"reason":` + string(jsonString(reason)) + `,"code":` + strconv.Itoa(code) + "}"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, out)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.verbose {
		log.Printf("%s %s %s accept=%q accept-encoding=%q user-agent=%q", r.Proto, r.Method, r.URL.RequestURI(),
			r.Header.Get("Accept"), r.Header.Get("Accept-Encoding"), r.Header.Get("User-Agent"))
	}
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	if r.Method != http.MethodGet {
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			"the replay server only serves GET")
		return
	}
	if s.disc.serve(w, r) {
		return
	}
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(p) == 3 && p[0] == "api" && p[1] == "v1" && p[2] == s.tmpl.resource:
		s.collection(w, r, "")
	case len(p) == 5 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces" && p[4] == s.tmpl.resource:
		s.collection(w, r, p[3])
	default:
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	}
}

func (s *server) collection(w http.ResponseWriter, r *http.Request, ns string) {
	// Objects in scope: all of them for the all-namespaces path or our namespace, none otherwise.
	n := s.n
	if ns != "" && ns != s.tmpl.namespace {
		n = 0
	}
	q := r.URL.Query()
	// the API server reads booleans with strconv.ParseBool: the Python client sends "True"
	if v, _ := strconv.ParseBool(q.Get("watch")); v {
		s.watch(w, r, n)
		return
	}
	s.list(w, r, n)
}

// The continue token encodes the offset of the next item (and the list RV, as the real one does).
type continueToken struct {
	RV  int64 `json:"rv"`
	Off int   `json:"off"`
}

func (s *server) list(w http.ResponseWriter, r *http.Request, n int) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	start := 0
	if c := q.Get("continue"); c != "" {
		var tok continueToken
		raw, err := base64.RawURLEncoding.DecodeString(c)
		if err == nil {
			err = json.Unmarshal(raw, &tok)
		}
		if err != nil || tok.Off < 0 || tok.Off > n {
			writeStatus(w, http.StatusBadRequest, "BadRequest", "continue key is not valid")
			return
		}
		start = tok.Off
	} else if q.Get("resourceVersion") == "0" {
		// As kube-apiserver's watch cache: a list at RV "0" ignores the limit and returns everything.
		limit = 0
	}
	end := n
	if limit > 0 && start+limit < n {
		end = start + limit
	}

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	buf := make([]byte, 0, batchSize+s.tmpl.size)
	buf = append(buf, `{"kind":`...)
	buf = append(buf, jsonString(s.tmpl.kind+"List")...)
	buf = append(buf, `,"apiVersion":`...)
	buf = append(buf, jsonString(s.tmpl.apiVersion)...)
	buf = append(buf, `,"metadata":{"resourceVersion":"`...)
	buf = strconv.AppendInt(buf, s.listRV(), 10)
	buf = append(buf, '"')
	if end < n {
		tok, _ := json.Marshal(continueToken{RV: s.listRV(), Off: end})
		buf = append(buf, `,"continue":"`...)
		buf = append(buf, base64.RawURLEncoding.EncodeToString(tok)...)
		buf = append(buf, `","remainingItemCount":`...)
		buf = strconv.AppendInt(buf, int64(n-end), 10)
	}
	buf = append(buf, `},"items":[`...)
	for i := start; i < end; i++ {
		if i > start {
			buf = append(buf, ',')
		}
		buf = s.tmpl.appendItem(buf, i, rvBase+int64(i))
		if len(buf) >= batchSize {
			if _, err := w.Write(buf); err != nil {
				return
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, "]}"...)
	_, _ = w.Write(buf)
}

func (s *server) watch(w http.ResponseWriter, r *http.Request, n int) {
	q := r.URL.Query()
	sendInitial := q.Get("sendInitialEvents")
	bookmarks, _ := strconv.ParseBool(q.Get("allowWatchBookmarks"))
	rv := q.Get("resourceVersion")
	if (sendInitial == "true" || sendInitial == "1") && q.Get("resourceVersionMatch") != "NotOlderThan" {
		// The same validation as kube-apiserver, so a client that gets it wrong here fails here too.
		writeStatus(w, http.StatusUnprocessableEntity, "Invalid",
			`ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan`)
		return
	}
	timeout := 1800 * time.Second
	if t, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && t > 0 {
		timeout = time.Duration(t) * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()

	// The initial state: asked for explicitly (watch-list), or implied by a legacy watch from RV ""/"0".
	initial := sendInitial == "true" || sendInitial == "1" ||
		(sendInitial == "" && (rv == "" || rv == "0"))
	m := s.m
	if n == 0 {
		m = 0
	}
	first := 0 // the first MODIFIED event to send
	if !initial {
		if v, err := strconv.ParseInt(rv, 10, 64); err == nil && v > s.listRV() {
			first = int(min(v-s.listRV(), int64(m)))
		}
	}
	latest := s.listRV() + int64(m)

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	ctx := r.Context()
	buf := make([]byte, 0, batchSize+s.tmpl.size+256)
	// With -v, how long the handler waited in Write (HTTP/2 flow control: the client not reading)
	// against the time it took in all: a server that is not the bottleneck mostly waits.
	began, sent, sentEvents := time.Now(), int64(0), 0
	var blocked, waited time.Duration
	flush := func(force bool) bool {
		if len(buf) < batchSize && !force {
			return true
		}
		if len(buf) > 0 {
			t0 := time.Now()
			_, err := w.Write(buf)
			blocked += time.Since(t0)
			sent += int64(len(buf))
			if err != nil {
				return false
			}
			buf = buf[:0]
		}
		if force {
			return rc.Flush() == nil
		}
		return ctx.Err() == nil
	}

	if initial {
		added := s.tmpl.eventPrefix("ADDED")
		sentEvents += n
		for i := 0; i < n; i++ {
			buf = append(buf, added...)
			buf = s.tmpl.appendBody(buf, i, rvBase+int64(i), 0)
			buf = append(buf, "}\n"...)
			if !flush(false) {
				return
			}
		}
		if bookmarks && (sendInitial == "true" || sendInitial == "1") {
			buf = append(buf, s.tmpl.bookmark(s.listRV(), true)...)
		}
	}
	if s.delay > 0 && first < m {
		if !flush(true) {
			return
		}
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-time.After(s.delay):
		}
		waited = time.Since(t0)
	}
	if n > 0 {
		sentEvents += m - first
		modified := s.tmpl.eventPrefix("MODIFIED")
		for j := first; j < m; j++ {
			buf = append(buf, modified...)
			buf = s.tmpl.appendBody(buf, j%n, s.listRV()+1+int64(j), int64(j)+1)
			buf = append(buf, "}\n"...)
			if !flush(false) {
				return
			}
		}
	}
	if !flush(true) {
		return
	}
	if s.verbose {
		log.Printf("watch %s: %d bytes, %d events written in %.3fs (not counting -events-delay), %.3fs of it inside Write (which waits for the client's HTTP/2 window)",
			r.URL.Path, sent, sentEvents, (time.Since(began) - waited).Seconds(), blocked.Seconds())
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
			if bookmarks {
				buf = append(buf, s.tmpl.bookmark(latest, false)...)
				if !flush(true) {
					return
				}
			}
		}
	}
}
