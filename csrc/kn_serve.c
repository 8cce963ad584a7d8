/* See kn_serve.h. We bind the listening socket ourselves (so that a failure
 * says which address and why: libmicrohttpd only returns NULL) and hand it to
 * libmicrohttpd, which closes it on stop. A request that announces a body
 * is answered at the first call of the access handler, before the body is
 * read: none of our paths takes one, and an early answer makes libmicrohttpd
 * close the connection instead of reading what the client still sends.
 * Others are answered at the second call, keeping the connection alive. */
#define _GNU_SOURCE
#include "kn_serve.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEXT "text/plain; charset=utf-8"

struct kn_serve {
    struct MHD_Daemon *d;
    struct kn_metrics *metrics;
    struct kn_health *health;
    int port;
    unsigned max_conns;
    atomic_uint conns; /* open connections; only the server's thread changes it */
    /* libmicrohttpd's first complaint while starting, for the error */
    pthread_mutex_t log_mu;
    int logging;
    char log[256];
};

static const char *show(const char *address)
{
    return address && *address ? address : "*";
}

/* "host:port", IPv6 literals bracketed. */
static void where(char *buf, size_t n, const char *address, int port)
{
    const char *a = show(address);
    snprintf(buf, n, strchr(a, ':') ? "[%s]:%d" : "%s:%d", a, port);
}

/* A listening socket on address:port, or -1 with err. Tries each address
 * the name resolves to until one binds; for "every interface" the IPv6
 * wildcard first (dual stack), then IPv4's. */
