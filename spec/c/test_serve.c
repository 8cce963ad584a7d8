/* kn_serve and kn_health over real TCP on 127.0.0.1: the three paths, HEAD,
 * 405 and 404, keep-alive and pipelining, bind failures, the health rules on
 * a fake clock (a stuck callback, beats, down checks) and on the real one,
 * the connection limit (refused at once, not queued), idle timeouts, stop
 * while clients are connected and while others scrape, out of memory in a
 * render, and a corpus of malformed requests plus a few hundred mutated ones
 * (the server must answer 4xx or close, and go on serving). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc_fail.h"
#include "kn_serve.h"
#include "test.h"

#define V(...) ((const char *const[]){ __VA_ARGS__ })

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };
    nanosleep(&ts, NULL);
}

/* ---- a small HTTP client ---- */

static int dial(int port)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1; /* the server closed on us: fine for bad requests */
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

enum end { END_EOF, END_RESET, END_TIMEOUT, END_FULL, END_HEAD };

struct reply {
    char *text; /* what came back, NUL-terminated */
    size_t len;
    enum end end;
    int status; /* of the first response; 0 when none came */
};

/* Reads until the server closes, resets, or `wait` seconds pass (or, with
 * head_only, until a response's head has come). */
static void read_reply2(int fd, struct reply *r, double wait, int head_only)
{
    size_t cap = 1 << 16;
    double until = mono() + wait;
    r->text = malloc(cap + 1);
    r->len = 0;
    r->end = END_TIMEOUT;
    for (;;) {
        struct pollfd p = { fd, POLLIN, 0 };
        double left = until - mono();
        ssize_t n;
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0)
            break;
        n = recv(fd, r->text + r->len, cap - r->len, 0);
        if (n == 0) {
            r->end = END_EOF;
            break;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            r->end = END_RESET;
            break;
        }
        r->len += (size_t)n;
        r->text[r->len] = '\0';
        if (r->len == cap) {
            r->end = END_FULL;
            break;
        }
        if (head_only && strstr(r->text, "\r\n\r\n")) {
            r->end = END_HEAD;
            break;
        }
    }
    r->text[r->len] = '\0';
    r->status = 0;
    if (strncmp(r->text, "HTTP/1.", 7) == 0 && r->len > 12)
        r->status = atoi(r->text + 9);
}

static void read_reply(int fd, struct reply *r, double wait)
{
    read_reply2(fd, r, wait, 0);
}

/* Sends raw bytes on a new connection and reads what comes back (up to
 * `wait` seconds; a request with "Connection: close" ends with EOF). */
static void exchange(int port, const void *req, size_t n, struct reply *r, double wait)
{
    int fd = dial(port);
    if (fd < 0) {
        memset(r, 0, sizeof *r);
        r->text = calloc(1, 1);
        r->end = END_RESET;
        return;
    }
    send_all(fd, req, n);
    read_reply(fd, r, wait);
    close(fd);
}

static void get(int port, const char *method, const char *path, struct reply *r)
{
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", method, path);
    exchange(port, req, (size_t)n, r, 5);
}

/* The status of a request on a connection of its own (0: none came). */
static int status(int port, const char *method, const char *path)
{
    struct reply r;
    get(port, method, path, &r);
    free(r.text);
    return r.status;
}

static const char *body(const struct reply *r)
{
    const char *b = strstr(r->text, "\r\n\r\n");
    return b ? b + 4 : "";
}

/* ---- a fake clock, read by the server's thread ---- */

struct fake_clock {
    _Atomic double t;
};

static double fake_now(void *ud)
{
    return atomic_load(&((struct fake_clock *)ud)->t);
}

/* ---- tests ---- */

static struct kn_serve *start(struct kn_metrics *m, struct kn_health *h, unsigned conns, unsigned timeout)
{
    struct kn_serve_opts o = { .address = "127.0.0.1", .port = 0, .max_connections = conns, .timeout = timeout };
    struct kn_err err = {0};
    struct kn_serve *s = kn_serve_start(&o, m, h, &err);
    CHECK_MSG(s != NULL, "kn_serve_start: %s", err.msg);
    if (s)
        CHECK(kn_serve_port(s) > 0);
    return s;
}

