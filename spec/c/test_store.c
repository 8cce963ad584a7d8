/* kn_store: the informer's object cache (keys, namespace index, memory
 * accounting, thread safety). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc_fail.h"
#include "kn_store.h"
#include "test.h"

/* Builds an object by hand, in one allocation as kn_obj_new lays it out, so
 * the store is tested apart from JSON normalization; the real
 * kn_obj_ref/kn_obj_unref manage it. mem is the allocation's size. */
static struct kn_obj *mk(const char *ns, const char *name, const char *rv, const char *json)
{
    char key[512];
    const char *str[6];
    size_t len[6], total = sizeof(struct kn_obj);
    struct kn_obj *o;
    char *p;
    snprintf(key, sizeof key, "%s%s%s", ns, *ns ? "/" : "", name);
    str[0] = key, str[1] = ns, str[2] = name, str[3] = "", str[4] = rv, str[5] = json;
    for (int i = 0; i < 6; i++)
        total += len[i] = strlen(str[i]) + 1;
    o = malloc(total);
    if (!o)
        abort();
    memset(o, 0, sizeof *o);
    p = (char *)(o + 1);
    for (int i = 0; i < 6; i++) {
        memcpy(p, str[i], len[i]);
        str[i] = p;
        p += len[i];
    }
    o->refs = 1;
    o->len = len[5] - 1;
    o->mem = total;
    o->key = str[0], o->ns = str[1], o->name = str[2], o->uid = str[3], o->rv = str[4];
    o->json = (char *)str[5];
    return o;
}

static int refs(struct kn_obj *o)
{
    return __atomic_load_n(&o->refs, __ATOMIC_ACQUIRE);
}

/* Lists ns and checks the keys, in order, against want (NULL-terminated). */
static void check_list(struct kn_store *s, const char *ns, const char *const *want)
{
    size_t n = 99, k = 0;
    struct kn_obj **objs = kn_store_list(s, ns, &n);
    CHECK_MSG(objs != NULL, "list(%s) returned NULL", ns ? ns : "NULL");
    while (want[k])
        k++;
    CHECK_MSG(n == k, "list(%s): %zu objects, want %zu", ns ? ns : "NULL", n, k);
    for (size_t i = 0; i < n && i < k; i++)
        CHECK_MSG(strcmp(objs[i]->key, want[i]) == 0, "list(%s)[%zu] is %s, want %s", ns ? ns : "NULL", i,
                  objs[i]->key, want[i]);
    kn_store_release(objs, n);
}

static void test_put_get_replace(void)
{
    struct kn_store *s = kn_store_new();
    struct kn_obj *a = mk("default", "a", "1", "{\"v\":1}"), *a2 = mk("default", "a", "2", "{\"v\":2}");
    struct kn_obj *got, *old;

    CHECK(s != NULL);
    CHECK(kn_store_count(s) == 0);
    CHECK(kn_store_get(s, "default/a") == NULL);
    CHECK(kn_store_put(s, a) == NULL);
    CHECK(refs(a) == 2); /* ours and the store's */
    CHECK(kn_store_count(s) == 1);

    got = kn_store_get(s, "default/a");
    CHECK(got == a);
    CHECK(refs(a) == 3);
    kn_obj_unref(got);
    CHECK(kn_store_get(s, "default/b") == NULL);
    CHECK(kn_store_get(s, "a") == NULL); /* the cluster-scoped key of the same name is another key */

    /* Replace: the old object comes back with the store's reference. */
    old = kn_store_put(s, a2);
    CHECK(old == a);
    CHECK(refs(a) == 2);
    CHECK(refs(a2) == 2);
    kn_obj_unref(old);
    CHECK(refs(a) == 1);
    CHECK(kn_store_count(s) == 1);
    got = kn_store_get(s, "default/a");
    CHECK(got == a2);
    CHECK_STR(got ? got->rv : NULL, "2");
    kn_obj_unref(got);
    check_list(s, "default", (const char *const[]){ "default/a", NULL });

    /* Putting the stored object again hands back the store's previous reference. */
    old = kn_store_put(s, a2);
    CHECK(old == a2);
    CHECK(refs(a2) == 3);
    kn_obj_unref(old);
    CHECK(refs(a2) == 2);

    CHECK(kn_store_put(s, NULL) == NULL);
    CHECK(kn_store_count(s) == 1);

    kn_store_free(s);
    CHECK(refs(a) == 1);
    CHECK(refs(a2) == 1);
    kn_obj_unref(a);
    kn_obj_unref(a2);
    kn_store_free(NULL);
}

