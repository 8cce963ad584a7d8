#include "kn_loop.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

enum { QUEUED, ACTIVE, FINISHED };

struct kn_timer {
    double at;            /* monotonic seconds */
    kn_loop_fn fn;
    void *ud;
    struct kn_timer *next;
};

struct kn_loop {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct kn_xfer *queued;   /* waiting to join the multi handle */
    struct kn_xfer *cancels;  /* asked to end (linked through ->next while ACTIVE) */
    struct kn_xfer *active;   /* in the multi handle; linked through ->next */
    struct kn_timer *timers;  /* sorted by due time */
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct kn_timer *kn_loop_after(struct kn_loop *l, long delay_ms, kn_loop_fn fn, void *ud)
{
    struct kn_timer *t = calloc(1, sizeof *t), **p;
    if (!t)
        return NULL;
    t->at = mono() + (delay_ms > 0 ? delay_ms / 1e3 : 0);
    t->fn = fn;
    t->ud = ud;
    pthread_mutex_lock(&l->mu);
    for (p = &l->timers; *p && (*p)->at <= t->at; p = &(*p)->next)
        ;
    t->next = *p;
    *p = t;
    pthread_mutex_unlock(&l->mu);
    /* On the I/O thread (a timer or a transfer rescheduling itself) the loop
     * computes its next wait after this anyway; waking it would only cost an
     * idle pass over every transfer. */
    if (!kn_loop_on_thread(l))
        curl_multi_wakeup(l->multi);
    return t;
}

int kn_loop_timer_cancel(struct kn_loop *l, struct kn_timer *t)
{
    int found = 0;
    if (!t)
        return 0;
    pthread_mutex_lock(&l->mu);
    for (struct kn_timer **p = &l->timers; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&l->mu);
    if (found)
        free(t);
    return found;
}

int kn_loop_on_thread(struct kn_loop *l)
{
    return pthread_equal(pthread_self(), l->thread);
}

/* Runs due timers; returns the milliseconds until the next one (capped). */
static int run_timers(struct kn_loop *l)
{
    for (;;) {
        struct kn_timer *t;
        double now = mono();
        pthread_mutex_lock(&l->mu);
        t = l->timers;
        if (!t || t->at > now) {
            /* curl_multi_poll also wakes for libcurl's own timers and for
             * kn_loop_after/add (curl_multi_wakeup): an idle loop sleeps */
            int wait = t ? (int)((t->at - now) * 1e3) + 1 : 10000;
            pthread_mutex_unlock(&l->mu);
            return wait < 10000 ? wait : 10000;
        }
        l->timers = t->next;
        pthread_mutex_unlock(&l->mu);
        t->fn(t->ud);
        free(t);
    }
}

struct call {
    kn_loop_fn fn;
    void *ud;
    struct kn_loop *l;
    int done;
};

static void call_fn(void *ud)
{
    struct call *c = ud;
    c->fn(c->ud);
    pthread_mutex_lock(&c->l->mu);
    c->done = 1;
    pthread_cond_broadcast(&c->l->cv);
    pthread_mutex_unlock(&c->l->mu);
}

void kn_loop_call(struct kn_loop *l, kn_loop_fn fn, void *ud)
{
    struct call c = { fn, ud, l, 0 };
    if (kn_loop_on_thread(l)) {
        fn(ud);
        return;
    }
    kn_loop_after(l, 0, call_fn, &c);
    pthread_mutex_lock(&l->mu);
    while (!c.done)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static void unlink_x(struct kn_xfer **list, struct kn_xfer *x)
{
    for (; *list; list = &(*list)->next)
        if (*list == x) {
            *list = x->next;
            x->next = NULL;
            return;
        }
}

/* Removes a transfer from the multi handle and reports it; lock not held. */
static void finish(struct kn_loop *l, struct kn_xfer *x, CURLcode rc)
{
    pthread_mutex_lock(&l->mu);
    if (x->state == FINISHED) {
        pthread_mutex_unlock(&l->mu);
        return;
    }
    if (x->state == ACTIVE)
        curl_multi_remove_handle(l->multi, x->easy);
    unlink_x(&l->active, x);
    unlink_x(&l->queued, x);
    unlink_x(&l->cancels, x);
    x->state = FINISHED;
    pthread_mutex_unlock(&l->mu);
    x->done(x, rc);
}

/* Whether libcurl has work now: its own timer is due (it also expires a
 * transfer at once when data already read waits in TLS or HTTP/2 buffers). */
static int curl_due(struct kn_loop *l)
{
    long ms = -1;
    curl_multi_timeout(l->multi, &ms);
    return ms == 0;
}

static void *run(void *arg)
{
    struct kn_loop *l = arg;
    int work = 1; /* a socket had events, or transfers came or went */
    for (;;) {
        struct kn_xfer *x;
        struct CURLMsg *msg;
        int running, left, numfds = 0;

        run_timers(l);
        pthread_mutex_lock(&l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        work |= l->queued || l->cancels;
        while ((x = l->queued)) {
            l->queued = x->next;
            x->state = ACTIVE;
            curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
            curl_multi_add_handle(l->multi, x->easy);
            x->next = l->active;
            l->active = x;
        }
        pthread_mutex_unlock(&l->mu);

        /* One at a time under the lock: a cancelled transfer may also have
         * completed, and finish() takes it off every list exactly once. */
        for (;;) {
            pthread_mutex_lock(&l->mu);
            x = l->cancels;
            pthread_mutex_unlock(&l->mu);
            if (!x)
                break;
            finish(l, x, CURLE_ABORTED_BY_CALLBACK);
        }

        /* curl_multi_perform visits every transfer: with 60 watches on one
         * connection, a wake for one of our own timers (the stall check)
         * that also ran it cost more than everything else while idle. */
        if (work || curl_due(l)) {
            curl_multi_perform(l->multi, &running);
            while ((msg = curl_multi_info_read(l->multi, &left))) {
                if (msg->msg == CURLMSG_DONE) {
                    char *p = NULL;
                    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
                    finish(l, (struct kn_xfer *)p, msg->data.result);
                }
            }
        }
        /* numfds counts sockets with events, not curl_multi_wakeup's */
        curl_multi_poll(l->multi, NULL, 0, run_timers(l), &numfds);
        work = numfds > 0;
    }
    /* Stopping: everything still queued or running ends as aborted. */
    for (;;) {
        struct kn_xfer *x;
        pthread_mutex_lock(&l->mu);
        x = l->active ? l->active : l->queued ? l->queued : l->cancels;
        pthread_mutex_unlock(&l->mu);
        if (!x)
            break;
        finish(l, x, CURLE_ABORTED_BY_CALLBACK);
    }
    /* Timers never fire after stop; their owners are gone or going. Calls
     * waiting in kn_loop_call must still complete. */
    for (;;) {
        struct kn_timer *t;
        pthread_mutex_lock(&l->mu);
        t = l->timers;
        if (t)
            l->timers = t->next;
        pthread_mutex_unlock(&l->mu);
        if (!t)
            break;
        if (t->fn == call_fn)
            t->fn(t->ud);
        free(t);
    }
    return NULL;
}

struct kn_loop *kn_loop_new(struct kn_err *err)
{
    struct kn_loop *l = calloc(1, sizeof *l);
    if (!l) {
        kn_err_set(err, 0, "Transport", "out of memory");
        return NULL;
    }
    l->multi = curl_multi_init();
    if (!l->multi) {
        free(l);
        kn_err_set(err, 0, "Transport", "libcurl could not create a multi handle");
        return NULL;
    }
    /* HTTP/2: new transfers wait for, and share, the existing connection. */
    curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    /* The I/O thread takes no signals: they go to the Lua thread, whose wait
     * a signal ends (lua.c's Ctrl-C handler then raises in Lua). The new
     * thread inherits the mask that is in force while it is created. */
    sigset_t all, old;
    int created;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    created = pthread_create(&l->thread, NULL, run, l) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!created) {
        curl_multi_cleanup(l->multi);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        free(l);
        kn_err_set(err, 0, "Transport", "cannot start the I/O thread");
        return NULL;
    }
    return l;
}

void kn_loop_free(struct kn_loop *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_mutex_unlock(&l->mu);
    curl_multi_wakeup(l->multi);
    pthread_join(l->thread, NULL);
    curl_multi_cleanup(l->multi);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

void kn_loop_add(struct kn_loop *l, struct kn_xfer *x)
{
    pthread_mutex_lock(&l->mu);
    x->state = QUEUED;
    x->next = NULL;
    /* append, so transfers start in the order they were added */
    struct kn_xfer **p = &l->queued;
    while (*p)
        p = &(*p)->next;
    *p = x;
    pthread_mutex_unlock(&l->mu);
    curl_multi_wakeup(l->multi);
}

void kn_loop_cancel(struct kn_loop *l, struct kn_xfer *x)
{
    if (kn_loop_on_thread(l)) {
        /* on the I/O thread, outside curl's callbacks: end it now, so the
         * caller knows done has run */
        finish(l, x, CURLE_ABORTED_BY_CALLBACK);
        return;
    }
    pthread_mutex_lock(&l->mu);
    if (x->state != FINISHED) {
        /* Moved to the cancel list; the I/O thread removes it from the multi
         * handle (only that thread may touch the multi handle). */
        unlink_x(&l->queued, x);
        unlink_x(&l->active, x);
        unlink_x(&l->cancels, x);
        x->next = l->cancels;
        l->cancels = x;
    }
    pthread_mutex_unlock(&l->mu);
    curl_multi_wakeup(l->multi);
}

struct sync_xfer {
    struct kn_xfer x;
    struct kn_loop *loop;
    CURLcode rc;
    int finished;
};

static void sync_done(struct kn_xfer *x, CURLcode rc)
{
    struct sync_xfer *s = (struct sync_xfer *)x;
    pthread_mutex_lock(&s->loop->mu);
    s->rc = rc;
    s->finished = 1;
    pthread_cond_broadcast(&s->loop->cv);
    pthread_mutex_unlock(&s->loop->mu);
}

CURLcode kn_loop_run(struct kn_loop *l, CURL *easy)
{
    struct sync_xfer s = { { easy, sync_done, NULL, 0 }, l, CURLE_OK, 0 };
    kn_loop_add(l, &s.x);
    pthread_mutex_lock(&l->mu);
    while (!s.finished)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    return s.rc;
}

void kn_loop_lock(struct kn_loop *l) { pthread_mutex_lock(&l->mu); }
void kn_loop_unlock(struct kn_loop *l) { pthread_mutex_unlock(&l->mu); }
void kn_loop_wait(struct kn_loop *l) { pthread_cond_wait(&l->cv, &l->mu); }
void kn_loop_broadcast(struct kn_loop *l) { pthread_cond_broadcast(&l->cv); }
