/* The controller work queue (see kn_workqueue.h).
 *
 * One record per key the queue remembers, in one allocation with the key's
 * copy after it. A record sits in up to three structures at once, all
 * intrusive so that moving a key between states never allocates:
 *  - a chained hash table by key. Records are separate allocations anyway
 *    (the FIFO links them and the heap points at them, so their addresses
 *    must not move), so a chain costs one pointer a record and a removal
 *    needs no tombstone or back-shift;
 *  - the FIFO of waiting keys, a singly linked list (nothing ever leaves it
 *    but its head, or all of it at a shutdown without drain);
 *  - the delay heap, an array of record pointers ordered by ready time, each
 *    record knowing its index so a re-add can move it earlier in O(log n).
 * A record whose key is in no state and has no failures is freed at once:
 * the queue's memory follows the keys it holds, not the keys it has seen.
 *
 * Allocation happens in one place (hold): room in the heap, then in the
 * table, then the record. Only then does the caller change state, so a
 * failure leaves every key where it was (a table or heap may have grown).
 * get, done, forget and shutdown never need memory; the shrinks they try
 * are optional and a failed one keeps the larger block. */
#include "kn_workqueue.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    WAITING = 1,    /* in the FIFO */
    PROCESSING = 2, /* handed out by get, not yet done */
    DIRTY = 4,      /* added while processing: queued again at done */
};

#define NOT_DELAYED SIZE_MAX
#define MIN_BITS 4      /* the table never has fewer than 16 buckets */
#define MIN_HEAP 16

struct rec {
    struct rec *chain;          /* next in its hash bucket */
    struct rec *next;           /* next in the FIFO, while WAITING */
    uint64_t hash;
    size_t heap_at;             /* index in the heap, or NOT_DELAYED */
    unsigned long long seq;     /* heap tie-break: equal times leave in the order they were set */
    double ready_at;            /* while delayed */
    double since;               /* when it became ready (or dirty): get's *waited */
    int failures;               /* rate-limited adds since the last forget */
    unsigned flags;
    char key[];
};

struct kn_wq {
    struct rec **buckets;       /* 1 << bits of them */
    unsigned bits;
    size_t count;               /* records */
    uint64_t seed;
    struct rec *head, *tail;    /* the FIFO */
    size_t depth;               /* records WAITING */
    size_t processing;
    size_t both;                /* records WAITING and delayed: kn_wq_len counts them once */
    struct rec **heap;
    size_t heap_len, heap_cap;
    unsigned long long seq;
    /* the rate limiter */
    double base, max;           /* per-key backoff */
    double qps, burst, tokens, last; /* the overall bucket; qps <= 0: none */
    int shut, drain;
    unsigned long long adds, retries;
};

/* ---- the key table ---- */

