/* libFuzzer target for exec credential plugin output: arbitrary bytes through
 * kn_exec_parse for both API versions, and through kn_parse_rfc3339 as a
 * string. Besides the sanitizers it checks what the client relies on: a
 * failure leaves nothing behind (no token, no certificate, no expiry) and
 * says why; a success holds a non-empty token or a certificate with its key;
 * and a plain "YYYY-MM-DDTHH:MM:SSZ" time that parses prints back the same.
 *
 * make fuzz (or build/fuzz/fuzz_exec spec/fuzz/corpus/exec -dict=spec/fuzz/exec.dict) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kn_exec.h"

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            __builtin_trap();                                                                                          \
    } while (0)

static const char *const apis[] = { "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1" };

static void check_time(const char *s)
{
    time_t t = kn_parse_rfc3339(s);
    struct tm tm;
    char back[64];
    if (t == -1)
        return;
    /* every accepted time has the fixed-width date and time in front */
    CHECK(strlen(s) >= 20 && s[4] == '-' && s[7] == '-' && s[13] == ':' && s[16] == ':');
    if (strlen(s) != 20 || s[10] != 'T' || s[19] != 'Z' || strncmp(s + 17, "60", 2) == 0 || s[0] == '0')
        return;
    CHECK(gmtime_r(&t, &tm) != NULL);
    CHECK(strftime(back, sizeof back, "%Y-%m-%dT%H:%M:%SZ", &tm) == 20);
    CHECK(strcmp(back, s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Heap copies of exactly the input (and of it as a C string), so a read
     * past the end is caught. */
    char *json = malloc(size ? size : 1);
    char *str = malloc(size + 1);
    memcpy(json, data, size);
    memcpy(str, data, size);
    str[size] = '\0';
    for (int a = 0; a < 2; a++) {
        struct kn_exec_cred cred;
        struct kn_err err = {0};
        memset(&cred, 0xA5, sizeof cred); /* it must set every field itself */
        if (kn_exec_parse(json, size, apis[a], &cred, &err) < 0) {
            CHECK(err.msg[0] != '\0');
            CHECK(cred.token == NULL && cred.cert.data == NULL && cred.cert.len == 0 && cred.key.data == NULL &&
                  cred.key.len == 0 && cred.expiry == 0);
        } else {
            CHECK(cred.token != NULL || cred.cert.len != 0);
            CHECK(cred.token == NULL || cred.token[0] != '\0');
            CHECK((cred.cert.len == 0) == (cred.key.len == 0));
            CHECK(cred.expiry != -1);
            if (cred.token)
                (void)strlen(cred.token);
        }
        kn_exec_cred_clear(&cred);
        CHECK(cred.token == NULL && cred.cert.data == NULL && cred.key.data == NULL);
    }
    check_time(str);
    free(str);
    free(json);
    return 0;
}
