/* See fake_server.h. */
#include "fake_server.h"

#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "test.h"

static void *open_req(struct fake *f, const char *path, int watch, long stall_ms, kn_stream_data_fn data,
                      kn_stream_done_fn done, void *cb, struct kn_err *err)
{
    struct fake_req *q;
    if (f->refuse) {
        f->refuse = 0;
        kn_err_set(err, 0, "Transport", "the fake refused the request");
        return NULL;
    }
    if (fake_open(f))
        t_fail(__FILE__, __LINE__, "a second request while one is open: %s", path);
    if (f->nreqs == FAKE_MAX_REQS) {
        kn_err_set(err, 0, "Transport", "the fake is full");
        return NULL;
    }
    q = &f->reqs[f->nreqs];
    q->path = af_strdup(path);
    if (!q->path) {
        kn_err_set(err, 0, "Transport", "out of memory");
        return NULL;
    }
    f->nreqs++;
    q->watch = watch;
    q->stall_ms = stall_ms;
    q->open = 1;
    q->data = data;
    q->done = done;
    q->cb = cb;
    return q;
}

static void *fake_list(void *ud, const char *path, kn_stream_done_fn done, void *cb, struct kn_err *err)
{
    return open_req(ud, path, 0, 0, NULL, done, cb, err);
}

static void *fake_watch(void *ud, const char *path, long stall_ms, kn_stream_data_fn data, kn_stream_done_fn done,
                        void *cb, struct kn_err *err)
{
    return open_req(ud, path, 1, stall_ms, data, done, cb, err);
}

static void finish(struct fake_req *q, int ok, long status, const char *body, int retry_after, int curl_code,
                   const struct kn_err *err)
{
    struct kn_response resp = {0};
    resp.status = status;
    resp.retry_after = retry_after;
    resp.curl_code = curl_code;
    q->open = 0;
    q->done(q->cb, ok, status, body, body ? strlen(body) : 0, &resp, err);
}

static void fake_cancel(void *ud, void *stream)
{
    struct fake_req *q = stream;
    struct kn_err err;
    (void)ud;
    if (!q->open) {
        t_fail(__FILE__, __LINE__, "cancel of a finished request: %s", q->path);
        return;
    }
    kn_err_set(&err, 0, "Cancelled", "cancelled");
    finish(q, -1, 0, NULL, -1, CURLE_ABORTED_BY_CALLBACK, &err);
}

static void fake_arm(void *ud, struct kn_timer *t, long delay_ms, kn_loop_fn fn, void *arg)
{
    struct fake *f = ud;
    for (int i = 0; i < f->ntimers; i++)
        if (f->timers[i] == t)
            t_fail(__FILE__, __LINE__, "a timer armed twice");
    if (f->ntimers == FAKE_MAX_TIMERS) {
        t_fail(__FILE__, __LINE__, "too many timers");
        return;
    }
    t->at = delay_ms / 1e3;
    t->fn = fn;
    t->ud = arg;
    f->timers[f->ntimers++] = t;
}

static void fake_disarm(void *ud, struct kn_timer *t)
{
    struct fake *f = ud;
    for (int i = 0; i < f->ntimers; i++)
        if (f->timers[i] == t) {
            f->timers[i] = f->timers[--f->ntimers];
            return;
        }
}

static void fake_call(void *ud, kn_loop_fn fn, void *arg)
{
    (void)ud;
    fn(arg);
}

void fake_init(struct fake *f)
{
    memset(f, 0, sizeof *f);
    f->t.ud = f;
    f->t.list = fake_list;
    f->t.watch = fake_watch;
    f->t.cancel = fake_cancel;
    f->t.arm = fake_arm;
    f->t.disarm = fake_disarm;
    f->t.call = fake_call;
}

void fake_free(struct fake *f)
{
    for (int i = 0; i < f->nreqs; i++)
        free(f->reqs[i].path);
    f->nreqs = 0;
}

struct fake_req *fake_open(struct fake *f)
{
    for (int i = 0; i < f->nreqs; i++)
        if (f->reqs[i].open)
            return &f->reqs[i];
    return NULL;
}

void fake_reply(struct fake *f, long status, const char *body, int retry_after)
{
    struct fake_req *q = fake_open(f);
    char *text = body ? af_strdup(body) : NULL;
    if (!q) {
        t_fail(__FILE__, __LINE__, "no open request to answer");
        free(text);
        return;
    }
    for (char *p = text; p && *p; p++)
        if (*p == '\'')
            *p = '"';
    finish(q, 0, status, text, retry_after, CURLE_OK, NULL);
    free(text);
}

void fake_fail(struct fake *f, int curl_code, const char *msg)
{
    struct fake_req *q = fake_open(f);
    struct kn_err err;
    if (!q) {
        t_fail(__FILE__, __LINE__, "no open request to fail");
        return;
    }
    kn_err_set(&err, 0, "Transport", "%s", msg);
    finish(q, -1, 0, NULL, -1, curl_code, &err);
}

void fake_send(struct fake *f, const char *json)
{
    struct fake_req *q = fake_open(f);
    size_t n = strlen(json);
    char *line = af_malloc(n + 2);
    if (!q || !q->watch) {
        t_fail(__FILE__, __LINE__, "no open watch for %s", json);
        free(line);
        return;
    }
    if (!line)
        abort();
    for (size_t i = 0; i < n; i++)
        line[i] = json[i] == '\'' ? '"' : json[i];
    line[n] = '\n';
    line[n + 1] = '\0';
    if (q->data(q->cb, line, n + 1) != 0 && q->open)
        finish(q, 0, 200, NULL, -1, CURLE_OK, NULL);
    free(line);
}

long fake_next_delay(struct fake *f)
{
    int best = -1;
    for (int i = 0; i < f->ntimers; i++)
        if (best < 0 || f->timers[i]->at < f->timers[best]->at)
            best = i;
    return best < 0 ? -1 : (long)(f->timers[best]->at * 1e3 + 0.5);
}

long fake_fire(struct fake *f)
{
    int best = -1;
    struct kn_timer *t;
    long ms;
    for (int i = 0; i < f->ntimers; i++)
        if (best < 0 || f->timers[i]->at < f->timers[best]->at)
            best = i;
    if (best < 0)
        return -1;
    t = f->timers[best];
    ms = (long)(t->at * 1e3 + 0.5);
    f->timers[best] = f->timers[--f->ntimers];
    t->fn(t->ud);
    return ms;
}

struct kn_reflector *fake_reflector(struct fake *f, struct kn_queue *q, enum fake_mode mode)
{
    struct kn_reflector_opts o = {0};
    struct kn_err err;
    struct kn_reflector *r;
    o.path = "/api/v1/configmaps";
    o.page_size = 2;
    o.paged_only = mode == FAKE_PAGED;
    o.raw = mode == FAKE_RAW;
    o.resource_version = mode == FAKE_RAW ? "10" : NULL;
    r = kn_reflector_new_on(&f->t, q, 1, &o, &err);
    if (r && mode != FAKE_RAW)
        kn_reflector_set_notify(r, (1 << KN_Q_ADD) | (1 << KN_Q_UPDATE) | (1 << KN_Q_DELETE));
    return r;
}
