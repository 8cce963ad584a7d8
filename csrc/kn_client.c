#define _GNU_SOURCE /* explicit_bzero */
#include "kn_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <stdint.h>
#include <time.h>

#include "kn_creds.h"
#include "kn_loop.h"

struct kn_client {
    struct kn_config *cfg;
    struct kn_client_opts opts;
    char *base;                /* URL prefix requests are sent to */
    struct curl_slist *connect_to; /* tls-server-name: connect to the real host */
    struct kn_loop *loop;      /* the I/O thread; all transfers share its connections */
    pthread_mutex_t mu;        /* guards the limiter and the stats */
    struct kn_creds *creds;    /* token, certificate, token file, exec plugin */
    struct kn_stream *waiting; /* streams waiting for a credential: I/O thread only */

    /* rate limiter: a token bucket; tokens may go negative (reservations) */
    double tokens;
    double refilled_at;
    unsigned seed;             /* for jitter; per client, no global state */
    struct kn_client_stats stats;

    /* when a byte last came on each connection, for the watches' stall
     * limit: I/O thread only */
    struct conn_seen *conns;
    int nconns;
    struct kn_stream *watches;     /* open watch streams, for the stall check: I/O thread only */
    struct kn_timer *stall_timer;
    double stall_due;          /* when stall_timer fires (monotonic s) */
    /* the HTTP/2 liveness probe in flight (one per client): I/O thread only */
    struct kn_stream *probe;
    long probe_target;         /* the silent connection it was sent for */
    int h2_seen;               /* a stream came over HTTP/2 (I/O thread; requests count in stats.http2) */
    double probe_started;
};

const struct kn_config *kn_client_config(const struct kn_client *c)
{
    return c->cfg;
}

void kn_client_stats(struct kn_client *c, struct kn_client_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
    out->exec_runs = kn_creds_exec_runs(c->creds);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleeps s seconds; with a stop flag, in 50 ms slices that end early once
 * it is set (a signal). */
static void sleep_s(double s, const volatile sig_atomic_t *stop)
{
    struct timespec ts;
    while (s > 0 && !(stop && *stop)) {
        double slice = stop && s > 0.05 ? 0.05 : s;
        ts.tv_sec = (time_t)slice;
        ts.tv_nsec = (long)((slice - (double)ts.tv_sec) * 1e9);
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !(stop && *stop))
            ;
        s -= slice;
    }
}

/* Takes one token from the bucket, waiting for it outside the lock. */
static void rate_limit(struct kn_client *c, const volatile sig_atomic_t *stop)
{
    double now, wait = 0;
    if (c->opts.qps <= 0)
        return;
    pthread_mutex_lock(&c->mu);
    now = mono_s();
    c->tokens += (now - c->refilled_at) * c->opts.qps;
    if (c->tokens > c->opts.burst)
        c->tokens = c->opts.burst;
    c->refilled_at = now;
    c->tokens -= 1;
    if (c->tokens < 0)
        wait = -c->tokens / c->opts.qps;
    pthread_mutex_unlock(&c->mu);
    sleep_s(wait, stop);
}

/* tls-server-name: curl has no separate SNI/verify name, so the URL carries
 * that name and CONNECT_TO sends the connection to the server's real host. */