static void test_paths(void)
{
    struct kn_err err = {0};
    struct kn_metrics *m = kn_metrics_new();
    struct kn_health *h = kn_health_new(NULL);
    struct kn_mfam *c = kn_metrics_counter(m, "controller_runtime_reconcile_total", "Total", V("controller", "result"),
                                           2, &err);
    struct kn_serve *s;
    struct kn_buf want = {0};
    struct reply r;
    int port;
    kn_metrics_add(c, V("web", "success"), 2, 2, &err);
    s = start(m, h, 0, 0);
    if (!s)
        return;
    port = kn_serve_port(s);
    kn_metrics_unref(m); /* the server holds its own reference */

    get(port, "GET", "/metrics", &r);
    kn_metrics_render(m, &want);
    CHECK(r.status == 200 && r.end == END_EOF);
    CHECK_HAS(r.text, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
    CHECK_STR(body(&r), want.data);
    free(r.text);

    /* rendered at request time */
    kn_metrics_add(c, V("web", "error"), 2, 1, &err);
    get(port, "GET", "/metrics?name=x", &r);
    CHECK(r.status == 200);
    CHECK_HAS(body(&r), "controller_runtime_reconcile_total{controller=\"web\",result=\"error\"} 1\n");
    free(r.text);

    get(port, "HEAD", "/metrics", &r);
    CHECK(r.status == 200 && r.end == END_EOF && *body(&r) == '\0');
    CHECK_HAS(r.text, "Content-Length: ");
    free(r.text);

    get(port, "GET", "/healthz", &r);
    CHECK(r.status == 200);
    CHECK_STR(body(&r), "ok\n");
    free(r.text);
    get(port, "HEAD", "/healthz", &r);
    CHECK(r.status == 200 && *body(&r) == '\0');
    free(r.text);

    get(port, "GET", "/readyz", &r);
    CHECK(r.status == 503);
    CHECK_STR(body(&r), "not ready\n");
    free(r.text);
    kn_health_set_ready(h, 1);
    CHECK(kn_health_ready(h));
    get(port, "GET", "/readyz", &r);
    CHECK(r.status == 200);
    CHECK_STR(body(&r), "ok\n");
    free(r.text);

    static const char *const methods[] = { "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "get", "BREW" };
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        get(port, methods[i], "/metrics", &r);
        CHECK_MSG(r.status == 405, "%s /metrics: %d", methods[i], r.status);
        CHECK_HAS(r.text, "\r\nAllow: GET, HEAD\r\n");
        free(r.text);
    }
    static const char *const paths[] = { "/", "/metrics/", "/metricsx", "/healthz/x", "/READYZ", "/../metrics",
                                         "/%00metrics", "*" };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        get(port, "GET", paths[i], &r);
        CHECK_MSG(r.status == 404 || r.status == 400, "GET %s: %d", paths[i], r.status);
        free(r.text);
    }

    get(port, "GET", "/%6detrics", &r); /* escapes are decoded: this is /metrics */
    CHECK(r.status == 200);
    free(r.text);

    /* a body is never read: answered at once, then the connection closes */
    {
        const char req[] = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc";
        exchange(port, req, sizeof req - 1, &r, 5);
        CHECK(r.status == 405 && r.end != END_TIMEOUT);
        free(r.text);
        const char req2[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        exchange(port, req2, sizeof req2 - 1, &r, 5);
        CHECK(r.status == 200 && r.end != END_TIMEOUT);
        free(r.text);
    }

    /* keep-alive and pipelining: three answers on one connection */
    {
        const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                           "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        int n = 0;
        exchange(port, req, sizeof req - 1, &r, 5);
        for (const char *p = r.text; (p = strstr(p, "HTTP/1.1 200 OK\r\n")); p++)
            n++;
        CHECK_MSG(n == 3 && r.end == END_EOF, "pipelined: %d answers: %s", n, r.text);
        free(r.text);
    }
    kn_serve_stop(s);
    kn_health_free(h);
    kn_buf_free(&want);
    kn_serve_stop(NULL);
}

static void test_nulls(void)
{
    /* no registry: an empty exposition; no health: healthy and ready */
    struct kn_serve *s = start(NULL, NULL, 0, 0);
    struct reply r;
    if (!s)
        return;
    get(kn_serve_port(s), "GET", "/metrics", &r);
    CHECK(r.status == 200 && *body(&r) == '\0');
    free(r.text);
    CHECK(status(kn_serve_port(s), "GET", "/readyz") == 200);
    CHECK(status(kn_serve_port(s), "GET", "/healthz") == 200);
    kn_serve_stop(s);
}

static void test_bind(void)
{
    struct kn_err err = {0};
    struct kn_serve *s = start(NULL, NULL, 0, 0), *s2;
    struct kn_serve_opts o = { .address = "127.0.0.1" };
    char want[64];
    if (!s)
        return;
    o.port = kn_serve_port(s);
    CHECK(kn_serve_start(&o, NULL, NULL, &err) == NULL);
    CHECK_STR(err.reason, "Bind");
    snprintf(want, sizeof want, "cannot listen on 127.0.0.1:%d: Address already in use", o.port);
    CHECK_STR(err.msg, want);
    kn_serve_stop(s);
    s = kn_serve_start(&o, NULL, NULL, &err); /* the port is free again at once */
    CHECK_MSG(s != NULL, "rebinding: %s", err.msg);
    kn_serve_stop(s);

    o.port = 0;
    o.address = "192.0.2.1"; /* TEST-NET-1: no interface has it */
    CHECK(kn_serve_start(&o, NULL, NULL, &err) == NULL);
    CHECK_STR(err.reason, "Bind");
    CHECK_STR(err.msg, "cannot listen on 192.0.2.1:0: Cannot assign requested address");
    o.address = "no-such-host.invalid";
    CHECK(kn_serve_start(&o, NULL, NULL, &err) == NULL);
    CHECK_HAS(err.msg, "cannot listen on no-such-host.invalid:0: ");
    o.address = "127.0.0.1";
    o.port = 65536;
    CHECK(kn_serve_start(&o, NULL, NULL, &err) == NULL);
    CHECK_STR(err.msg, "cannot listen on 127.0.0.1:65536: the port is not 0 to 65535");
    o.port = 0;
    o.address = "::1";
    s = kn_serve_start(&o, NULL, NULL, &err);
    if (s) /* the host has IPv6 loopback */
        CHECK(kn_serve_port(s) > 0);
    else
        CHECK_HAS(err.msg, "cannot listen on [::1]:0: ");
    kn_serve_stop(s);

    /* every interface: reachable on 127.0.0.1 */
    o.address = NULL;
    s2 = kn_serve_start(&o, NULL, NULL, &err);
    CHECK_MSG(s2 != NULL, "every interface: %s", err.msg);
    if (s2) {
        CHECK(status(kn_serve_port(s2), "GET", "/healthz") == 200);
        kn_serve_stop(s2);
    }
}

static void test_health_rules(void)
{
    struct fake_clock clk = { 100 };
    struct kn_health_opts ho = { .busy_threshold = 5, .now = fake_now, .clock_ud = &clk };
    struct kn_health *h = kn_health_new(&ho);
    struct kn_err err = {0};
    struct kn_serve *s = start(NULL, h, 0, 0);
    struct reply r;
    char reason[256];
    int io, lease, port;
    if (!s)
        return;
    port = kn_serve_port(s);

    /* idle is healthy however long it lasts */
    atomic_store(&clk.t, 100000);
    CHECK(kn_health_check(h, reason, sizeof reason));
    kn_health_busy(h);
    atomic_store(&clk.t, 100004.9);
    CHECK(status(port, "GET", "/healthz") == 200);
    atomic_store(&clk.t, 100006);
    get(port, "GET", "/healthz", &r);
    CHECK(r.status == 500);
    CHECK_STR(body(&r), "the Lua loop has run callbacks for 6.0 s without waiting for events (more than 5 s): "
                        "a callback is stuck\n");
    free(r.text);
    get(port, "HEAD", "/healthz", &r);
    CHECK(r.status == 500 && *body(&r) == '\0');
    free(r.text);
    kn_health_waiting(h);
    CHECK(status(port, "GET", "/healthz") == 200);
    kn_health_busy(h); /* a new turn starts its own count */
    atomic_store(&clk.t, 100010);
    CHECK(kn_health_check(h, reason, sizeof reason));
    kn_health_waiting(h);

    /* liveness checks */
    io = kn_health_add_check(h, "io-thread", 3, &err);
    lease = kn_health_add_check(h, "lease", 0, &err);
    CHECK(io == 0 && lease == 1 && kn_health_find(h, "lease") == 1 && kn_health_find(h, "nope") == -1);
    CHECK(kn_health_add_check(h, "io-thread", 3, &err) == -1);
    CHECK_HAS(err.msg, "liveness check io-thread exists already");
    CHECK(kn_health_add_check(h, "", 3, &err) == -1);
    CHECK(kn_health_add_check(h, "has space", 3, &err) == -1);
    CHECK(kn_health_add_check(h, "0123456789012345678901234567890123456789012345678", 3, &err) == -1);
    atomic_store(&clk.t, 100013);
    CHECK(kn_health_check(h, reason, sizeof reason));
    atomic_store(&clk.t, 100013.5);
    CHECK(!kn_health_check(h, reason, sizeof reason));
    CHECK_STR(reason, "liveness check io-thread: no beat for 3.5 s (max age 3 s)");
    get(port, "GET", "/healthz", &r);
    CHECK(r.status == 500);
    CHECK_STR(body(&r), "liveness check io-thread: no beat for 3.5 s (max age 3 s)\n");
    free(r.text);
    kn_health_beat(h, io);
    CHECK(kn_health_check(h, reason, sizeof reason));
    kn_health_down(h, lease, "renew failed:\nthe API server answered 500");
    CHECK(!kn_health_check(h, reason, sizeof reason));
    CHECK_STR(reason, "liveness check lease is down: renew failed: the API server answered 500");
    kn_health_down(h, io, NULL); /* the first failing check is the one reported */
    CHECK(!kn_health_check(h, reason, sizeof reason));
    CHECK_STR(reason, "liveness check io-thread is down");
    kn_health_beat(h, io);
    kn_health_beat(h, lease);
    atomic_store(&clk.t, 200000); /* no max age: only down fails it */
    kn_health_beat(h, io);
    CHECK(kn_health_check(h, reason, sizeof reason));
    kn_health_beat(h, 99);
    kn_health_down(h, -1, "x");
    CHECK(kn_health_check(h, reason, sizeof reason));
    /* the stuck loop is reported before the checks */
    kn_health_down(h, io, "dead");
    kn_health_busy(h);
    atomic_store(&clk.t, 200100);
    CHECK(!kn_health_check(h, reason, sizeof reason));
    CHECK_HAS(reason, "a callback is stuck");
    kn_health_waiting(h);
    for (int i = 2; i < KN_HEALTH_MAX_CHECKS; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i);
        CHECK(kn_health_add_check(h, name, 1, &err) == i);
    }
    CHECK(kn_health_add_check(h, "one-too-many", 1, &err) == -1);
    CHECK_HAS(err.msg, "there are 16 checks already");
    kn_serve_stop(s);
    kn_health_free(h);

    /* the real clock and a short threshold: a stuck turn fails after it */
    {
        struct kn_health_opts real = { .busy_threshold = 0.2 };
        struct kn_health *h2 = kn_health_new(&real);
        struct kn_serve *s2 = start(NULL, h2, 0, 0);
        double t0 = mono();
        if (!s2)
            return;
        kn_health_busy(h2);
        CHECK(status(kn_serve_port(s2), "GET", "/healthz") == 200);
        nap(0.3);
        get(kn_serve_port(s2), "GET", "/healthz", &r);
        CHECK(r.status == 500 && mono() - t0 >= 0.2);
        CHECK_HAS(body(&r), "more than 0.2 s");
        free(r.text);
        kn_serve_stop(s2);
        kn_health_free(h2);
        kn_health_free(NULL);
    }
    {
        struct kn_health *d = kn_health_new(NULL); /* defaults: 30 s, the monotonic clock */
        kn_health_busy(d);
        CHECK(kn_health_check(d, reason, sizeof reason));
        kn_health_free(d);
    }
}