static void test_delete(void)
{
    struct kn_store *s = kn_store_new();
    struct kn_obj *a = mk("ns1", "a", "1", "{}"), *b = mk("ns1", "b", "1", "{}"), *got;
    size_t empty = kn_store_bytes(s);

    kn_store_put(s, a);
    kn_store_put(s, b);
    CHECK(kn_store_delete(s, "ns1/zz") == NULL);
    CHECK(kn_store_delete(s, "") == NULL);
    got = kn_store_delete(s, "ns1/a");
    CHECK(got == a);
    CHECK(refs(a) == 2); /* ours and the one the store gave up */
    kn_obj_unref(got);
    CHECK(refs(a) == 1);
    CHECK(kn_store_get(s, "ns1/a") == NULL);
    CHECK(kn_store_delete(s, "ns1/a") == NULL);
    CHECK(kn_store_count(s) == 1);
    check_list(s, "ns1", (const char *const[]){ "ns1/b", NULL });

    kn_obj_unref(kn_store_delete(s, "ns1/b"));
    CHECK(kn_store_count(s) == 0);
    check_list(s, "ns1", (const char *const[]){ NULL });
    check_list(s, NULL, (const char *const[]){ NULL });
    CHECK(kn_store_bytes(s) == empty);
    /* An empty store on a new key: the tables come back. */
    kn_store_put(s, a);
    check_list(s, NULL, (const char *const[]){ "ns1/a", NULL });
    kn_store_free(s);
    kn_obj_unref(a);
    kn_obj_unref(b);
}

static void test_namespaces(void)
{
    static const char *const in[][2] = {
        { "kube-system", "coredns" }, { "default", "web-2" }, { "default", "web-10" }, { "", "node-b" },
        { "default", "api" },         { "b", "x" },           { "", "node-a" },         { "kube-system", "a" },
        { "default", "web-1" },       { "", "kube-system" }, /* a cluster-scoped name that is also a namespace */
    };
    struct kn_store *s = kn_store_new();
    struct kn_obj *o, **objs;
    size_t n = 7;

    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        o = mk(in[i][0], in[i][1], "1", "{}");
        CHECK(kn_store_put(s, o) == NULL);
        kn_obj_unref(o);
    }
    CHECK(kn_store_count(s) == 10);
    /* strcmp order: "web-10" before "web-2". */
    check_list(s, "default",
               (const char *const[]){ "default/api", "default/web-1", "default/web-10", "default/web-2", NULL });
    check_list(s, "kube-system", (const char *const[]){ "kube-system/a", "kube-system/coredns", NULL });
    check_list(s, "b", (const char *const[]){ "b/x", NULL });
    /* Cluster-scoped objects: key without '/', namespace "". */
    check_list(s, "", (const char *const[]){ "kube-system", "node-a", "node-b", NULL });
    check_list(s, "nothing", (const char *const[]){ NULL });
    check_list(s, "defaul", (const char *const[]){ NULL });
    check_list(s, NULL,
               (const char *const[]){ "b/x", "default/api", "default/web-1", "default/web-10", "default/web-2",
                                      "kube-system", "kube-system/a", "kube-system/coredns", "node-a", "node-b",
                                      NULL });

    o = kn_store_get(s, "node-a");
    CHECK(o && strcmp(o->ns, "") == 0 && strcmp(o->name, "node-a") == 0);
    CHECK(o && refs(o) == 2);
    /* A list holds references until released. */
    objs = kn_store_list(s, "", &n);
    CHECK(n == 3 && objs && objs[1] == o);
    CHECK(o && refs(o) == 3);
    kn_store_release(objs, n);
    CHECK(o && refs(o) == 2);
    kn_obj_unref(o);

    /* Empty results are a real (empty) array; release takes it, and NULL. */
    objs = kn_store_list(s, "none", &n);
    CHECK(objs != NULL && n == 0);
    kn_store_release(objs, n);
    kn_store_release(NULL, 0);

    /* Deleting a namespace's last object drops it from the index. */
    kn_obj_unref(kn_store_delete(s, "b/x"));
    check_list(s, "b", (const char *const[]){ NULL });
    kn_obj_unref(kn_store_delete(s, "kube-system"));
    check_list(s, "", (const char *const[]){ "node-a", "node-b", NULL });
    check_list(s, "kube-system", (const char *const[]){ "kube-system/a", "kube-system/coredns", NULL });
    kn_store_free(s);
}

