/* The metrics and probes server: GET (or HEAD) /metrics, /healthz and
 * /readyz over HTTP/1.x, served by libmicrohttpd on a thread of its own.
 *
 *   /metrics  200, the registry rendered at request time (text format 0.0.4)
 *   /healthz  200 "ok", or 500 and the reason kn_health_check gives
 *   /readyz   200 "ok" once kn_health_set_ready(h, 1), 503 before
 *   other paths 404; methods other than GET and HEAD 405 (Allow: GET, HEAD)
 *
 * Request bodies are never read (a request that has one is answered and its
 * connection closed). Requests whose line and headers exceed max_request,
 * and malformed ones, get libmicrohttpd's 4xx or a closed connection.
 *
 * One internal polling thread (epoll) serves every connection: each answer
 * is made from memory in microseconds, so a thread per connection would only
 * add stacks and a thread per slow client, while one poller keeps a stalled
 * or hostile client from holding anything but its connection slot (bounded
 * by max_connections and timeout). Nothing here calls into Lua or waits for
 * the Lua thread: the owner only updates the registry and the health atomics. */
#ifndef KN_SERVE_H
#define KN_SERVE_H

#include <stddef.h>

#include "kn_err.h"
#include "kn_health.h"
#include "kn_metrics.h"

struct kn_serve;

struct kn_serve_opts {
    /* An IPv4 or IPv6 address or a host name to listen on; NULL or "": every
     * interface (IPv6 and IPv4 where the host has IPv6). */
    const char *address;
    int port;                 /* 0: a free port, which kn_serve_port tells */
    unsigned max_connections; /* at once; 0: 32. Beyond, new ones are closed */
    unsigned timeout;         /* seconds a connection may idle; 0: 10 */
    size_t max_request;       /* bytes for a connection's request line and headers; 0: 16 KiB */
};

/* Binds, listens and starts the server's thread. metrics (may be NULL: an
 * empty exposition) gains a reference held until kn_serve_stop. health may be
 * NULL (always healthy and ready); else it must outlive the server. NULL with
 * err on failure: reason "Bind" names the address and port and the system's
 * words (in use, cannot assign, unknown host), "NoMemory", or "Serve". */
struct kn_serve *kn_serve_start(const struct kn_serve_opts *opts, struct kn_metrics *metrics,
                                struct kn_health *health, struct kn_err *err);
/* The port listened on (the one the kernel chose for port 0). */
int kn_serve_port(const struct kn_serve *s);
/* Closes the listening socket and every connection, joins the thread and
 * frees the server. A request being answered finishes first (it holds no
 * lock but the registry's, for the time a render takes). NULL is fine. */
void kn_serve_stop(struct kn_serve *s);

#endif