/* More connections than the limit: the extra ones are closed at once (not
 * left in the backlog until an idle one times out); slots come back as
 * clients leave; an idle connection is closed after the timeout. */
static void test_limits(void)
{
    enum { LIMIT = 32, EXTRA = 8 };
    struct kn_serve *s = start(NULL, NULL, 0, 2); /* 0: the default limit, 32 */
    int idle[LIMIT], port, refused = 0;
    struct reply r;
    double t0;
    if (!s)
        return;
    port = kn_serve_port(s);
    for (int i = 0; i < LIMIT; i++)
        idle[i] = dial(port);
    nap(0.2); /* all accepted */
    t0 = mono();
    for (int i = 0; i < EXTRA; i++) {
        int fd = dial(port);
        if (fd < 0) {
            refused++;
            continue;
        }
        send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 35);
        read_reply(fd, &r, 1.5);
        refused += r.status == 0 && r.end != END_TIMEOUT;
        free(r.text);
        close(fd);
    }
    CHECK_MSG(refused == EXTRA && mono() - t0 < 1.0, "%d of %d refused in %.2f s", refused, EXTRA, mono() - t0);
    for (int i = 0; i < LIMIT; i++)
        if (idle[i] >= 0)
            close(idle[i]);
    t0 = mono();
    do { /* the server sees the closes */
        nap(0.05);
        get(port, "GET", "/healthz", &r);
        free(r.text);
    } while (r.status != 200 && mono() - t0 < 2);
    CHECK(r.status == 200);

    /* an idle client is dropped after the timeout (2 s here) */
    {
        int fd = dial(port);
        send_all(fd, "GET /healthz HTTP/1.1\r\n", 23); /* never finished */
        t0 = mono();
        read_reply(fd, &r, 6);
        CHECK_MSG(r.end == END_EOF || r.end == END_RESET, "idle connection: end %d after %.1f s", r.end, mono() - t0);
        CHECK(mono() - t0 >= 1 && mono() - t0 < 5);
        free(r.text);
        close(fd);
    }
    kn_serve_stop(s);
}

