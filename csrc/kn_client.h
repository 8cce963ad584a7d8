/* The REST transport: one API server, one identity, requests over libcurl.
 * Credentials (token files, exec plugins) come from kn_creds, fetched and
 * refreshed out of sight of the callers above. */
#ifndef KN_CLIENT_H
#define KN_CLIENT_H

#include <signal.h>
#include <stddef.h>

#include "kn_buf.h"
#include "kn_config.h"
#include "kn_err.h"

struct kn_client;

struct kn_client_opts {
    int timeout_ms;   /* connect and whole-request limit; <= 0: 30 s */
    double qps;       /* client-side rate limit of requests; <= 0: none */
    int burst;        /* requests allowed at once above qps; <= 0: max(1, qps) */
    int max_retries;  /* retries of 429/5xx/connection failures; < 0: none */
    int http1;        /* force HTTP/1.1 (default: HTTP/2 over TLS, one shared connection) */
    /* HTTP/2 liveness, as client-go's ReadIdleTimeout and PingTimeout: a
     * connection with transfers waiting that has received nothing for
     * ping_interval_ms is probed, and ended when the probe gets no answer
     * within ping_timeout_ms (every transfer on it fails over to a new one).
     * 0: 30 s and 15 s; < 0: no probing. */
    int ping_interval_ms;
    int ping_timeout_ms;
};

struct kn_request {
    const char *method;       /* GET, POST, PUT, PATCH, DELETE */
    const char *path;         /* absolute path with query, e.g. "/api/v1/namespaces" */
    const char *body;         /* NULL: none */
    size_t body_len;
    const char *content_type; /* NULL: application/json when there is a body */
    const char *accept;       /* NULL: application/json */
    int timeout_ms;           /* 0: the client's timeout */
    int idempotent;           /* safe to repeat after a 5xx (GET, PUT, DELETE, apply patches) */
    /* Blocking requests: when set and it turns non-zero (a signal handler
     * sets it), the request ends at once with reason "Interrupted". */
    const volatile sig_atomic_t *interrupt;
};

struct kn_response {
    long status;
    struct kn_buf body;
    char content_type[128];
    int retry_after;   /* seconds from a Retry-After header, or -1 */
    long http_version; /* 11 or 20: the protocol the answer came over */
    int attempts;      /* 1 + retries made */
    int curl_code;     /* streams: libcurl's result (CURLE_OPERATION_TIMEDOUT: the stall limit hit,
                        * or its HTTP/2 connection was found dead) */
    long port;         /* streams: the local port of the connection it ran on (0: none) */
};

struct kn_client_stats {
    unsigned long requests;    /* HTTP transfers made (retries included) */
    unsigned long connections; /* new connections they had to open */
    unsigned long retries;
    unsigned long http2;       /* answers that came over HTTP/2 */
    unsigned exec_runs;
    unsigned long pings;          /* liveness probes answered */
    unsigned long dead_conns;     /* connections ended because a probe went unanswered */
};

/* Takes ownership of cfg (also on failure). */
struct kn_client *kn_client_new(struct kn_config *cfg, const struct kn_client_opts *opts, struct kn_err *err);
void kn_client_free(struct kn_client *c);
const struct kn_config *kn_client_config(const struct kn_client *c);

/* Performs one request. Returns 0 when an HTTP response arrived, whatever its
 * status (the caller reads resp->status), or -1 with err set when none did
 * (transport, TLS, credentials). Free resp->body with kn_buf_free. */
int kn_client_request(struct kn_client *c, const struct kn_request *req, struct kn_response *resp,
                      struct kn_err *err);

void kn_client_stats(struct kn_client *c, struct kn_client_stats *out);

/* Asynchronous transfers, for lists and watches. Callbacks run on the
 * client's I/O thread. on_data gets the bytes of a 2xx body as they arrive
 * (NULL: the body is collected); returning non-zero ends the transfer
 * without an error. on_done runs exactly once: ok is 0 when an HTTP answer
 * came (status is set; body holds a non-2xx or collected body), -1 with err
 * on a transport failure or a cancel (reason "Cancelled"). The stream is
 * freed after on_done returns. */
struct kn_stream;
typedef int (*kn_stream_data_fn)(void *ud, const char *p, size_t n);
typedef void (*kn_stream_done_fn)(void *ud, int ok, long status, const char *body, size_t len,
                                  const struct kn_response *resp, const struct kn_err *err);
struct kn_stream *kn_client_stream(struct kn_client *c, const struct kn_request *req, int watch,
                                   kn_stream_data_fn on_data, kn_stream_done_fn on_done, void *ud,
                                   struct kn_err *err);
/* Ends a stream: on the I/O thread (outside that stream's own callbacks),
 * on_done has run when this returns. */
void kn_stream_cancel(struct kn_stream *s);
struct kn_loop *kn_client_loop(struct kn_client *c);

#endif
