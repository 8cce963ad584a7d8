/* See kn_health.h. Times are kept as nanoseconds in 64-bit atomics; the
 * loop's state is one word (0: waiting, else busy since that time) so that a
 * reader never sees "busy" with the time of an earlier turn. The mutex only
 * guards adding checks and down reasons, which are rare: beats and the loop's
 * marks never take it. */
#include "kn_health.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct check {
    char name[KN_HEALTH_NAME];
    double max_age;
    atomic_llong beat;  /* ns */
    atomic_int down;
    char reason[KN_HEALTH_REASON]; /* guarded by mu */
};

struct kn_health {
    double busy_threshold;
    double (*now)(void *);
    void *clock_ud;
    atomic_llong busy_since; /* ns, 0 while waiting */
    atomic_int ready;
    atomic_int nchecks;      /* published after the check is filled in */
    pthread_mutex_t mu;
    struct check checks[KN_HEALTH_MAX_CHECKS];
};

static double mono(void *ud)
{
    struct timespec ts;
    (void)ud;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long now_ns(const struct kn_health *h)
{
    return llround(h->now(h->clock_ud) * 1e9);
}

struct kn_health *kn_health_new(const struct kn_health_opts *o)
{
    struct kn_health *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->busy_threshold = o && o->busy_threshold > 0 ? o->busy_threshold : KN_HEALTH_DEFAULT_BUSY;
    h->now = o && o->now ? o->now : mono;
    h->clock_ud = o ? o->clock_ud : NULL;
    pthread_mutex_init(&h->mu, NULL);
    return h;
}

void kn_health_free(struct kn_health *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void kn_health_busy(struct kn_health *h)
{
    long long t = now_ns(h);
    atomic_store(&h->busy_since, t ? t : 1);
}

void kn_health_waiting(struct kn_health *h)
{
    atomic_store(&h->busy_since, 0);
}

void kn_health_set_ready(struct kn_health *h, int ready)
{
    atomic_store(&h->ready, !!ready);
}

int kn_health_ready(const struct kn_health *h)
{
    return atomic_load(&((struct kn_health *)h)->ready);
}

int kn_health_find(const struct kn_health *h, const char *name)
{
    struct kn_health *m = (struct kn_health *)h;
    int n = atomic_load(&m->nchecks);
    for (int i = 0; name && i < n; i++)
        if (strcmp(m->checks[i].name, name) == 0)
            return i;
    return -1;
}

int kn_health_add_check(struct kn_health *h, const char *name, double max_age, struct kn_err *err)
{
    int id;
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= KN_HEALTH_NAME)
        return kn_err_set(err, 0, "Invalid", "a liveness check's name must have 1 to %d bytes",
                          KN_HEALTH_NAME - 1);
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return kn_err_set(err, 0, "Invalid",
                              "liveness check name \"%s\": printable ASCII without spaces only", name);
    pthread_mutex_lock(&h->mu);
    id = atomic_load(&h->nchecks);
    if (kn_health_find(h, name) >= 0) {
        pthread_mutex_unlock(&h->mu);
        return kn_err_set(err, 0, "Invalid", "liveness check %s exists already", name);
    }
    if (id >= KN_HEALTH_MAX_CHECKS) {
        pthread_mutex_unlock(&h->mu);
        return kn_err_set(err, 0, "Invalid", "liveness check %s: there are %d checks already, the most there can be",
                          name, KN_HEALTH_MAX_CHECKS);
    }
    memcpy(h->checks[id].name, name, len + 1);
    h->checks[id].max_age = max_age > 0 ? max_age : 0;
    atomic_store(&h->checks[id].beat, now_ns(h));
    atomic_store(&h->checks[id].down, 0);
    atomic_store(&h->nchecks, id + 1);
    pthread_mutex_unlock(&h->mu);
    return id;
}

void kn_health_beat(struct kn_health *h, int id)
{
    if (id < 0 || id >= atomic_load(&h->nchecks))
        return;
    atomic_store(&h->checks[id].beat, now_ns(h));
    atomic_store(&h->checks[id].down, 0);
}

void kn_health_down(struct kn_health *h, int id, const char *reason)
{
    char *r;
    if (id < 0 || id >= atomic_load(&h->nchecks))
        return;
    pthread_mutex_lock(&h->mu);
    r = h->checks[id].reason;
    snprintf(r, KN_HEALTH_REASON, "%s", reason ? reason : "");
    for (; *r; r++) /* one line in the answer */
        if (*r == '\n' || *r == '\r')
            *r = ' ';
    atomic_store(&h->checks[id].down, 1);
    pthread_mutex_unlock(&h->mu);
}

int kn_health_check(struct kn_health *h, char *reason, size_t n)
{
    long long now = now_ns(h), since = atomic_load(&h->busy_since);
    int ok = 1, nchecks;
    if (since && (double)(now - since) / 1e9 > h->busy_threshold) {
        snprintf(reason, n,
                 "the Lua loop has run callbacks for %.1f s without waiting for events (more than %g s): "
                 "a callback is stuck",
                 (double)(now - since) / 1e9, h->busy_threshold);
        return 0;
    }
    pthread_mutex_lock(&h->mu);
    nchecks = atomic_load(&h->nchecks);
    for (int i = 0; i < nchecks && ok; i++) {
        struct check *c = &h->checks[i];
        double age = (double)(now - atomic_load(&c->beat)) / 1e9;
        if (atomic_load(&c->down)) {
            snprintf(reason, n, "liveness check %s is down%s%s", c->name, *c->reason ? ": " : "", c->reason);
            ok = 0;
        } else if (c->max_age > 0 && age > c->max_age) {
            snprintf(reason, n, "liveness check %s: no beat for %.1f s (max age %g s)", c->name, age, c->max_age);
            ok = 0;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return ok;
}
