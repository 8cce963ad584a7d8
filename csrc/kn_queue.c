#include "kn_queue.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Two lists: the I/O thread appends to `in` under mu; the Lua thread takes
 * the whole of `in` at once into `out` and pops from there under cmu, which
 * the I/O thread never takes. One lock handoff per batch instead of one per
 * event: locking both sides for every event made the threads wake each other
 * (futex) for a good part of an event's cost. Lock order: cmu, then mu.
 *
 * Spent events go back the same way: the I/O thread made them (and their
 * objects) in its malloc arena, and a free() from the Lua thread takes that
 * arena's lock while the I/O thread allocates there: both threads spent a
 * good part of an update's cost waking each other in glibc. The Lua thread
 * gathers them (`spent`, under cmu), hands them over in groups and with
 * each batch it takes (`returned`, under mu), and the I/O thread frees them
 * at its next push. An idle queue has no pushes coming: the Lua thread
 * then frees what it holds itself, when the arena is quiet. */
struct list {
    struct kn_qevent *head, *tail;
    size_t len;
};

struct kn_queue {
    int refs;
    pthread_mutex_t mu, cmu;
    struct list in, out; /* in: under mu; out: under cmu */
    struct kn_qevent *spent, *spent_tail; /* done, under cmu */
    int nspent;
    struct kn_qevent *returned; /* done, under mu: for the producer to free */
    int efd;             /* readable while either list holds events */
};

struct kn_queue *kn_queue_new(void)
{
    struct kn_queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        free(q);
        return NULL;
    }
    q->refs = 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->cmu, NULL);
    return q;
}

struct kn_queue *kn_queue_ref(struct kn_queue *q)
{
    __atomic_add_fetch(&q->refs, 1, __ATOMIC_ACQ_REL);
    return q;
}

static void free_list(struct kn_qevent *ev)
{
    while (ev) {
        struct kn_qevent *next = ev->next;
        kn_qevent_free(ev);
        ev = next;
    }
}

void kn_queue_unref(struct kn_queue *q)
{
    if (!q || __atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free_list(q->in.head);
    free_list(q->out.head);
    free_list(q->spent);
    free_list(q->returned);
    close(q->efd);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->cmu);
    free(q);
}

struct kn_qevent *kn_qevent_new(enum kn_qtype type, unsigned long source)
{
    struct kn_qevent *ev = calloc(1, sizeof *ev);
    if (ev) {
        ev->type = type;
        ev->source = source;
    }
    return ev;
}

void kn_qevent_free(struct kn_qevent *ev)
{
    if (!ev)
        return;
    kn_obj_unref(ev->old);
    kn_obj_unref(ev->obj);
    free(ev->message);
    if (ev->payload_free)
        ev->payload_free(ev->payload);
    free(ev);
}

/* The eventfd counts nothing: it is 1 while events wait, 0 otherwise. */
static void signal_fd(struct kn_queue *q, int on)
{
    uint64_t v = 1;
    if (on) {
        while (write(q->efd, &v, sizeof v) < 0 && errno == EINTR)
            ;
    } else {
        while (read(q->efd, &v, sizeof v) < 0 && errno == EINTR)
            ;
    }
}

void kn_queue_push(struct kn_queue *q, struct kn_qevent *ev)
{
    struct kn_qevent *returned;
    ev->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->in.tail)
        q->in.tail->next = ev;
    else
        q->in.head = ev;
    q->in.tail = ev;
    if (q->in.len++ == 0)
        signal_fd(q, 1); /* may be on already (out not empty): harmless */
    returned = q->returned;
    q->returned = NULL;
    pthread_mutex_unlock(&q->mu);
    free_list(returned);
}

/* Moves the spent events to `returned` (caller holds cmu and mu). */
static void hand_back(struct kn_queue *q)
{
    if (q->spent) {
        q->spent_tail->next = q->returned;
        q->returned = q->spent;
        q->spent = q->spent_tail = NULL;
        q->nspent = 0;
    }
}

