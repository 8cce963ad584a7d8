/* kn_queue: the I/O thread pushes, the Lua thread pops in batches. Order,
 * drop and length must see both the waiting batch and what came in since,
 * and the eventfd must be readable exactly while something waits. Spent
 * events go back to be freed by the producer, or by an idle consumer. */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

#include "alloc_fail.h"
#include "kn_queue.h"
#include "test.h"

static int readable(struct kn_queue *q)
{
    struct pollfd p = { kn_queue_fd(q), POLLIN, 0 };
    return poll(&p, 1, 0) == 1;
}

static void push(struct kn_queue *q, unsigned long source, unsigned long long seq)
{
    struct kn_qevent *ev = kn_qevent_new(KN_Q_UPDATE, source);
    ev->seq = seq;
    kn_queue_push(q, ev);
}

/* Pops one event; 1 if it is (source, seq). */
static int pop_is(struct kn_queue *q, unsigned long source, unsigned long long seq)
{
    struct kn_qevent *ev = kn_queue_pop(q);
    int ok = ev && ev->source == source && ev->seq == seq;
    kn_qevent_free(ev);
    return ok;
}

static void test_batches(void)
{
    struct kn_queue *q = kn_queue_new();
    CHECK(q && !readable(q) && kn_queue_pop(q) == NULL);
    push(q, 1, 1);
    push(q, 2, 1);
    push(q, 1, 2);
    CHECK(readable(q));
    CHECK(pop_is(q, 1, 1)); /* the batch (2, 1), (1, 2) now waits on the consumer's side */
    push(q, 2, 2);          /* and this one on the producer's */
    push(q, 1, 3);
    CHECK(kn_queue_length(q, 0) == 4);
    CHECK(kn_queue_length(q, 1) == 2 && kn_queue_length(q, 2) == 2);
    kn_queue_drop(q, 2);
    CHECK(kn_queue_length(q, 0) == 2 && kn_queue_length(q, 2) == 0);
    CHECK(readable(q));
    CHECK(pop_is(q, 1, 2));
    CHECK(readable(q)); /* (1, 3) is still on the producer's side */
    push(q, 3, 1);      /* after a drop, the tails must still be right */
    CHECK(pop_is(q, 1, 3));
    CHECK(pop_is(q, 3, 1));
    CHECK(!readable(q) && kn_queue_pop(q) == NULL && kn_queue_length(q, 0) == 0);
    /* dropping everything turns the fd off */
    push(q, 4, 1);
    CHECK(pop_is(q, 4, 1) && !readable(q));
    push(q, 5, 1);
    push(q, 5, 2);
    CHECK(pop_is(q, 5, 1));
    push(q, 5, 3);
    kn_queue_drop(q, 5);
    CHECK(!readable(q) && kn_queue_length(q, 0) == 0);
    push(q, 6, 1); /* and a push after it turns it on again */
    CHECK(readable(q) && pop_is(q, 6, 1));
    push(q, 7, 1); /* the queue frees what still waits */
    kn_queue_unref(q);
}

static void push_obj(struct kn_queue *q, unsigned long long seq, struct kn_obj *o)
{
    struct kn_qevent *ev = kn_qevent_new(KN_Q_UPDATE, 1);
    ev->seq = seq;
    ev->obj = o ? kn_obj_ref(o) : NULL;
    kn_queue_push(q, ev);
}

static int refs(struct kn_obj *o)
{
    return __atomic_load_n(&o->refs, __ATOMIC_ACQUIRE);
}

/* An event's objects stay alive until the event is freed: their reference
 * counts show where and when that happened. */