/* An object whose key does not say its namespace (kn_obj_new never makes
 * one) must still leave the index true when it replaces another. */
static void test_ns_moves(void)
{
    struct kn_store *s = kn_store_new();
    struct kn_obj *a = mk("one", "x", "1", "{}"), *b = mk("one", "y", "1", "{}"), *c = mk("two", "x", "1", "{}");
    struct kn_obj *moved = mk("two", "z", "1", "{}");
    moved->key = a->key; /* "one/x", but in namespace "two" */
    kn_store_put(s, a);
    kn_store_put(s, b);
    kn_store_put(s, c);
    CHECK(kn_store_put(s, moved) == a);
    kn_obj_unref(a); /* ours stays: moved's key lives in a */
    check_list(s, "one", (const char *const[]){ "one/y", NULL });
    check_list(s, "two", (const char *const[]){ "one/x", "two/x", NULL });
    CHECK(kn_store_delete(s, "one/x") == moved);
    kn_obj_unref(moved);
    check_list(s, "two", (const char *const[]){ "two/x", NULL });
    kn_store_free(s);
    kn_obj_unref(moved);
    kn_obj_unref(a);
    kn_obj_unref(b);
    kn_obj_unref(c);
}

/* Exact accounting, for an LP64 layout: a key slot is 16 bytes (object,
 * hash, position), a namespace slot 32; the first put makes 16 key slots,
 * 8 namespace slots, and a namespace's array of 4 pointers plus its name. */
static void test_bytes(void)
{
    struct kn_store *s = kn_store_new();
    struct kn_obj *a = mk("ns", "a", "1", "{\"kind\":\"Pod\"}"), *a2 = mk("ns", "a", "22", "{\"kind\":\"Pod\",\"x\":1}");
    struct kn_obj *b = mk("ns", "b", "1", "{}"), *c = mk("", "c", "1", "{}");
    size_t empty = kn_store_bytes(s), first;

    CHECK(empty == 0); /* an empty store reports nothing held */
    kn_store_put(s, a);
    first = kn_store_bytes(s);
    if (sizeof(void *) == 8)
        CHECK_MSG(first == empty + a->mem + 16 * 16 + 8 * 32 + 4 * 8 + sizeof "ns", "one object: %zu bytes over empty",
                  first - empty);
    CHECK(first > empty + a->mem);
    kn_obj_unref(kn_store_put(s, a2)); /* a replace changes only the objects' share */
    CHECK(kn_store_bytes(s) == first - a->mem + a2->mem);
    kn_store_put(s, b); /* room in both tables and in ns's array */
    CHECK(kn_store_bytes(s) == first - a->mem + a2->mem + b->mem);
    kn_store_put(s, c); /* a new namespace: "" with its own array */
    CHECK(kn_store_bytes(s) == first - a->mem + a2->mem + b->mem + c->mem + 4 * sizeof(void *) + 1);
    kn_obj_unref(kn_store_delete(s, "c"));
    CHECK(kn_store_bytes(s) == first - a->mem + a2->mem + b->mem);
    kn_obj_unref(kn_store_delete(s, "ns/b"));
    CHECK(kn_store_bytes(s) == first - a->mem + a2->mem);
    kn_obj_unref(kn_store_delete(s, "ns/a"));
    CHECK(kn_store_bytes(s) == empty);
    kn_store_free(s);
    kn_obj_unref(a);
    kn_obj_unref(a2);
    kn_obj_unref(b);
    kn_obj_unref(c);
}

#define MANY 100000

static void many_name(char *ns, char *name, int i)
{
    sprintf(ns, "ns-%d", i % 37);
    sprintf(name, "pod-%d", i);
}

