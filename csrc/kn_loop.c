#include "kn_loop.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { QUEUED, ACTIVE, FINISHED };

/* A socket libcurl asked us to watch, and for what (CURL_POLL_IN/OUT/INOUT).
 * The loop is the one place that sees every byte arrive, whichever transfer
 * or frame (an HTTP/2 PING's answer, a window update) it belongs to, so it
 * keeps each connection's read time for the liveness check. */
struct sock {
    curl_socket_t fd;
    int what;
    long port;       /* local port: how transfers name their connection; 0 until known */
    double last_in;  /* when the socket last became readable (monotonic s) */
    int idle_told;   /* the idle hook ran for this silence; cleared by the next byte */
};

struct kn_loop {
    CURLM *multi;
    int wake_fd;              /* eventfd: other threads' work for the loop */
    struct sock *socks;       /* I/O thread only */
    int nsocks, socks_cap;
    double curl_due;          /* when libcurl's timer fires; <0: not set (I/O thread only) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct kn_xfer *queued;   /* waiting to join the multi handle */
    struct kn_xfer *cancels;  /* asked to end (linked through ->next while ACTIVE) */
    struct kn_xfer *active;   /* in the multi handle; linked through ->next */
    struct kn_timer *timers;  /* sorted by due time */
    /* the idle hook (set under mu, read by the I/O thread) */
    double idle_s;
    kn_loop_idle_fn idle_fn;
    void *idle_ud;
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long local_port(curl_socket_t fd)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return 0;
    if (a.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&a)->sin_port);
    if (a.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
    return 0;
}

