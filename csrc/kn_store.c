/* The store: objects by key in an open-addressing table, plus a namespace
 * index so listing one namespace costs that namespace, not the cluster.
 *
 * Keys: linear probing over a power-of-two table of 16-byte slots
 * (object, 32-bit hash, position in the namespace array). The stored hash
 * lets a probe skip most strcmp calls and lets a resize rehash without
 * touching the objects. Deletion shifts later entries back instead of
 * leaving tombstones, so a table that saw many deletes probes as fast as a
 * fresh one and can shrink.
 *
 * Namespaces: a second open-addressing table from namespace to an array of
 * the objects in it; each key slot remembers its position there, so a delete
 * is a swap-remove in O(1). Cluster-scoped objects live under "". An empty
 * namespace is dropped at once: namespaces come and go in a cluster, and the
 * index must not keep a record of every one ever seen.
 *
 * Sizes: a table grows past 3/4 full and shrinks below 1/4 full, each time
 * to the size that leaves it at most half full (so 3/8 to 3/4 full while
 * growing); the gap between the thresholds keeps a put/delete at the
 * boundary from resizing every time. 3/4 bounds linear probing's misses to
 * a few slots on average. A namespace array doubles when full and halves
 * below 1/4. An empty store holds no table at all, which is what deleting
 * the last object and kn_store_clear return to.
 *
 * Failure: the contract's kn_store_put has no error return. When memory runs
 * out, the store keeps the objects it had (a table may have grown),
 * kn_store_put returns NULL with errno set to ENOMEM, and the caller still
 * owns its reference; a caller that must know sets errno to 0 before the
 * call (as with strtol). A replace within one namespace never allocates,
 * and a delete never fails.
 *
 * kn_store_bytes counts requested bytes (structs, slot arrays, namespace
 * arrays and names), not the allocator's rounding or headers. */
#include "kn_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS 16u
#define MIN_NS_SLOTS 8u
#define MIN_NS_OBJS 4u
/* Slot counts stay below this, so a 32-bit hash and mask cover them. */
#define MAX_SLOTS (1u << 31)

struct slot {
    struct kn_obj *obj; /* NULL: empty */
    uint32_t hash;
    uint32_t nspos;     /* index of obj in its namespace's array */
};

struct ns_slot {
    char *ns;           /* NULL: empty */
    uint32_t hash;
    uint32_t n, cap;
    struct kn_obj **objs;
};

struct kn_store {
    pthread_mutex_t mu;
    uint64_t seed;      /* per store, so one store's keys say nothing about another's layout */
    struct slot *slots;
    uint32_t cap, count;
    struct ns_slot *ns;
    uint32_t ns_cap, ns_count;
    size_t obj_mem;     /* sum of obj->mem */
    size_t index_mem;   /* namespace arrays and names */
};

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finalizer: FNV-1a's low bits are weak for a power-of-two mask. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint32_t hash_str(const struct kn_store *s, const char *p)
{
    uint64_t h = 0xcbf29ce484222325ull ^ s->seed;
    for (; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 0x100000001b3ull;
    }
    h = mix64(h);
    return (uint32_t)(h ^ (h >> 32));
}

/* The smallest power of two >= min that holds n at most half full; 0 when
 * that would pass MAX_SLOTS. */
static uint32_t size_for(uint32_t n, uint32_t min)
{
    uint64_t cap = min;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    return cap > MAX_SLOTS ? 0 : (uint32_t)cap;
}

static int over_full(uint32_t count, uint32_t cap)
{
    return (uint64_t)count * 4 > (uint64_t)cap * 3;
}

static int under_full(uint32_t count, uint32_t cap, uint32_t min)
{
    return cap > min && (uint64_t)count * 4 < cap;
}

/* ---- the key table ---- */

