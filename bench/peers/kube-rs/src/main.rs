//! kinformer benchmark peer: an informer written the way kube-rs users write one,
//! `watcher` feeding a `reflector` store, with typed `Api<ConfigMap>` / `Api<Pod>`
//! (or `Api<DynamicObject>` per discovered resource for `--all-resources`).
//!
//! CLI and output are shared by every peer (the bench runner parses them):
//!   --kubeconfig PATH --kind configmaps|pods [--namespace NS] [--events M]
//!   [--handler true|false] [--all-resources --idle S]
//! JSON lines on stdout: {"phase":"synced",...}, then {"phase":"done",...} after M
//! MODIFIED events, or {"phase":"idle",...} after the idle period.

use std::hint::black_box;
use std::io::Write;
use std::process::exit;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{verbs, Discovery};
use kube::runtime::reflector::{self, Lookup};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;

struct Args {
    kubeconfig: String,
    kind: String,
    namespace: Option<String>,
    events: u64,
    handler: bool,
    all_resources: bool,
    idle: f64,
}

fn usage(msg: &str) -> ! {
    eprintln!("kube-rs-peer: {msg}");
    eprintln!(
        "usage: kube-rs-peer --kubeconfig PATH --kind configmaps|pods [--namespace NS] \
         [--events M] [--handler true|false] [--all-resources --idle S]"
    );
    exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        kubeconfig: String::new(),
        kind: "configmaps".into(),
        namespace: None,
        events: 0,
        handler: true,
        all_resources: false,
        idle: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--kubeconfig" => a.kubeconfig = val("--kubeconfig"),
            "--kind" => a.kind = val("--kind"),
            "--namespace" => a.namespace = Some(val("--namespace")),
            "--events" => {
                a.events = val("--events")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --events"))
            }
            "--handler" => {
                a.handler = match val("--handler").as_str() {
                    "true" => true,
                    "false" => false,
                    _ => usage("--handler takes true or false"),
                }
            }
            "--all-resources" => a.all_resources = true,
            "--idle" => {
                a.idle = val("--idle")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --idle"))
            }
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if a.kubeconfig.is_empty() {
        usage("--kubeconfig is required");
    }
    if !a.all_resources && a.kind != "configmaps" && a.kind != "pods" {
        usage("--kind must be configmaps or pods");
    }
    a
}

/// (VmRSS, VmHWM) in KiB from /proc/self/status.
fn mem_kb() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU seconds of the whole process (all threads).
fn cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn emit(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn synced_line(start: Instant, count: usize) -> String {
    let (rss, hwm) = mem_kb();
    format!(
        r#"{{"phase":"synced","t":{:.6},"count":{},"rss_kb":{},"hwm_kb":{},"cpu_s":{:.6}}}"#,
        start.elapsed().as_secs_f64(),
        count,
        rss,
        hwm,
        cpu_s()
    )
}

/// The event handler: reads the object's name, as the handlers of every peer do.
#[inline(never)]
fn handle<K: Resource>(obj: &K) {
    black_box(obj.meta().name.as_deref().map(str::len));
}

/// One typed informer; returns when `events` update events were seen after sync.
async fn run_typed<K>(api: Api<K>, start: Instant, events: u64, handler: bool)
where
    K: Resource<DynamicType = ()>
        + Lookup<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    futures::pin_mut!(stream);

    let mut synced_at: Option<Instant> = None;
    let mut seen: u64 = 0;
    loop {
        let ev = match stream.next().await {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                eprintln!("kube-rs-peer: watch error: {e}");
                continue;
            }
            None => {
                eprintln!("kube-rs-peer: watch stream ended");
                exit(1);
            }
        };
        match &ev {
            watcher::Event::InitDone => {
                if synced_at.is_none() {
                    // The reflector applied InitDone to the writer before yielding it,
                    // so the store is ready here (what `wait_until_ready()` waits for).
                    emit(synced_line(start, reader.len()));
                    if events == 0 {
                        exit(0);
                    }
                    synced_at = Some(Instant::now());
                }
            }
            watcher::Event::Apply(obj) => {
                if handler {
                    handle(obj);
                }
                if let Some(t0) = synced_at {
                    seen += 1;
                    if seen == events {
                        let (rss, hwm) = mem_kb();
                        emit(format!(
                            r#"{{"phase":"done","t":{:.6},"events":{},"rss_kb":{},"hwm_kb":{},"cpu_s":{:.6}}}"#,
                            t0.elapsed().as_secs_f64(),
                            seen,
                            rss,
                            hwm,
                            cpu_s()
                        ));
                        exit(0);
                    }
                }
            }
            watcher::Event::InitApply(obj) | watcher::Event::Delete(obj) => {
                if handler {
                    handle(obj);
                }
            }
            watcher::Event::Init => {}
        }
    }
}