static void test_many(void)
{
    struct kn_store *s = kn_store_new();
    size_t empty = kn_store_bytes(s), mem = 0, full, n;
    char ns[32], name[32], key[64];
    struct kn_obj **objs;
    int bad = 0;

    for (int i = 0; i < MANY; i++) {
        struct kn_obj *o;
        many_name(ns, name, i);
        o = mk(ns, name, "1", "{\"metadata\":{}}");
        mem += o->mem;
        if (kn_store_put(s, o) != NULL)
            bad++;
        kn_obj_unref(o); /* the store's is now the only reference */
    }
    CHECK(bad == 0);
    CHECK(kn_store_count(s) == MANY);
    full = kn_store_bytes(s);
    /* The tables: less than 100 bytes an object on top of the objects. */
    CHECK_MSG(full > empty + mem && full < empty + mem + 100 * (size_t)MANY, "%zu bytes for %zu of objects", full,
              mem);

    objs = kn_store_list(s, NULL, &n);
    CHECK(objs && n == MANY);
    for (size_t i = 1; objs && i < n; i++)
        bad += strcmp(objs[i - 1]->key, objs[i]->key) >= 0;
    CHECK(bad == 0);
    kn_store_release(objs, n);
    objs = kn_store_list(s, "ns-5", &n);
    CHECK(objs && n == MANY / 37 + (5 < MANY % 37));
    for (size_t i = 0; objs && i < n; i++)
        bad += strcmp(objs[i]->ns, "ns-5") != 0 || (i && strcmp(objs[i - 1]->key, objs[i]->key) >= 0);
    CHECK(bad == 0);
    kn_store_release(objs, n);

    /* Delete every other object first (holes all over the probe runs), check
     * the survivors, then the rest. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = pass; i < MANY; i += 2) {
            struct kn_obj *o;
            many_name(ns, name, i);
            snprintf(key, sizeof key, "%s/%s", ns, name);
            o = kn_store_delete(s, key);
            bad += !o || strcmp(o->key, key) != 0;
            kn_obj_unref(o);
        }
        for (int i = 1 - pass; pass == 0 && i < MANY; i += 2) {
            struct kn_obj *o;
            many_name(ns, name, i);
            snprintf(key, sizeof key, "%s/%s", ns, name);
            o = kn_store_get(s, key);
            bad += !o || strcmp(o->key, key) != 0;
            kn_obj_unref(o);
        }
        CHECK(bad == 0);
        CHECK(kn_store_count(s) == (size_t)(pass ? 0 : MANY / 2));
        if (pass == 0)
            CHECK_MSG(kn_store_bytes(s) < empty + mem / 2 + 100 * (size_t)MANY / 2, "%zu bytes at half",
                      kn_store_bytes(s));
    }
    /* Deletes gave the tables back. */
    CHECK_MSG(kn_store_bytes(s) == empty, "%zu bytes after deleting all, %zu empty", kn_store_bytes(s), empty);

    /* A mass delete down to a few keeps a small table, not the big one. */
    for (int i = 0; i < MANY; i++) {
        struct kn_obj *o;
        many_name(ns, name, i);
        o = mk(ns, name, "1", "{}");
        kn_store_put(s, o);
        kn_obj_unref(o);
    }
    for (int i = 10; i < MANY; i++) {
        many_name(ns, name, i);
        snprintf(key, sizeof key, "%s/%s", ns, name);
        kn_obj_unref(kn_store_delete(s, key));
    }
    CHECK(kn_store_count(s) == 10);
    /* 10 objects in 10 namespaces: well under a kilobyte each, index included. */
    CHECK_MSG(kn_store_bytes(s) < empty + 10 * 1024, "%zu bytes for 10 objects", kn_store_bytes(s));
    kn_store_free(s);
}