/* Index of key's slot, or of the empty slot where it would go. */
static uint32_t key_find(const struct kn_store *s, const char *key, uint32_t hash)
{
    uint32_t mask = s->cap - 1, i = hash & mask;
    while (s->slots[i].obj && (s->slots[i].hash != hash || strcmp(s->slots[i].obj->key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

static int key_resize(struct kn_store *s, uint32_t cap)
{
    struct slot *old = s->slots, *slots = calloc(cap, sizeof *slots);
    uint32_t old_cap = s->cap;
    if (!slots)
        return -1;
    for (uint32_t i = 0; i < old_cap; i++) {
        uint32_t j = old[i].hash & (cap - 1);
        if (!old[i].obj)
            continue;
        while (slots[j].obj)
            j = (j + 1) & (cap - 1);
        slots[j] = old[i];
    }
    free(old);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

/* Empties slot i and pulls later entries of the probe run back over the
 * gap, so lookups never need tombstones. */
static void key_remove_at(struct kn_store *s, uint32_t i)
{
    uint32_t mask = s->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->slots[j].obj)
            break;
        /* An entry may fill the gap only when its home is not inside (i, j]. */
        if (((j - (s->slots[j].hash & mask)) & mask) >= ((j - i) & mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].obj = NULL;
    s->count--;
}

/* ---- the namespace index ---- */

static uint32_t ns_find(const struct kn_store *s, const char *ns, uint32_t hash)
{
    uint32_t mask = s->ns_cap - 1, i = hash & mask;
    while (s->ns[i].ns && (s->ns[i].hash != hash || strcmp(s->ns[i].ns, ns) != 0))
        i = (i + 1) & mask;
    return i;
}

static int ns_resize(struct kn_store *s, uint32_t cap)
{
    struct ns_slot *old = s->ns, *tab = calloc(cap, sizeof *tab);
    uint32_t old_cap = s->ns_cap;
    if (!tab)
        return -1;
    for (uint32_t i = 0; i < old_cap; i++) {
        uint32_t j = old[i].hash & (cap - 1);
        if (!old[i].ns)
            continue;
        while (tab[j].ns)
            j = (j + 1) & (cap - 1);
        tab[j] = old[i];
    }
    free(old);
    s->ns = tab;
    s->ns_cap = cap;
    return 0;
}

static void ns_remove_at(struct kn_store *s, uint32_t i)
{
    uint32_t mask = s->ns_cap - 1, j = i;
    s->index_mem -= strlen(s->ns[i].ns) + 1 + (size_t)s->ns[i].cap * sizeof(struct kn_obj *);
    free(s->ns[i].ns);
    free(s->ns[i].objs);
    for (;;) {
        j = (j + 1) & mask;
        if (!s->ns[j].ns)
            break;
        if (((j - (s->ns[j].hash & mask)) & mask) >= ((j - i) & mask)) {
            s->ns[i] = s->ns[j];
            i = j;
        }
    }
    memset(&s->ns[i], 0, sizeof s->ns[i]);
    s->ns_count--;
    if (s->ns_count == 0) {
        free(s->ns);
        s->ns = NULL;
        s->ns_cap = 0;
    } else if (under_full(s->ns_count, s->ns_cap, MIN_NS_SLOTS)) {
        (void)ns_resize(s, size_for(s->ns_count, MIN_NS_SLOTS)); /* a failed shrink only keeps memory */
    }
}

/* The namespace slot for ns with room for one more object, creating it when
 * absent; -1 on ENOMEM with the index's content unchanged. */
static int ns_reserve(struct kn_store *s, const char *ns, uint32_t *at)
{
    uint32_t hash = hash_str(s, ns), i = 0;
    struct ns_slot *e = NULL;
    if (s->ns) {
        i = ns_find(s, ns, hash);
        e = &s->ns[i];
    }
    if (!e || !e->ns) {
        size_t len = strlen(ns) + 1;
        char *name;
        struct kn_obj **objs;
        if (!s->ns || over_full(s->ns_count + 1, s->ns_cap)) {
            uint32_t cap = size_for(s->ns_count + 1, MIN_NS_SLOTS);
            if (!cap || ns_resize(s, cap) < 0)
                return -1;
            i = ns_find(s, ns, hash);
            e = &s->ns[i];
        }
        name = malloc(len);
        objs = malloc(MIN_NS_OBJS * sizeof *objs);
        if (!name || !objs) {
            free(name);
            free(objs);
            return -1;
        }
        memcpy(name, ns, len);
        *e = (struct ns_slot){ .ns = name, .hash = hash, .cap = MIN_NS_OBJS, .objs = objs };
        s->ns_count++;
        s->index_mem += len + MIN_NS_OBJS * sizeof *objs;
    } else if (e->n == e->cap) {
        struct kn_obj **objs;
        if (e->cap > UINT32_MAX / 2)
            return -1;
        objs = realloc(e->objs, (size_t)e->cap * 2 * sizeof *objs);
        if (!objs)
            return -1;
        e->objs = objs;
        s->index_mem += (size_t)e->cap * sizeof *objs;
        e->cap *= 2;
    }
    *at = i;
    return 0;
}

/* Takes the object at pos out of namespace slot i, moving the last one into
 * its place (and telling that one's key slot where it went). */
static void ns_take(struct kn_store *s, uint32_t i, uint32_t pos)
{
    struct ns_slot *e = &s->ns[i];
    uint32_t last = --e->n;
    if (pos != last) {
        struct kn_obj *moved = e->objs[last];
        e->objs[pos] = moved;
        s->slots[key_find(s, moved->key, hash_str(s, moved->key))].nspos = pos;
    }
    if (e->n == 0) {
        ns_remove_at(s, i);
    } else if (e->cap > MIN_NS_OBJS && (size_t)e->n * 4 < e->cap) {
        struct kn_obj **objs = realloc(e->objs, (size_t)(e->cap / 2) * sizeof *objs);
        if (objs) { /* a failed shrink only keeps memory */
            e->objs = objs;
            s->index_mem -= (size_t)(e->cap / 2) * sizeof *objs;
            e->cap /= 2;
        }
    }
}

static void ns_unindex(struct kn_store *s, const struct kn_obj *obj, uint32_t pos)
{
    ns_take(s, ns_find(s, obj->ns, hash_str(s, obj->ns)), pos);
}

/* ---- the contract ---- */

struct kn_store *kn_store_new(void)
{
    struct kn_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->seed = mix64((uint64_t)(uintptr_t)s);
    return s;
}

/* Detaches every table, leaving s empty; the caller frees them outside the
 * lock with drop_tables. */
struct tables {
    struct slot *slots;
    uint32_t cap;
    struct ns_slot *ns;
    uint32_t ns_cap;
};

static struct tables detach(struct kn_store *s)
{
    struct tables t = { s->slots, s->cap, s->ns, s->ns_cap };
    s->slots = NULL;
    s->ns = NULL;
    s->cap = s->count = s->ns_cap = s->ns_count = 0;
    s->obj_mem = s->index_mem = 0;
    return t;
}

static void drop_tables(struct tables t)
{
    for (uint32_t i = 0; i < t.cap; i++)
        kn_obj_unref(t.slots[i].obj);
    for (uint32_t i = 0; i < t.ns_cap; i++) {
        free(t.ns[i].ns);
        free(t.ns[i].objs);
    }
    free(t.slots);
    free(t.ns);
}

void kn_store_free(struct kn_store *s)
{
    if (!s)
        return;
    drop_tables(detach(s));
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void kn_store_clear(struct kn_store *s)
{
    struct tables t;
    pthread_mutex_lock(&s->mu);
    t = detach(s);
    pthread_mutex_unlock(&s->mu);
    /* Freeing 100k objects takes a while; readers need not wait for it. */
    drop_tables(t);
}

/* Replaces the object in slot i by obj; returns the old one. */
static struct kn_obj *replace(struct kn_store *s, uint32_t i, struct kn_obj *obj)
{
    struct slot *sl = &s->slots[i];
    struct kn_obj *old = sl->obj;
    if (strcmp(old->ns, obj->ns) == 0) {
        s->ns[ns_find(s, obj->ns, hash_str(s, obj->ns))].objs[sl->nspos] = obj;
    } else {
        /* Only a key that does not match its namespace gets here; keep the index true anyway. */
        uint32_t at, old_pos = sl->nspos;
        if (ns_reserve(s, obj->ns, &at) < 0) {
            errno = ENOMEM;
            return NULL;
        }
        sl->nspos = s->ns[at].n;
        s->ns[at].objs[s->ns[at].n++] = obj;
        ns_unindex(s, old, old_pos);
    }
    sl->obj = kn_obj_ref(obj);
    s->obj_mem += obj->mem;
    s->obj_mem -= old->mem;
    return old;
}

static void insert(struct kn_store *s, uint32_t i, uint32_t hash, uint32_t at, struct kn_obj *obj)
{
    struct ns_slot *e = &s->ns[at];
    s->slots[i] = (struct slot){ .obj = kn_obj_ref(obj), .hash = hash, .nspos = e->n };
    e->objs[e->n++] = obj;
    s->count++;
    s->obj_mem += obj->mem;
}

/* A put that ran out of memory. The first put of an empty store may have
 * made a table before failing: an empty store holds none (and
 * kn_store_bytes says 0). */
static void put_failed(struct kn_store *s)
{
    if (s->count == 0) {
        free(s->slots);
        s->slots = NULL;
        s->cap = 0;
    }
    if (s->ns_count == 0) {
        free(s->ns);
        s->ns = NULL;
        s->ns_cap = 0;
    }
    errno = ENOMEM;
}

struct kn_obj *kn_store_put(struct kn_store *s, struct kn_obj *obj)
{
    struct kn_obj *old = NULL;
    uint32_t hash, i, at;
    if (!obj || !obj->key || !obj->ns) {
        errno = EINVAL;
        return NULL;
    }
    hash = hash_str(s, obj->key);
    pthread_mutex_lock(&s->mu);
    if (s->slots) {
        i = key_find(s, obj->key, hash);
        if (s->slots[i].obj) {
            old = replace(s, i, obj);
            goto out;
        }
    }
    if (!s->slots || over_full(s->count + 1, s->cap)) {
        uint32_t cap = size_for(s->count + 1, MIN_SLOTS);
        if (!cap || key_resize(s, cap) < 0) {
            put_failed(s);
            goto out;
        }
    }
    /* After the key table grew: a failure here leaves a bigger, still valid table. */
    if (ns_reserve(s, obj->ns, &at) < 0) {
        put_failed(s);
        goto out;
    }
    insert(s, key_find(s, obj->key, hash), hash, at, obj);
out:
    pthread_mutex_unlock(&s->mu);
    return old;
}

struct kn_obj *kn_store_delete(struct kn_store *s, const char *key)
{
    struct kn_obj *obj = NULL;
    uint32_t hash = hash_str(s, key), i;
    pthread_mutex_lock(&s->mu);
    if (!s->slots)
        goto out;
    i = key_find(s, key, hash);
    obj = s->slots[i].obj;
    if (!obj)
        goto out;
    /* Unindex first: the swap-remove looks up the moved key while obj's slot still holds it. */
    ns_unindex(s, obj, s->slots[i].nspos);
    key_remove_at(s, i);
    s->obj_mem -= obj->mem;
    if (s->count == 0) {
        free(s->slots); /* back to the empty store's size */
        s->slots = NULL;
        s->cap = 0;
    } else if (under_full(s->count, s->cap, MIN_SLOTS)) {
        (void)key_resize(s, size_for(s->count, MIN_SLOTS)); /* a failed shrink only keeps memory */
    }
out:
    pthread_mutex_unlock(&s->mu);
    return obj; /* the store's reference, now the caller's */
}

struct kn_obj *kn_store_get(struct kn_store *s, const char *key)
{
    struct kn_obj *obj = NULL;
    uint32_t hash = hash_str(s, key);
    pthread_mutex_lock(&s->mu);
    if (s->slots) {
        obj = s->slots[key_find(s, key, hash)].obj;
        if (obj)
            kn_obj_ref(obj); /* under the lock: a delete may drop the store's reference right after */
    }
    pthread_mutex_unlock(&s->mu);
    return obj;
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(struct kn_obj *const *)a)->key, (*(struct kn_obj *const *)b)->key);
}

/* An empty result is a one-element allocation, so NULL always means ENOMEM. */
struct kn_obj **kn_store_list(struct kn_store *s, const char *ns, size_t *n)
{
    struct kn_obj **out = NULL;
    size_t k = 0;
    uint32_t hash = ns ? hash_str(s, ns) : 0;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    if (ns) {
        struct ns_slot *e = s->ns ? &s->ns[ns_find(s, ns, hash)] : NULL;
        size_t want = e && e->ns ? e->n : 0;
        out = malloc((want ? want : 1) * sizeof *out);
        for (; out && k < want; k++)
            out[k] = kn_obj_ref(e->objs[k]);
    } else {
        out = malloc((s->count ? s->count : 1) * sizeof *out);
        for (uint32_t i = 0; out && i < s->ns_cap; i++)
            for (uint32_t j = 0; j < s->ns[i].n; j++)
                out[k++] = kn_obj_ref(s->ns[i].objs[j]);
    }
    pthread_mutex_unlock(&s->mu);
    if (!out) {
        errno = ENOMEM;
        return NULL;
    }
    /* Objects are immutable, so their keys can be sorted without the lock. */
    qsort(out, k, sizeof *out, by_key);
    *n = k;
    return out;
}

void kn_store_release(struct kn_obj **objs, size_t n)
{
    for (size_t i = 0; objs && i < n; i++)
        kn_obj_unref(objs[i]);
    free(objs);
}

size_t kn_store_count(struct kn_store *s)
{
    size_t n;
    pthread_mutex_lock(&s->mu);
    n = s->count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t kn_store_bytes(struct kn_store *s)
{
    size_t b;
    pthread_mutex_lock(&s->mu);
    /* the fixed struct is not counted: an empty store reports 0 bytes, so a
     * cleared informer shows nothing held in kinformer.stats() */
    b = (size_t)s->cap * sizeof *s->slots + (size_t)s->ns_cap * sizeof *s->ns + s->index_mem + s->obj_mem;
    pthread_mutex_unlock(&s->mu);
    return b;
}