static void wake(struct kn_loop *l)
{
    uint64_t one = 1;
    while (write(l->wake_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void link_timer(struct kn_loop *l, struct kn_timer *t, long delay_ms, kn_loop_fn fn, void *ud)
{
    struct kn_timer **p;
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
     * computes its next wait after this anyway: no wakeup needed. */
    if (!kn_loop_on_thread(l))
        wake(l);
}

struct kn_timer *kn_loop_after(struct kn_loop *l, long delay_ms, kn_loop_fn fn, void *ud)
{
    struct kn_timer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    link_timer(l, t, delay_ms, fn, ud);
    return t;
}

void kn_loop_arm(struct kn_loop *l, struct kn_timer *t, long delay_ms, kn_loop_fn fn, void *ud)
{
    t->owned = 1;
    link_timer(l, t, delay_ms, fn, ud);
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
    if (found && !t->owned)
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
        int owned = t->owned; /* fn may end the owner's timer (kn_loop_call's returns) */
        l->timers = t->next;
        pthread_mutex_unlock(&l->mu);
        t->fn(t->ud);
        if (!owned)
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
    /* The timer lives on this stack, so the call cannot fail for want of
     * memory (a lost call was a wait for ever). */
    struct kn_timer t;
    if (kn_loop_on_thread(l)) {
        fn(ud);
        return;
    }
    kn_loop_arm(l, &t, 0, call_fn, &c);
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

/* libcurl's socket interface: it says which sockets to watch and when its
 * timer fires, and socket_action runs only what a socket's events concern.
 * curl_multi_perform visited every transfer (with a poll() of the socket
 * each) whenever anything happened, which with 60 watches on one HTTP/2
 * connection was nearly all an idle client spent. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp)
{
    struct kn_loop *l = ud;
    int i;
    (void)easy, (void)sockp;
    for (i = 0; i < l->nsocks && l->socks[i].fd != fd; i++)
        ;
    if (what == CURL_POLL_REMOVE) {
        if (i < l->nsocks)
            l->socks[i] = l->socks[--l->nsocks];
        return 0;
    }
    if (i == l->nsocks) {
        if (l->nsocks == l->socks_cap) {
            int cap = l->socks_cap ? 2 * l->socks_cap : 8;
            struct sock *n = realloc(l->socks, (size_t)cap * sizeof *n);
            if (!n)
                return -1; /* libcurl fails the transfer */
            l->socks = n;
            l->socks_cap = cap;
        }
        l->socks[l->nsocks] = (struct sock){ fd, 0, local_port(fd), mono(), 0 };
        l->nsocks++;
    }
    l->socks[i].what = what;
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud)
{
    struct kn_loop *l = ud;
    (void)multi;
    l->curl_due = timeout_ms < 0 ? -1 : mono() + timeout_ms / 1e3;
    return 0;
}

/* Tells the idle hook about each connection that libcurl reads from (it has
 * transfers waiting for an answer) and that has been silent for idle_s,
 * once per silence. Returns the milliseconds until the next could be. */
static int check_idle(struct kn_loop *l)
{
    double idle_s, now = mono(), next = -1;
    kn_loop_idle_fn fn;
    void *ud;
    pthread_mutex_lock(&l->mu);
    idle_s = l->idle_s;
    fn = l->idle_fn;
    ud = l->idle_ud;
    pthread_mutex_unlock(&l->mu);
    if (!fn || idle_s <= 0)
        return 10000;
    for (int i = 0; i < l->nsocks; i++) {
        struct sock *k = &l->socks[i];
        double due = k->last_in + idle_s;
        if (!(k->what & CURL_POLL_IN) || k->idle_told)
            continue;
        if (due <= now) {
            if (k->port <= 0)
                k->port = local_port(k->fd);
            k->idle_told = 1;
            /* the hook only queues work (a probe); l->socks stays as it is */
            fn(ud, k->port, k->last_in);
        } else if (next < 0 || due < next) {
            next = due;
        }
    }
    if (next < 0)
        return 10000;
    next = (next - now) * 1e3 + 1;
    return next < 10000 ? (int)next : 10000;
}

void kn_loop_on_idle(struct kn_loop *l, double idle_s, kn_loop_idle_fn fn, void *ud)
{
    pthread_mutex_lock(&l->mu);
    l->idle_s = idle_s;
    l->idle_fn = fn;
    l->idle_ud = ud;
    pthread_mutex_unlock(&l->mu);
    wake(l);
}

static struct sock *sock_by_port(struct kn_loop *l, long port)
{
    for (int i = 0; port > 0 && i < l->nsocks; i++) {
        if (l->socks[i].port <= 0)
            l->socks[i].port = local_port(l->socks[i].fd);
        if (l->socks[i].port == port)
            return &l->socks[i];
    }
    return NULL;
}

double kn_loop_conn_seen(struct kn_loop *l, long port)
{
    struct sock *k = sock_by_port(l, port);
    return k ? k->last_in : -1;
}

int kn_loop_conn_kill(struct kn_loop *l, long port)
{
    struct sock *k = sock_by_port(l, port);
    if (!k)
        return -1;
    /* Both directions: libcurl's next read sees the end of the stream, fails
     * every transfer on the connection and closes it; a connection that has
     * ended is never picked for a new transfer. The socket stays libcurl's to
     * close. */
    shutdown(k->fd, SHUT_RDWR);
    k->idle_told = 1;
    return 0;
}

static void reap(struct kn_loop *l)
{
    struct CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(l->multi, &left))) {
        if (msg->msg == CURLMSG_DONE) {
            char *p = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
            finish(l, (struct kn_xfer *)p, msg->data.result);
        }
    }
}