static void test_clear(void)
{
    struct kn_store *s = kn_store_new();
    size_t empty = kn_store_bytes(s), n;
    struct kn_obj *keep = mk("a", "keep", "1", "{}"), **objs;
    char name[32];

    kn_store_put(s, keep);
    for (int i = 0; i < 5000; i++) {
        struct kn_obj *o;
        sprintf(name, "o%d", i);
        o = mk(i % 3 ? "a" : "", name, "1", "{}");
        kn_store_put(s, o);
        kn_obj_unref(o);
    }
    CHECK(kn_store_count(s) == 5001);
    CHECK(refs(keep) == 2);
    kn_store_clear(s);
    CHECK(refs(keep) == 1);
    CHECK(kn_store_count(s) == 0);
    CHECK_MSG(kn_store_bytes(s) == empty, "%zu bytes after clear, %zu empty", kn_store_bytes(s), empty);
    CHECK(kn_store_get(s, "a/keep") == NULL);
    objs = kn_store_list(s, "a", &n);
    CHECK(objs && n == 0);
    kn_store_release(objs, n);
    kn_store_clear(s); /* twice is fine */

    /* Usable after clear. */
    CHECK(kn_store_put(s, keep) == NULL);
    check_list(s, NULL, (const char *const[]){ "a/keep", NULL });
    kn_store_free(s);
    kn_obj_unref(keep);
}

/* Random puts, replaces and deletes against a plain array model; every so
 * often each namespace's list must match the model exactly. */
#define MODEL_KEYS 600
#define MODEL_NS 7

static void test_model(void)
{
    static const char *const spaces[MODEL_NS] = { "", "a", "b", "kube-system", "default", "x", "y" };
    struct kn_obj *model[MODEL_KEYS] = { 0 };
    struct kn_store *s = kn_store_new();
    uint64_t rnd = 42;
    int bad = 0;

    for (int step = 0; step < 60000; step++) {
        int k, r;
        char name[32], rv[32];
        rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
        k = (int)((rnd >> 33) % MODEL_KEYS);
        r = (int)((rnd >> 20) % 8);
        if (r < 5) {
            struct kn_obj *o, *old;
            snprintf(name, sizeof name, "k%d", k);
            snprintf(rv, sizeof rv, "%d", step);
            o = mk(spaces[k % MODEL_NS], name, rv, "{}");
            old = kn_store_put(s, o);
            bad += old != model[k];
            kn_obj_unref(old);
            model[k] = o;
            kn_obj_unref(o); /* the store keeps it alive */
        } else if (model[k]) {
            struct kn_obj *o = kn_store_delete(s, model[k]->key);
            bad += o != model[k];
            kn_obj_unref(o);
            model[k] = NULL;
        }
        if (step % 997 == 0) {
            size_t total = 0, count = 0;
            for (int i = 0; i < MODEL_NS; i++) {
                size_t n, want = 0;
                struct kn_obj **objs = kn_store_list(s, spaces[i], &n);
                for (int j = i; j < MODEL_KEYS; j += MODEL_NS)
                    want += model[j] != NULL;
                bad += !objs || n != want;
                for (size_t j = 0; objs && j < n; j++) {
                    int idx = atoi(objs[j]->name + 1);
                    bad += model[idx] != objs[j] || strcmp(objs[j]->ns, spaces[i]) != 0;
                    bad += j && strcmp(objs[j - 1]->key, objs[j]->key) >= 0;
                }
                total += n;
                kn_store_release(objs, n);
            }
            for (int j = 0; j < MODEL_KEYS; j++)
                count += model[j] != NULL;
            bad += total != count || kn_store_count(s) != count;
        }
    }
    CHECK_MSG(bad == 0, "%d mismatches with the model", bad);
    kn_store_free(s);
}

/* Every allocation of a store's life failing in turn (alloc_fail.c): a put
 * that cannot be made returns NULL with errno ENOMEM, leaves the store as it
 * was and the reference the caller's; a list that cannot be made says so
 * (NULL, ENOMEM), never "empty"; deletes never fail; and the store agrees
 * with a model after every step, down to its references and its bytes. The
 * steps reach every allocation: the key table growing (13th key), the
 * namespace table growing (7th namespace), a namespace's array doubling
 * (5th object), a replace that moves an object to a new namespace, and the
 * shrinks on the way back down. */
#define OOM_OBJS 19
#define OOM_KEYS 17

struct oom_store {
    struct kn_obj *objs[OOM_OBJS];
    struct kn_obj *model[OOM_KEYS]; /* by key slot: what the store must hold */
    unsigned long n;
    int bad;
};

static int key_slot(const struct oom_store *t, const char *key)
{
    for (int i = 0; i < OOM_KEYS; i++)
        if (strcmp(t->objs[i]->key, key) == 0)
            return i;
    return -1;
}