struct kn_qevent *kn_queue_pop(struct kn_queue *q)
{
    struct kn_qevent *ev, *idle = NULL;
    pthread_mutex_lock(&q->cmu);
    if (!q->out.head) {
        pthread_mutex_lock(&q->mu);
        q->out = q->in;
        memset(&q->in, 0, sizeof q->in);
        hand_back(q);
        if (!q->out.head) {
            /* nothing came: the producer is idle, so free here and now
             * rather than hold them until its next push */
            idle = q->returned;
            q->returned = NULL;
        }
        pthread_mutex_unlock(&q->mu);
    }
    ev = q->out.head;
    if (ev) {
        q->out.head = ev->next;
        if (!q->out.head)
            q->out.tail = NULL;
        q->out.len--;
        ev->next = NULL;
        if (!q->out.head) { /* the last of the batch: off unless more came in */
            pthread_mutex_lock(&q->mu);
            if (!q->in.head)
                signal_fd(q, 0);
            pthread_mutex_unlock(&q->mu);
        }
    }
    pthread_mutex_unlock(&q->cmu);
    free_list(idle);
    return ev;
}

/* Spent events go back in groups, one lock of mu per group, so that a long
 * batch does not keep all its old objects until its end. */
#define SPENT_GROUP 256

void kn_queue_done(struct kn_queue *q, struct kn_qevent *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&q->cmu);
    ev->next = q->spent;
    q->spent = ev;
    if (!q->spent_tail)
        q->spent_tail = ev;
    if (++q->nspent >= SPENT_GROUP) {
        pthread_mutex_lock(&q->mu);
        hand_back(q);
        pthread_mutex_unlock(&q->mu);
    }
    pthread_mutex_unlock(&q->cmu);
}

int kn_queue_wait(struct kn_queue *q, int timeout_ms)
{
    struct pollfd p = { q->efd, POLLIN, 0 };
    int rc;
    /* A signal ends the wait (EINTR: nothing waits): the caller returns to
     * Lua, where lua.c's SIGINT hook raises "interrupted!" at once instead
     * of after the whole timeout. */
    rc = poll(&p, 1, timeout_ms);
    return rc > 0;
}

/* Unlinks l's events of source onto *dropped. */
static void drop_from(struct list *l, unsigned long source, struct kn_qevent **dropped)
{
    struct kn_qevent **p;
    l->tail = NULL;
    for (p = &l->head; *p;) {
        struct kn_qevent *ev = *p;
        if (ev->source == source) {
            *p = ev->next;
            ev->next = *dropped;
            *dropped = ev;
            l->len--;
        } else {
            l->tail = ev;
            p = &ev->next;
        }
    }
}

void kn_queue_drop(struct kn_queue *q, unsigned long source)
{
    struct kn_qevent *dropped = NULL;
    pthread_mutex_lock(&q->cmu);
    pthread_mutex_lock(&q->mu);
    drop_from(&q->out, source, &dropped);
    drop_from(&q->in, source, &dropped);
    if (!q->in.head && !q->out.head && dropped)
        signal_fd(q, 0);
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_unlock(&q->cmu);
    free_list(dropped);
}

size_t kn_queue_length(struct kn_queue *q, unsigned long source)
{
    size_t n = 0;
    pthread_mutex_lock(&q->cmu);
    pthread_mutex_lock(&q->mu);
    if (!source)
        n = q->in.len + q->out.len;
    else
        for (int i = 0; i < 2; i++)
            for (struct kn_qevent *ev = i ? q->in.head : q->out.head; ev; ev = ev->next)
                n += ev->source == source;
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_unlock(&q->cmu);
    return n;
}

void kn_queue_each(struct kn_queue *q, unsigned long source, void (*fn)(void *ud, const struct kn_qevent *ev),
                   void *ud)
{
    pthread_mutex_lock(&q->cmu);
    pthread_mutex_lock(&q->mu);
    /* out holds the older events: the consumer moved them there from in */
    for (int i = 0; i < 2; i++)
        for (struct kn_qevent *ev = i ? q->in.head : q->out.head; ev; ev = ev->next)
            if (ev->source == source)
                fn(ud, ev);
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_unlock(&q->cmu);
}

int kn_queue_fd(struct kn_queue *q)
{
    return q->efd;
}
