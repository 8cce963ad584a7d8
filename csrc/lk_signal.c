/* SIGINT and SIGTERM for kinformer.run and for blocking calls. Signals are
 * process-wide by nature, so this is the one place with static state: the
 * number of the first signal, and the handlers it replaced.
 *
 * While kinformer.run handles them (graceful mode), the first signal asks
 * for a clean stop (run returns; the Lua face stops the controllers and
 * releases leases) and a second one exits at once. A blocking REST call
 * outside run installs them only for its own duration: a signal ends the
 * call with reason "Interrupted", and the script decides what comes next. */
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "lk_core.h"

static volatile sig_atomic_t seen;     /* the first signal's number; 0: none */
static volatile sig_atomic_t interrupt; /* a signal came during the blocking call in progress */
static volatile sig_atomic_t graceful; /* a second signal exits at once */
static struct sigaction saved_int, saved_term;
static int installed;

static void on_signal(int sig)
{
    if (seen && graceful)
        _exit(128 + sig);
    seen = sig;
    interrupt = 1;
}

void lk_signals_begin(int is_graceful)
{
    struct sigaction sa;
    if (installed++ > 0)
        return;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a wait in poll or nanosleep must end */
    graceful = is_graceful;
    sigaction(SIGINT, &sa, &saved_int);
    sigaction(SIGTERM, &sa, &saved_term);
}

void lk_signals_end(void)
{
    if (installed == 0 || --installed > 0)
        return;
    sigaction(SIGINT, &saved_int, NULL);
    sigaction(SIGTERM, &saved_term, NULL);
    graceful = 0;
}

int lk_signals_installed(void)
{
    return installed > 0;
}

/* The flag a blocking call watches, cleared as it starts: a call made while
 * run winds down after a signal (a lease's release) is not cut short by it. */
const volatile sig_atomic_t *lk_signal_flag(void)
{
    interrupt = 0;
    return &interrupt;
}

void lk_signal_clear(void)
{
    seen = 0;
    interrupt = 0;
}

/* core.signals_begin(graceful), core.signals_end() */
static int l_begin(lua_State *L)
{
    lk_signals_begin(lua_toboolean(L, 1));
    return 0;
}

static int l_end(lua_State *L)
{
    (void)L;
    lk_signals_end();
    return 0;
}

/* core.signal() --> "SIGINT" | "SIGTERM" | nil; core.signal_clear() */
static int l_signal(lua_State *L)
{
    int s = seen;
    if (!s)
        return 0;
    lua_pushstring(L, s == SIGINT ? "SIGINT" : s == SIGTERM ? "SIGTERM" : "signal");
    return 1;
}

static int l_clear(lua_State *L)
{
    (void)L;
    lk_signal_clear();
    return 0;
}

static const luaL_Reg funcs[] = {
    { "signals_begin", l_begin }, { "signals_end", l_end }, { "signal", l_signal }, { "signal_clear", l_clear },
    { NULL, NULL },
};

void lk_signal_register(lua_State *L)
{
    luaL_setfuncs(L, funcs, 0);
}