/// One informer per preferred resource that supports list and watch, all on one Client.
async fn run_all(client: Client, start: Instant, idle: f64, handler: bool) {
    let discovery = match Discovery::new(client.clone()).run().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kube-rs-peer: discovery: {e}");
            exit(1);
        }
    };
    let mut stores = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::WATCH) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
            let reader = writer.as_reader();
            let name = format!("{}/{}", ar.api_version, ar.plural);
            // Errors are logged and the watcher goes on (with backoff), as in the typed case.
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(move |ev| {
                    match &ev {
                        Ok(
                            watcher::Event::Apply(o)
                            | watcher::Event::InitApply(o)
                            | watcher::Event::Delete(o),
                        ) => {
                            if handler {
                                handle(o)
                            }
                        }
                        Ok(_) => {}
                        Err(e) => eprintln!("kube-rs-peer: {name}: {e}"),
                    }
                    futures::future::ready(())
                });
            tokio::spawn(stream);
            stores.push(reader);
        }
    }
    for r in &stores {
        if r.wait_until_ready().await.is_err() {
            eprintln!("kube-rs-peer: a writer was dropped before sync");
            exit(1);
        }
    }
    let total: usize = stores.iter().map(|s| s.len()).sum();
    emit(synced_line(start, total));
    let cpu0 = cpu_s();
    tokio::time::sleep(Duration::from_secs_f64(idle)).await;
    let (rss, _) = mem_kb();
    emit(format!(
        r#"{{"phase":"idle","t":{},"informers":{},"cpu_s":{:.6},"rss_kb":{}}}"#,
        idle,
        stores.len(),
        cpu_s() - cpu0,
        rss
    ));
    exit(0);
}

#[tokio::main]
async fn main() {
    let start = Instant::now();
    let args = parse_args();

    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig).unwrap_or_else(|e| {
        eprintln!("kube-rs-peer: reading {}: {e}", args.kubeconfig);
        exit(1)
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| {
            eprintln!("kube-rs-peer: kubeconfig: {e}");
            exit(1)
        });
    let client = Client::try_from(config).unwrap_or_else(|e| {
        eprintln!("kube-rs-peer: client: {e}");
        exit(1)
    });

    if args.all_resources {
        run_all(client, start, args.idle, args.handler).await;
        return;
    }
    match (args.kind.as_str(), &args.namespace) {
        ("configmaps", Some(ns)) => {
            run_typed(
                Api::<ConfigMap>::namespaced(client, ns),
                start,
                args.events,
                args.handler,
            )
            .await
        }
        ("configmaps", None) => {
            run_typed(
                Api::<ConfigMap>::all(client),
                start,
                args.events,
                args.handler,
            )
            .await
        }
        ("pods", Some(ns)) => {
            run_typed(
                Api::<Pod>::namespaced(client, ns),
                start,
                args.events,
                args.handler,
            )
            .await
        }
        ("pods", None) => {
            run_typed(Api::<Pod>::all(client), start, args.events, args.handler).await
        }
        _ => unreachable!(),
    }
}