static int setup_server_name(struct kn_client *c, struct kn_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *entry = NULL;
    int rc = -1;
    if (!u)
        return kn_err_set(err, 0, "Config", "out of memory");
    if (curl_url_set(u, CURLUPART_URL, c->cfg->server, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        kn_err_set(err, 0, "Config", "%s: server \"%s\" is not a valid URL", c->cfg->origin, c->cfg->server);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        path = NULL;
    if (!c->cfg->tls_server_name) {
        c->base = strdup(c->cfg->server);
    } else {
        size_t n = strlen(c->cfg->tls_server_name) + strlen(host) + 2 * strlen(port) + 8;
        c->base = malloc(strlen(scheme) + strlen(c->cfg->tls_server_name) + strlen(port) +
                         (path ? strlen(path) : 0) + 8);
        entry = malloc(n);
        if (!c->base || !entry) {
            kn_err_set(err, 0, "Config", "out of memory");
            goto done;
        }
        sprintf(c->base, "%s://%s:%s%s", scheme, c->cfg->tls_server_name, port,
                path && strcmp(path, "/") ? path : "");
        sprintf(entry, "%s:%s:%s:%s", c->cfg->tls_server_name, port, host, port);
        c->connect_to = curl_slist_append(NULL, entry);
    }
    while (c->base && c->base[0] && c->base[strlen(c->base) - 1] == '/')
        c->base[strlen(c->base) - 1] = '\0';
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    free(entry);
    curl_url_cleanup(u);
    return rc;
}

static void on_conn_idle(void *ud, long port, double last_in);
static void creds_ready(void *ud);
static void fail_waiting(void *ud);

struct kn_client *kn_client_new(struct kn_config *cfg, const struct kn_client_opts *opts, struct kn_err *err)
{
    struct kn_client *c = calloc(1, sizeof *c);
    if (!c) {
        kn_config_free(cfg);
        kn_err_set(err, 0, "Config", "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    if (opts)
        c->opts = *opts;
    if (c->opts.timeout_ms <= 0)
        c->opts.timeout_ms = 30000;
    if (c->opts.burst <= 0)
        c->opts.burst = c->opts.qps > 1 ? (int)c->opts.qps : 1;
    c->tokens = c->opts.burst;
    c->refilled_at = mono_s();
    c->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)c;
    pthread_mutex_init(&c->mu, NULL);
    if (setup_server_name(c, err) < 0) {
        kn_client_free(c);
        return NULL;
    }
    if (c->opts.ping_interval_ms == 0)
        c->opts.ping_interval_ms = 30000;
    if (c->opts.ping_timeout_ms <= 0)
        c->opts.ping_timeout_ms = 15000;
    c->loop = kn_loop_new(err);
    if (!c->loop) {
        kn_client_free(c);
        return NULL;
    }
    c->creds = kn_creds_new(cfg, c->opts.timeout_ms > 60000 ? c->opts.timeout_ms : 60000, creds_ready, c, err);
    if (!c->creds) {
        kn_client_free(c);
        return NULL;
    }
    if (!c->opts.http1 && c->opts.ping_interval_ms > 0)
        kn_loop_on_idle(c->loop, c->opts.ping_interval_ms / 1e3, on_conn_idle, c);
    return c;
}

void kn_client_free(struct kn_client *c)
{
    if (!c)
        return;
    /* no refresh starts now, and one in flight has ended (its ready() posts
     * to the loop, which must still be there) */
    kn_creds_close(c->creds);
    if (c->loop)
        kn_loop_call(c->loop, fail_waiting, c);
    kn_loop_free(c->loop); /* its timers (the stall check) go with it */
    free(c->conns);
    curl_slist_free_all(c->connect_to);
    free(c->base);
    kn_creds_free(c->creds);
    kn_config_free(c->cfg);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct kn_response *r = ud;
    return kn_buf_append(&r->body, p, size * n) < 0 ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct kn_response *r = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        /* only the delay-seconds form; an HTTP date is rare from apiservers */
        char num[16];
        size_t i = 12, k = 0;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        while (i < len && p[i] >= '0' && p[i] <= '9' && k + 1 < sizeof num)
            num[k++] = p[i++];
        num[k] = '\0';
        if (k)
            r->retry_after = atoi(num);
    }
    if (len > 13 && strncasecmp(p, "content-type:", 13) == 0) {
        size_t i = 13, k = 0;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        while (i < len && p[i] != '\r' && p[i] != '\n' && k + 1 < sizeof r->content_type)
            r->content_type[k++] = p[i++];
        r->content_type[k] = '\0';
    }
    return len;
}

static const char *transport_hint(CURLcode rc)
{
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
        return " (the server's certificate is not trusted: check certificate-authority in the kubeconfig, "
               "and tls-server-name if the server is reached by another name)";
    case CURLE_SSL_CERTPROBLEM:
        return " (check the client certificate and key)";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return " (is the server address right and the API server running?)";
    case CURLE_OPERATION_TIMEDOUT:
        return " (raise timeout = seconds if the server is slow)";
    default:
        return "";
    }
}

/* Sets up an easy handle for one request. The header list (which may hold
 * the token) is returned in *hdrs_out for the caller to wipe and free. */
static CURL *make_easy(struct kn_client *c, const struct kn_request *req, const char *url,
                       struct kn_response *resp, char *errbuf, const char *token, const struct kn_blob *cert,
                       const struct kn_blob *key, struct curl_slist **hdrs_out)
{
    const struct kn_config *cfg = c->cfg;
    struct curl_slist *hdrs = NULL;
    struct curl_blob blob;
    char line[8192 + 64];
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : c->opts.timeout_ms;
    CURL *e = curl_easy_init();
    *hdrs_out = NULL;
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kinformer/0.1");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, c->opts.http1 ? (long)CURL_HTTP_VERSION_1_1 : (long)CURL_HTTP_VERSION_2TLS);
    /* Wait for the shared HTTP/2 connection rather than opening another. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (c->connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, c->connect_to);
    if (cfg->proxy_url)
        curl_easy_setopt(e, CURLOPT_PROXY, cfg->proxy_url);

    /* TLS: verified unless insecure-skip-tls-verify was set explicitly. */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->insecure ? 0L : 2L);
    if (cfg->ca.len) {
        blob.data = cfg->ca.data;
        blob.len = cfg->ca.len;
        blob.flags = CURL_BLOB_COPY;
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (cert && cert->len) {
        blob.data = cert->data;
        blob.len = cert->len;
        blob.flags = CURL_BLOB_COPY;
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        blob.data = key->data;
        blob.len = key->len;
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }

    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body || strcmp(req->method, "DELETE") != 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        }
    }

    snprintf(line, sizeof line, "Accept: %s", req->accept ? req->accept : "application/json");
    hdrs = curl_slist_append(hdrs, line);
    if (req->body) {
        snprintf(line, sizeof line, "Content-Type: %s", req->content_type ? req->content_type : "application/json");
        hdrs = curl_slist_append(hdrs, line);
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (token) {
        /* The header line holds the secret: built here, handed to curl, and
         * wiped by the caller; it never reaches a message. */
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, line);
        explicit_bzero(line, sizeof line);
    }
    if (cfg->as_user) {
        snprintf(line, sizeof line, "Impersonate-User: %s", cfg->as_user);
        hdrs = curl_slist_append(hdrs, line);
        for (char **g = cfg->as_groups; g && *g; g++) {
            snprintf(line, sizeof line, "Impersonate-Group: %s", *g);
            hdrs = curl_slist_append(hdrs, line);
        }
        if (cfg->as_uid) {
            snprintf(line, sizeof line, "Impersonate-Uid: %s", cfg->as_uid);
            hdrs = curl_slist_append(hdrs, line);
        }
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    *hdrs_out = hdrs;
    return e;
}