static int by_key_ptr(const void *a, const void *b)
{
    return strcmp((*(struct kn_obj *const *)a)->key, (*(struct kn_obj *const *)b)->key);
}

/* The store equals the model: count, get, and the list of everything and of each namespace. */
static void oom_verify(struct oom_store *t, struct kn_store *s, const char *when)
{
    static const char *const spaces[] = { NULL, "big", "n0", "n5", "n9", "", "moved", "none" };
    size_t count = 0;
    for (int i = 0; i < OOM_KEYS; i++) {
        struct kn_obj *o = kn_store_get(s, t->objs[i]->key);
        count += t->model[i] != NULL;
        if (o != t->model[i] && !t->bad++)
            t_fail(__FILE__, __LINE__, "n=%lu %s: get(%s) is not the model's", t->n, when, t->objs[i]->key);
        kn_obj_unref(o);
    }
    if (kn_store_count(s) != count && !t->bad++)
        t_fail(__FILE__, __LINE__, "n=%lu %s: count %zu, want %zu", t->n, when, kn_store_count(s), count);
    for (size_t k = 0; k < sizeof spaces / sizeof *spaces; k++) {
        struct kn_obj *want[OOM_KEYS], **got;
        size_t nwant = 0, ngot;
        for (int i = 0; i < OOM_KEYS; i++)
            if (t->model[i] && (!spaces[k] || strcmp(t->model[i]->ns, spaces[k]) == 0))
                want[nwant++] = t->model[i];
        qsort(want, nwant, sizeof *want, by_key_ptr);
        errno = 0;
        got = kn_store_list(s, spaces[k], &ngot);
        if (!got) {
            if ((errno != ENOMEM || ngot != 0) && !t->bad++)
                t_fail(__FILE__, __LINE__, "n=%lu %s: list failed without ENOMEM", t->n, when);
            continue;
        }
        if ((ngot != nwant || memcmp(got, want, nwant * sizeof *want) != 0) && !t->bad++)
            t_fail(__FILE__, __LINE__, "n=%lu %s: list(%s) is not the model's", t->n, when,
                   spaces[k] ? spaces[k] : "NULL");
        kn_store_release(got, ngot);
    }
}

static void oom_put(struct oom_store *t, struct kn_store *s, int i)
{
    struct kn_obj *o = t->objs[i], *old;
    int slot = key_slot(t, o->key), before = refs(o);
    errno = 0;
    old = kn_store_put(s, o);
    if (!old && errno == ENOMEM) {
        if (refs(o) != before && !t->bad++)
            t_fail(__FILE__, __LINE__, "n=%lu: a failed put of %s kept a reference", t->n, o->key);
    } else {
        if (old != t->model[slot] && !t->bad++)
            t_fail(__FILE__, __LINE__, "n=%lu: put(%s) replaced another object", t->n, o->key);
        kn_obj_unref(old);
        t->model[slot] = o;
    }
    oom_verify(t, s, "after a put");
}

static void oom_delete(struct oom_store *t, struct kn_store *s, int slot)
{
    struct kn_obj *o = kn_store_delete(s, t->objs[slot]->key);
    if (o != t->model[slot] && !t->bad++)
        t_fail(__FILE__, __LINE__, "n=%lu: delete(%s) is not the model's", t->n, t->objs[slot]->key);
    kn_obj_unref(o);
    t->model[slot] = NULL;
    oom_verify(t, s, "after a delete");
}

static void store_oom_scenario(void *arg, unsigned long n)
{
    struct oom_store *t = arg;
    struct kn_store *s;
    memset(t->model, 0, sizeof t->model);
    t->n = n;
    af_arm(n);
    s = kn_store_new();
    if (!s) {
        af_disarm();
        return;
    }
    for (int i = 0; i < OOM_KEYS; i++)
        oom_put(t, s, i);
    oom_put(t, s, 17); /* a replace in place */
    oom_put(t, s, 18); /* a replace that moves big/o1 to namespace "moved" */
    for (int i = OOM_KEYS - 1; i >= 2; i--)
        oom_delete(t, s, i);
    kn_store_clear(s);
    memset(t->model, 0, sizeof t->model);
    oom_put(t, s, 3);
    oom_delete(t, s, 3);
    if (kn_store_bytes(s) != 0 && !t->bad++)
        t_fail(__FILE__, __LINE__, "n=%lu: %zu bytes held by an empty store", n, kn_store_bytes(s));
    kn_store_free(s);
    af_disarm();
    for (int i = 0; i < OOM_OBJS; i++)
        if (refs(t->objs[i]) != 1 && !t->bad++)
            t_fail(__FILE__, __LINE__, "n=%lu: %s has %d references after free", n, t->objs[i]->key, refs(t->objs[i]));
}

