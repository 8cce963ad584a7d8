/* The binding's JSON codec (see lk_json.h for why it exists).
 *
 * Both directions run inside lua_pcall: a Lua API call may raise (out of
 * memory), and a raise must never jump over a caller's C resources. Scratch
 * memory lives in userdata on the protected call's stack, so the Lua GC
 * reclaims it whatever happens. */
#include "kn_json.h"
#include "lk_json.h"

#include <lauxlib.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Boxes json_encode's output buffer so that a raise frees it (via __gc). */
#define BUF_MT "kinformer.json_buf"

void lk_json_push_array_mt(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, LK_JSON_ARRAY_MT) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "kinformer.array"); /* luaL_tolstring prints it */
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, LK_JSON_ARRAY_MT);
}

static void set_lua_error(lua_State *L, int status, char *err, size_t errlen)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error without a message";
    if (status == LUA_ERRMEM)
        msg = "out of memory";
    snprintf(err, errlen, "%s", msg);
}

/* ------------------------------------------------------------------ decode */

struct dec {
    lua_State *L;
    const char *s;
    size_t len, pos;
    char *scratch; /* unescaped strings and long numbers; a userdata at scratch_idx */
    size_t scratch_cap;
    int scratch_idx, mt_idx;
    struct name_cache *names; /* member names already made, its strings at names_idx */
    int names_idx;
    char point; /* the C locale's decimal point, which strtod expects */
    int rc;
    char *err;
    size_t errlen;
};

static int dfail(struct dec *d, const char *what)
{
    snprintf(d->err, d->errlen, "%s at byte %zu", what, d->pos);
    return -1;
}

