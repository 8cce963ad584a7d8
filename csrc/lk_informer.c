/* The binding of informers, raw watches and the event queue. Objects cross
 * into Lua here: their JSON is decoded (lk_json) only when Lua asks. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kn_client.h"
#include "kn_loop.h"
#include "kn_queue.h"
#include "kn_reflector.h"
#include "lk_core.h"
#include "lk_json.h"

#define INFORMER_MT "kinformer.core.informer"
#define HUB_KEY "kinformer.hub"
#define HOLD_MT "kinformer.core.hold"

/* Out of memory in Lua raises (a longjmp) from any lua_push* or table call.
 * What C holds while it builds Lua values is therefore anchored first in a
 * `hold` userdata on the stack, whose __gc gives it back: a raise then leaks
 * nothing. The userdata is made before anything is taken (making it may
 * raise too). */
struct hold {
    struct kn_obj **all; /* kn_store_release'd */
    size_t n;
    struct kn_obj **more; /* a second array (view: the pending changes) */
    size_t nmore;
    struct kn_obj *one;
};

/* Per lua_State: the queue every informer of this state pushes to, and the
 * counter that names informers. Lives in the registry; no C globals. */
struct hub {
    struct kn_queue *q;
    unsigned long next_id;
    /* the event next_event is turning into a table: if Lua raises (out of
     * memory) meanwhile, the next call hands out this one again, so it is
     * neither leaked nor lost */
    struct kn_qevent *held;
};

struct linformer {
    struct kn_reflector *r; /* NULL once closed */
    unsigned long id;
    struct lclient *owner;
};

static int hub_gc(lua_State *L)
{
    struct hub *h = lua_touserdata(L, 1);
    if (h->held) {
        kn_qevent_free(h->held);
        h->held = NULL;
    }
    kn_queue_unref(h->q);
    h->q = NULL;
    return 0;
}

static void push_obj(lua_State *L, const struct kn_obj *o);

static void hold_release(struct hold *ho)
{
    kn_store_release(ho->all, ho->n);
    kn_store_release(ho->more, ho->nmore);
    kn_obj_unref(ho->one);
    memset(ho, 0, sizeof *ho);
}

static int hold_gc(lua_State *L)
{
    hold_release(luaL_checkudata(L, 1, HOLD_MT));
    return 0;
}

static struct hold *new_hold(lua_State *L)
{
    struct hold *ho = lua_newuserdatauv(L, sizeof *ho, 0);
    memset(ho, 0, sizeof *ho);
    luaL_setmetatable(L, HOLD_MT);
    return ho;
}

