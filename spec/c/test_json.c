/* kn_json: the strict tokenizer that reads exec credentials and API answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_json.h"
#include "test.h"

static int parse(struct kn_json *j, const char *s)
{
    memset(j, 0, sizeof *j);
    return kn_json_parse(j, s, strlen(s));
}

/* Parses a heap copy of exactly len bytes, no NUL after it, so ASan sees any
 * read past the end. */
static int parse_exact(const char *s, size_t len, char *error, size_t error_size)
{
    struct kn_json j = {0};
    char *copy = malloc(len ? len : 1);
    int rc;
    memcpy(copy, s, len);
    rc = kn_json_parse(&j, copy, len);
    snprintf(error, error_size, "%s", j.error);
    kn_json_free(&j);
    free(copy);
    return rc;
}

/* The unescaped string at idx, compared with want (want_len bytes: may hold NUL). */
static int string_is(const struct kn_json *j, int idx, const char *want, size_t want_len)
{
    size_t len = 0;
    char *s = kn_json_string(j, idx, &len);
    int ok = s && len == want_len && memcmp(s, want, len) == 0 && s[len] == '\0';
    if (s && !ok) {
        fprintf(stderr, "  got %zu bytes:", len);
        for (size_t i = 0; i < len; i++)
            fprintf(stderr, " %02x", (unsigned char)s[i]);
        fputc('\n', stderr);
    }
    free(s);
    return ok;
}