static void test_oom(void)
{
    struct oom_store t;
    char name[16], ns[16];
    unsigned long total;
    memset(&t, 0, sizeof t);
    /* 0..5 in "big", 6..15 in n0..n9, 16 cluster-scoped; 17 replaces 0, 18 is big/o1 in another namespace */
    for (int i = 0; i < OOM_KEYS; i++) {
        snprintf(name, sizeof name, "o%d", i);
        snprintf(ns, sizeof ns, i < 6 ? "big" : i < 16 ? "n%d" : "", i - 6);
        t.objs[i] = mk(ns, name, "1", "{}");
    }
    t.objs[17] = mk("big", "o0", "2", "{}");
    t.objs[18] = mk("moved", "o1", "2", "{}");
    t.objs[18]->key = t.objs[1]->key; /* as in test_ns_moves */
    total = af_every(store_oom_scenario, &t);
    CHECK_MSG(t.bad == 0, "%d mismatches under allocation failure", t.bad);
    CHECK_MSG(total > 30, "the scenario made %lu allocations", total);
    for (int i = 0; i < OOM_OBJS; i++)
        kn_obj_unref(t.objs[i]);
}

/* A writer thread puts and deletes while this thread reads, as the I/O and
 * Lua threads do; ASan (and TSan, built apart) watch the overlap. */
struct writer {
    struct kn_store *s;
    volatile int stop;
    long ops;
};

static void *write_loop(void *arg)
{
    struct writer *w = arg;
    char ns[16], name[32], key[64];
    unsigned i = 0;
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        struct kn_obj *o;
        snprintf(ns, sizeof ns, "ns%u", i % 5);
        snprintf(name, sizeof name, "o%u", (i * 7919) % 3000);
        if (i % 3 == 2) {
            snprintf(key, sizeof key, "%s/%s", ns, name);
            kn_obj_unref(kn_store_delete(w->s, key));
        } else {
            o = mk(ns, name, "1", "{\"spec\":{}}");
            kn_obj_unref(kn_store_put(w->s, o));
            kn_obj_unref(o);
        }
        if (i % 50000 == 49999)
            kn_store_clear(w->s);
        i++;
        w->ops++;
    }
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_threads(void)
{
    struct writer w = { .s = kn_store_new() };
    pthread_t th;
    double end = now() + 0.5;
    long reads = 0;
    int bad = 0;
    char key[64];

    CHECK(pthread_create(&th, NULL, write_loop, &w) == 0);
    while (now() < end) {
        for (int j = 0; j < 100; j++, reads++) {
            struct kn_obj *o;
            snprintf(key, sizeof key, "ns%d/o%d", j % 5, (int)(reads % 3000));
            o = kn_store_get(w.s, key);
            bad += o && strcmp(o->key, key) != 0;
            kn_obj_unref(o);
        }
        {
            size_t n;
            const char *ns = reads % 2 ? "ns3" : NULL;
            struct kn_obj **objs = kn_store_list(w.s, ns, &n);
            bad += !objs;
            for (size_t i = 0; objs && i < n; i++)
                bad += (ns && strcmp(objs[i]->ns, ns) != 0) || (i && strcmp(objs[i - 1]->key, objs[i]->key) >= 0);
            kn_store_release(objs, n);
            reads++;
        }
        bad += kn_store_count(w.s) > 3000;
    }
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    CHECK_MSG(bad == 0, "%d inconsistent reads", bad);
    CHECK_MSG(w.ops > 1000 && reads > 1000, "only %ld writes and %ld reads", w.ops, reads);
    kn_store_free(w.s);
}

void test_store(void)
{
    test_put_get_replace();
    test_delete();
    test_namespaces();
    test_ns_moves();
    test_bytes();
    test_many();
    test_clear();
    test_model();
    test_oom();
    test_threads();
}
