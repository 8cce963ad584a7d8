/* The binding under out of memory: informer:list (lk_list), core.next_event,
 * and core.metrics with core.serve run in a lua_State whose allocator fails
 * from the Nth allocation on, for every N until the call gets through. Lua then raises
 * (a longjmp out of the C function midway); nothing the C side held may
 * leak (each object's reference count is back where it was, and
 * LeakSanitizer checks the rest at exit), and an event popped from the queue
 * is not lost: the next call hands it out. Built and run by `make test-c`
 * under ASan/UBSan (build/ctest-binding). Failing "from N on" rather than
 * "only the Nth" because Lua answers a failed allocation with an emergency
 * collection and one retry, which would hide a single failure. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_obj.h"
#include "kn_queue.h"
#include "kn_store.h"
#include "lk_core.h"

int luaopen_kinformer_core(lua_State *L);

static int checks, failed;

#define CHECK(c, ...)                                                                                                  \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (!(c)) {                                                                                                    \
            failed++;                                                                                                  \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #c);                                                   \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

/* Counts allocations that take memory; from `fail_at` on they fail (0: never). */
struct budget {
    long count, fail_at;
};

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct budget *b = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (ptr == NULL || nsize > osize) {
        b->count++;
        if (b->fail_at > 0 && b->count >= b->fail_at)
            return NULL;
    }
    return realloc(ptr, nsize);
}

static struct kn_obj *make_obj(const char *ns, const char *name, int i)
{
    char json[512];
    struct kn_err err = {0};
    struct kn_obj *o;
    int n = snprintf(json, sizeof json,
                     "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\","
                     "\"resourceVersion\":\"%d\",\"labels\":{\"app\":\"web\",\"n\":\"%d\"}},"
                     "\"data\":{\"a\":\"%d\",\"list\":[1,2,3,{\"x\":null}]}}",
                     name, ns, 100 + i, i, i);
    o = kn_obj_new(json, (size_t)n, NULL, &err);
    if (!o) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        exit(2);
    }
    return o;
}

static lua_State *new_state(struct budget *b)
{
    lua_State *L = lua_newstate(alloc, b);
    b->fail_at = 0;
    luaL_openlibs(L);
    luaL_requiref(L, "kinformer.core", luaopen_kinformer_core, 0);
    lua_pop(L, 1);
    return L;
}

/* lua_pcall with the allocator failing from the nth allocation on. */
static int pcall_failing_from(lua_State *L, struct budget *b, long n, int nargs)
{
    int rc;
    b->count = 0;
    b->fail_at = n;
    rc = lua_pcall(L, nargs, 1, 0);
    b->fail_at = 0;
    return rc;
}

static struct kn_store *list_store;

static int call_list(lua_State *L)
{
    return lk_list(L, list_store, NULL);
}

enum { NOBJ = 6 };

static void test_list(void)
{
    struct kn_obj *objs[NOBJ];
    int got_through = 0;
    long n;
    list_store = kn_store_new();
    for (int i = 0; i < NOBJ; i++) {
        char name[16];
        snprintf(name, sizeof name, "cm-%d", i);
        objs[i] = make_obj("shop", name, i);
        kn_obj_unref(kn_store_put(list_store, objs[i])); /* the store's ref; ours stays */
    }
    for (n = 1; n < 100000 && !got_through; n++) {
        struct budget b = {0, 0};
        lua_State *L = new_state(&b);
        int rc;
        lua_pushcfunction(L, call_list);
        rc = pcall_failing_from(L, &b, n, 0);
        if (rc == LUA_OK) {
            got_through = 1;
            CHECK(lua_rawlen(L, -1) == NOBJ, "list of %d objects has %d", NOBJ, (int)lua_rawlen(L, -1));
        } else {
            CHECK(rc == LUA_ERRMEM || rc == LUA_ERRRUN, "N=%ld: rc %d", n, rc);
        }
        lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT, 0); /* the hold's __gc gives back what the raise left */
        for (int i = 0; i < NOBJ; i++)
            CHECK(objs[i]->refs == 2, "N=%ld: cm-%d holds %d references, not 2 (store + test)", n, i, objs[i]->refs);
        lua_close(L);
    }
    CHECK(got_through, "lk_list never got through");
    printf("binding oom: list failed at every allocation 1..%ld, then got through\n", n - 2);
    kn_store_free(list_store);
    for (int i = 0; i < NOBJ; i++)
        kn_obj_unref(objs[i]);
}

static void push_event(struct kn_queue *q, enum kn_qtype type, unsigned long long seq, struct kn_obj *old,
                       struct kn_obj *obj)
{
    struct kn_qevent *ev = kn_qevent_new(type, 7);
    if (!ev)
        exit(2);
    ev->seq = seq;
    ev->old = old ? kn_obj_ref(old) : NULL;
    ev->obj = obj ? kn_obj_ref(obj) : NULL;
    kn_queue_push(q, ev);
}

/* core.next_event(0) --> the event's seq, its type, its object's name, its old object's name */
static int call_next(lua_State *L)
{
    lua_getglobal(L, "next_event");
    lua_pushinteger(L, 0);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1))
        return 1;
    lua_getfield(L, -1, "seq");
    return 1;
}