/* A credential or identity that would end a header line early (CR, LF or
 * any control character) would let its author add headers of their own:
 * refused, as Go's net/http refuses it. Returns the field at fault. */
static const char *unsafe_header(const struct kn_config *cfg, const char *token)
{
    const char *fields[] = { token, cfg->as_user, cfg->as_uid };
    const char *names[] = { cfg->exec ? "the exec plugin's token" : cfg->token_file ? "tokenFile" : "token", "as",
                            "as-uid" };
    for (size_t i = 0; i < 3; i++)
        for (const unsigned char *p = (const unsigned char *)fields[i]; p && *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                return names[i];
    for (char **g = cfg->as_groups; g && *g; g++)
        for (const unsigned char *p = (const unsigned char *)*g; *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                return "as-groups";
    return NULL;
}

static void wipe_headers(struct curl_slist *hdrs)
{
    for (struct curl_slist *h = hdrs; h; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(hdrs);
}

/* One HTTP exchange. Returns the CURLcode; on failure err is set. */
static CURLcode perform(struct kn_client *c, const struct kn_request *req, struct kn_response *resp,
                        const char *token, const struct kn_blob *cert, const struct kn_blob *key, struct kn_err *err)
{
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE] = "";
    char *url;
    long connects = 0;
    CURLcode rc;
    CURL *e;

    const char *unsafe = unsafe_header(c->cfg, token);
    if (unsafe)
        return kn_err_set(err, 0, "Config", "%s: %s contains a control character (a line break?); it cannot be "
                          "sent in a header", c->cfg->origin, unsafe), CURLE_BAD_FUNCTION_ARGUMENT;
    if (token && strlen(token) > 8192)
        return kn_err_set(err, 0, "Config", "%s: the bearer token is longer than 8 KiB", c->cfg->origin),
               CURLE_BAD_FUNCTION_ARGUMENT;
    url = malloc(strlen(c->base) + strlen(req->path) + 1);
    if (!url)
        return kn_err_set(err, 0, "Transport", "out of memory"), CURLE_OUT_OF_MEMORY;
    sprintf(url, "%s%s", c->base, req->path);
    kn_buf_reset(&resp->body);
    resp->status = 0;
    resp->content_type[0] = '\0';
    resp->retry_after = -1;
    e = make_easy(c, req, url, resp, errbuf, token, cert, key, &hdrs);
    if (!e) {
        free(url);
        return kn_err_set(err, 0, "Transport", "libcurl could not create a handle"), CURLE_OUT_OF_MEMORY;
    }
    rc = kn_loop_run(c->loop, e, req->interrupt);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &resp->http_version);
    resp->http_version = resp->http_version == CURL_HTTP_VERSION_2_0 ? 20 : resp->http_version ? 11 : 0;
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_cleanup(e);
    wipe_headers(hdrs);
    pthread_mutex_lock(&c->mu);
    c->stats.requests++;
    c->stats.connections += (unsigned long)connects;
    c->stats.http2 += resp->http_version == 20;
    pthread_mutex_unlock(&c->mu);
    if (rc != CURLE_OK)
        kn_err_set(err, 0, "Transport", "%s %s: %s%s", req->method, url, errbuf[0] ? errbuf : curl_easy_strerror(rc),
                   transport_hint(rc));
    free(url);
    return rc;
}

/* Whether a failed attempt may be repeated: a 429 or a refused connection
 * was never processed; a 5xx or a broken transfer only for requests that
 * are safe to repeat. */
static int retryable(const struct kn_request *req, CURLcode rc, long status)
{
    if (rc == CURLE_COULDNT_CONNECT)
        return 1;
    if (rc != CURLE_OK)
        return req->idempotent && rc != CURLE_OPERATION_TIMEDOUT && rc != CURLE_PEER_FAILED_VERIFICATION &&
               rc != CURLE_SSL_CERTPROBLEM && rc != CURLE_COULDNT_RESOLVE_HOST && rc != CURLE_BAD_FUNCTION_ARGUMENT;
    if (status == 429)
        return 1;
    return req->idempotent && (status == 500 || status == 502 || status == 503 || status == 504);
}

static double backoff_s(struct kn_client *c, int attempt, int retry_after)
{
    double base = 0.25 * (double)(1u << (attempt < 6 ? attempt : 6)), jitter;
    if (base > 8)
        base = 8;
    if (retry_after >= 0)
        return retry_after > 30 ? 30 : retry_after; /* the server knows best, within reason */
    pthread_mutex_lock(&c->mu);
    jitter = 0.5 + (double)rand_r(&c->seed) / RAND_MAX; /* 0.5x .. 1.5x */
    pthread_mutex_unlock(&c->mu);
    return base * jitter;
}

/* A signal asked the blocking caller to stop: the error says so. */
static int interrupted(const struct kn_request *req, struct kn_err *err)
{
    if (!req->interrupt || !*req->interrupt)
        return 0;
    kn_err_set(err, 0, "Interrupted", "%s %s: interrupted by a signal", req->method, req->path);
    return 1;
}

int kn_client_request(struct kn_client *c, const struct kn_request *req, struct kn_response *resp,
                      struct kn_err *err)
{
    const struct kn_config *cfg = c->cfg;
    int refreshed = 0, retries = 0;
    /* Retries stay within the request's timeout: a caller who asked for an
     * answer in 5 s gets one, error or not. */
    double deadline = mono_s() + (req->timeout_ms > 0 ? req->timeout_ms : c->opts.timeout_ms) / 1e3;
    for (;;) {
        const struct kn_cred *k;
        CURLcode rc;
        /* a plugin runs on the creds' refresh thread; this thread waits */
        k = kn_creds_get(c->creds, refreshed, err);
        if (!k)
            return -1;
        rate_limit(c, req->interrupt);
        rc = interrupted(req, err) ? CURLE_ABORTED_BY_CALLBACK : perform(c, req, resp, k->token, &k->cert, &k->key, err);
        kn_cred_release(k);
        resp->attempts = retries + refreshed + 1;
        if (interrupted(req, err))
            return -1;

        /* A 401 may only mean a rotated or expired credential: fetch it
         * again once and retry, as client-go does for exec plugins and
         * token files. */
        if (rc == CURLE_OK && resp->status == 401 && (cfg->exec || cfg->token_file) && !refreshed) {
            refreshed = 1;
            continue;
        }
        if (retries < c->opts.max_retries && retryable(req, rc, resp->status)) {
            double wait = backoff_s(c, retries, rc == CURLE_OK ? resp->retry_after : -1);
            if (mono_s() + wait >= deadline)
                return rc == CURLE_OK ? 0 : -1;
            retries++;
            pthread_mutex_lock(&c->mu);
            c->stats.retries++;
            pthread_mutex_unlock(&c->mu);
            sleep_s(wait, req->interrupt);
            continue;
        }
        return rc == CURLE_OK ? 0 : -1;
    }
}

/* ---- streams: asynchronous transfers for lists and watches ---- */

struct kn_stream {
    struct kn_xfer x;          /* first: the loop hands back &x */
    struct kn_client *c;
    struct kn_response resp;
    struct curl_slist *hdrs;
    char *url, *method;
    char errbuf[CURL_ERROR_SIZE];
    kn_stream_data_fn on_data;
    kn_stream_done_fn on_done;
    void *ud;
    int stopped;               /* on_data asked to stop: not an error */
    double last_byte;          /* watches: when a byte last came */
    double stall_s;            /* watches: the silence that ends them; 0: none */
    int stalled;
    long port;                 /* its connection's local port, once known (a transfer keeps it) */
    int conn_dead;             /* its connection was ended as dead: report a stall, not a failure */
    int is_probe;              /* the liveness probe: its 401 says nothing about the credential */
    struct kn_stream *next_watch;
    /* waiting for a credential (c->waiting): what to start once it comes */
    struct kn_request *later;
    int watch;
    struct kn_stream *next_waiting;
};

/* The connection a stream runs on: over HTTP/2 many watches share one, and
 * a byte for any of them shows the connection alive. A connection is known
 * by its local port: libcurl tells a transfer's port (CURLINFO_LOCAL_PORT)
 * while it runs, whereas its socket (CURLINFO_ACTIVESOCKET) only once a
 * transfer is over, which left every quiet watch to its own silence and
 * ended it at the stall limit although its connection was busy. Few
 * connections per client (one over HTTP/2), so a short list; ports of
 * closed connections are reused by the oldest entry once it is full. */
struct conn_seen {
    long port;
    double last;
};
#define CONNS_MAX 256

static double *conn_slot(struct kn_stream *s)
{
    struct kn_client *c = s->c;
    int i, oldest = 0;
    if (s->port <= 0) {
        long port = 0;
        if (curl_easy_getinfo(s->x.easy, CURLINFO_LOCAL_PORT, &port) != CURLE_OK || port <= 0)
            return NULL; /* not connected yet: the stream's own time counts */
        s->port = port;
    }
    for (i = 0; i < c->nconns; i++) {
        if (c->conns[i].port == s->port)
            return &c->conns[i].last;
        if (c->conns[i].last < c->conns[oldest].last)
            oldest = i;
    }
    if (!c->conns) {
        c->conns = calloc(CONNS_MAX, sizeof *c->conns);
        if (!c->conns)
            return NULL;
    }
    i = c->nconns < CONNS_MAX ? c->nconns++ : oldest;
    c->conns[i].port = s->port;
    c->conns[i].last = 0;
    return &c->conns[i].last;
}

/* The stall check, on the I/O thread: a watch whose connection has sent no
 * byte for its stall limit is ended (and then resumed by its reflector).
 * Timed from the last byte itself, and per connection: a dead connection is
 * silent for all its streams, while a quiet watch on a busy HTTP/2
 * connection is left alone. One timer for all watches, armed for the
 * earliest moment one of them could be over its limit, rather than
 * libcurl's per-transfer low-speed timers or a fixed tick: an idle client
 * wakes about once per stall limit, not every few seconds. */
static double stall_deadline(struct kn_stream *s)
{
    double last = s->last_byte, *conn = conn_slot(s);
    if (conn && *conn > last)
        last = *conn;
    return last + s->stall_s;
}

static void stall_check(void *ud);

/* Arms the timer for `due` (monotonic seconds) unless it is armed sooner. */
static void stall_arm(struct kn_client *c, double due)
{
    long ms;
    if (c->stall_timer) {
        if (c->stall_due <= due)
            return;
        kn_loop_timer_cancel(c->loop, c->stall_timer);
        c->stall_timer = NULL;
    }
    ms = (long)((due - mono_s()) * 1e3) + 1; /* +1: never early by a rounding */
    if (ms < 10)
        ms = 10; /* a deadline just past: soon, but not a busy loop */
    c->stall_due = due;
    c->stall_timer = kn_loop_after(c->loop, ms, stall_check, c);
}

static void stall_check(void *ud)
{
    struct kn_client *c = ud;
    struct kn_stream *stalled[64];
    int n = 0, any = 0;
    double now = mono_s(), next = 0;
    c->stall_timer = NULL;
    for (struct kn_stream *s = c->watches; s; s = s->next_watch) {
        double due;
        long version = 0;
        if (s->stall_s <= 0 || s->stalled)
            continue; /* no limit, or already ending */
        /* Over HTTP/2 the probe judges the whole connection: a quiet watch
         * on a live connection is never ended for its own silence. */
        if (!c->opts.http1 && c->opts.ping_interval_ms > 0 &&
            curl_easy_getinfo(s->x.easy, CURLINFO_HTTP_VERSION, &version) == CURLE_OK &&
            version == CURL_HTTP_VERSION_2_0)
            continue;
        due = stall_deadline(s);
        if (due <= now && n < 64) {
            s->stalled = 1;
            stalled[n++] = s;
        } else if (!any || due < next) {
            next = due;
            any = 1;
        }
    }
    /* ended outside the walk: each end runs its reflector, which may open a
     * new watch (and arm the timer for it) */
    for (int i = 0; i < n; i++)
        kn_stream_cancel(stalled[i]);
    if (any)
        stall_arm(c, next);
}

static size_t stream_body(char *p, size_t size, size_t n, void *ud)
{
    struct kn_stream *s = ud;
    size_t len = size * n;
    long status = 0;
    double *conn = conn_slot(s);
    s->last_byte = mono_s();
    if (conn)
        *conn = s->last_byte;
    curl_easy_getinfo(s->x.easy, CURLINFO_RESPONSE_CODE, &status);
    if (!s->c->h2_seen) {
        long version = 0;
        curl_easy_getinfo(s->x.easy, CURLINFO_HTTP_VERSION, &version);
        s->c->h2_seen = version == CURL_HTTP_VERSION_2_0;
    }
    /* Only a 2xx body is a stream; an error's body (a Status) is kept whole. */
    if (s->on_data && status >= 200 && status < 300) {
        if (s->on_data(s->ud, p, len) != 0) {
            s->stopped = 1;
            return 0; /* curl ends the transfer; on_done follows */
        }
        return len;
    }
    return kn_buf_append(&s->resp.body, p, len) < 0 ? 0 : len;
}

static void stream_done(struct kn_xfer *x, CURLcode rc)
{
    struct kn_stream *s = (struct kn_stream *)x;
    struct kn_client *c = s->c;
    for (struct kn_stream **p = &c->watches; *p; p = &(*p)->next_watch)
        if (*p == s) {
            *p = s->next_watch;
            break;
        }
    struct kn_err err = { 0, "", "" };
    long connects = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &s->resp.status);
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
    if (s->port <= 0)
        curl_easy_getinfo(x->easy, CURLINFO_LOCAL_PORT, &s->port);
    s->resp.port = s->port;
    pthread_mutex_lock(&c->mu);
    c->stats.requests++;
    c->stats.connections += (unsigned long)connects;
    pthread_mutex_unlock(&c->mu);
    if (s->resp.status == 401 && !s->is_probe)
        kn_creds_stale(c->creds); /* the next request fetches the credential again */
    if (s->stalled && rc == CURLE_ABORTED_BY_CALLBACK) {
        rc = CURLE_OPERATION_TIMEDOUT;
        snprintf(s->errbuf, sizeof s->errbuf, "no byte for %.0f s", s->stall_s);
    }
    if (s->conn_dead && rc != CURLE_OK && rc != CURLE_ABORTED_BY_CALLBACK) {
        /* as for a stall: the watch resumes from its last version at once */
        rc = CURLE_OPERATION_TIMEDOUT;
        snprintf(s->errbuf, sizeof s->errbuf, "its HTTP/2 connection answered no probe within %.0f s",
                 c->opts.ping_timeout_ms / 1e3);
    }
    s->resp.curl_code = (int)rc;
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        kn_err_set(&err, 0, "Cancelled", "%s %s: cancelled", s->method, s->url);
    else if (rc != CURLE_OK && !(s->stopped && rc == CURLE_WRITE_ERROR))
        kn_err_set(&err, 0, "Transport", "%s %s: %s%s", s->method, s->url,
                   s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc), transport_hint(rc));
    s->on_done(s->ud, err.reason[0] ? -1 : 0, s->resp.status, s->resp.body.data ? s->resp.body.data : "",
               s->resp.body.len, &s->resp, &err);
    curl_easy_cleanup(x->easy);
    wipe_headers(s->hdrs);
    kn_buf_free(&s->resp.body);
    free(s->url);
    free(s->method);
    free(s);
}