/* Pushes { obj, ... } for ho->all; the hold frees them, now or on a raise. */
static void push_all(lua_State *L, struct hold *ho)
{
    lua_createtable(L, (int)ho->n, 0);
    for (size_t i = 0; i < ho->n; i++) {
        push_obj(L, ho->all[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static struct hub *get_hub(lua_State *L)
{
    struct hub *h;
    lua_getfield(L, LUA_REGISTRYINDEX, HUB_KEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!h || !h->q)
        luaL_error(L, "kinformer: the event queue is gone");
    return h;
}

static struct linformer *check_informer(lua_State *L)
{
    struct linformer *li = luaL_checkudata(L, 1, INFORMER_MT);
    if (!li->r)
        luaL_error(L, "kinformer: the informer is closed");
    return li;
}

static void push_obj(lua_State *L, const struct kn_obj *o)
{
    char err[160];
    if (!o) {
        lua_pushnil(L);
        return;
    }
    /* the core parsed it before storing it: only memory can fail here, and a
     * nil in its place would be a false answer (a hole in a list), so it
     * raises; the callers anchor what they hold in a hold first */
    if (lk_json_decode(L, o->json, o->len, err, sizeof err) < 0)
        luaL_error(L, "kinformer: cannot decode a cached object: %s", err);
}

static int opt_int(lua_State *L, int t, const char *k, int def)
{
    int v;
    lua_getfield(L, t, k);
    v = (int)luaL_optinteger(L, -1, def);
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *k)
{
    int v;
    lua_getfield(L, t, k);
    v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static const char *opt_str(lua_State *L, int t, const char *k)
{
    const char *s;
    lua_getfield(L, t, k);
    s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s; /* kept alive by the options table */
}

/* core.informer(client, { path=, what=, api_version=, kind=, label_selector=, field_selector=,
 *   page_size=, resync=, keep_managed_fields=, metadata_only=, raw=, resource_version=, bookmarks=,
 *   watch_min=, watch_max= }) --> informer | nil, err */
static int l_informer(lua_State *L)
{
    struct lclient *lc = lk_check_client(L, 1);
    struct kn_reflector_opts o;
    struct kn_err err = {0};
    struct linformer *li;
    struct hub *h = get_hub(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    memset(&o, 0, sizeof o);
    o.path = opt_str(L, 2, "path");
    if (!o.path || o.path[0] != '/')
        return luaL_argerror(L, 2, "path must start with '/'");
    o.what = opt_str(L, 2, "what");
    o.label_selector = opt_str(L, 2, "label_selector");
    o.field_selector = opt_str(L, 2, "field_selector");
    o.norm.api_version = opt_str(L, 2, "api_version");
    o.norm.kind = opt_str(L, 2, "kind");
    o.norm.keep_managed_fields = opt_bool(L, 2, "keep_managed_fields");
    o.norm.metadata_only = opt_bool(L, 2, "metadata_only");
    o.page_size = opt_int(L, 2, "page_size", 500);
    lua_getfield(L, 2, "resync");
    o.resync = luaL_optnumber(L, -1, 0);
    lua_pop(L, 1);
    o.raw = opt_bool(L, 2, "raw");
    o.resource_version = opt_str(L, 2, "resource_version");
    o.bookmarks = opt_bool(L, 2, "bookmarks");
    o.watch_min = opt_int(L, 2, "watch_min", 0);
    o.watch_max = opt_int(L, 2, "watch_max", 0);
    o.paged_only = opt_bool(L, 2, "paged_only");
    o.stall_limit = opt_int(L, 2, "stall_limit", 0);

    li = lua_newuserdatauv(L, sizeof *li, 1);
    li->r = NULL;
    li->id = ++h->next_id;
    li->owner = lc;
    luaL_setmetatable(L, INFORMER_MT);
    lua_pushvalue(L, 1); /* the client stays alive as long as the informer */
    lua_setiuservalue(L, -2, 1);
    li->r = kn_reflector_new(lc->c, h->q, li->id, &o, &err);
    if (!li->r)
        return lk_push_err(L, &err);
    lc->informers++;
    return 1;
}

static int l_start(lua_State *L)
{
    kn_reflector_start(check_informer(L)->r);
    return 0;
}

static int l_stop(lua_State *L)
{
    kn_reflector_stop(check_informer(L)->r);
    return 0;
}

static int l_clear(lua_State *L)
{
    kn_reflector_clear(check_informer(L)->r);
    return 0;
}

static int l_notify(lua_State *L)
{
    struct linformer *li = check_informer(L);
    kn_reflector_set_notify(li->r, (int)luaL_checkinteger(L, 2));
    return 0;
}

static int l_synced(lua_State *L)
{
    lua_pushboolean(L, kn_reflector_synced(check_informer(L)->r));
    return 1;
}

static int l_running(lua_State *L)
{
    lua_pushboolean(L, kn_reflector_running(check_informer(L)->r));
    return 1;
}

static int l_id(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_informer(L)->id);
    return 1;
}

static struct kn_store *store_of(lua_State *L, struct linformer *li)
{
    struct kn_store *s = kn_reflector_store(li->r);
    if (!s)
        luaL_error(L, "kinformer: a raw watch has no cache");
    return s;
}

/* informer:get(key) --> table | nil */
static int l_get(lua_State *L)
{
    struct linformer *li = check_informer(L);
    struct kn_store *s = store_of(L, li);
    const char *key = luaL_checkstring(L, 2);
    struct hold *ho = new_hold(L);
    ho->one = kn_store_get(s, key);
    push_obj(L, ho->one);
    hold_release(ho);
    return 1;
}

/* Takes the store's objects (of one namespace) into a new hold on the stack;
 * raises when the copy cannot be made rather than answer "none". */
static struct hold *hold_list(lua_State *L, struct kn_store *s, const char *ns)
{
    struct hold *ho = new_hold(L);
    ho->all = kn_store_list(s, ns, &ho->n);
    if (!ho->all)
        luaL_error(L, "kinformer: out of memory listing the cache");
    return ho;
}

/* informer:list([namespace]) --> { table, ... } sorted by key */
int lk_list(lua_State *L, struct kn_store *s, const char *ns)
{
    struct hold *ho = hold_list(L, s, ns);
    push_all(L, ho);
    hold_release(ho);
    return 1;
}

static int l_list(lua_State *L)
{
    struct linformer *li = check_informer(L);
    return lk_list(L, store_of(L, li), luaL_optstring(L, 2, NULL));
}

/* informer:keys([namespace]) --> { "ns/name", ... } sorted */
static int l_keys(lua_State *L)
{
    struct linformer *li = check_informer(L);
    struct hold *ho = hold_list(L, store_of(L, li), luaL_optstring(L, 2, NULL));
    lua_createtable(L, (int)ho->n, 0);
    for (size_t i = 0; i < ho->n; i++) {
        lua_pushstring(L, ho->all[i]->key);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    hold_release(ho);
    return 1;
}

static int l_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)kn_store_count(store_of(L, check_informer(L))));
    return 1;
}

static int l_rv(lua_State *L)
{
    char rv[64];
    kn_reflector_rv(check_informer(L)->r, rv);
    if (rv[0])
        lua_pushstring(L, rv);
    else
        lua_pushnil(L);
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* informer:stats() --> { objects, bytes, queued, lists, relists, watches, reconnects, events, errors } */
static int l_istats(lua_State *L)
{
    struct linformer *li = check_informer(L);
    struct kn_store *s = kn_reflector_store(li->r);
    struct kn_reflector_stats st;
    kn_reflector_stats(li->r, &st);
    lua_createtable(L, 0, 9);
    set_int(L, "objects", s ? (lua_Integer)kn_store_count(s) : 0);
    set_int(L, "bytes", s ? (lua_Integer)kn_store_bytes(s) : 0);
    set_int(L, "queued", (lua_Integer)kn_queue_length(get_hub(L)->q, li->id));
    set_int(L, "lists", (lua_Integer)st.lists);
    set_int(L, "streamed_lists", (lua_Integer)st.streamed);
    set_int(L, "relists", (lua_Integer)st.relists);
    set_int(L, "watches", (lua_Integer)st.watches);
    set_int(L, "reconnects", (lua_Integer)st.reconnects);
    set_int(L, "stalls", (lua_Integer)st.stalls);
    set_int(L, "events", (lua_Integer)st.events);
    set_int(L, "modified", (lua_Integer)st.modified);
    set_int(L, "errors", (lua_Integer)st.errors);
    return 1;
}

/* informer:snapshot(mask) --> { table, ... }, seq: the cache as of the last event pushed;
 * notifications from then on follow mask */
static int l_snapshot(lua_State *L)
{
    struct linformer *li = check_informer(L);
    int mask = (int)luaL_checkinteger(L, 2);
    unsigned long long seq;
    struct hold *ho = new_hold(L);
    ho->all = kn_reflector_snapshot(li->r, mask, &ho->n, &seq);
    if (!ho->all && kn_reflector_store(li->r)) /* not an empty cache: the late handler is not added */
        luaL_error(L, "kinformer: out of memory listing the cache");
    push_all(L, ho);
    hold_release(ho);
    lua_pushinteger(L, (lua_Integer)seq);
    return 2;
}

/* What view collects on the I/O thread, where the store and the queue agree:
 * the stored object of each key asked for, and the changes of this informer
 * that wait in the queue (their keys, with the stored object of each). */
struct view {
    struct kn_reflector *r;
    struct kn_queue *q;
    unsigned long id;
    const char **keys;
    size_t nkeys;
    struct hold *ho; /* all: the stored object of each key (NULL: absent); more: see npend */
    size_t cap;
    size_t npend; /* more[0..npend): the waiting events' objects; more[npend..2 npend): the stored ones */
    int oom;
};

static void count_pending(void *ud, const struct kn_qevent *ev)
{
    struct view *v = ud;
    v->cap += ev->obj != NULL;
}

static void take_pending(void *ud, const struct kn_qevent *ev)
{
    struct view *v = ud;
    if (ev->obj && v->ho->nmore < v->cap)
        v->ho->more[v->ho->nmore++] = kn_obj_ref(ev->obj);
}

static void collect_view(void *ud)
{
    struct view *v = ud;
    struct kn_store *s = kn_reflector_store(v->r);
    size_t i;
    v->ho->all = calloc(v->nkeys + 1, sizeof *v->ho->all);
    if (!v->ho->all) {
        v->oom = 1;
        return;
    }
    for (i = 0; i < v->nkeys; i++)
        v->ho->all[i] = kn_store_get(s, v->keys[i]);
    v->ho->n = v->nkeys;
    kn_queue_each(v->q, v->id, count_pending, v);
    v->ho->more = calloc(v->cap * 2 + 1, sizeof *v->ho->more);
    if (!v->ho->more) {
        v->oom = 1;
        return;
    }
    kn_queue_each(v->q, v->id, take_pending, v);
    /* after the events' objects, the stored object of each of their keys */
    v->npend = v->ho->nmore;
    for (i = 0; i < v->npend; i++)
        v->ho->more[v->npend + i] = kn_store_get(s, v->ho->more[i]->key);
    v->ho->nmore = 2 * v->npend;
}

/* informer:view({ key, ... }) --> { [key] = obj | false }, { [key] = true }
 * The cache at one moment: the stored object of each key asked for, and of
 * each key with a change still waiting in the queue (the second table), all
 * as one picture taken on the I/O thread (the store and the queue change
 * together there). by_index stands on it. */
static int l_view(lua_State *L)
{
    struct linformer *li = check_informer(L);
    struct view v;
    size_t i;
    memset(&v, 0, sizeof v);
    v.r = li->r;
    v.q = get_hub(L)->q;
    v.id = li->id;
    store_of(L, li);
    luaL_checktype(L, 2, LUA_TTABLE);
    v.nkeys = lua_rawlen(L, 2);
    /* the key pointers live in a Lua userdata: a raise frees them */
    v.keys = lua_newuserdatauv(L, (v.nkeys + 1) * sizeof *v.keys, 0);
    for (i = 0; i < v.nkeys; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        v.keys[i] = lua_tostring(L, -1); /* kept alive by the table */
        lua_pop(L, 1);
        if (!v.keys[i])
            return luaL_argerror(L, 2, "keys must be strings");
    }
    v.ho = new_hold(L);
    kn_loop_call(kn_client_loop(li->owner->c), collect_view, &v);
    if (v.oom)
        return luaL_error(L, "kinformer: out of memory reading the cache");
    lua_createtable(L, 0, (int)(v.nkeys + v.npend));
    lua_createtable(L, 0, (int)v.npend);
    for (i = 0; i < v.nkeys; i++) {
        if (v.ho->all[i])
            push_obj(L, v.ho->all[i]);
        else
            lua_pushboolean(L, 0);
        lua_setfield(L, -3, v.keys[i]);
    }
    for (i = 0; i < v.npend; i++) {
        const char *key = v.ho->more[i]->key;
        struct kn_obj *now = v.ho->more[v.npend + i];
        if (now)
            push_obj(L, now);
        else
            lua_pushboolean(L, 0);
        lua_setfield(L, -3, key);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, key);
    }
    hold_release(v.ho);
    return 2;
}

static int l_iclose(lua_State *L)
{
    struct linformer *li = luaL_checkudata(L, 1, INFORMER_MT);
    if (li->r) {
        kn_reflector_free(li->r);
        li->r = NULL;
        li->owner->informers--;
    }
    return 0;
}

static int l_itostring(lua_State *L)
{
    struct linformer *li = luaL_checkudata(L, 1, INFORMER_MT);
    lua_pushfstring(L, "kinformer.core.informer %d%s", (int)li->id, li->r ? "" : " (closed)");
    return 1;
}

/* core.next_event(timeout_ms) --> event | nil (nothing within the timeout) */
static int l_next_event(lua_State *L)
{
    static const char *types[] = { "add", "update", "delete", "synced", "raw", "error", "reply" };
    struct hub *h = get_hub(L);
    lua_Integer timeout = luaL_optinteger(L, 1, 0);
    struct kn_qevent *ev = h->held; /* one a raise interrupted: it comes first */
    if (!ev)
        ev = kn_queue_pop(h->q);
    if (!ev && timeout != 0 && kn_queue_wait(h->q, (int)timeout))
        ev = kn_queue_pop(h->q);
    if (!ev) {
        lua_pushnil(L);
        return 1;
    }
    h->held = ev;
    lua_createtable(L, 0, 8);
    set_int(L, "source", (lua_Integer)ev->source);
    set_int(L, "seq", (lua_Integer)ev->seq);
    lua_pushstring(L, types[ev->type]);
    lua_setfield(L, -2, "type");
    if (ev->obj) {
        push_obj(L, ev->obj);
        lua_setfield(L, -2, "obj");
    }
    if (ev->old) {
        push_obj(L, ev->old);
        lua_setfield(L, -2, "old");
    }
    if (ev->final_state_unknown) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "final_state_unknown");
    }
    if (ev->type == KN_Q_RAW) {
        lua_pushstring(L, ev->raw_type);
        lua_setfield(L, -2, "raw_type");
        lua_pushstring(L, ev->rv);
        lua_setfield(L, -2, "rv");
    }
    if (ev->message) {
        lua_pushstring(L, ev->message);
        lua_setfield(L, -2, "message");
    }
    if (ev->type == KN_Q_REPLY)
        lk_set_reply(L, ev->payload);
    h->held = NULL;
    kn_queue_done(h->q, ev);
    return 1;
}

/* core.now() --> monotonic seconds (for timeouts that must not jump with the wall clock) */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

/* core.wall_time() --> seconds since the epoch, with a fraction (Lease times) */
static int l_wall_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

/* core.pid() --> this process's id (a leader election identity) */
static int l_pid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* core.sleep(seconds): waits, without dispatching anything; a signal ends it early */
static int l_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (s > 0) {
        ts.tv_sec = (time_t)s;
        ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* core.wake(): makes the queue (and its fd) readable, for work that waits
 * on the Lua side (adds for a handler added late) */
static int l_wake(lua_State *L)
{
    struct kn_qevent *ev = kn_qevent_new(KN_Q_SYNCED, 0); /* source 0: nobody's; dispatch skips it */
    if (ev)
        kn_queue_push(get_hub(L)->q, ev);
    return 0;
}

static int l_pending(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)kn_queue_length(get_hub(L)->q, 0));
    return 1;
}

