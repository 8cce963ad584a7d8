/* The event queue between the I/O thread and the Lua thread. Informers push
 * in order; the Lua thread pops and calls handlers. Unbounded, like
 * client-go's processorListener buffer, so a slow callback never stalls a
 * watch. An eventfd turns readable while events wait, for outside loops. */
#ifndef KN_QUEUE_H
#define KN_QUEUE_H

#include <stddef.h>

#include "kn_obj.h"

enum kn_qtype {
    KN_Q_ADD, KN_Q_UPDATE, KN_Q_DELETE, /* informer notifications */
    KN_Q_SYNCED,                        /* the initial list's notifications are all before this */
    KN_Q_RAW,                           /* a raw watch event: raw_type, obj (may be NULL) */
    KN_Q_ERROR,                         /* a background failure: message */
    KN_Q_REPLY                          /* a background request's answer: source is its id, payload */
};

struct kn_qevent {
    struct kn_qevent *next;
    enum kn_qtype type;
    unsigned long source;      /* the informer or watch that produced it */
    unsigned long long seq;    /* per-source, increasing */
    struct kn_obj *old, *obj;  /* references the event owns */
    int final_state_unknown;   /* DELETE after a relist: the object vanished unseen */
    char raw_type[12];         /* ADDED, MODIFIED, DELETED, BOOKMARK, EXPIRED */
    char rv[64];
    char *message;             /* ERROR: malloc'd */
    void *payload;             /* REPLY: the producer's, freed with payload_free */
    void (*payload_free)(void *payload);
};

struct kn_queue;

struct kn_queue *kn_queue_new(void);
struct kn_queue *kn_queue_ref(struct kn_queue *q);
void kn_queue_unref(struct kn_queue *q);

/* Takes ownership of ev. */
void kn_queue_push(struct kn_queue *q, struct kn_qevent *ev);
/* The oldest event, or NULL. The caller hands it back with kn_queue_done
 * (or frees it with kn_qevent_free). */
struct kn_qevent *kn_queue_pop(struct kn_queue *q);
/* Hands back a popped event once used: it is freed on the producer's thread
 * at its next push, or by a later pop that finds the queue empty. */
void kn_queue_done(struct kn_queue *q, struct kn_qevent *ev);
/* Waits up to timeout_ms (-1: forever) for an event; 1 if one waits, 0 on
 * timeout or when a signal interrupted the wait. */
int kn_queue_wait(struct kn_queue *q, int timeout_ms);
/* Drops the waiting events of one source (a stopped or cleared informer). */
void kn_queue_drop(struct kn_queue *q, unsigned long source);
size_t kn_queue_length(struct kn_queue *q, unsigned long source); /* source 0: all */
/* Calls fn(ud, ev) for each waiting event of one source, oldest first, under
 * the queue's locks (fn must not touch the queue). Called on the producer's
 * thread, it sees exactly what that thread has pushed and the consumer has
 * not popped (an informer's index reads its pending changes this way). */
void kn_queue_each(struct kn_queue *q, unsigned long source, void (*fn)(void *ud, const struct kn_qevent *ev),
                   void *ud);
int kn_queue_fd(struct kn_queue *q);

struct kn_qevent *kn_qevent_new(enum kn_qtype type, unsigned long source);
void kn_qevent_free(struct kn_qevent *ev);

#endif