static int stream_start(struct kn_stream *s, const struct kn_request *req, int watch, const struct kn_cred *k,
                        struct kn_err *err);

static void request_free(struct kn_request *r)
{
    if (!r)
        return;
    if (r->body)
        explicit_bzero((char *)r->body, r->body_len); /* it may be a Secret */
    free((char *)r->body);
    free((char *)r->content_type);
    free((char *)r->accept);
    free(r);
}

/* Frees a stream that has no transfer (it never started). */
static void stream_forget(struct kn_stream *s)
{
    request_free(s->later);
    kn_buf_free(&s->resp.body);
    free(s->url);
    free(s->method);
    free(s);
}

/* Ends a stream that never started, with on_done as a transfer would. */
static void stream_fail(struct kn_stream *s, const struct kn_err *err)
{
    s->on_done(s->ud, -1, 0, "", 0, &s->resp, err);
    stream_forget(s);
}

/* Queues a stream until the credential refresh ends (creds_arrived), with a
 * copy of what its transfer needs. Last in the list, so streams start in
 * the order they were opened. */
static int stream_defer(struct kn_stream *s, const struct kn_request *req, int watch)
{
    struct kn_request *r = calloc(1, sizeof *r);
    struct kn_stream **p;
    if (!r)
        return -1;
    r->method = s->method;
    r->path = "";
    r->body_len = req->body_len;
    r->timeout_ms = req->timeout_ms;
    r->idempotent = req->idempotent;
    if (req->body) {
        char *b = malloc(req->body_len + 1);
        if (b)
            memcpy(b, req->body, req->body_len);
        r->body = b;
    }
    r->content_type = req->content_type ? strdup(req->content_type) : NULL;
    r->accept = req->accept ? strdup(req->accept) : NULL;
    if ((req->body && !r->body) || (req->content_type && !r->content_type) || (req->accept && !r->accept)) {
        request_free(r);
        return -1;
    }
    s->later = r;
    s->watch = watch;
    for (p = &s->c->waiting; *p; p = &(*p)->next_waiting)
        ;
    *p = s;
    return 0;
}