/* ---- stop under load ---- */

struct scraper {
    int port;
    atomic_int stop, ok, done;
};

static void *scrape(void *arg)
{
    struct scraper *sc = arg;
    while (!atomic_load(&sc->stop)) {
        struct reply r;
        get(sc->port, "GET", "/metrics", &r);
        if (r.status == 200)
            atomic_fetch_add(&sc->ok, 1);
        free(r.text);
    }
    atomic_store(&sc->done, 1);
    return NULL;
}

static void test_stop(void)
{
    struct kn_err err = {0};
    struct kn_metrics *m = kn_metrics_new();
    struct kn_mfam *c = kn_metrics_counter(m, "c_total", NULL, V("k"), 1, &err);
    struct kn_serve *s = start(m, NULL, 0, 0);
    struct scraper sc = { 0 };
    pthread_t t[3];
    int half, waiting;
    char key[16];
    double t0;
    struct reply r;
    if (!s)
        return;
    sc.port = kn_serve_port(s);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, scrape, &sc);
    for (int i = 0; i < 3000; i++) { /* records while they scrape */
        snprintf(key, sizeof key, "k%d", i % 300);
        kn_metrics_add(c, V(key), 1, 1, &err);
    }
    while (atomic_load(&sc.ok) < 20)
        nap(0.01);
    /* a client halfway through a request, and one waiting on keep-alive */
    half = dial(sc.port);
    send_all(half, "GET /metr", 9);
    waiting = dial(sc.port);
    send_all(waiting, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 35);
    nap(0.1);
    t0 = mono();
    kn_serve_stop(s);
    CHECK_MSG(mono() - t0 < 1.0, "stop took %.2f s", mono() - t0);
    read_reply(half, &r, 2);
    CHECK(r.end == END_EOF || r.end == END_RESET);
    free(r.text);
    read_reply(waiting, &r, 2);
    CHECK(r.status == 200 && (r.end == END_EOF || r.end == END_RESET));
    free(r.text);
    close(half);
    close(waiting);
    atomic_store(&sc.stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&sc.ok) >= 20);
    {
        double v;
        kn_metrics_get(c, V("k7"), 1, &v, NULL);
        CHECK(v == 10);
    }
    kn_metrics_unref(m);
}