static int listen_on(const char *address, int port, int backlog, struct kn_err *err)
{
    struct addrinfo hints = {0}, *res = NULL, *ai;
    char service[16], at[300];
    const char *node = address && *address ? address : NULL;
    int rc, fd = -1, last = 0;
    where(at, sizeof at, address, port);
    if (port < 0 || port > 65535)
        return kn_err_set(err, 0, "Bind", "cannot listen on %s: the port is not 0 to 65535", at);
    snprintf(service, sizeof service, "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(node, service, &hints, &res);
    if (rc != 0)
        return kn_err_set(err, 0, "Bind", "cannot listen on %s: %s", at,
                          rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    for (int pass = 0; pass < 2 && fd < 0; pass++) {
        for (ai = res; ai && fd < 0; ai = ai->ai_next) {
            int one = 1, zero = 0;
            if ((ai->ai_family == AF_INET6) != (pass == 0))
                continue;
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
            if (fd < 0) {
                last = errno;
                continue;
            }
            /* a restart binds again at once though old connections linger
             * in TIME_WAIT; on Linux it does not let two servers share a port */
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (ai->ai_family == AF_INET6 && !node)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
                last = errno;
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return kn_err_set(err, 0, "Bind", "cannot listen on %s: %s", at,
                          last ? strerror(last) : "no address of that family");
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
    struct kn_serve *s = cls;
    pthread_mutex_lock(&s->log_mu);
    if (s->logging && !s->log[0]) {
        char *nl;
        vsnprintf(s->log, sizeof s->log, fmt, ap);
        if ((nl = strchr(s->log, '\n')))
            *nl = '\0';
    }
    pthread_mutex_unlock(&s->log_mu);
}

/* libmicrohttpd stops accepting at its connection limit, leaving new
 * clients in the listen backlog until a slot frees (a timeout away when
 * idle connections hold them all). We count connections ourselves and
 * refuse the one beyond the limit: it is closed at once, so a probe fails
 * fast instead of hanging, and the backlog stays empty. libmicrohttpd's own
 * limit sits above ours and is never reached. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct kn_serve *s = cls;
    (void)addr, (void)addrlen;
    return atomic_load(&s->conns) < s->max_conns ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct kn_serve *s = cls;
    (void)c, (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&s->conns, 1);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        atomic_fetch_sub(&s->conns, 1);
}

/* ---- answers ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *text, int copy)
{
    struct MHD_Response *r;
    enum MHD_Result rc;
    r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                        copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO; /* out of memory: the connection closes */
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, TEXT) != MHD_YES ||
        (status == MHD_HTTP_METHOD_NOT_ALLOWED && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_metrics(struct kn_serve *s, struct MHD_Connection *c)
{
    struct kn_buf b = {0};
    struct MHD_Response *r;
    enum MHD_Result rc;
    size_t len;
    char *body;
    if (s->metrics && kn_metrics_render(s->metrics, &b) < 0) {
        kn_buf_free(&b);
        return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory rendering the metrics\n", 0);
    }
    body = kn_buf_steal(&b, &len);
    if (!body)
        return MHD_NO;
    r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, KN_METRICS_CONTENT_TYPE) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

struct framing {
    int lengths, encodings;
    const char *length;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct framing *f = cls;
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->lengths++;
        f->length = value ? value : "";
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->encodings++;
    }
    return MHD_YES;
}

/* 1 if the request announces a body, 0 if not, -1 if its framing contradicts
 * itself (two lengths, a length and an encoding, a length that is not a
 * number: RFC 9112 section 6.3 has those answered 400, as they are how
 * requests are smuggled past proxies). */
static int body_framing(struct MHD_Connection *c)
{
    struct framing f = { 0, 0, NULL };
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
    if (f.lengths > 1 || (f.lengths && f.encodings))
        return -1;
    if (f.lengths) {
        size_t digits = strspn(f.length, "0123456789");
        if (digits == 0 || f.length[digits] != '\0')
            return -1;
        return strspn(f.length, "0") != digits;
    }
    return f.encodings > 0;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
    static int seen, answered;
    struct kn_serve *s = cls;
    (void)version, (void)upload_data;
    if (*req_cls == &answered) { /* a body after our answer: dropped */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!*req_cls) {
        int framing = body_framing(c);
        if (framing == 0) {
            /* answered at the next call, once the request is complete, so
             * that the connection can stay open for the next scrape */
            *req_cls = &seen;
            return MHD_YES;
        }
        if (framing < 0) {
            *req_cls = &answered;
            return send_text(c, MHD_HTTP_BAD_REQUEST, "bad request: its body's length is ambiguous\n", 0);
        }
    }
    *req_cls = &answered;
    if (strcmp(url, "/metrics") != 0 && strcmp(url, "/healthz") != 0 && strcmp(url, "/readyz") != 0)
        return send_text(c, MHD_HTTP_NOT_FOUND, "not found: this server has /metrics, /healthz and /readyz\n", 0);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return send_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD\n", 0);
    if (strcmp(url, "/metrics") == 0)
        return send_metrics(s, c);
    if (strcmp(url, "/readyz") == 0) {
        if (s->health && !kn_health_ready(s->health))
            return send_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n", 0);
        return send_text(c, MHD_HTTP_OK, "ok\n", 0);
    }
    {
        char reason[KN_HEALTH_REASON + 200];
        size_t n;
        if (!s->health || kn_health_check(s->health, reason, sizeof reason - 1))
            return send_text(c, MHD_HTTP_OK, "ok\n", 0);
        n = strlen(reason);
        reason[n] = '\n';
        reason[n + 1] = '\0';
        return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, reason, 1);
    }
}

/* ---- start and stop ---- */

struct kn_serve *kn_serve_start(const struct kn_serve_opts *o, struct kn_metrics *metrics, struct kn_health *health,
                                struct kn_err *err)
{
    static const struct kn_serve_opts none;
    struct kn_serve *s;
    struct stat st;
    unsigned conns, timeout;
    size_t mem;
    int fd;
    char at[300];
    if (!o)
        o = &none;
    conns = o->max_connections ? o->max_connections : 32;
    timeout = o->timeout ? o->timeout : 10;
    mem = o->max_request ? o->max_request : 16 * 1024;
    s = calloc(1, sizeof *s);
    if (!s)
        return kn_err_set(err, 0, "NoMemory", "out of memory starting the metrics server"), NULL;
    pthread_mutex_init(&s->log_mu, NULL);
    fd = listen_on(o->address, o->port, conns > 64 ? (int)conns : 64, err);
    if (fd < 0) {
        pthread_mutex_destroy(&s->log_mu);
        free(s);
        return NULL;
    }
    s->port = bound_port(fd);
    s->max_conns = conns;
    s->metrics = metrics;
    s->health = health;
    s->logging = 1;
    if (metrics)
        kn_metrics_ref(metrics);
    fstat(fd, &st);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0,
                            accept_policy, s, answer, s, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_EXTERNAL_LOGGER,
                            on_log, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_LIMIT,
                            conns * 2 + 8, MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                            mem, /* RFC 9112's musts: a Host on HTTP/1.1, no space before a header's colon */
                            MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
    pthread_mutex_lock(&s->log_mu);
    s->logging = 0;
    pthread_mutex_unlock(&s->log_mu);
    if (!s->d) {
        struct stat now;
        /* closed by libmicrohttpd or not, depending on where it failed: the
         * descriptor is still ours only if it is still this socket */
        if (fstat(fd, &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev)
            close(fd);
        where(at, sizeof at, o->address, s->port);
        kn_err_set(err, 0, "Serve", "cannot start the HTTP server on %s: %s", at,
                   s->log[0] ? s->log : "libmicrohttpd failed (out of memory or threads?)");
        kn_metrics_unref(metrics);
        pthread_mutex_destroy(&s->log_mu);
        free(s);
        return NULL;
    }
    return s;
}

int kn_serve_port(const struct kn_serve *s)
{
    return s->port;
}

void kn_serve_stop(struct kn_serve *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    kn_metrics_unref(s->metrics);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
}
