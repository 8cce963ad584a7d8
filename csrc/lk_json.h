/* The binding's JSON codec: Kubernetes objects to Lua tables and back without
 * changing what they mean to the API server. lua-cjson 2.1 cannot do that: an
 * empty array comes back as {}, and every number goes through a double, so
 * int64 values beyond 2^53 change. Here arrays carry a shared metatable, and
 * integers stay Lua integers. Binding code: it includes lua.h. */
#ifndef LK_JSON_H
#define LK_JSON_H

#include <lua.h>
#include <stddef.h>

#include "kn_buf.h"

/* Registry key of the metatable that marks a table as a JSON array. */
#define LK_JSON_ARRAY_MT "kinformer.array_mt"

/* Nesting deeper than this is refused both ways: it bounds the C recursion,
 * and it is how the encoder notices a cycle. */
#define LK_JSON_MAX_DEPTH 10100 /* as deep as the API server stores objects */

/* Decodes s[0..len) and pushes the value: objects as plain tables, arrays as
 * tables with the array metatable, integers as Lua integers, null as the
 * lightuserdata NULL (cjson.null). Returns 0, or -1 with err set (what, at
 * which byte) and nothing pushed. Never raises, not even when out of memory,
 * so callers may hold C resources across it. */
int lk_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen);

/* Appends the JSON text of the value at idx to out. Returns 0, or -1 with err
 * set (what, and where in the value); out may then hold partial text. Never
 * raises; the caller owns out and frees it on both paths. */
int lk_json_encode(lua_State *L, int idx, struct kn_buf *out, char *err, size_t errlen);

/* Pushes the array metatable, creating it on first use in this lua_State. */
void lk_json_push_array_mt(lua_State *L);

/* With the module table on top of the stack, adds json_decode, json_encode,
 * array, array_mt and null to it. */
void lk_json_register(lua_State *L);

#endif
