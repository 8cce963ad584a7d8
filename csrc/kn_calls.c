#include "kn_calls.h"
#include "kn_loop.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct call {
    struct call *next;
    struct kn_request req; /* its strings live in buf */
    kn_call_done_fn done;
    void *ud;
    size_t n;
    char buf[];
};

struct kn_calls {
    struct kn_client *c;
    pthread_mutex_t mu;
    pthread_cond_t work;
    struct call *head, *tail;
    int max, threads, waiting, pending, closing;
    pthread_t *tids;
};

struct kn_calls *kn_calls_new(struct kn_client *c, int max_threads)
{
    struct kn_calls *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max = max_threads > 0 ? max_threads : 16;
    p->tids = calloc((size_t)p->max, sizeof *p->tids);
    if (!p->tids) {
        free(p);
        return NULL;
    }
    p->c = c;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    return p;
}

static void *worker(void *arg)
{
    struct kn_calls *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct call *k;
        struct kn_response resp;
        struct kn_err err;
        int ok;
        while (!p->head && !p->closing) {
            p->waiting++;
            pthread_cond_wait(&p->work, &p->mu);
            p->waiting--;
        }
        if (!p->head)
            break; /* closing, and nothing left to do */
        k = p->head;
        p->head = k->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);

        memset(&resp, 0, sizeof resp);
        memset(&err, 0, sizeof err);
        ok = kn_client_request(p->c, &k->req, &resp, &err);
        k->done(k->ud, ok, &resp, &err);
        if (k->req.body) /* a body may hold a Secret's data */
            explicit_bzero(k->buf, k->n);
        free(k);

        pthread_mutex_lock(&p->mu);
        p->pending--;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static size_t opt_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s (n bytes, or a string when n is (size_t)-1) to *at. */
static char *put(char **at, const char *s, size_t n)
{
    char *start = *at;
    if (!s)
        return NULL;
    if (n == (size_t)-1)
        n = strlen(s);
    memcpy(start, s, n);
    start[n] = '\0';
    *at += n + 1;
    return start;
}

int kn_calls_submit(struct kn_calls *p, const struct kn_request *req, kn_call_done_fn done, void *ud,
                    struct kn_err *err)
{
    size_t n = strlen(req->method) + 1 + strlen(req->path) + 1 + (req->body ? req->body_len + 1 : 0) +
               opt_len(req->content_type) + opt_len(req->accept);
    struct call *k = malloc(sizeof *k + n);
    char *at;
    if (!k)
        return kn_err_set(err, 0, "Transport", "out of memory for a request");
    at = k->buf;
    k->next = NULL;
    k->req = *req;
    k->req.method = put(&at, req->method, (size_t)-1);
    k->req.path = put(&at, req->path, (size_t)-1);
    k->req.body = put(&at, req->body, req->body_len);
    k->req.content_type = put(&at, req->content_type, (size_t)-1);
    k->req.accept = put(&at, req->accept, (size_t)-1);
    k->n = n;
    k->done = done;
    k->ud = ud;

    pthread_mutex_lock(&p->mu);
    if (p->closing) {
        pthread_mutex_unlock(&p->mu);
        free(k);
        return kn_err_set(err, 0, "Cancelled", "the client is closing");
    }
    /* One more worker when every one is busy, up to the cap; the rest queue. */
    if (p->waiting == 0 && p->threads < p->max) {
        if (kn_thread_start(&p->tids[p->threads], worker, p) == 0)
            p->threads++;
        else if (p->threads == 0) {
            pthread_mutex_unlock(&p->mu);
            free(k);
            return kn_err_set(err, 0, "Transport", "cannot start a request thread");
        }
    }
    if (p->tail)
        p->tail->next = k;
    else
        p->head = k;
    p->tail = k;
    p->pending++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int kn_calls_pending(struct kn_calls *p)
{
    int n;
    pthread_mutex_lock(&p->mu);
    n = p->pending;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void kn_calls_free(struct kn_calls *p)
{
    int i;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->threads; i++)
        pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}