static void unwait(struct kn_stream *s)
{
    for (struct kn_stream **p = &s->c->waiting; *p; p = &(*p)->next_waiting)
        if (*p == s) {
            *p = s->next_waiting;
            break;
        }
    s->next_waiting = NULL;
}

/* On the I/O thread, after a refresh ended: the waiting streams start with
 * the new credential, or end with the refresh's error. One at a time from
 * the list, re-asking each time: an on_done may open or cancel streams, or
 * a 401 may have started the next refresh meanwhile (then they wait for it). */
static void creds_arrived(void *ud)
{
    struct kn_client *c = ud;
    while (c->waiting) {
        struct kn_err err = { 0, "", "" };
        struct kn_stream *s = c->waiting;
        struct kn_request *req;
        int pending = 0;
        const struct kn_cred *k = kn_creds_poll(c->creds, 0, &pending, &err);
        if (!k && pending)
            return; /* the next refresh's ready() comes */
        unwait(s);
        req = s->later;
        s->later = NULL;
        if (!k || stream_start(s, req, s->watch, k, &err) < 0) {
            s->later = req; /* freed with the stream */
            stream_fail(s, &err);
        } else {
            request_free(req);
        }
    }
}

/* On the refresh thread: the waiting streams are the I/O thread's. A timer
 * is all the loop offers to run there; without memory for one, retried
 * briefly rather than leaving streams waiting for ever. */
