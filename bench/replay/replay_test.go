package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A rendered object is the fixture with only name, namespace, uid, resourceVersion and the rev
// label changed, and its members in the fixture's order.
func TestTemplateRendersTheFixture(t *testing.T) {
	for _, tc := range []struct{ file, resource string }{{"configmap.json", "configmaps"}, {"pod.json", "pods"}} {
		raw, err := os.ReadFile(filepath.Join("..", "fixtures", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := newTemplate(raw, tc.resource, "ns1")
		if err != nil {
			t.Fatal(err)
		}
		ev := append(tmpl.eventPrefix("MODIFIED"), tmpl.appendBody(nil, 42, 1234, 7)...)
		ev = append(ev, "}\n"...)
		var got struct {
			Type   string
			Object map[string]any
		}
		if err := json.Unmarshal(ev, &got); err != nil {
			t.Fatalf("%s: %v\n%s", tc.file, err, ev)
		}
		var want map[string]any
		_ = json.Unmarshal(raw, &want)
		md := want["metadata"].(map[string]any)
		md["name"] = tc.resource + "-000042"
		md["namespace"] = "ns1"
		md["uid"] = "6b1e0000-0000-4000-8000-00000000002a"
		md["resourceVersion"] = "1234"
		md["labels"].(map[string]any)[revLabel] = "7"
		if got.Type != "MODIFIED" || !reflect.DeepEqual(got.Object, want) {
			t.Fatalf("%s: rendered object differs from the fixture:\n%s", tc.file, ev)
		}
		item := string(tmpl.appendItem(nil, 1, 1001))
		if strings.Contains(item, `"kind":"`+tmpl.kind+`"`) || !strings.HasPrefix(item, `{"metadata":{"name":"`+tc.resource+`-000001"`) {
			t.Fatalf("%s: list item carries kind or lost its order: %.120s", tc.file, item)
		}
	}
}

func TestAcceptNegotiation(t *testing.T) {
	for _, tc := range []struct {
		accept       string
		agg, classic bool
	}{
		{"", false, true},
		{"application/json", false, true},
		{"application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", true, false},
		{"application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", true, true},
		{"application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", false, true},
		{"application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", false, false},
		{"application/vnd.kubernetes.protobuf, */*", false, true},
	} {
		agg, classic := acceptKinds(tc.accept)
		if agg != tc.agg || classic != tc.classic {
			t.Errorf("Accept %q: aggregated=%v classic=%v, want %v %v", tc.accept, agg, classic, tc.agg, tc.classic)
		}
	}
}