static void test_nested(void)
{
    static const char doc[] =
        " {\"a\": {\"b\": [1, {\"c\": \"x\"}, [true, false, null], {}], \"d\": \"e\"},\n"
        "  \"n\": -12.5e+3, \"empty\": [ ], \"s\": \"q\\\"b\\\\s\\/t\\tn\\nr\\rb\\bf\\f\", \"last\": 0 } ";
    struct kn_json j;
    int a, b, d, n, s, last, inner;
    CHECK(parse(&j, doc) == 0);
    CHECK(j.error[0] == '\0');
    CHECK(j.tok[0].type == KN_J_OBJECT);
    CHECK(j.tok[0].size == 5);
    CHECK(j.tok[0].next == j.n);

    a = kn_json_member(&j, 0, "a");
    CHECK(a > 0 && j.tok[a].type == KN_J_OBJECT && j.tok[a].size == 2);
    b = kn_json_path(&j, 0, "a.b");
    CHECK(b > 0 && j.tok[b].type == KN_J_ARRAY && j.tok[b].size == 4);
    /* Lookup must step over a's whole subtree, not into it. */
    d = kn_json_path(&j, 0, "a.d");
    CHECK(kn_json_streq(&j, d, "e"));
    n = kn_json_member(&j, 0, "n");
    CHECK(n == j.tok[a].next + 1);
    CHECK(n > 0 && j.tok[n].type == KN_J_NUMBER);
    CHECK(n > 0 && j.tok[n].end - j.tok[n].start == 8 && memcmp(doc + j.tok[n].start, "-12.5e+3", 8) == 0);
    CHECK(kn_json_member(&j, 0, "c") == -1); /* only a's member's member */
    inner = b + 1;
    CHECK(j.tok[inner].type == KN_J_NUMBER);
    inner = j.tok[inner].next;
    CHECK(j.tok[inner].type == KN_J_OBJECT && kn_json_streq(&j, kn_json_member(&j, inner, "c"), "x"));
    inner = j.tok[inner].next;
    CHECK(j.tok[inner].type == KN_J_ARRAY && j.tok[inner].size == 3);
    CHECK(j.tok[inner + 1].type == KN_J_TRUE && j.tok[inner + 2].type == KN_J_FALSE &&
          j.tok[inner + 3].type == KN_J_NULL);
    inner = j.tok[inner].next;
    CHECK(j.tok[inner].type == KN_J_OBJECT && j.tok[inner].size == 0 && j.tok[inner].next == j.tok[b].next);
    CHECK(j.tok[kn_json_member(&j, 0, "empty")].type == KN_J_ARRAY);
    CHECK(j.tok[kn_json_member(&j, 0, "empty")].size == 0);

    s = kn_json_member(&j, 0, "s");
    CHECK(string_is(&j, s, "q\"b\\s/t\tn\nr\rb\bf\f", 16));
    last = kn_json_member(&j, 0, "last");
    CHECK(last == j.n - 1 && j.tok[last].type == KN_J_NUMBER);

    /* The lookups answer -1 rather than guess. */
    CHECK(kn_json_member(&j, 0, "missing") == -1);
    CHECK(kn_json_member(&j, b, "c") == -1);     /* not an object */
    CHECK(kn_json_member(&j, -1, "a") == -1);
    CHECK(kn_json_member(&j, j.n, "a") == -1);
    CHECK(kn_json_path(&j, 0, "a.b.c") == -1);
    CHECK(kn_json_path(&j, 0, "a.x") == -1);
    CHECK(kn_json_path(&j, 0, "a..d") == -1);
    CHECK(kn_json_path(&j, 0, "") == 0);
    CHECK(kn_json_path(&j, -1, "a") == -1);
    {
        char longname[300];
        memset(longname, 'a', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        CHECK(kn_json_path(&j, 0, longname) == -1);
    }
    CHECK(!kn_json_streq(&j, d, "ee"));
    CHECK(!kn_json_streq(&j, d, ""));
    CHECK(!kn_json_streq(&j, n, "-12.5e+3")); /* a number is not a string */
    CHECK(!kn_json_streq(&j, -1, "e"));
    CHECK(kn_json_string(&j, n, NULL) == NULL);
    CHECK(kn_json_string(&j, a, NULL) == NULL);
    kn_json_free(&j);

    /* First of duplicate members wins; an escaped name does not match. */
    CHECK(parse(&j, "{\"k\":1,\"k\":2,\"\\u006b2\":3}") == 0);
    CHECK(kn_json_member(&j, 0, "k") == 2);
    CHECK(kn_json_member(&j, 0, "k2") == -1);
    kn_json_free(&j);

    /* Scalars are documents too. */
    CHECK(parse(&j, "\"just a string\"") == 0 && j.n == 1 && kn_json_streq(&j, 0, "just a string"));
    kn_json_free(&j);
    CHECK(parse(&j, "\n null \t") == 0 && j.n == 1 && j.tok[0].type == KN_J_NULL);
    kn_json_free(&j);
}

static void test_unicode(void)
{
    static const struct {
        const char *json, *want;
        size_t len;
    } cases[] = {
        { "\"\\u0041\\u00e9\\u00E9\"", "A\xc3\xa9\xc3\xa9", 5 },
        { "\"\\u20ac\"", "\xe2\x82\xac", 3 },
        { "\"\\u07ff\\u0800\"", "\xdf\xbf\xe0\xa0\x80", 5 },
        { "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4 },           /* U+1F600 from a surrogate pair */
        { "\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4 },           /* U+10FFFF */
        { "\"x\\ud83dy\"", "x\xef\xbf\xbdy", 5 },                  /* lone high surrogate: U+FFFD */
        { "\"\\ude00\"", "\xef\xbf\xbd", 3 },                      /* lone low surrogate */
        { "\"\\ud83d\\u0041\"", "\xef\xbf\xbd" "A", 4 },           /* high surrogate, then not a low one */
        { "\"\\ud83d\\\\ude00\"", "\xef\xbf\xbd\\ude00", 9 },      /* escaped backslash is no \u */
        { "\"a\\u0000b\"", "a\0b", 3 },
        { "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", "caf\xc3\xa9 \xf0\x9f\x98\x80", 10 }, /* raw UTF-8 kept */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct kn_json j;
        int ok = parse(&j, cases[i].json) == 0;
        CHECK_MSG(ok && string_is(&j, 0, cases[i].want, cases[i].len), "unescaping %s: %s", cases[i].json, j.error);
        kn_json_free(&j);
    }
}

static void test_numbers(void)
{
    static const char *const good[] = { "0", "-0", "7", "-12", "1.5", "0.001", "1e10", "1E-10", "-1.25e+3",
                                        "2e0", "123456789012345678901234567890", "0e5" };
    static const char *const bad[] = { "01", "-01", "00", "-", "1.", ".5", "1e", "1e+", "+1", "0x1", "1.e3",
                                       "--1", "1.5.2", "Infinity", "NaN", "[01]", "{\"a\":01}", "[-]", "[1e]" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct kn_json j;
        int ok = parse(&j, good[i]) == 0 && j.tok[0].type == KN_J_NUMBER && j.tok[0].start == 0 &&
                 j.tok[0].end == strlen(good[i]);
        CHECK_MSG(ok, "number %s: %s", good[i], j.error);
        kn_json_free(&j);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char error[96];
        int ok = parse_exact(bad[i], strlen(bad[i]), error, sizeof error) == -1 && error[0];
        CHECK_MSG(ok, "number %s was accepted", bad[i]);
    }
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char error[96];
        CHECK_MSG(parse_exact(good[i], strlen(good[i]), error, sizeof error) == 0,
                  "number %s without a NUL after it: %s", good[i], error);
    }
}

static void test_invalid(void)
{
    static const struct {
        const char *doc;
        size_t len; /* 0: strlen */
    } bad[] = {
        { "", 0 }, { "  \n", 0 }, { "[1,]", 0 }, { "{\"a\":1,}", 0 }, { "[1,,2]", 0 }, { "[,1]", 0 },
        { "{\"a\" 1}", 0 }, { "{a:1}", 0 }, { "{'a':1}", 0 }, { "{\"a\":}", 0 }, { "{\"a\"}", 0 },
        { "{1:2}", 0 }, { "[1 2]", 0 }, { "[", 0 }, { "{", 0 }, { "]", 0 }, { "[1}", 0 }, { "{\"a\":1]", 0 },
        { "\"abc", 0 }, { "\"abc\\", 0 }, { "\"abc\\\"", 0 }, { "[\"a]", 0 },
        { "\"a\x01z\"", 0 }, { "\"a\nb\"", 0 }, { "\"a\tb\"", 0 }, { "\"\x1f\"", 0 },
        { "\"\\x\"", 0 }, { "\"\\a\"", 0 }, { "\"\\'\"", 0 }, { "\"\\U0041\"", 0 },
        { "\"\\u12\"", 0 }, { "\"\\u123\"", 0 }, { "\"\\u12g4\"", 0 }, { "\"\\u", 0 },
        { "tru", 0 }, { "nul", 0 }, { "True", 0 }, { "nulll", 0 }, { "undefined", 0 },
        { "[1] x", 0 }, { "{} {}", 0 }, { "1 2", 0 }, { "\"a\"\"b\"", 0 }, { "[1]//", 0 },
        { "[1]\0", 4 }, /* a NUL after the value is trailing garbage, not an end */
        { "\"a\0b\"", 5 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char error[96];
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].doc);
        int rc = parse_exact(bad[i].doc, len, error, sizeof error);
        CHECK_MSG(rc == -1 && strstr(error, "at byte"), "invalid JSON #%zu \"%s\" gave %d, error \"%s\"", i,
                  bad[i].doc, rc, error);
    }
    /* Valid documents cut short anywhere are invalid, and read nothing past the cut. */
    {
        static const char doc[] = "{\"a\":[true,false,null,-1.5e+3,\"\\u00e9\\n\"],\"b\":{}}";
        char error[96];
        CHECK(parse_exact(doc, strlen(doc), error, sizeof error) == 0);
        for (size_t len = 0; len < strlen(doc); len++)
            CHECK_MSG(parse_exact(doc, len, error, sizeof error) == -1, "%.*s (cut at %zu) was accepted", (int)len,
                      doc, len);
    }
    /* The error tells where. */
    {
        struct kn_json j;
        CHECK(parse(&j, "[1, 2,]") == -1);
        CHECK_HAS(j.error, "byte 6");
        kn_json_free(&j);
        CHECK(parse(&j, "{\"a\": \"x\x02\"}") == -1);
        CHECK_HAS(j.error, "control character");
        kn_json_free(&j);
    }
}

/* Deep nesting is refused with an error, before the recursion can hurt. */
static void test_depth(void)
{
    enum { DEEP = 20000 }; /* past the limit (10,100: an object as deep as the API server stores, in an event) */
    char *doc = malloc(2 * DEEP * 5 + 2);
    struct kn_json j;
    size_t n = 0;

    memset(doc, '[', DEEP);
    doc[DEEP] = '\0';
    CHECK(parse(&j, doc) == -1);
    CHECK_HAS(j.error, "deep");
    kn_json_free(&j);

    memset(doc + DEEP, ']', DEEP);
    doc[2 * DEEP] = '\0';
    CHECK(parse(&j, doc) == -1);
    CHECK_HAS(j.error, "deep");
    kn_json_free(&j);

    for (int i = 0; i < DEEP; i++)
        memcpy(doc + n, "{\"a\":", 5), n += 5;
    doc[n] = '\0';
    CHECK(parse(&j, doc) == -1);
    CHECK_HAS(j.error, "deep");
    kn_json_free(&j);

    /* Nesting that real objects have still parses. */
    memset(doc, '[', 100);
    memset(doc + 100, ']', 100);
    doc[200] = '\0';
    CHECK(parse(&j, doc) == 0 && j.n == 100 && j.tok[0].next == 100 && j.tok[98].size == 1);
    kn_json_free(&j);
    free(doc);
}

static void test_quote(void)
{
    static const char *const cases[] = {
        "", "plain", "quote\" backslash\\ slash/", "ctl \x01\x02\x1f\n\t\r\b\f", "utf8 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
        "\x7f del", "\\u0041 stays literal", "ends with \\",
    };
    struct kn_buf b = {0};
    char all[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct kn_json j;
        kn_buf_reset(&b);
        CHECK(kn_json_quote(&b, cases[i]) == 0);
        CHECK(parse(&j, b.data) == 0);
        CHECK(j.n == 1 && j.tok[0].type == KN_J_STRING);
        CHECK_MSG(string_is(&j, 0, cases[i], strlen(cases[i])), "quote round trip of \"%s\" via %s", cases[i],
                  b.data);
        kn_json_free(&j);
    }

    /* Every byte but NUL survives the round trip. */
    for (int c = 1; c < 256; c++)
        all[c - 1] = (char)c;
    all[255] = '\0';
    {
        struct kn_json j;
        kn_buf_reset(&b);
        CHECK(kn_json_quote(&b, all) == 0);
        CHECK(parse(&j, b.data) == 0);
        CHECK(string_is(&j, 0, all, 255));
        kn_json_free(&j);
    }

    /* The exact form: two-character escapes for " and \, \u00XX for controls. */
    kn_buf_reset(&b);
    CHECK(kn_json_quote(&b, "a\"b\\c\n\x01/") == 0);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\u000a\\u0001/\"");
    /* Appends, so a document can be built piece by piece. */
    CHECK(kn_json_quote(&b, "x") == 0);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\u000a\\u0001/\"\"x\"");
    kn_buf_free(&b);
}