static void test_spent(void)
{
    static const char json[] = "{\"metadata\":{\"name\":\"x\"}}";
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct kn_err err = { 0, "", "" };
    struct kn_obj *o = kn_obj_new(json, sizeof json - 1, &norm, &err);
    struct kn_queue *q = kn_queue_new();
    struct kn_qevent *ev;
    CHECK(o && q && refs(o) == 1);
    push_obj(q, 1, o);
    push_obj(q, 2, o);
    CHECK(refs(o) == 3);
    kn_queue_done(q, kn_queue_pop(q)); /* takes the batch (1, 2) */
    kn_queue_done(q, kn_queue_pop(q));
    CHECK(refs(o) == 3);               /* spent, not freed by the consumer */
    push_obj(q, 3, NULL);
    CHECK(refs(o) == 3);               /* not yet handed back: no batch taken since */
    ev = kn_queue_pop(q);              /* takes (3) and hands the spent ones back */
    CHECK(ev && ev->seq == 3 && refs(o) == 3);
    kn_queue_done(q, ev);
    push_obj(q, 4, NULL);              /* the producer frees them */
    CHECK(refs(o) == 1);
    kn_queue_done(q, kn_queue_pop(q));
    push_obj(q, 5, o);
    kn_queue_done(q, kn_queue_pop(q)); /* (4) and (5): spent */
    CHECK(refs(o) == 2);
    CHECK(kn_queue_pop(q) == NULL);    /* idle: the consumer frees them itself */
    CHECK(refs(o) == 1);
    /* a long batch hands them back in groups, not all at its end */
    for (int i = 0; i < 300; i++)
        push_obj(q, 10 + i, o);
    for (int i = 0; i < 300; i++)
        kn_queue_done(q, kn_queue_pop(q));
    CHECK(refs(o) == 301);
    push_obj(q, 400, NULL);
    CHECK(refs(o) > 1 && refs(o) < 301); /* a group went back and was freed */
    kn_queue_done(q, kn_queue_pop(q));
    kn_queue_done(q, kn_queue_pop(q)); /* NULL: nothing, and no harm */
    CHECK(refs(o) == 1);
    push_obj(q, 500, o);
    kn_queue_done(q, kn_queue_pop(q));
    kn_queue_unref(q);                 /* frees what was spent, too */
    CHECK(refs(o) == 1);
    kn_obj_unref(o);
}

/* Allocation failure: only kn_queue_new and kn_qevent_new allocate, and
 * they say so with NULL; a push, pop, drop or unref never allocates, so an
 * event once made can always be queued (the reflector makes the event before
 * it changes the store, and never has to undo a change it could not announce). */
struct oom_queue {
    struct kn_obj *o;
    int bad;
};

static void queue_oom_scenario(void *arg, unsigned long n)
{
    struct oom_queue *t = arg;
    struct kn_queue *q;
    unsigned long long pushed[10];
    int npushed = 0, k = 0;
    struct kn_qevent *ev;
    af_arm(n);
    q = kn_queue_new();
    if (!q) {
        af_disarm();
        return;
    }
    for (int i = 0; i < 10; i++) {
        ev = kn_qevent_new(KN_Q_UPDATE, 1 + (i % 3 == 2)); /* every third from source 2, dropped below */
        if (!ev)
            continue;
        ev->seq = (unsigned long long)i;
        ev->obj = kn_obj_ref(t->o);
        kn_queue_push(q, ev);
        if (i % 3 != 2)
            pushed[npushed++] = (unsigned long long)i;
    }
    kn_queue_drop(q, 2);
    while ((ev = kn_queue_pop(q))) {
        t->bad += k >= npushed || ev->seq != pushed[k];
        k++;
        kn_queue_done(q, ev);
    }
    kn_queue_unref(q);
    af_disarm();
    t->bad += k != npushed || refs(t->o) != 1;
}

static void test_oom(void)
{
    static const char json[] = "{\"metadata\":{\"name\":\"x\"}}";
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct oom_queue t = { kn_obj_new(json, sizeof json - 1, &norm, NULL), 0 };
    unsigned long total = af_every(queue_oom_scenario, &t);
    CHECK_MSG(t.bad == 0, "%d mismatches under allocation failure", t.bad);
    CHECK_MSG(total == 11, "the scenario made %lu allocations, want 11 (the queue and ten events)", total);
    kn_obj_unref(t.o);
}

#define N_EVENTS 200000

static void *producer(void *arg)
{
    struct kn_queue *q = arg;
    for (unsigned long long i = 1; i <= N_EVENTS; i++)
        push(q, 1 + (i & 1), i);
    return NULL;
}

/* The two threads at full speed: nothing lost, nothing reordered. */
static void test_threads(void)
{
    struct kn_queue *q = kn_queue_new();
    pthread_t t;
    unsigned long long want = 1, wrong = 0;
    pthread_create(&t, NULL, producer, q);
    while (want <= N_EVENTS) {
        struct kn_qevent *ev = kn_queue_pop(q);
        if (!ev) {
            kn_queue_wait(q, 1000);
            continue;
        }
        wrong += ev->seq != want || ev->source != 1 + (want & 1);
        want++;
        kn_queue_done(q, ev);
    }
    pthread_join(t, NULL);
    CHECK(wrong == 0);
    CHECK(!readable(q) && kn_queue_length(q, 0) == 0);
    kn_queue_unref(q);
}

void test_queue(void)
{
    test_batches();
    test_spent();
    test_oom();
    test_threads();
}
