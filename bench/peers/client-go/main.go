// Command client-go-peer is client-go's side of kinformer's benchmarks: a dynamic (unstructured) or
// typed (corev1) shared informer used the way controllers use it, with a handler added through
// AddEventHandler that reads each object's name and counts events. It prints JSON lines on stdout:
//
//	{"phase":"synced","t":<s since start>,"count":<objects in store>,"rss_kb":..,"hwm_kb":..,"cpu_s":..}
//	{"phase":"done","t":<s since synced>,"events":<updates seen>,"rss_kb":..,"hwm_kb":..,"cpu_s":..,
//	 "t_first":<s since synced when the first update was handled>}
//	{"phase":"idle","t":<s>,"informers":<k>,"cpu_s":<cpu used while idle>,"rss_kb":..}   (-all-resources)
//
// The garbage collector and client-go's settings are left at their defaults, except QPS 50 and
// Burst 100 to match kinformer's defaults.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

var start = time.Now()

var liveHeap bool

// sink keeps the name reads alive: the compiler may not drop a load whose result is used.
var sink atomic.Int64

type counter struct {
	adds, updates, deletes atomic.Int64
	firstUpdate            atomic.Int64 // unix ns of the first update handled
	want                   int64        // updates after which done is closed (0: never)
	done                   chan struct{}
}

func (c *counter) handler(nameOf func(any) string) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			sink.Add(int64(len(nameOf(obj))))
			c.adds.Add(1)
		},
		UpdateFunc: func(_, obj any) {
			sink.Add(int64(len(nameOf(obj))))
			n := c.updates.Add(1)
			if n == 1 {
				c.firstUpdate.Store(time.Now().UnixNano())
			}
			if n == c.want {
				close(c.done)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			sink.Add(int64(len(nameOf(obj))))
			c.deletes.Add(1)
		},
	}
}

func unstructuredName(obj any) string { return obj.(*unstructured.Unstructured).GetName() }

func typedName(obj any) string {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return o.Name
	case *corev1.Pod:
		return o.Name
	}
	panic(fmt.Sprintf("unexpected object %T", obj))
}

type usage struct{ rssKB, hwmKB int64 }

func memory() usage {
	var u usage
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return u
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			u.rssKB = v
		case "VmHWM:":
			u.hwmKB = v
		}
	}
	return u
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func emit(fields map[string]any) {
	b, _ := json.Marshal(fields)
	os.Stdout.Write(append(b, '\n')) // unbuffered: each line reaches the harness at once
}

func round(d float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(d, 'f', 4, 64), 64)
	return v
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "client-go-peer: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	mode := flag.String("mode", "dynamic", "informer: dynamic (unstructured) or typed (corev1)")
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig path")
	kind := flag.String("kind", "configmaps", "resource: configmaps or pods")
	namespace := flag.String("namespace", "", "namespace (empty: all namespaces)")
	events := flag.Int64("events", 0, "exit after this many update events after sync (0: right after sync)")
	withHandler := flag.Bool("handler", true, "add an event handler (false: store only)")
	allResources := flag.Bool("all-resources", false, "one dynamic informer per preferred list+watch resource")
	idle := flag.Float64("idle", 60, "with -all-resources: seconds to stay idle after sync")
	flag.BoolVar(&liveHeap, "live-heap", false, "after done, collect garbage and print the live heap (a diagnostic;\n"+
		"it does not change the measured lines)")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if *allResources {
		runAll(ctx, cfg, *withHandler, *idle)
		return
	}
	if *kind != "configmaps" && *kind != "pods" {
		fail("-kind must be configmaps or pods, not %q", *kind)
	}

	c := &counter{want: *events, done: make(chan struct{})}
	var inf cache.SharedIndexInformer
	var nameOf func(any) string
	var startFactory func()
	switch *mode {
	case "dynamic":
		dc, err := dynamic.NewForConfig(cfg)
		if err != nil {
			fail("dynamic client: %v", err)
		}
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dc, 0, *namespace, nil)
		inf = f.ForResource(schema.GroupVersionResource{Version: "v1", Resource: *kind}).Informer()
		nameOf = unstructuredName
		startFactory = func() { f.Start(ctx.Done()) }
	case "typed":
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			fail("clientset: %v", err)
		}
		f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(*namespace))
		if *kind == "pods" {
			inf = f.Core().V1().Pods().Informer()
		} else {
			inf = f.Core().V1().ConfigMaps().Informer()
		}
		nameOf = typedName
		startFactory = func() { f.Start(ctx.Done()) }
	default:
		fail("-mode must be dynamic or typed, not %q", *mode)
	}
	checkers := []cache.DoneChecker{inf.HasSyncedChecker()}
	if *withHandler {
		reg, err := inf.AddEventHandler(c.handler(nameOf))
		if err != nil {
			fail("AddEventHandler: %v", err)
		}
		checkers = append(checkers, reg.HasSyncedChecker())
	}
	startFactory() // after the handler is added, as controllers do
	run(ctx, inf, checkers, c, *withHandler, *events, *namespace, *kind)
}