static void *run(void *arg)
{
    struct kn_loop *l = arg;
    struct pollfd *fds = NULL;
    int fds_cap = 0;
    for (;;) {
        struct kn_xfer *x;
        int running, n, wait;

        run_timers(l);
        pthread_mutex_lock(&l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        while ((x = l->queued)) {
            l->queued = x->next;
            x->state = ACTIVE;
            curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
            curl_multi_add_handle(l->multi, x->easy); /* sets libcurl's timer to now */
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

        if (l->curl_due >= 0 && l->curl_due <= mono()) {
            l->curl_due = -1;
            curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            reap(l);
            continue; /* the timers and lists again before sleeping */
        }

        wait = run_timers(l);
        {
            int idle_wait = check_idle(l);
            if (idle_wait < wait)
                wait = idle_wait;
        }
        if (l->curl_due >= 0) {
            double ms = (l->curl_due - mono()) * 1e3;
            if (ms < wait)
                wait = ms < 0 ? 0 : (int)ms + 1;
        }
        if (l->nsocks + 1 > fds_cap) {
            struct pollfd *f = realloc(fds, (size_t)(l->nsocks + 1) * sizeof *f);
            if (f) {
                fds = f;
                fds_cap = l->nsocks + 1;
            }
        }
        if (!fds) { /* out of memory: nothing to poll with; try again shortly */
            poll(NULL, 0, wait < 100 ? wait : 100);
            continue;
        }
        fds[0] = (struct pollfd){ l->wake_fd, POLLIN, 0 };
        for (n = 0; n < l->nsocks && n + 1 < fds_cap; n++) {
            short ev = 0;
            if (l->socks[n].what & CURL_POLL_IN)
                ev |= POLLIN;
            if (l->socks[n].what & CURL_POLL_OUT)
                ev |= POLLOUT;
            fds[n + 1] = (struct pollfd){ l->socks[n].fd, ev, 0 };
        }
        if (poll(fds, (nfds_t)n + 1, wait) <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            while (read(l->wake_fd, &v, sizeof v) < 0 && errno == EINTR)
                ;
        }
        /* l->socks still matches fds[1..n] here; socket_action may change it */
        for (int i = 1; i <= n; i++)
            if (fds[i].revents & (POLLIN | POLLHUP)) {
                l->socks[i - 1].last_in = mono();
                l->socks[i - 1].idle_told = 0;
            }
        /* from the copy */
        for (int i = 1; i <= n; i++) {
            int flags = 0;
            if (!fds[i].revents)
                continue;
            if (fds[i].revents & (POLLIN | POLLHUP))
                flags |= CURL_CSELECT_IN;
            if (fds[i].revents & POLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (fds[i].revents & (POLLERR | POLLNVAL))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(l->multi, fds[i].fd, flags, &running);
        }
        reap(l);
    }
    free(fds);
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
        int owned = t->owned;
        if (t->fn == call_fn)
            t->fn(t->ud);
        if (!owned)
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
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd < 0) {
        curl_multi_cleanup(l->multi);
        free(l);
        kn_err_set(err, 0, "Transport", "cannot create an eventfd for the I/O thread");
        return NULL;
    }
    l->curl_due = -1;
    /* HTTP/2: new transfers wait for, and share, the existing connection. */
    curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    /* The I/O thread takes no signals: they go to the Lua thread, whose wait
     * a signal ends (lua.c's Ctrl-C handler then raises in Lua). The new
     * thread inherits the mask that is in force while it is created. */
    if (kn_thread_start(&l->thread, run, l) != 0) {
        curl_multi_cleanup(l->multi);
        close(l->wake_fd);
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
    wake(l);
    pthread_join(l->thread, NULL);
    curl_multi_cleanup(l->multi); /* may still tell on_socket to forget sockets */
    close(l->wake_fd);
    free(l->socks);
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
    wake(l);
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
    wake(l);
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

CURLcode kn_loop_run(struct kn_loop *l, CURL *easy, const volatile sig_atomic_t *stop)
{
    struct sync_xfer s = { { easy, sync_done, NULL, 0 }, l, CURLE_OK, 0 };
    int cancelled = 0;
    kn_loop_add(l, &s.x);
    pthread_mutex_lock(&l->mu);
    while (!s.finished) {
        if (!stop) {
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        if (*stop && !cancelled) {
            /* a signal: end the transfer; done still runs, and is waited for */
            cancelled = 1;
            pthread_mutex_unlock(&l->mu);
            kn_loop_cancel(l, &s.x);
            pthread_mutex_lock(&l->mu);
            continue;
        }
        /* a handler cannot signal a condition variable: look every 50 ms */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    pthread_mutex_unlock(&l->mu);
    return s.rc;
}

int kn_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void kn_loop_lock(struct kn_loop *l) { pthread_mutex_lock(&l->mu); }
void kn_loop_unlock(struct kn_loop *l) { pthread_mutex_unlock(&l->mu); }
void kn_loop_wait(struct kn_loop *l) { pthread_cond_wait(&l->cv, &l->mu); }
void kn_loop_broadcast(struct kn_loop *l) { pthread_cond_broadcast(&l->cv); }