static void creds_ready(void *ud)
{
    struct kn_client *c = ud;
    for (int i = 0; i < 200 && !kn_loop_after(c->loop, 0, creds_arrived, c); i++)
        sleep_s(0.01, NULL);
}

static void fail_waiting(void *ud)
{
    struct kn_client *c = ud;
    while (c->waiting) {
        struct kn_stream *s = c->waiting;
        struct kn_err err;
        unwait(s);
        kn_err_set(&err, 0, "Cancelled", "%s %s: cancelled (the client is closed)", s->method, s->url);
        stream_fail(s, &err);
    }
}

struct kn_stream *kn_client_stream(struct kn_client *c, const struct kn_request *req, int watch,
                                   kn_stream_data_fn on_data, kn_stream_done_fn on_done, void *ud,
                                   struct kn_err *err)
{
    struct kn_stream *s = calloc(1, sizeof *s);
    const struct kn_cred *k;
    int pending = 0;
    if (!s) {
        kn_err_set(err, 0, "Transport", "out of memory");
        return NULL;
    }
    s->c = c;
    s->on_data = on_data;
    s->on_done = on_done;
    s->ud = ud;
    s->resp.retry_after = -1;
    s->method = strdup(req->method);
    s->url = malloc(strlen(c->base) + strlen(req->path) + 1);
    if (!s->url || !s->method) {
        free(s->url);
        free(s->method);
        free(s);
        kn_err_set(err, 0, "Transport", "out of memory");
        return NULL;
    }
    sprintf(s->url, "%s%s", c->base, req->path);
    /* This is the I/O thread, which every watch of the client needs: it
     * never waits for an exec plugin. While a refresh runs the stream waits
     * in c->waiting and starts when the credential comes (creds_arrived),
     * rather than failing into its reflector's backoff: it starts as soon as
     * it can, and a slow plugin is not reported as an error. */
    k = kn_creds_poll(c->creds, 1, &pending, err);
    if (!k && pending && stream_defer(s, req, watch) == 0)
        return s;
    if (!k || stream_start(s, req, watch, k, err) < 0) {
        if (!k && pending)
            kn_err_set(err, 0, "Transport", "out of memory");
        stream_forget(s);
        return NULL;
    }
    return s;
}