static void skip_ws(struct dec *d)
{
    while (d->pos < d->len) {
        char c = d->s[d->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        d->pos++;
    }
}

static char *scratch(struct dec *d, size_t n)
{
    if (n > d->scratch_cap) {
        size_t cap = d->scratch_cap ? d->scratch_cap * 2 : 256;
        if (cap < n)
            cap = n;
        d->scratch = lua_newuserdatauv(d->L, cap, 0);
        lua_replace(d->L, d->scratch_idx); /* the old one becomes garbage */
        d->scratch_cap = cap;
    }
    return d->scratch;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Escapes were validated by the scan; the core unescapes them (into at most
 * as many bytes as the escaped text). */
static void unescape(const char *s, const char *e, char *o, size_t *outlen)
{
    *outlen = kn_json_unescape(s, e, o);
}

/* Member names repeat in every object ("metadata", "name", "labels"...), and
 * making a Lua string of one hashes all its bytes and walks Lua's string
 * table: a fifth of the Lua thread's time in a stream of updates. Names seen
 * before are kept here, one Lua state's worth (a userdata in the registry,
 * its strings in its user value), found by a cheaper hash of their first
 * and last eight bytes and compared as bytes. Direct-mapped: a collision
 * just replaces the entry. Only names: values (uids, times, versions) rarely
 * repeat and would only evict them. */
#define NAME_SLOTS 512 /* a power of two */
#define NAME_MAX_LEN 40 /* Lua's short strings (LUAI_MAXSHORTLEN): interned, so worth keeping */
#define NAME_CACHE_KEY "kinformer.json_names"

struct name_cache {
    unsigned char len[NAME_SLOTS]; /* 0: empty */
    char bytes[NAME_SLOTS][NAME_MAX_LEN];
};

static unsigned name_slot(const char *p, size_t n)
{
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
    } else {
        memcpy(&a, p, n);
    }
    a = (a ^ (b * 0x9E3779B97F4A7C15ULL) ^ n) * 0xC2B2AE3D27D4EB4FULL;
    return (unsigned)(a >> 32) & (NAME_SLOTS - 1);
}

/* Pushes the cache's string table and returns the cache (NULL: none, when
 * it cannot be made; decoding goes on without it). */
static struct name_cache *push_name_cache(lua_State *L)
{
    struct name_cache *nc;
    if (lua_getfield(L, LUA_REGISTRYINDEX, NAME_CACHE_KEY) == LUA_TUSERDATA) {
        nc = lua_touserdata(L, -1);
        lua_getiuservalue(L, -1, 1);
        lua_remove(L, -2);
        return nc;
    }
    lua_pop(L, 1);
    nc = lua_newuserdatauv(L, sizeof *nc, 1);
    memset(nc->len, 0, sizeof nc->len);
    lua_createtable(L, NAME_SLOTS, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, -3, 1);
    lua_insert(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, NAME_CACHE_KEY);
    return nc;
}

static void push_name(struct dec *d, const char *p, size_t n)
{
    struct name_cache *nc = d->names;
    unsigned slot;
    if (!nc || n == 0 || n > NAME_MAX_LEN) {
        lua_pushlstring(d->L, p, n);
        return;
    }
    slot = name_slot(p, n);
    if (nc->len[slot] == n && memcmp(nc->bytes[slot], p, n) == 0) {
        lua_rawgeti(d->L, d->names_idx, slot + 1);
        return;
    }
    lua_pushlstring(d->L, p, n);
    lua_pushvalue(d->L, -1);
    lua_rawseti(d->L, d->names_idx, slot + 1);
    memcpy(nc->bytes[slot], p, n);
    nc->len[slot] = (unsigned char)n;
}

static int dec_string(struct dec *d, int name)
{
    const char *s = d->s;
    size_t start = d->pos + 1, i = start;
    int escaped = 0;
    for (;;) {
        unsigned char c = 0;
        i = kn_json_plain_run(s, i, d->len);
        if (i >= d->len)
            break;
        c = (unsigned char)s[i];
        if (c == '"') {
            d->pos = i + 1;
            if (!escaped) {
                if (name)
                    push_name(d, s + start, i - start);
                else
                    lua_pushlstring(d->L, s + start, i - start);
            } else {
                size_t n;
                char *o = scratch(d, i - start);
                unescape(s + start, s + i, o, &n);
                lua_pushlstring(d->L, o, n);
            }
            return 0;
        }
        d->pos = i;
        if (c < 0x20)
            return dfail(d, "control character in string");
        escaped = 1;
        if (++i >= d->len)
            break;
        d->pos = i;
        switch (s[i]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            break;
        case 'u':
            if (i + 4 >= d->len)
                return dfail(d, "short \\u escape");
            for (int k = 1; k <= 4; k++)
                if (hexval(s[i + k]) < 0)
                    return dfail(d, "bad \\u escape");
            i += 4;
            break;
        default:
            return dfail(d, "bad escape in string");
        }
        i++;
    }
    d->pos = i;
    return dfail(d, "unterminated string");
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Integers that fit int64 are parsed here, exactly; anything else (a fraction,
 * an exponent, too many digits) goes to strtod, as cjson does for everything. */
static int dec_number(struct dec *d)
{
    const char *s = d->s;
    size_t start = d->pos, i = start, n;
    int neg = 0, integral = 1, overflow = 0;
    uint64_t v = 0, limit;
    char local[64], *buf, *end;
    double x;
    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    limit = neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1;
    if (i < d->len && s[i] == '0') {
        i++;
    } else if (i < d->len && is_digit(s[i])) {
        for (; i < d->len && is_digit(s[i]); i++) {
            unsigned dg = (unsigned)(s[i] - '0');
            if (overflow || v > (limit - dg) / 10)
                overflow = 1;
            else
                v = v * 10 + dg;
        }
    } else {
        d->pos = i;
        return dfail(d, "bad number");
    }
    if (i < d->len && s[i] == '.') {
        size_t digits = ++i;
        integral = 0;
        while (i < d->len && is_digit(s[i]))
            i++;
        if (i == digits) {
            d->pos = i;
            return dfail(d, "bad number fraction");
        }
    }
    if (i < d->len && (s[i] == 'e' || s[i] == 'E')) {
        size_t digits;
        integral = 0;
        i++;
        if (i < d->len && (s[i] == '+' || s[i] == '-'))
            i++;
        digits = i;
        while (i < d->len && is_digit(s[i]))
            i++;
        if (i == digits) {
            d->pos = i;
            return dfail(d, "bad number exponent");
        }
    }
    d->pos = i;
    if (integral && !overflow) {
        if (!neg)
            lua_pushinteger(d->L, (lua_Integer)v);
        else if (v == (uint64_t)1 << 63)
            lua_pushinteger(d->L, LUA_MININTEGER);
        else
            lua_pushinteger(d->L, -(lua_Integer)v);
        return 0;
    }
    n = i - start;
    buf = n < sizeof local ? local : scratch(d, n + 1);
    memcpy(buf, s + start, n);
    buf[n] = '\0';
    if (d->point != '.') {
        char *dot = memchr(buf, '.', n);
        if (dot)
            *dot = d->point;
    }
    x = strtod(buf, &end);
    if (end != buf + n || isinf(x)) {
        d->pos = start;
        return dfail(d, "number out of range");
    }
    lua_pushnumber(d->L, x);
    return 0;
}

static int dec_word(struct dec *d, const char *word, size_t n)
{
    if (d->len - d->pos < n || memcmp(d->s + d->pos, word, n) != 0)
        return dfail(d, "unexpected character");
    d->pos += n;
    return 0;
}

static int dec_value(struct dec *d, int depth);

/* Members wait on the Lua stack until their container ends, so that its
 * table is created at its final size: filling a table key by key rehashes it
 * log2(n) times, which was a third of the cost of decoding an object. At most
 * FLUSH_AT members wait per level, and the depth limit bounds the levels, so
 * the Lua stack (checked) and the C stack stay small. */
#define FLUSH_AT 1024

/* Moves the n items waiting above the slot at base into the table there,
 * creating the table (sized for them) while the slot still holds nil. */
static void dec_flush(struct dec *d, int base, int object, int n, lua_Integer *next_index)
{
    lua_State *L = d->L;
    if (lua_isnil(L, base)) {
        lua_createtable(L, object ? 0 : n, object ? n : 0);
        if (!object) {
            lua_pushvalue(L, d->mt_idx);
            lua_setmetatable(L, -2);
        }
        lua_replace(L, base);
    }
    for (int i = 0; i < n; i++) {
        if (object) {
            lua_pushvalue(L, base + 1 + 2 * i);
            lua_pushvalue(L, base + 2 + 2 * i);
            lua_rawset(L, base); /* a repeated name: the last one wins, as in cjson and Go */
        } else {
            lua_pushvalue(L, base + 1 + i);
            lua_rawseti(L, base, ++*next_index);
        }
    }
    lua_settop(L, base);
}

static int dec_container(struct dec *d, int depth, int object)
{
    lua_State *L = d->L;
    char close = object ? '}' : ']';
    lua_Integer next_index = 0;
    int base, n = 0;
    if (depth >= LK_JSON_MAX_DEPTH)
        return dfail(d, "nesting too deep");
    if (!lua_checkstack(L, 2 * FLUSH_AT + 8))
        return dfail(d, "nesting too deep for the Lua stack");
    lua_pushnil(L); /* the table's slot */
    base = lua_gettop(L);
    d->pos++;
    skip_ws(d);
    if (d->pos < d->len && d->s[d->pos] == close) {
        d->pos++;
        dec_flush(d, base, object, 0, &next_index);
        return 0;
    }
    for (;;) {
        if (n == FLUSH_AT) {
            dec_flush(d, base, object, n, &next_index);
            n = 0;
        }
        if (object) {
            skip_ws(d);
            if (d->pos >= d->len || d->s[d->pos] != '"')
                return dfail(d, "expected a member name");
            if (dec_string(d, 1) < 0)
                return -1;
            skip_ws(d);
            if (d->pos >= d->len || d->s[d->pos] != ':')
                return dfail(d, "expected ':'");
            d->pos++;
        }
        if (dec_value(d, depth + 1) < 0)
            return -1;
        n++;
        skip_ws(d);
        if (d->pos < d->len && d->s[d->pos] == ',') {
            d->pos++;
            continue;
        }
        if (d->pos < d->len && d->s[d->pos] == close) {
            d->pos++;
            dec_flush(d, base, object, n, &next_index);
            return 0;
        }
        return dfail(d, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int dec_value(struct dec *d, int depth)
{
    skip_ws(d);
    if (d->pos >= d->len)
        return dfail(d, "unexpected end of input");
    switch (d->s[d->pos]) {
    case '{': return dec_container(d, depth, 1);
    case '[': return dec_container(d, depth, 0);
    case '"': return dec_string(d, 0);
    case 't':
        if (dec_word(d, "true", 4) < 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_word(d, "false", 5) < 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_word(d, "null", 4) < 0)
            return -1;
        lua_pushlightuserdata(d->L, NULL);
        return 0;
    default:
        if (d->s[d->pos] == '-' || is_digit(d->s[d->pos]))
            return dec_number(d);
        return dfail(d, "unexpected character");
    }
}

/* Returns the value, or nothing (and d->rc stays -1) after a decode error. */
static int decode_protected(lua_State *L)
{
    struct dec *d = lua_touserdata(L, 1);
    lua_settop(L, 1);
    lua_pushnil(L);           /* 2: the scratch userdata, once one is needed */
    lk_json_push_array_mt(L); /* 3 */
    d->names = push_name_cache(L); /* 4 */
    d->scratch_idx = 2;
    d->mt_idx = 3;
    d->names_idx = 4;
    if (dec_value(d, 0) < 0)
        return 0;
    skip_ws(d);
    if (d->pos != d->len) {
        dfail(d, "trailing characters after the value");
        return 0;
    }
    d->rc = 0;
    return 1;
}

int lk_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen)
{
    struct dec d = {0};
    int status;
    d.L = L;
    d.s = s;
    d.len = len;
    d.point = localeconv()->decimal_point[0];
    d.rc = -1;
    d.err = err;
    d.errlen = errlen;
    if (err && errlen)
        err[0] = '\0';
    if (!lua_checkstack(L, 2)) {
        snprintf(err, errlen, "out of Lua stack");
        return -1;
    }
    lua_pushcfunction(L, decode_protected);
    lua_pushlightuserdata(L, &d);
    status = lua_pcall(L, 1, 1, 0);
    if (status != LUA_OK) {
        set_lua_error(L, status, err, errlen);
        lua_pop(L, 1);
        return -1;
    }
    if (d.rc < 0) {
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ encode */

struct key {
    const char *s; /* points into the key string, which the table keeps alive */
    size_t len;
};

/* Output goes through a small staging area: most writes are a byte or two of
 * punctuation, and kn_buf_append per write was the encoder's top cost. */
#define STAGE_SIZE 4096

struct enc {
    lua_State *L;
    struct kn_buf *out;
    char stage[STAGE_SIZE];
    size_t staged;
    /* Keys of the objects being written, innermost last; a userdata at keys_idx. */
    struct key *keys;
    size_t nkeys, keys_cap;
    int keys_idx, mt_idx;
    char point;
    int rc;
    char what[128];  /* the innermost failure */
    char path[160];  /* where it happened, built while unwinding */
    int path_cut;
};

static int efail(struct enc *e, const char *what)
{
    snprintf(e->what, sizeof e->what, "%s", what);
    return -1;
}

static int flush(struct enc *e)
{
    if (e->staged && kn_buf_append(e->out, e->stage, e->staged) < 0)
        return efail(e, "out of memory");
    e->staged = 0;
    return 0;
}

static int put(struct enc *e, const char *p, size_t n)
{
    if (n > STAGE_SIZE - e->staged) {
        if (flush(e) < 0)
            return -1;
        if (n > STAGE_SIZE / 2) {
            if (kn_buf_append(e->out, p, n) < 0)
                return efail(e, "out of memory");
            return 0;
        }
    }
    memcpy(e->stage + e->staged, p, n);
    e->staged += n;
    return 0;
}

#define PUT(e, lit) put((e), (lit), sizeof(lit) - 1)

static inline int put_char(struct enc *e, char c)
{
    if (e->staged == STAGE_SIZE && flush(e) < 0)
        return -1;
    e->stage[e->staged++] = c;
    return 0;
}

/* Only runs on the error path, so it may be slow. The path keeps its outer
 * end: that is where a reader starts looking. */
static void path_prepend(struct enc *e, const char *seg, size_t n)
{
    size_t cap = sizeof e->path - 1, keep = strlen(e->path);
    if (n > cap)
        n = cap;
    if (n + keep > cap) {
        keep = cap - n;
        e->path_cut = 1;
    }
    memmove(e->path + n, e->path, keep);
    memcpy(e->path, seg, n);
    e->path[n + keep] = '\0';
}

static void path_key(struct enc *e, const char *s, size_t len)
{
    char seg[80];
    int plain = len > 0;
    size_t shown = len > 48 ? 48 : len;
    for (size_t i = 0; i < len && plain; i++) {
        char c = s[i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    }
    /* Label and annotation keys hold dots and slashes: bracket them so the
     * path still reads unambiguously. */
    snprintf(seg, sizeof seg, plain ? ".%.*s%s" : "[\"%.*s%s\"]", (int)shown, s, shown < len ? "..." : "");
    path_prepend(e, seg, strlen(seg));
}

static void path_index(struct enc *e, lua_Unsigned i)
{
    char seg[32];
    snprintf(seg, sizeof seg, "[%llu]", (unsigned long long)i);
    path_prepend(e, seg, strlen(seg));
}

static int enc_integer(struct enc *e, lua_Integer v)
{
    char buf[24], *p = buf + sizeof buf;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return put(e, p, (size_t)(buf + sizeof buf - p));
}

/* Integral floats within +-2^53 are written as integers: 3.0 and 3 mean the
 * same to the API server, and "3" is what Go writes (they decode back as
 * integers, which is exact there). Other floats get the
 * shortest of %.15g, %.16g, %.17g that reads back as the same double. */
static int enc_float(struct enc *e, double x)
{
    char buf[40];
    int n = 0;
    if (isnan(x))
        return efail(e, "cannot encode NaN");
    if (isinf(x))
        return efail(e, x > 0 ? "cannot encode inf" : "cannot encode -inf");
    if (x == floor(x) && fabs(x) <= 9007199254740992.0) {
        /* "-0" would read back as the integer 0; "-0.0" stays a float and
         * keeps its sign. */
        if (x == 0 && signbit(x))
            return PUT(e, "-0.0");
        return enc_integer(e, (lua_Integer)x);
    }
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    if (e->point != '.') {
        char *p = memchr(buf, e->point, (size_t)n);
        if (p)
            *p = '.';
    }
    return put(e, buf, (size_t)n);
}

static int enc_string(struct enc *e, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    if (put_char(e, '"'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6] = { '\\', 0 };
        size_t n = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue; /* bytes >= 0x80 pass through: UTF-8 stays UTF-8 */
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\t': esc[1] = 't'; break;
        case '\r': esc[1] = 'r'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            n = 6;
        }
        if ((i > run && put(e, s + run, i - run)) || put(e, esc, n))
            return -1;
        run = i + 1;
    }
    if (len > run && put(e, s + run, len - run))
        return -1;
    return put_char(e, '"');
}

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->s, y->s, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void push_key(struct enc *e, const char *s, size_t len)
{
    if (e->nkeys == e->keys_cap) {
        size_t cap = e->keys_cap ? e->keys_cap * 2 : 64;
        struct key *k = lua_newuserdatauv(e->L, cap * sizeof *k, 0);
        if (e->nkeys)
            memcpy(k, e->keys, e->nkeys * sizeof *k);
        lua_replace(e->L, e->keys_idx); /* outer levels index it, never hold pointers */
        e->keys = k;
        e->keys_cap = cap;
    }
    e->keys[e->nkeys].s = s;
    e->keys[e->nkeys].len = len;
    e->nkeys++;
}

static int enc_value(struct enc *e, int idx, int depth);

static int enc_array(struct enc *e, int idx, lua_Unsigned n, int depth)
{
    lua_State *L = e->L;
    if (put_char(e, '['))
        return -1;
    for (lua_Unsigned i = 1; i <= n; i++) {
        if (i > 1 && put_char(e, ','))
            return -1;
        lua_rawgeti(L, idx, (lua_Integer)i);
        if (enc_value(e, lua_gettop(L), depth + 1) < 0) {
            path_index(e, i);
            return -1;
        }
        lua_pop(L, 1);
    }
    return put_char(e, ']');
}

static int enc_object(struct enc *e, int idx, size_t base, size_t n, int depth)
{
    lua_State *L = e->L;
    qsort(e->keys + base, n, sizeof *e->keys, key_cmp);
    if (put_char(e, '{'))
        return -1;
    for (size_t j = 0; j < n; j++) {
        struct key k = e->keys[base + j]; /* re-read: a nested object may move the array */
        if ((j > 0 && put_char(e, ',')) || enc_string(e, k.s, k.len) || put_char(e, ':'))
            return -1;
        lua_pushlstring(L, k.s, k.len);
        lua_rawget(L, idx);
        if (enc_value(e, lua_gettop(L), depth + 1) < 0) {
            path_key(e, k.s, k.len);
            return -1;
        }
        lua_pop(L, 1);
    }
    return put_char(e, '}');
}

enum { K_STRING = 1, K_INTEGER = 2 };

static int enc_table(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    size_t base = e->nkeys, n = 0;
    lua_Integer min = 0, max = 0;
    int kinds = 0, rc;
    if (depth >= LK_JSON_MAX_DEPTH)
        return efail(e, "nesting too deep (a table that contains itself?)");
    if (!lua_checkstack(L, 4))
        return efail(e, "nesting too deep for the Lua stack");
    if (lua_getmetatable(L, idx)) {
        int array = lua_rawequal(L, -1, e->mt_idx);
        lua_pop(L, 1);
        if (array)
            return enc_array(e, idx, lua_rawlen(L, idx), depth);
    }
    /* Metatables other than ours are ignored: the encoder reads raw fields. */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            kinds |= K_STRING;
            push_key(e, s, len);
        } else if (lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            if (!(kinds & K_INTEGER) || k < min)
                min = k;
            if (!(kinds & K_INTEGER) || k > max)
                max = k;
            kinds |= K_INTEGER;
        } else {
            char what[96];
            snprintf(what, sizeof what, "cannot encode a table with a %s key",
                     lua_type(L, -1) == LUA_TNUMBER ? "non-integer number" : luaL_typename(L, -1));
            lua_pop(L, 1);
            e->nkeys = base;
            return efail(e, what);
        }
    }
    if (kinds == (K_STRING | K_INTEGER)) {
        e->nkeys = base;
        return efail(e, "cannot encode a table with both string and integer keys");
    }
    if (n == 0)
        return PUT(e, "{}"); /* an empty array must carry the array metatable */
    if (kinds == K_INTEGER) {
        /* n distinct integer keys within 1..n are exactly 1..n */
        if (min != 1 || max != (lua_Integer)n)
            return efail(e, "cannot encode a table with integer keys that are not 1..n (a sparse array?)");
        return enc_array(e, idx, n, depth);
    }
    rc = enc_object(e, idx, base, n, depth);
    e->nkeys = base;
    return rc;
}

static int enc_value(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return PUT(e, "null");
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? PUT(e, "true") : PUT(e, "false");
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return enc_integer(e, lua_tointeger(L, idx));
        return enc_float(e, (double)lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return enc_string(e, s, len);
    }
    case LUA_TTABLE:
        return enc_table(e, idx, depth);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return PUT(e, "null"); /* cjson.null, and our own decoder's null */
        /* fallthrough */
    default: {
        char what[64];
        snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
        return efail(e, what);
    }
    }
}

static int encode_protected(lua_State *L)
{
    struct enc *e = lua_touserdata(L, 1);
    lua_settop(L, 2);         /* 2: the value */
    lua_pushnil(L);           /* 3: the keys userdata, once one is needed */
    lk_json_push_array_mt(L); /* 4 */
    e->keys_idx = 3;
    e->mt_idx = 4;
    e->rc = enc_value(e, 2, 0);
    if (e->rc == 0)
        e->rc = flush(e);
    return 0;
}

int lk_json_encode(lua_State *L, int idx, struct kn_buf *out, char *err, size_t errlen)
{
    struct enc e = {0};
    int status;
    e.L = L;
    e.out = out;
    e.point = localeconv()->decimal_point[0];
    e.rc = -1;
    if (err && errlen)
        err[0] = '\0';
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 3)) {
        snprintf(err, errlen, "out of Lua stack");
        return -1;
    }
    lua_pushcfunction(L, encode_protected);
    lua_pushlightuserdata(L, &e);
    lua_pushvalue(L, idx);
    status = lua_pcall(L, 2, 0, 0);
    if (status != LUA_OK) {
        set_lua_error(L, status, err, errlen);
        lua_pop(L, 1);
        return -1;
    }
    if (e.rc < 0) {
        if (e.path[0])
            snprintf(err, errlen, "%s at %s%s", e.what, e.path, e.path_cut ? "..." : "");
        else
            snprintf(err, errlen, "%s", e.what);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- Lua API */

/* core.json_decode(s) --> value | nil, err */
static int l_json_decode(lua_State *L)
{
    char err[128];
    size_t len;
    const char *s;
    luaL_checktype(L, 1, LUA_TSTRING);
    s = lua_tolstring(L, 1, &len); /* argument 1 keeps it alive */
    if (lk_json_decode(L, s, len, err, sizeof err) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static int buf_gc(lua_State *L)
{
    kn_buf_free(lua_touserdata(L, 1));
    return 0;
}

/* core.json_encode(v) --> string | nil, err */
static int l_json_encode(lua_State *L)
{
    char err[256];
    struct kn_buf *b;
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, BUF_MT);
    if (lk_json_encode(L, 1, b, err, sizeof err) < 0) {
        kn_buf_free(b);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    kn_buf_free(b); /* now rather than at the next collection */
    return 1;
}

/* core.array([t]) --> t, marked to encode as a JSON array even when empty */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lk_json_push_array_mt(L);
    if (lua_getmetatable(L, 1)) {
        /* Replacing someone's metatable would silently drop its behaviour. */
        if (!lua_rawequal(L, -1, -2))
            return luaL_argerror(L, 1, "the table already has another metatable");
        lua_pop(L, 1);
    }
    lua_setmetatable(L, 1);
    return 1;
}

void lk_json_register(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "json_decode", l_json_decode },
        { "json_encode", l_json_encode },
        { "array", l_array },
        { NULL, NULL },
    };
    luaL_newmetatable(L, BUF_MT);
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
    lk_json_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
