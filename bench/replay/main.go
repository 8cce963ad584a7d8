// Command replay is a fake Kubernetes API server for kinformer's benchmarks. It serves N synthetic
// objects made from a recorded fixture (LIST with paging, WATCH with or without sendInitialEvents)
// followed by M MODIFIED events, over TLS with HTTP/2, as fast as it can, so that what a benchmark
// measures is the client. Discovery documents are the ones recorded from a real server.
//
//	replay -objects 100000 -events 200000 -kind pods -kubeconfig-out /tmp/replay.kubeconfig
//
// It prints "REPLAY https://127.0.0.1:PORT" on stdout once listening, and on SIGINT/SIGTERM a JSON
// line with its own CPU use on stderr.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"
)

func defaultFixtures() string {
	// bench/bin/replay -> bench/fixtures; fall back to the working directory's bench/fixtures.
	if exe, err := os.Executable(); err == nil {
		d := filepath.Join(filepath.Dir(exe), "..", "fixtures")
		if _, err := os.Stat(filepath.Join(d, "pod.json")); err == nil {
			return filepath.Clean(d)
		}
	}
	return "bench/fixtures"
}

func main() {
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("replay: ")
	objects := flag.Int("objects", 1000, "number of objects")
	events := flag.Int("events", 0, "MODIFIED events sent after the initial state")
	delay := flag.Duration("events-delay", 0, "pause after the initial state before the MODIFIED events (e.g. 30s), so that\n"+
		"a client is synced before they come and its event rate is measured alone")
	kind := flag.String("kind", "configmaps", "resource: configmaps or pods")
	namespace := flag.String("namespace", "default", "namespace of the objects")
	kubeconfigOut := flag.String("kubeconfig-out", "", "write a kubeconfig for clients here")
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free port)")
	fixtures := flag.String("fixtures", defaultFixtures(), "directory of the recorded fixtures")
	token := flag.String("token", "", "bearer token clients must send (default: random)")
	verbose := flag.Bool("v", false, "log every request on stderr")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the server here (stopped by SIGINT/SIGTERM)")
	flag.Parse()

	fixture := map[string]string{"configmaps": "configmap.json", "pods": "pod.json"}[*kind]
	if fixture == "" {
		log.Fatalf("-kind must be configmaps or pods, not %q", *kind)
	}
	if *objects < 0 || *events < 0 {
		log.Fatal("-objects and -events must not be negative")
	}
	if *events > 0 && *objects == 0 {
		log.Fatal("-events needs at least one object to modify")
	}
	raw, err := os.ReadFile(filepath.Join(*fixtures, fixture))
	if err != nil {
		log.Fatal(err)
	}
	tmpl, err := newTemplate(raw, *kind, *namespace)
	if err != nil {
		log.Fatal(err)
	}
	disc, err := loadDiscovery(filepath.Join(*fixtures, "discovery"))
	if err != nil {
		log.Fatal(err)
	}
	p, err := newPKI()
	if err != nil {
		log.Fatal(err)
	}
	if *token == "" {
		*token = newToken()
	}

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", ln.Addr().(*net.TCPAddr).Port)
	if *kubeconfigOut != "" {
		if err := writeKubeconfig(*kubeconfigOut, url, p.caPEM, *token, *namespace); err != nil {
			log.Fatal(err)
		}
	}
	srv := &http.Server{
		Handler:           &server{tmpl: tmpl, n: *objects, m: *events, delay: *delay, token: *token, disc: disc, verbose: *verbose},
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(os.Stderr, "replay: http: ", log.Lmicroseconds),
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		pprof.StopCPUProfile()
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Fprintf(os.Stderr, "{\"phase\":\"replay-exit\",\"cpu_s\":%.3f}\n", cpu.Seconds())
		os.Exit(0)
	}()

	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "REPLAY %s\n", url)
	out.Flush()
	if err := srv.ServeTLS(ln, "", ""); err != nil {
		log.Fatal(err)
	}
}
