/* libFuzzer target for the binding's JSON codec (lk_json.c): arbitrary bytes
 * decoded into Lua values, as every watch event's object is. Besides the
 * sanitizers it checks what a caller relies on: a failed decode leaves the
 * Lua stack as it was and says why; a value that decodes encodes, and its
 * text decodes and encodes again to the same bytes (keys sorted, integers
 * exact, arrays kept arrays); the core tokenizer accepts that text; and a
 * second decode of the same input, which finds its member names in the
 * per-state name cache, gives the same value.
 *
 * make fuzz (or build/fuzz/fuzz_luajson spec/fuzz/corpus/luajson -dict=spec/fuzz/watch.dict) */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kn_json.h"
#include "lk_json.h"

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            __builtin_trap();                                                                                          \
    } while (0)

/* The encoding of the value on top of the stack (popped), or NULL. */
static char *encode_top(lua_State *L, size_t *len)
{
    struct kn_buf out = {0};
    char err[256];
    int rc = lk_json_encode(L, -1, &out, err, sizeof err);
    lua_pop(L, 1);
    if (rc < 0) {
        /* only what the limits refuse: a value nested past them */
        CHECK(strstr(err, "too deep") != NULL);
        kn_buf_free(&out);
        return NULL;
    }
    CHECK(kn_buf_append(&out, "", 1) == 0); /* NUL, not counted */
    *len = out.len - 1;
    return out.data;
}

/* One state for the whole run, as a program has one: the name cache it
 * keeps between decodes is part of what is tested. */
static lua_State *state(void)
{
    static lua_State *L;
    if (!L) {
        L = luaL_newstate();
        CHECK(L != NULL);
    }
    return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = state();
    const char *s = (const char *)data;
    char err[256];
    int top = lua_gettop(L);
    char *first, *again, *second;
    size_t first_len, again_len, second_len;
    struct kn_json j = {0};

    if (lk_json_decode(L, s, size, err, sizeof err) < 0) {
        CHECK(lua_gettop(L) == top);
        CHECK(err[0] != '\0');
        return 0;
    }
    CHECK(lua_gettop(L) == top + 1);
    first = encode_top(L, &first_len);
    if (!first)
        return 0;
    CHECK(kn_json_parse(&j, first, first_len) == 0);
    kn_json_free(&j);

    CHECK(lk_json_decode(L, first, first_len, err, sizeof err) == 0);
    again = encode_top(L, &again_len);
    CHECK(again && again_len == first_len && memcmp(again, first, first_len) == 0);

    CHECK(lk_json_decode(L, s, size, err, sizeof err) == 0);
    second = encode_top(L, &second_len);
    CHECK(second && second_len == first_len && memcmp(second, first, first_len) == 0);

    free(first);
    free(again);
    free(second);
    CHECK(lua_gettop(L) == top);
    return 0;
}