struct kn_queue *lk_queue(lua_State *L)
{
    return get_hub(L)->q;
}

static int l_fd(lua_State *L)
{
    lua_pushinteger(L, kn_queue_fd(get_hub(L)->q));
    return 1;
}

static const luaL_Reg informer_methods[] = {
    { "start", l_start }, { "stop", l_stop }, { "clear", l_clear }, { "synced", l_synced }, { "notify", l_notify },
    { "running", l_running }, { "id", l_id }, { "get", l_get }, { "list", l_list }, { "keys", l_keys },
    { "count", l_count }, { "resource_version", l_rv }, { "stats", l_istats }, { "snapshot", l_snapshot },
    { "view", l_view },
    { "close", l_iclose }, { NULL, NULL },
};

static const luaL_Reg informer_meta[] = {
    { "__gc", l_iclose },
#if LUA_VERSION_NUM >= 504
    { "__close", l_iclose },
#endif
    { "__tostring", l_itostring },
    { NULL, NULL },
};

static const luaL_Reg funcs[] = {
    { "informer", l_informer }, { "next_event", l_next_event }, { "pending", l_pending }, { "fd", l_fd },
    { "now", l_now }, { "wake", l_wake }, { "sleep", l_sleep },
    { "wall_time", l_wall_time }, { "pid", l_pid },
    { NULL, NULL },
};

void lk_informer_register(lua_State *L)
{
    struct hub *h;
    luaL_newmetatable(L, HOLD_MT);
    lua_pushcfunction(L, hold_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_createtable(L, 0, 3); /* the notification bits, for informer:notify(mask) */
    lua_pushinteger(L, 1 << KN_Q_ADD);
    lua_setfield(L, -2, "add");
    lua_pushinteger(L, 1 << KN_Q_UPDATE);
    lua_setfield(L, -2, "update");
    lua_pushinteger(L, 1 << KN_Q_DELETE);
    lua_setfield(L, -2, "delete");
    lua_setfield(L, -2, "notify_bits");
    luaL_newmetatable(L, INFORMER_MT);
    luaL_setfuncs(L, informer_meta, 0);
    luaL_newlib(L, informer_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_getfield(L, LUA_REGISTRYINDEX, HUB_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        h = lua_newuserdatauv(L, sizeof *h, 0);
        h->q = kn_queue_new();
        h->next_id = 0;
        h->held = NULL;
        if (!h->q)
            luaL_error(L, "kinformer: cannot create the event queue");
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, hub_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, HUB_KEY);
    } else {
        lua_pop(L, 1);
    }
    luaL_setfuncs(L, funcs, 0);
}
