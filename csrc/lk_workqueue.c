/* kinformer.core.workqueue: the controller work queue (kn_workqueue) as a
 * userdata. The clock is read here (monotonic), so Lua never passes time;
 * blocking and coroutines are the Lua face's business (lua/kinformer/queue.lua). */
#include <lauxlib.h>
#include <lua.h>
#include <time.h>

#include "kn_workqueue.h"
#include "lk_core.h"

#define WQ_MT "kinformer.core.workqueue"

struct lwq {
    struct kn_wq *q; /* NULL once closed */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct kn_wq *check_wq(lua_State *L)
{
    struct lwq *w = luaL_checkudata(L, 1, WQ_MT);
    if (!w->q)
        luaL_error(L, "kinformer: the queue is closed");
    return w->q;
}

static double opt_num(lua_State *L, int t, const char *k)
{
    double v;
    lua_getfield(L, t, k);
    v = luaL_optnumber(L, -1, 0);
    lua_pop(L, 1);
    return v;
}

/* core.workqueue{ base_delay=, max_delay=, qps=, burst= } */
static int l_workqueue(lua_State *L)
{
    struct kn_wq_opts o = {0};
    struct lwq *w;
    luaL_checktype(L, 1, LUA_TTABLE);
    o.base_delay = opt_num(L, 1, "base_delay");
    o.max_delay = opt_num(L, 1, "max_delay");
    o.qps = opt_num(L, 1, "qps");
    o.burst = (int)opt_num(L, 1, "burst");
    w = lua_newuserdatauv(L, sizeof *w, 0);
    w->q = NULL;
    luaL_setmetatable(L, WQ_MT);
    w->q = kn_wq_new(&o);
    if (!w->q)
        return luaL_error(L, "kinformer: not enough memory for a queue");
    return 1;
}

/* Out of memory in the queue is an out-of-memory error in Lua, as for a table. */
static int check_mem(lua_State *L, int rc)
{
    if (rc < 0)
        return luaL_error(L, "kinformer: not enough memory to queue a key");
    return 0;
}

static int l_add(lua_State *L)
{
    struct kn_wq *q = check_wq(L);
    check_mem(L, kn_wq_add(q, luaL_checkstring(L, 2), now_s()));
    return 0;
}

static int l_add_after(lua_State *L)
{
    struct kn_wq *q = check_wq(L);
    check_mem(L, kn_wq_add_after(q, luaL_checkstring(L, 2), luaL_checknumber(L, 3), now_s()));
    return 0;
}

/* --> the delay chosen, in seconds */
static int l_add_rate_limited(lua_State *L)
{
    struct kn_wq *q = check_wq(L);
    double delay = 0;
    check_mem(L, kn_wq_add_rate_limited(q, luaL_checkstring(L, 2), now_s(), &delay));
    lua_pushnumber(L, delay);
    return 1;
}

static int l_forget(lua_State *L)
{
    kn_wq_forget(check_wq(L), luaL_checkstring(L, 2));
    return 0;
}

static int l_failures(lua_State *L)
{
    lua_pushinteger(L, kn_wq_failures(check_wq(L), luaL_checkstring(L, 2)));
    return 1;
}

/* --> key, seconds it waited | nil when nothing is ready */
static int l_get(lua_State *L)
{
    double waited = 0;
    const char *key = kn_wq_get(check_wq(L), now_s(), &waited);
    if (!key)
        return 0;
    lua_pushstring(L, key);
    lua_pushnumber(L, waited);
    return 2;
}

static int l_done(lua_State *L)
{
    lua_pushboolean(L, kn_wq_done(check_wq(L), luaL_checkstring(L, 2), now_s()) == 0);
    return 1;
}

static int l_has(lua_State *L)
{
    lua_pushboolean(L, kn_wq_has(check_wq(L), luaL_checkstring(L, 2)));
    return 1;
}

/* --> seconds until the next delayed key is due | nil when none is delayed */
static int l_next_due(lua_State *L)
{
    double d = kn_wq_next_due(check_wq(L), now_s());
    if (d < 0)
        return 0;
    lua_pushnumber(L, d);
    return 1;
}

static int l_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)kn_wq_len(check_wq(L)));
    return 1;
}

static int l_shutdown(lua_State *L)
{
    kn_wq_shutdown(check_wq(L), lua_toboolean(L, 2));
    return 0;
}

static int l_shutting_down(lua_State *L)
{
    lua_pushboolean(L, kn_wq_shutting_down(check_wq(L)));
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int l_stats(lua_State *L)
{
    struct kn_wq_stats st;
    kn_wq_get_stats(check_wq(L), &st);
    lua_createtable(L, 0, 5);
    set_int(L, "depth", (lua_Integer)st.depth);
    set_int(L, "delayed", (lua_Integer)st.delayed);
    set_int(L, "processing", (lua_Integer)st.processing);
    set_int(L, "adds", (lua_Integer)st.adds);
    set_int(L, "retries", (lua_Integer)st.retries);
    return 1;
}

static int l_gc(lua_State *L)
{
    struct lwq *w = lua_touserdata(L, 1);
    if (w && w->q) {
        kn_wq_free(w->q);
        w->q = NULL;
    }
    return 0;
}

static int l_tostring(lua_State *L)
{
    struct lwq *w = luaL_checkudata(L, 1, WQ_MT);
    if (!w->q)
        lua_pushstring(L, "kinformer.core.workqueue (closed)");
    else
        lua_pushfstring(L, "kinformer.core.workqueue (%d keys)", (int)kn_wq_len(w->q));
    return 1;
}

static const luaL_Reg methods[] = {
    { "add", l_add }, { "add_after", l_add_after }, { "add_rate_limited", l_add_rate_limited },
    { "forget", l_forget }, { "failures", l_failures }, { "get", l_get }, { "done", l_done },
    { "has", l_has }, { "next_due", l_next_due }, { "len", l_len }, { "shutdown", l_shutdown },
    { "shutting_down", l_shutting_down }, { "stats", l_stats }, { "close", l_gc }, { NULL, NULL },
};

static const luaL_Reg meta[] = {
    { "__gc", l_gc },
#if LUA_VERSION_NUM >= 504
    { "__close", l_gc },
#endif
    { "__tostring", l_tostring },
    { NULL, NULL },
};

void lk_workqueue_register(lua_State *L)
{
    luaL_newmetatable(L, WQ_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_workqueue);
    lua_setfield(L, -2, "workqueue");
}