/* A render that runs out of memory answers 500, and the next one works. The
 * test's thread makes no allocation while armed, so the first one counted is
 * the server thread's render. */
static void test_oom(void)
{
    struct kn_err err = {0};
    struct kn_metrics *m = kn_metrics_new();
    struct kn_serve *s;
    struct reply r;
    char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd;
    kn_metrics_gauge(m, "g", "a gauge", NULL, 0, &err);
    s = start(m, NULL, 0, 0);
    if (!s)
        return;
    r.text = malloc(1 << 16);
    fd = dial(kn_serve_port(s));
    af_arm(1);
    send_all(fd, req, sizeof req - 1);
    {
        /* read without allocating */
        char buf[4096];
        size_t len = 0;
        ssize_t n;
        struct pollfd p = { fd, POLLIN, 0 };
        while (len < sizeof buf - 1 && poll(&p, 1, 5000) == 1 && (n = recv(fd, buf + len, sizeof buf - 1 - len, 0)) > 0)
            len += (size_t)n;
        buf[len] = '\0';
        af_disarm();
        CHECK_MSG(af_failed(), "no allocation failed (%lu counted)", af_count());
        CHECK_HAS(buf, "HTTP/1.1 500 ");
        CHECK_HAS(buf, "out of memory rendering the metrics\n");
    }
    af_disarm();
    close(fd);
    free(r.text);
    get(kn_serve_port(s), "GET", "/metrics", &r);
    CHECK(r.status == 200);
    CHECK_STR(body(&r), "# HELP g a gauge\n# TYPE g gauge\ng 0\n");
    free(r.text);
    kn_serve_stop(s);
    kn_metrics_unref(m);

    /* kn_serve_start itself: its one allocation of ours */
    af_arm(1);
    s = kn_serve_start(&(struct kn_serve_opts){ .address = "127.0.0.1" }, NULL, NULL, &err);
    af_disarm();
    CHECK(s == NULL && strcmp(err.reason, "NoMemory") == 0);
}