static void test_next_event(void)
{
    struct kn_obj *a = make_obj("shop", "a", 1), *b2 = make_obj("shop", "a", 2);
    int got_through = 0;
    long n;
    for (n = 1; n < 100000 && !got_through; n++) {
        struct budget b = {0, 0};
        lua_State *L = new_state(&b);
        struct kn_queue *q = lk_queue(L);
        int rc;
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "loaded");
        lua_getfield(L, -1, "kinformer.core");
        lua_getfield(L, -1, "next_event");
        lua_setglobal(L, "next_event");
        lua_pop(L, 3);
        push_event(q, KN_Q_UPDATE, 1, a, b2);
        push_event(q, KN_Q_DELETE, 2, NULL, b2);
        lua_pushcfunction(L, call_next);
        rc = pcall_failing_from(L, &b, n, 0);
        if (rc == LUA_OK) {
            got_through = 1;
            CHECK(lua_tointeger(L, -1) == 1, "the first event has seq %d", (int)lua_tointeger(L, -1));
        } else {
            /* the update interrupted by the raise comes first next time, then the delete */
            lua_pop(L, 1);
            lua_pushcfunction(L, call_next);
            rc = lua_pcall(L, 0, 1, 0);
            CHECK(rc == LUA_OK && lua_tointeger(L, -1) == 1, "N=%ld: after the raise, rc %d seq %d (want 1)", n, rc,
                  (int)lua_tointeger(L, -1));
        }
        lua_pop(L, 1);
        lua_pushcfunction(L, call_next);
        rc = lua_pcall(L, 0, 1, 0);
        CHECK(rc == LUA_OK && lua_tointeger(L, -1) == 2, "N=%ld: then rc %d seq %d (want 2)", n, rc,
              (int)lua_tointeger(L, -1));
        lua_pop(L, 1);
        lua_close(L); /* the queue (and what it held) goes with the state */
        CHECK(a->refs == 1 && b2->refs == 1, "N=%ld: references left: a %d, b %d (want 1, 1)", n, a->refs, b2->refs);
    }
    CHECK(got_through, "next_event never got through");
    printf("binding oom: next_event failed at every allocation 1..%ld, then got through\n", n - 2);

    /* a raise that leaves an event held, then the state closes: it is freed */
    {
        struct budget b = {0, 0};
        lua_State *L = new_state(&b);
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "loaded");
        lua_getfield(L, -1, "kinformer.core");
        lua_getfield(L, -1, "next_event");
        lua_setglobal(L, "next_event");
        lua_pop(L, 3);
        push_event(lk_queue(L), KN_Q_UPDATE, 1, a, b2);
        lua_pushcfunction(L, call_next);
        b.count = 0;
        b.fail_at = 3;
        CHECK(lua_pcall(L, 0, 1, 0) != LUA_OK, "the call at N=3 raised");
        b.fail_at = 0;
        lua_close(L);
        CHECK(a->refs == 1 && b2->refs == 1, "held event freed with the state: a %d, b %d", a->refs, b2->refs);
    }
    kn_obj_unref(a);
    kn_obj_unref(b2);
}

/* core.metrics and core.serve: a raise at any allocation leaks nothing (the
 * registry, its families, a render's buffer, the server and its health are
 * all owned by userdata with __gc; LeakSanitizer checks at exit). */
static const char serve_chunk[] =
    "local core = ...\n"
    "local reg = core.metrics()\n"
    "local c = reg:counter('rest_client_requests_total', 'requests', { 'code', 'method' })\n"
    "for i = 1, 20 do c:add(1, tostring(200 + i % 5), i % 2 == 0 and 'GET' or 'PUT') end\n"
    "local h = reg:histogram('workqueue_work_duration_seconds', 'work', { 'name' }, { 0.1, 1 })\n"
    "h:observe(0.5, 'web')\n"
    "reg:gauge('leader_election_master_status', 'leader', { 'name' }):set(1, 'web')\n"
    "local text = reg:render()\n"
    "local srv = assert(core.serve{ address = '127.0.0.1', port = 0, metrics = reg, busy_threshold = 5 })\n"
    "srv:liveness('io', 5)\n"
    "srv:beat('io')\n"
    "srv:loop_state('busy')\n"
    "srv:set_ready(true)\n"
    "assert(srv:health())\n"
    "srv:stop()\n"
    "return text\n";

static void test_serve(void)
{
    int got_through = 0;
    long n;
    for (n = 1; n < 100000 && !got_through; n++) {
        struct budget b = {0, 0};
        lua_State *L = new_state(&b);
        int rc = luaL_loadstring(L, serve_chunk);
        CHECK(rc == LUA_OK, "the chunk compiles: %s", lua_tostring(L, -1));
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "loaded");
        lua_getfield(L, -1, "kinformer.core");
        lua_remove(L, -2);
        lua_remove(L, -2);
        rc = pcall_failing_from(L, &b, n, 1);
        if (rc == LUA_OK) {
            got_through = 1;
            CHECK(strstr(lua_tostring(L, -1), "rest_client_requests_total{code=\"201\",method=\"PUT\"} 2\n") != NULL,
                  "the render: %s", lua_tostring(L, -1));
        } else {
            CHECK(rc == LUA_ERRMEM || rc == LUA_ERRRUN, "N=%ld: rc %d", n, rc);
        }
        lua_close(L);
    }
    CHECK(got_through, "the metrics chunk never got through");
    printf("binding oom: metrics and serve failed at every allocation 1..%ld, then got through\n", n - 2);
}

int main(void)
{
    test_list();
    test_next_event();
    test_serve();
    printf("binding oom: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}