static uint64_t hash_key(const struct kn_wq *q, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull ^ q->seed; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

/* Fibonacci hashing: the top bits of the product depend on every bit of the
 * hash, where FNV-1a's low bits alone would be weak for a power-of-two
 * table. */
static size_t bucket_of(uint64_t hash, unsigned bits)
{
    return (size_t)((hash * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

static struct rec *find(const struct kn_wq *q, const char *key, uint64_t hash)
{
    struct rec *r = q->buckets[bucket_of(hash, q->bits)];
    while (r && (r->hash != hash || strcmp(r->key, key) != 0))
        r = r->chain;
    return r;
}

static struct rec *lookup(const struct kn_wq *q, const char *key)
{
    return find(q, key, hash_key(q, key));
}

static int rehash(struct kn_wq *q, unsigned bits)
{
    size_t n = (size_t)1 << bits, old_n = (size_t)1 << q->bits;
    struct rec **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < old_n; i++) {
        struct rec *r = q->buckets[i], *next;
        for (; r; r = next) {
            size_t j = bucket_of(r->hash, bits);
            next = r->chain;
            r->chain = b[j];
            b[j] = r;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->bits = bits;
    return 0;
}

/* Frees r once it means nothing: no state and no failures to remember. */
static void release(struct kn_wq *q, struct rec *r)
{
    struct rec **p;
    if (r->flags || r->heap_at != NOT_DELAYED || r->failures)
        return;
    for (p = &q->buckets[bucket_of(r->hash, q->bits)]; *p != r; p = &(*p)->chain)
        ;
    *p = r->chain;
    free(r);
    q->count--;
    /* Halve below a quarter full (grown at full): the gap keeps a key that
     * comes and goes at the boundary from rehashing every time. */
    if (q->bits > MIN_BITS && q->count < ((size_t)1 << q->bits) / 4)
        (void)rehash(q, q->bits - 1);
}

/* ---- the FIFO ---- */

static void fifo_push(struct kn_wq *q, struct rec *r, double since)
{
    r->flags |= WAITING;
    r->since = since;
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->depth++;
    q->both += r->heap_at != NOT_DELAYED;
}

static struct rec *fifo_pop(struct kn_wq *q)
{
    struct rec *r = q->head;
    if (!r)
        return NULL;
    q->head = r->next;
    if (!q->head)
        q->tail = NULL;
    r->next = NULL;
    r->flags &= ~(unsigned)WAITING;
    q->depth--;
    q->both -= r->heap_at != NOT_DELAYED;
    return r;
}

/* ---- the delay heap ---- */

static int before(const struct rec *a, const struct rec *b)
{
    return a->ready_at < b->ready_at || (a->ready_at == b->ready_at && a->seq < b->seq);
}

static void heap_put(struct kn_wq *q, struct rec *r, size_t i)
{
    q->heap[i] = r;
    r->heap_at = i;
}

static void sift_up(struct kn_wq *q, size_t i)
{
    struct rec *r = q->heap[i];
    while (i > 0 && before(r, q->heap[(i - 1) / 2])) {
        heap_put(q, q->heap[(i - 1) / 2], i);
        i = (i - 1) / 2;
    }
    heap_put(q, r, i);
}

static void sift_down(struct kn_wq *q, size_t i)
{
    struct rec *r = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->heap_len)
            break;
        if (c + 1 < q->heap_len && before(q->heap[c + 1], q->heap[c]))
            c++;
        if (!before(q->heap[c], r))
            break;
        heap_put(q, q->heap[c], i);
        i = c;
    }
    heap_put(q, r, i);
}

static int heap_reserve(struct kn_wq *q)
{
    size_t cap = q->heap_cap ? q->heap_cap * 2 : MIN_HEAP;
    struct rec **h;
    if (q->heap_len < q->heap_cap)
        return 0;
    if (cap > SIZE_MAX / sizeof *h)
        return -1;
    h = realloc(q->heap, cap * sizeof *h);
    if (!h)
        return -1;
    q->heap = h;
    q->heap_cap = cap;
    return 0;
}

/* Takes the earliest record off the heap. */
static struct rec *heap_pop(struct kn_wq *q)
{
    struct rec *r = q->heap[0];
    r->heap_at = NOT_DELAYED;
    q->both -= (r->flags & WAITING) != 0;
    if (--q->heap_len > 0) {
        q->heap[0] = q->heap[q->heap_len];
        sift_down(q, 0);
    }
    if (q->heap_cap > MIN_HEAP && q->heap_len < q->heap_cap / 4) {
        struct rec **h = realloc(q->heap, q->heap_cap / 2 * sizeof *h);
        if (h) { /* else keep the larger one */
            q->heap = h;
            q->heap_cap /= 2;
        }
    }
    return r;
}

/* Delays r (held with heap room) until at, or moves it earlier; never later. */
static void delay_until(struct kn_wq *q, struct rec *r, double at)
{
    if (r->heap_at == NOT_DELAYED) {
        r->heap_at = q->heap_len++;
        q->heap[r->heap_at] = r;
        q->both += (r->flags & WAITING) != 0;
    } else if (!(at < r->ready_at)) {
        return;
    }
    r->ready_at = at;
    r->seq = q->seq++;
    sift_up(q, r->heap_at);
}

/* ---- states ---- */

/* key's record, made if new, with room in the heap for it when delayed is
 * set. NULL when out of memory: then no key changed state. */
static struct rec *hold(struct kn_wq *q, const char *key, int delayed)
{
    uint64_t hash = hash_key(q, key);
    struct rec *r = find(q, key, hash);
    size_t len, b;
    if (delayed && (!r || r->heap_at == NOT_DELAYED) && heap_reserve(q) < 0)
        return NULL;
    if (r)
        return r;
    if (q->count >= ((size_t)1 << q->bits) && rehash(q, q->bits + 1) < 0)
        return NULL;
    len = strlen(key);
    r = malloc(sizeof *r + len + 1);
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    memcpy(r->key, key, len + 1);
    r->hash = hash;
    r->heap_at = NOT_DELAYED;
    b = bucket_of(hash, q->bits);
    r->chain = q->buckets[b];
    q->buckets[b] = r;
    q->count++;
    return r;
}

/* What an add does to a held record: queues it, or marks it dirty while it
 * is processed; a key already waiting or dirty stays as it is (and the add
 * is not counted, as in client-go). since: when it became ready. */
static void enqueue(struct kn_wq *q, struct rec *r, double since)
{
    if (r->flags & (WAITING | DIRTY))
        return;
    q->adds++;
    if (r->flags & PROCESSING) {
        r->flags |= DIRTY;
        r->since = since;
    } else {
        fifo_push(q, r, since);
    }
}

/* The per-key delay for a key that failed `failures` times before. */
static double backoff(const struct kn_wq *q, int failures)
{
    double d = ldexp(q->base, failures); /* inf past the double's range */
    return d < q->max ? d : q->max;
}

/* golang.org/x/time/rate's Reserve().Delay() for one token: the bucket
 * refills at qps up to burst since the last take; a take may leave it
 * negative, and the deficit is how long the taker waits. */
static double bucket_take(struct kn_wq *q, double now)
{
    if (now > q->last) {
        q->tokens += (now - q->last) * q->qps;
        if (q->tokens > q->burst)
            q->tokens = q->burst;
    }
    q->last = now;
    q->tokens -= 1;
    return q->tokens < 0 ? -q->tokens / q->qps : 0;
}

/* ---- the contract ---- */

struct kn_wq *kn_wq_new(const struct kn_wq_opts *opts)
{
    struct kn_wq *q = calloc(1, sizeof *q);
    struct kn_wq_opts o = { 0, 0, 0, 0 };
    if (!q)
        return NULL;
    q->bits = MIN_BITS;
    q->buckets = calloc((size_t)1 << q->bits, sizeof *q->buckets);
    if (!q->buckets) {
        free(q);
        return NULL;
    }
    if (opts)
        o = *opts;
    /* !(x > 0) also sends NaN to the default */
    q->base = o.base_delay > 0 ? o.base_delay : 0.005;
    q->max = o.max_delay > 0 ? o.max_delay : 1000;
    q->qps = o.qps == 0 || isnan(o.qps) ? 10 : o.qps;
    q->burst = o.burst > 0 ? o.burst : 100;
    q->tokens = q->burst; /* full at the start, as rate.NewLimiter's first take sees it */
    q->last = -HUGE_VAL;
    q->seed = (uint64_t)(uintptr_t)q * 0x9e3779b97f4a7c15ull; /* one queue's layout says nothing of another's */
    q->drain = 1;
    return q;
}

void kn_wq_free(struct kn_wq *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < (size_t)1 << q->bits; i++) {
        struct rec *r = q->buckets[i], *next;
        for (; r; r = next) {
            next = r->chain;
            free(r);
        }
    }
    free(q->buckets);
    free(q->heap);
    free(q);
}

int kn_wq_add(struct kn_wq *q, const char *key, double now)
{
    struct rec *r;
    if (q->shut)
        return 0;
    r = hold(q, key, 0);
    if (!r)
        return -1;
    enqueue(q, r, now);
    return 0;
}

int kn_wq_add_after(struct kn_wq *q, const char *key, double delay, double now)
{
    struct rec *r;
    if (!(delay > 0)) /* NaN too: an add rather than a heap out of order */
        return kn_wq_add(q, key, now);
    if (q->shut)
        return 0;
    r = hold(q, key, 1);
    if (!r)
        return -1;
    delay_until(q, r, now + delay);
    return 0;
}

int kn_wq_add_rate_limited(struct kn_wq *q, const char *key, double now, double *delay_out)
{
    struct rec *r;
    double d;
    if (delay_out)
        *delay_out = 0;
    if (q->shut)
        return 0;
    r = hold(q, key, 1);
    if (!r)
        return -1;
    /* client-go's MaxOfRateLimiter asks every limiter, so both count this
     * failure: the bucket's token is spent even when the backoff is longer. */
    d = backoff(q, r->failures);
    if (q->qps > 0) {
        double b = bucket_take(q, now);
        d = b > d ? b : d;
    }
    if (r->failures < INT_MAX)
        r->failures++;
    q->retries++;
    delay_until(q, r, now + d);
    if (delay_out)
        *delay_out = d;
    return 0;
}

void kn_wq_forget(struct kn_wq *q, const char *key)
{
    struct rec *r = lookup(q, key);
    if (r) {
        r->failures = 0;
        release(q, r);
    }
}

int kn_wq_failures(const struct kn_wq *q, const char *key)
{
    struct rec *r = lookup(q, key);
    return r ? r->failures : 0;
}

const char *kn_wq_get(struct kn_wq *q, double now, double *waited)
{
    struct rec *r;
    /* a due key is added as of its due time, so its wait counts from then */
    while (q->heap_len && q->heap[0]->ready_at <= now) {
        r = heap_pop(q);
        enqueue(q, r, r->ready_at);
    }
    r = fifo_pop(q);
    if (waited)
        *waited = r ? now - r->since : 0;
    if (!r)
        return NULL;
    r->flags |= PROCESSING;
    q->processing++;
    return r->key;
}

int kn_wq_done(struct kn_wq *q, const char *key, double now)
{
    struct rec *r = lookup(q, key);
    (void)now; /* the binding times the work; the queue only needs the order */
    if (!r || !(r->flags & PROCESSING))
        return -1;
    r->flags &= ~(unsigned)PROCESSING;
    q->processing--;
    if (r->flags & DIRTY) {
        r->flags &= ~(unsigned)DIRTY;
        /* it was added before a shutdown: it waits like the others did, and
         * is dropped like them when the shutdown does not drain */
        if (!q->shut || q->drain)
            fifo_push(q, r, r->since);
    }
    release(q, r);
    return 0;
}

int kn_wq_has(const struct kn_wq *q, const char *key)
{
    struct rec *r = lookup(q, key);
    return r && (r->flags || r->heap_at != NOT_DELAYED);
}

double kn_wq_next_due(const struct kn_wq *q, double now)
{
    double d;
    if (!q->heap_len)
        return -1;
    d = q->heap[0]->ready_at - now;
    return d > 0 ? d : 0;
}

size_t kn_wq_len(const struct kn_wq *q)
{
    return q->depth + q->heap_len - q->both;
}

void kn_wq_shutdown(struct kn_wq *q, int drain)
{
    size_t n = q->heap_len;
    struct rec **heap = q->heap, *r;
    q->drain = q->drain && drain; /* a second call may stop a drain, not restart one */
    q->shut = 1;
    /* No add comes after this, so the heap goes entirely. */
    q->heap = NULL;
    q->heap_len = q->heap_cap = 0;
    q->both = 0;
    for (size_t i = 0; i < n; i++) {
        heap[i]->heap_at = NOT_DELAYED;
        release(q, heap[i]);
    }
    free(heap);
    if (!q->drain)
        while ((r = fifo_pop(q)))
            release(q, r);
}

int kn_wq_shutting_down(const struct kn_wq *q)
{
    return q->shut;
}

void kn_wq_get_stats(const struct kn_wq *q, struct kn_wq_stats *out)
{
    out->depth = q->depth;
    out->delayed = q->heap_len;
    out->processing = q->processing;
    out->adds = q->adds;
    out->retries = q->retries;
}

/* ---- for tests ---- */

/* One record's own invariants; counts what the totals are checked against. */
static int check_rec(const struct kn_wq *q, const struct rec *r, size_t at, size_t n[5])
{
    if (bucket_of(r->hash, q->bits) != at || r->hash != hash_key(q, r->key) || find(q, r->key, r->hash) != r)
        return -1; /* misplaced, or a second record of one key */
    if ((r->flags & ~(unsigned)(WAITING | PROCESSING | DIRTY)) || ((r->flags & DIRTY) && !(r->flags & PROCESSING)) ||
        ((r->flags & WAITING) && (r->flags & PROCESSING)))
        return -1;
    if (r->heap_at != NOT_DELAYED && (r->heap_at >= q->heap_len || q->heap[r->heap_at] != r))
        return -1;
    if (!r->flags && r->heap_at == NOT_DELAYED && !r->failures)
        return -1; /* should have been freed */
    n[0]++;
    n[1] += (r->flags & WAITING) != 0;
    n[2] += (r->flags & PROCESSING) != 0;
    n[3] += (r->flags & WAITING) && r->heap_at != NOT_DELAYED;
    n[4] += r->heap_at != NOT_DELAYED;
    return 0;
}

int kn_wq_check(const struct kn_wq *q, size_t *records)
{
    size_t n[5] = { 0, 0, 0, 0, 0 }, len = 0;
    const struct rec *r, *last = NULL;
    for (size_t i = 0; i < (size_t)1 << q->bits; i++)
        for (r = q->buckets[i]; r; r = r->chain)
            if (n[0] > q->count || check_rec(q, r, i, n) < 0)
                return -1;
    if (n[0] != q->count || n[1] != q->depth || n[2] != q->processing || n[3] != q->both || n[4] != q->heap_len)
        return -1;
    if (q->count > ((size_t)1 << q->bits) || q->bits < MIN_BITS)
        return -1;
    for (r = q->head; r && len <= q->depth; last = r, r = r->next, len++)
        if (!(r->flags & WAITING))
            return -1;
    if (len != q->depth || q->tail != last)
        return -1;
    if (q->heap_len > q->heap_cap)
        return -1;
    for (size_t i = 0; i < q->heap_len; i++)
        if (q->heap[i]->heap_at != i || (i > 0 && before(q->heap[i], q->heap[(i - 1) / 2])))
            return -1;
    if (q->shut && (q->heap_len || (!q->drain && q->depth)))
        return -1;
    if (records)
        *records = q->count;
    return 0;
}
