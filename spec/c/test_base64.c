/* kn_base64: the *-data fields of kubeconfig files. */
#include <stdlib.h>
#include <string.h>

#include "kn_base64.h"
#include "test.h"

static void test_vectors(void)
{
    /* RFC 4648, section 10. */
    static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const coded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        char *enc = kn_base64_encode((const unsigned char *)plain[i], strlen(plain[i]));
        size_t len = 99;
        unsigned char *dec = kn_base64_decode(coded[i], strlen(coded[i]), &len);
        CHECK_STR(enc, coded[i]);
        CHECK(dec && len == strlen(plain[i]) && memcmp(dec, plain[i], len) == 0 && dec[len] == '\0');
        free(enc);
        free(dec);
    }
}

static void test_round_trips(void)
{
    unsigned char src[21];
    unsigned seed = 12345;
    for (size_t n = 0; n <= 20; n++) {
        char *enc;
        unsigned char *dec;
        size_t len = 99;
        /* Edge bytes first, then pseudo-random ones. */
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            src[i] = i == 0 ? 0x00 : i == 1 ? 0xff : (unsigned char)(seed >> 16);
        }
        enc = kn_base64_encode(src, n);
        CHECK(enc && strlen(enc) == (n + 2) / 3 * 4);
        if (enc) {
            /* No NUL after the input: srclen alone must bound the reads. */
            char *exact = malloc(strlen(enc) ? strlen(enc) : 1);
            memcpy(exact, enc, strlen(enc));
            dec = kn_base64_decode(exact, strlen(enc), &len);
            free(exact);
        } else {
            dec = NULL;
        }
        CHECK(dec && len == n && memcmp(dec, src, n) == 0 && dec[n] == '\0');
        free(dec);
        free(enc);
    }
    /* outlen is optional. */
    {
        unsigned char *dec = kn_base64_decode("Zm9v", 4, NULL);
        CHECK(dec && strcmp((char *)dec, "foo") == 0);
        free(dec);
    }
}

/* YAML folds long values; kubectl's own output wraps nothing, but people do. */
static void test_whitespace(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "Zm9v\nYmFy", "foobar" },       { " Zm9v YmE= \r\n", "fooba" }, { "Zm\r\n9v\tYg\n=\n=\n", "foob" },
        { "  \n\t", "" },                 { "Z g = =", "f" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len = 99;
        unsigned char *dec = kn_base64_decode(cases[i].in, strlen(cases[i].in), &len);
        CHECK(dec && len == strlen(cases[i].out) && memcmp(dec, cases[i].out, len) == 0);
        free(dec);
    }
    /* srclen, not the NUL, ends the input. */
    {
        size_t len = 99;
        unsigned char *dec = kn_base64_decode("Zm9vYmFyJUNK", 8, &len);
        CHECK(dec && len == 6 && memcmp(dec, "foobar", 6) == 0);
        free(dec);
    }
}

static void test_invalid(void)
{
    static const struct {
        const char *in;
        size_t len; /* 0: strlen */
    } bad[] = {
        { "Zm9v!", 0 },    { "Zm9-", 0 },     { "Zm9_", 0 },      /* URL-safe alphabet is not standard */
        { "Zm9v\xc3\xa9", 0 }, { "Zm\0v", 4 }, { "Zm9v.", 0 },
        { "Zg==Zg==", 0 }, { "Zg=a", 0 },     { "Zm9vYg==Zm9v", 0 }, { "Zg= =a", 0 }, /* data after '=' */
        { "Zg=", 0 },      { "Zg===", 0 },    { "Zm8==", 0 },     { "Zm9v=", 0 }, { "Zm9v==", 0 },
        { "=", 0 },        { "====", 0 },     { "=Zg=", 0 },                      /* wrong padding */
        { "Z", 0 },        { "Zm9vY", 0 },    { "Zm9vY===", 0 },  { "Z===", 0 }, /* length % 4 == 1 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t len = 99;
        unsigned char *dec = kn_base64_decode(bad[i].in, bad[i].len ? bad[i].len : strlen(bad[i].in), &len);
        CHECK_MSG(!dec, "invalid base64 #%zu \"%s\" decoded to %zu bytes", i, bad[i].in, len);
        free(dec);
    }
}

void test_base64(void)
{
    test_vectors();
    test_round_trips();
    test_whitespace();
    test_invalid();
}