/* Sets up the stream's transfer and hands it to the loop; releases k. */
static int stream_start(struct kn_stream *s, const struct kn_request *req, int watch, const struct kn_cred *k,
                        struct kn_err *err)
{
    struct kn_client *c = s->c;
    if (unsafe_header(c->cfg, k->token) || (k->token && strlen(k->token) > 8192)) {
        const char *unsafe = unsafe_header(c->cfg, k->token);
        kn_err_set(err, 0, "Config", "%s: %s cannot be sent in a header (%s)", c->cfg->origin,
                   unsafe ? unsafe : "the bearer token", unsafe ? "it contains a control character" : "over 8 KiB");
        kn_cred_release(k);
        return -1;
    }
    s->x.easy = make_easy(c, req, s->url, &s->resp, s->errbuf, k->token, &k->cert, &k->key, &s->hdrs);
    kn_cred_release(k);
    if (!s->x.easy) {
        wipe_headers(s->hdrs);
        s->hdrs = NULL;
        kn_err_set(err, 0, "Transport", "libcurl could not create a handle");
        return -1;
    }
    curl_easy_setopt(s->x.easy, CURLOPT_WRITEFUNCTION, stream_body);
    curl_easy_setopt(s->x.easy, CURLOPT_WRITEDATA, s);
    if (watch) {
        /* A watch lasts as long as the server keeps it (timeoutSeconds). A
         * dead peer is found by TCP keepalive (about 20 + 9 x 4 s); a live
         * one that sends nothing by the stall limit (req->timeout_ms: no
         * byte at all for that long ends the transfer). */
        curl_easy_setopt(s->x.easy, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(s->x.easy, CURLOPT_TCP_KEEPIDLE, 20L);
        curl_easy_setopt(s->x.easy, CURLOPT_TCP_KEEPINTVL, 4L);
        s->stall_s = req->timeout_ms > 0 ? req->timeout_ms / 1e3 : 55;
        s->last_byte = mono_s();
        /* watches are opened on the I/O thread (by reflectors), which owns this list */
        s->next_watch = c->watches;
        c->watches = s;
        stall_arm(c, s->last_byte + s->stall_s);
    }
    s->x.done = stream_done;
    kn_loop_add(c->loop, &s->x);
    return 0;
}

/* ---- HTTP/2 liveness ----
 * client-go sends an HTTP/2 PING when a connection has read nothing for 30 s
 * and closes it when no answer comes within 15 s. libcurl (7.88) can send a
 * PING only from curl_easy_upkeep, which reaches the connections of an easy
 * handle's own pool, not those of a multi handle. So the probe is the
 * smallest request there is, GET /version, sent while the connection is
 * silent: over HTTP/2 it is multiplexed onto that same connection (PIPEWAIT,
 * the same TLS identity), and its answer, like a PING's, can only come if the
 * connection still works. A connection that stays silent through the probe's
 * timeout is ended under all its transfers (kn_loop_conn_kill), so that no
 * watch or request is ever again put on it. */

static void kill_conn(struct kn_client *c, long port)
{
    if (port <= 0 || kn_loop_conn_kill(c->loop, port) < 0)
        return;
    for (struct kn_stream *s = c->watches; s; s = s->next_watch) {
        if (s->port <= 0)
            curl_easy_getinfo(s->x.easy, CURLINFO_LOCAL_PORT, &s->port);
        if (s->port == port)
            s->conn_dead = 1;
    }
    pthread_mutex_lock(&c->mu);
    c->stats.dead_conns++;
    pthread_mutex_unlock(&c->mu);
}

static void probe_done(void *ud, int ok, long status, const char *body, size_t len,
                       const struct kn_response *resp, const struct kn_err *err)
{
    struct kn_client *c = ud;
    double started = c->probe_started;
    long target = c->probe_target;
    (void)status, (void)body, (void)len;
    c->probe = NULL;
    if (ok == 0) { /* any answer, even a 401 or 403, came over the connection */
        pthread_mutex_lock(&c->mu);
        c->stats.pings++;
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (strcmp(err->reason, "Cancelled") == 0)
        return;
    /* No answer in time. Each connection that has still read nothing since
     * the probe left is dead: the one the probe ran on, and the silent one it
     * was sent for (over HTTP/2 the same; they differ only when libcurl put
     * the probe on another connection). */
    if (resp->port > 0 && kn_loop_conn_seen(c->loop, resp->port) <= started)
        kill_conn(c, resp->port);
    if (target != resp->port) {
        double seen = kn_loop_conn_seen(c->loop, target);
        if (seen >= 0 && seen <= started)
            kill_conn(c, target);
    }
}

static void on_conn_idle(void *ud, long port, double last_in)
{
    struct kn_client *c = ud;
    struct kn_request req = { 0 };
    struct kn_err err = { 0, "", "" };
    int h2;
    (void)last_in;
    pthread_mutex_lock(&c->mu);
    h2 = c->stats.http2 > 0 || c->h2_seen;
    pthread_mutex_unlock(&c->mu);
    /* HTTP/1.1 carries one transfer per connection: a probe could not reach
     * the silent one (the stall limit watches those), and one is enough */
    if (!h2 || c->probe)
        return;
    req.method = "GET";
    req.path = "/version";
    req.timeout_ms = c->opts.ping_timeout_ms;
    c->probe_target = port;
    c->probe_started = mono_s();
    c->probe = kn_client_stream(c, &req, 0, NULL, probe_done, c, &err);
    if (c->probe)
        c->probe->is_probe = 1;
}

void kn_stream_cancel(struct kn_stream *s)
{
    if (s->later) {
        /* still waiting for a credential: no transfer yet */
        struct kn_err err;
        unwait(s);
        kn_err_set(&err, 0, "Cancelled", "%s %s: cancelled", s->method, s->url);
        stream_fail(s, &err);
        return;
    }
    kn_loop_cancel(s->c->loop, &s->x);
}

struct kn_loop *kn_client_loop(struct kn_client *c)
{
    return c->loop;
}
