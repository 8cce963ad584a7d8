package main

// An object template is the recorded fixture cut into literal byte runs and holes (name, namespace,
// uid, resourceVersion, and the value of one label that MODIFIED events change). Rendering an object
// is then a handful of appends: no map, no json.Marshal on the serving path. Key order is kept as the
// API server wrote it, so clients see the same byte layout as from a real server.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// revLabel is added to every object; MODIFIED events change its value.
const revLabel = "bench.kinformer.io/rev"

type hole int

const (
	holeNone hole = iota
	holeName
	holeNamespace
	holeUID
	holeRV
	holeRev
)

type segment struct {
	lit  []byte
	hole hole
}

type template struct {
	kind       string // e.g. "ConfigMap"
	apiVersion string // e.g. "v1"
	resource   string // e.g. "configmaps"
	namespace  string
	body       []segment // the object after its opening '{' and without kind/apiVersion, ending with '}'
	size       int       // approximate rendered size, for buffer sizing
}

type member struct {
	key string
	val json.RawMessage
}

// members splits a JSON object into its members, in order, values kept as raw bytes.
func members(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{t.(string), v})
	}
	return out, nil
}

func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(b.Bytes(), "\n")
}

type builder struct{ segs []segment }

func (b *builder) lit(s []byte) {
	if n := len(b.segs); n > 0 && b.segs[n-1].hole == holeNone {
		b.segs[n-1].lit = append(b.segs[n-1].lit, s...)
		return
	}
	b.segs = append(b.segs, segment{lit: append([]byte(nil), s...)})
}

func (b *builder) str(s string) { b.lit([]byte(s)) }

// quoted emits a JSON string whose content is a hole.
func (b *builder) quoted(h hole) {
	b.str(`"`)
	b.segs = append(b.segs, segment{hole: h})
	b.str(`"`)
}

func newTemplate(fixture []byte, resource, namespace string) (*template, error) {
	top, err := members(fixture)
	if err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	t := &template{resource: resource, namespace: namespace}
	var b builder
	first := true
	sep := func() {
		if !first {
			b.str(",")
		}
		first = false
	}
	sawMeta := false
	for _, m := range top {
		switch m.key {
		case "kind":
			_ = json.Unmarshal(m.val, &t.kind)
			continue
		case "apiVersion":
			_ = json.Unmarshal(m.val, &t.apiVersion)
			continue
		}
		sep()
		b.lit(jsonString(m.key))
		b.str(":")
		if m.key != "metadata" {
			b.lit(m.val)
			continue
		}
		sawMeta = true
		if err := metadataTemplate(&b, m.val); err != nil {
			return nil, err
		}
	}
	b.str("}")
	if t.kind == "" || t.apiVersion == "" || !sawMeta {
		return nil, fmt.Errorf("fixture lacks kind, apiVersion or metadata")
	}
	t.body = b.segs
	for _, s := range t.body {
		t.size += len(s.lit) + 40
	}
	return t, nil
}

func metadataTemplate(b *builder, raw []byte) error {
	meta, err := members(raw)
	if err != nil {
		return fmt.Errorf("fixture metadata: %w", err)
	}
	b.str("{")
	has := map[string]bool{}
	for i, m := range meta {
		if i > 0 {
			b.str(",")
		}
		has[m.key] = true
		b.lit(jsonString(m.key))
		b.str(":")
		switch m.key {
		case "name":
			b.quoted(holeName)
		case "namespace":
			b.quoted(holeNamespace)
		case "uid":
			b.quoted(holeUID)
		case "resourceVersion":
			b.quoted(holeRV)
		case "labels":
			if err := labelsTemplate(b, m.val); err != nil {
				return err
			}
		default:
			b.lit(m.val)
		}
	}
	for _, k := range []string{"name", "namespace", "uid", "resourceVersion", "labels"} {
		if !has[k] {
			return fmt.Errorf("fixture metadata lacks %s", k)
		}
	}
	b.str("}")
	return nil
}

// labelsTemplate re-emits the labels with revLabel added in sorted position (the API server
// writes map keys sorted).
func labelsTemplate(b *builder, raw []byte) error {
	labels, err := members(raw)
	if err != nil {
		return fmt.Errorf("fixture labels: %w", err)
	}
	labels = append(labels, member{key: revLabel})
	sort.SliceStable(labels, func(i, j int) bool { return labels[i].key < labels[j].key })
	b.str("{")
	for i, m := range labels {
		if i > 0 {
			b.str(",")
		}
		b.lit(jsonString(m.key))
		b.str(":")
		if m.val == nil {
			b.quoted(holeRev)
		} else {
			b.lit(m.val)
		}
	}
	b.str("}")
	return nil
}

// appendName appends "<resource>-%06d".
func (t *template) appendName(dst []byte, i int) []byte {
	dst = append(dst, t.resource...)
	dst = append(dst, '-')
	var num [20]byte
	d := strconv.AppendInt(num[:0], int64(i), 10)
	for k := len(d); k < 6; k++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// appendUID appends a unique, well-formed (version 4 layout) uid for object i.
func appendUID(dst []byte, i int) []byte {
	const hexd = "0123456789abcdef"
	dst = append(dst, "6b1e0000-0000-4000-8000-"...)
	for k := 11; k >= 0; k-- {
		dst = append(dst, hexd[(uint64(i)>>(4*uint(k)))&0xf])
	}
	return dst
}

// appendBody appends object i (without its opening '{') with the given resourceVersion and rev label.
func (t *template) appendBody(dst []byte, i int, rv int64, rev int64) []byte {
	for k := range t.body {
		s := &t.body[k]
		switch s.hole {
		case holeNone:
			dst = append(dst, s.lit...)
		case holeName:
			dst = t.appendName(dst, i)
		case holeNamespace:
			dst = append(dst, t.namespace...)
		case holeUID:
			dst = appendUID(dst, i)
		case holeRV:
			dst = strconv.AppendInt(dst, rv, 10)
		case holeRev:
			dst = strconv.AppendInt(dst, rev, 10)
		}
	}
	return dst
}

// appendItem appends object i as a list item: no kind/apiVersion, as the API server writes items.
func (t *template) appendItem(dst []byte, i int, rv int64) []byte {
	dst = append(dst, '{')
	return t.appendBody(dst, i, rv, 0)
}

// eventPrefix is `{"type":"<T>","object":{"kind":"<K>","apiVersion":"<V>",`.
func (t *template) eventPrefix(typ string) []byte {
	return []byte(`{"type":"` + typ + `","object":{"kind":` + string(jsonString(t.kind)) +
		`,"apiVersion":` + string(jsonString(t.apiVersion)) + `,`)
}

// bookmark renders a BOOKMARK event as the API server does (for Pods it also carries the empty
// spec/status the server's zero value serializes to).
func (t *template) bookmark(rv int64, initialEventsEnd bool) []byte {
	b := []byte(`{"type":"BOOKMARK","object":{"kind":` + string(jsonString(t.kind)) +
		`,"apiVersion":` + string(jsonString(t.apiVersion)) + `,"metadata":{"resourceVersion":"`)
	b = strconv.AppendInt(b, rv, 10)
	b = append(b, '"')
	if initialEventsEnd {
		b = append(b, `,"annotations":{"k8s.io/initial-events-end":"true"}`...)
	}
	b = append(b, '}')
	if t.kind == "Pod" {
		b = append(b, `,"spec":{"containers":null},"status":{}`...)
	}
	return append(b, "}}\n"...)
}