func run(ctx context.Context, inf cache.SharedIndexInformer, checkers []cache.DoneChecker, c *counter,
	withHandler bool, events int64, namespace, kind string) {
	// WaitFor blocks on the informers' channels: no polling delay in the measured sync time.
	if !cache.WaitFor(ctx, "", checkers...) {
		fail("cache did not sync")
	}
	synced := time.Now()
	count := len(inf.GetStore().ListKeys())
	m := memory()
	emit(map[string]any{"phase": "synced", "t": round(synced.Sub(start).Seconds()), "count": count,
		"rss_kb": m.rssKB, "hwm_kb": m.hwmKB, "cpu_s": round(cpuSeconds())})

	if events > 0 {
		if withHandler {
			<-c.done
		} else {
			waitStoreOnly(inf, events, count, namespace, kind)
		}
	}
	m = memory()
	done := map[string]any{"phase": "done", "t": round(time.Since(synced).Seconds()), "events": eventsSeen(c, withHandler, events),
		"rss_kb": m.rssKB, "hwm_kb": m.hwmKB, "cpu_s": round(cpuSeconds())}
	if f := c.firstUpdate.Load(); f != 0 {
		// When the first update reached the handler, in s since synced: with the replay server's
		// -events-delay, the event rate is (events-1)/(t-t_first), free of the sync's tail.
		done["t_first"] = round(max(0, time.Unix(0, f).Sub(synced).Seconds()))
	}
	emit(done)
	if liveHeap {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		emit(map[string]any{"phase": "live", "heap_kb": ms.HeapAlloc >> 10, "count": len(inf.GetStore().ListKeys()),
			"rss_kb": memory().rssKB})
	}
	os.Exit(0)
}

func eventsSeen(c *counter, withHandler bool, events int64) int64 {
	if withHandler {
		return c.updates.Load()
	}
	return events
}

// waitStoreOnly waits, without a handler, until the store holds the last MODIFIED event of the
// replay server: object (M-1) % N named "<kind>-%06d", at resourceVersion listRV + M. client-go
// 1.36 processes deltas strictly in order (InOrderInformers is GA), so when the last event is in
// the store, all are.
func waitStoreOnly(inf cache.SharedIndexInformer, events int64, count int, namespace, kind string) {
	if _, err := strconv.ParseInt(inf.LastSyncResourceVersion(), 10, 64); err != nil || count == 0 {
		fail("-handler=false needs the replay server (numeric resourceVersions, objects to modify)")
	}
	listRV := 1000 + int64(count) // the replay server's list RV
	ns := namespace
	if ns == "" {
		ns = "default"
	}
	key := fmt.Sprintf("%s/%s-%06d", ns, kind, (events-1)%int64(count))
	want := strconv.FormatInt(listRV+events, 10)
	for {
		if obj, ok, _ := inf.GetStore().GetByKey(key); ok {
			if a, err := meta.Accessor(obj); err == nil && a.GetResourceVersion() == want {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}

func runAll(ctx context.Context, cfg *rest.Config, withHandler bool, idle float64) {
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		fail("discovery client: %v", err)
	}
	lists, err := discovery.ServerPreferredResources(disc)
	if err != nil && len(lists) == 0 {
		fail("discovery: %v", err)
	}
	lists = discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"list", "watch"}}, lists)
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fail("dynamic client: %v", err)
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dc, 0)
	c := &counter{done: make(chan struct{})}
	var infs []cache.SharedIndexInformer
	var checkers []cache.DoneChecker
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			inf := f.ForResource(gv.WithResource(r.Name)).Informer()
			infs = append(infs, inf)
			checkers = append(checkers, inf.HasSyncedChecker())
			if withHandler {
				reg, err := inf.AddEventHandler(c.handler(unstructuredName))
				if err != nil {
					fail("AddEventHandler: %v", err)
				}
				checkers = append(checkers, reg.HasSyncedChecker())
			}
		}
	}
	f.Start(ctx.Done())
	if !cache.WaitFor(ctx, "", checkers...) {
		fail("caches did not sync")
	}
	synced := time.Now()
	count := 0
	for _, inf := range infs {
		count += len(inf.GetStore().ListKeys())
	}
	m := memory()
	cpu0 := cpuSeconds()
	emit(map[string]any{"phase": "synced", "t": round(synced.Sub(start).Seconds()), "count": count,
		"informers": len(infs), "rss_kb": m.rssKB, "hwm_kb": m.hwmKB, "cpu_s": round(cpu0)})
	time.Sleep(time.Duration(idle * float64(time.Second)))
	m = memory()
	emit(map[string]any{"phase": "idle", "t": idle, "informers": len(infs),
		"cpu_s": round(cpuSeconds() - cpu0), "rss_kb": m.rssKB, "hwm_kb": m.hwmKB})
	os.Exit(0)
}