/* kn_json_plain_run reads eight bytes at a time: every stop byte at every
 * offset and alignment, next to bytes that must not stop it (0x20, 0x7f and
 * the bytes with the high bit set, which a borrow in the word trick could
 * confuse), in a buffer of exactly len bytes so ASan sees a read past it. */
static void test_plain_run(void)
{
    static const unsigned char stops[] = { '"', '\\', 0x00, 0x1f, 0x0a };
    static const unsigned char fill[] = { 'a', 0x20, 0x7f, 0x80, 0xff, 0x21, 0x5b, 0x5d, 0xe2 };
    for (size_t len = 0; len <= 24; len++)
        for (size_t f = 0; f < sizeof fill; f++)
            for (size_t at = 0; at <= len; at++) /* at == len: no stop byte */
                for (size_t k = 0; k < (at < len ? sizeof stops : 1); k++)
                    for (size_t from = 0; from <= at; from += 3) {
                        unsigned char *b = malloc(len ? len : 1);
                        size_t got;
                        memset(b, fill[f], len);
                        if (at < len)
                            b[at] = stops[k];
                        got = kn_json_plain_run((const char *)b, from, len);
                        CHECK_MSG(got == at, "plain_run len %zu fill %02x stop %02x at %zu from %zu: got %zu", len,
                                  fill[f], at < len ? stops[k] : 0, at, from, got);
                        free(b);
                    }
}

void test_json(void)
{
    test_plain_run();
    test_nested();
    test_unicode();
    test_numbers();
    test_invalid();
    test_depth();
    test_quote();
}