/* ---- malformed requests ---- */

struct bad {
    const char *name;
    const char *data;
    size_t len;   /* 0: strlen */
    int any;      /* a valid request after all: any answer, as long as the server lives */
};

#define BAD(name, data) { name, data, sizeof data - 1, 0 }
#define ODD(name, data) { name, data, sizeof data - 1, 1 }

static const struct bad corpus[] = {
    BAD("garbage", "GARBAGE\r\n\r\n"),
    BAD("method only", "GET\r\n\r\n"),
    BAD("no version", "GET /metrics\r\n\r\n"),
    BAD("HTTP/9.9", "GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n"),
    BAD("HTTP/0.9 style", "GET /\r\n"),
    BAD("NUL in the path", "GET /met\0rics HTTP/1.1\r\nHost: x\r\n\r\n"),
    ODD("NUL in a header", "GET /metrics HTTP/1.1\r\nHost: x\0y\r\nX: \0\r\nConnection: close\r\n\r\n"),
    BAD("no Host", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
    BAD("space in the path", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"),
    BAD("NUL first", "\0\0\0\0GET /metrics HTTP/1.1\r\n\r\n"),
    BAD("header without a colon", "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n"),
    BAD("space before the colon", "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n"),
    /* answered before the body is read, then closed */
    ODD("bad chunk size", "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n"),
    BAD("chunked POST", "POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"),
    BAD("negative length", "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    BAD("huge length", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
    BAD("length not a number", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"),
    BAD("two lengths", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
    BAD("length and chunked", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    BAD("CR alone", "GET /metrics HTTP/1.1\rHost: x\r\r"),
    BAD("unfinished", "GET /metrics HTTP/1.1\r\nHost: x\r\n"),
    BAD("only CRLFs", "\r\n\r\n\r\n\r\n"),
    BAD("control bytes", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), /* a TLS ClientHello's start */
    BAD("high bytes in the method", "G\xc3\x89T /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    BAD("absolute URI to elsewhere", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    ODD("bare LFs", "GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n"),
    ODD("HTTP/1.0", "GET /healthz HTTP/1.0\r\n\r\n"),
    ODD("folded header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\nConnection: close\r\n\r\n"),
    ODD("expect 100", "POST /metrics HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"),
    ODD("pipelined then garbage", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02garbage\r\n\r\n"),
};

/* 4xx, 5xx for a version, or closed: never a hang or a crash, and the
 * server keeps serving. */
static int refused_ok(const struct reply *r)
{
    if (r->end == END_TIMEOUT)
        return 0;
    return r->status == 0 || (r->status >= 400 && r->status < 500) || r->status == 505;
}

static void alive(int port, const char *after)
{
    struct reply r;
    get(port, "GET", "/healthz", &r);
    CHECK_MSG(r.status == 200, "the server stopped answering after %s", after);
    free(r.text);
}

static char *big(const char *head, size_t fill, char c, const char *tail)
{
    size_t h = strlen(head), t = strlen(tail);
    char *p = malloc(h + fill + t + 1);
    memcpy(p, head, h);
    memset(p + h, c, fill);
    memcpy(p + h + fill, tail, t + 1);
    return p;
}

static void test_malformed(void)
{
    struct kn_metrics *m = kn_metrics_new();
    struct kn_serve *s = start(m, NULL, 0, 1); /* a 1 s timeout for the unfinished ones */
    struct reply r;
    int port;
    if (!s)
        return;
    port = kn_serve_port(s);
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        exchange(port, corpus[i].data, corpus[i].len, &r, 4);
        if (corpus[i].any)
            CHECK_MSG(r.end != END_TIMEOUT, "%s: no answer and not closed", corpus[i].name);
        else
            CHECK_MSG(refused_ok(&r), "%s: status %d, end %d: %.80s", corpus[i].name, r.status, r.end, r.text);
        free(r.text);
        alive(port, corpus[i].name);
    }

    /* sizes beyond the request limit (16 KiB) */
    {
        char *line = big("GET /", 100 * 1024, 'a', " HTTP/1.1\r\nHost: x\r\n\r\n");
        char *header = big("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ", 100 * 1024, 'b', "\r\n\r\n");
        char *many = malloc(200 * 1024), *p = many;
        p += sprintf(p, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
        for (int i = 0; i < 5000; i++)
            p += sprintf(p, "X-%d: y\r\n", i);
        strcpy(p, "\r\n");
        exchange(port, line, strlen(line), &r, 4);
        CHECK_MSG(refused_ok(&r) && r.status != 505, "100 KB request line: status %d, end %d", r.status, r.end);
        free(r.text);
        exchange(port, header, strlen(header), &r, 4);
        CHECK_MSG(refused_ok(&r), "100 KB header: status %d, end %d", r.status, r.end);
        free(r.text);
        exchange(port, many, strlen(many), &r, 4);
        CHECK_MSG(refused_ok(&r), "5000 headers: status %d, end %d", r.status, r.end);
        free(r.text);
        free(line);
        free(header);
        free(many);
        alive(port, "the big requests");
    }

    /* three hundred mutations of valid requests: any answer or a close, in
     * time, and the server still serves. Sent in batches, so that the ones
     * the server waits out (unfinished: its 1 s timeout) wait together. */
    {
        enum { MUTANTS = 300, BATCH = 30 };
        static const char *const seeds[] = {
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
            "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
            "POST /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        };
        static const char inserts[] = "\r\n\0 :\t\x7f\xff/%";
        unsigned long long seed = 0x9e3779b97f4a7c15ull;
        int hung = 0, fds[BATCH];
        for (int i = 0; i < MUTANTS; i += BATCH) {
            for (int j = 0; j < BATCH; j++) {
                const char *src = seeds[(i + j) % 3];
                char buf[512];
                size_t len = strlen(src);
                memcpy(buf, src, len);
                for (int k = 0; k < 1 + (i + j) % 4; k++) {
                    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                    size_t at = (size_t)(seed >> 8) % len;
                    switch ((seed >> 40) % 4) {
                    case 0: /* flip a byte */
                        buf[at] = (char)(seed >> 48);
                        break;
                    case 1: /* insert a delimiter */
                        if (len < sizeof buf - 1) {
                            memmove(buf + at + 1, buf + at, len - at);
                            buf[at] = inserts[(seed >> 52) % (sizeof inserts - 1)];
                            len++;
                        }
                        break;
                    case 2: /* cut */
                        len = at + 1;
                        break;
                    default: /* repeat a stretch */
                        if (len + 16 < sizeof buf) {
                            memmove(buf + at + 16, buf + at, len - at);
                            len += 16;
                        }
                    }
                }
                fds[j] = dial(port);
                if (fds[j] >= 0)
                    send_all(fds[j], buf, len);
            }
            for (int j = 0; j < BATCH; j++) {
                if (fds[j] < 0) {
                    hung++;
                    continue;
                }
                read_reply2(fds[j], &r, 4, 1);
                hung += r.end == END_TIMEOUT;
                free(r.text);
                close(fds[j]);
            }
        }
        CHECK_MSG(hung == 0, "%d mutated requests got neither an answer nor a close", hung);
        alive(port, "the mutated requests");
    }
    kn_serve_stop(s);
    kn_metrics_unref(m);
}

void test_serve(void)
{
    test_paths();
    test_nulls();
    test_bind();
    test_health_rules();
    test_limits();
    test_stop();
    test_oom();
    test_malformed();
}
