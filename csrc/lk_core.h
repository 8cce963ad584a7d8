/* What the binding's files share: the client userdata. */
#ifndef LK_CORE_H
#define LK_CORE_H

#include <lua.h>

#include "kn_client.h"

struct lclient {
    struct kn_client *c; /* NULL once closed */
    int informers;       /* live informers using c: it cannot close before them */
};

struct lclient *lk_check_client(lua_State *L, int idx);
void lk_informer_register(lua_State *L);

#endif
