/* libFuzzer target for kubeconfig files: the input is written to a file (one
 * path per process) and loaded with kn_config_from_kubeconfig, with its
 * current-context and with the context "dev". When the input holds a line
 * "#file2", the text after it becomes a second file, and the two are merged
 * as $KUBECONFIG merges them (with a missing file between them, which is
 * skipped). Besides the sanitizers it checks that a failure says why and a
 * success is a usable configuration.
 *
 * The files a kubeconfig names (certificate-authority, client-certificate,
 * client-key, tokenFile) are read: a few small ones sit next to the
 * kubeconfig (ca.crt, client.crt, client.key, token) so relative paths find
 * them. Any other path is refused while the target runs (fopen is wrapped at
 * link time: -Wl,--wrap=fopen), so a fuzzed path cannot read /dev/zero or a
 * FIFO forever, nor depend on this machine's files. Exec plugins are only
 * parsed here, never run.
 *
 * make fuzz (or build/fuzz/fuzz_kubeconfig spec/fuzz/corpus/kubeconfig -dict=spec/fuzz/kubeconfig.dict) */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kn_config.h"

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            __builtin_trap();                                                                                          \
    } while (0)

#define SPLIT "\n#file2\n"
#define MAX_READ 65536

static char dir[64];
static char file1[128], file2[128], missing[128];
static int sandbox; /* 1 while the code under test runs */
static int verbose; /* KN_FUZZ_VERBOSE=1: print each outcome, to check what seeds reach */

FILE *__real_fopen(const char *path, const char *mode);

/* Only small regular files inside dir, while the target runs. */
FILE *__wrap_fopen(const char *path, const char *mode)
{
    char real[PATH_MAX];
    struct stat st;
    size_t n = strlen(dir);
    if (!sandbox)
        return __real_fopen(path, mode);
    CHECK(strcmp(mode, "rb") == 0 || strcmp(mode, "r") == 0); /* the loader only reads */
    if (!realpath(path, real) || strncmp(real, dir, n) != 0 || real[n] != '/' || stat(real, &st) != 0 ||
        !S_ISREG(st.st_mode) || st.st_size > MAX_READ) {
        errno = EACCES;
        return NULL;
    }
    return __real_fopen(real, mode);
}

static void put(const char *path, const void *p, size_t n)
{
    FILE *f = __real_fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(p, 1, n, f) == n || n == 0);
    CHECK(fclose(f) == 0);
}

static void cleanup(void)
{
    static const char *const names[] = { "kubeconfig", "kubeconfig2", "ca.crt", "client.crt", "client.key", "token" };
    char p[160];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nZHVtbXk=\n-----END CERTIFICATE-----\n";
    static const char key[] = "-----BEGIN PRIVATE KEY-----\nZHVtbXk=\n-----END PRIVATE KEY-----\n";
    char p[160];
    const char *tmp = getenv("TMPDIR");
    (void)argc, (void)argv;
    verbose = getenv("KN_FUZZ_VERBOSE") != NULL;
    /* ':' separates kubeconfig files: a TMPDIR holding one cannot be used */
    if (!tmp || !*tmp || strchr(tmp, ':') || strlen(tmp) > 30)
        tmp = "/tmp";
    snprintf(dir, sizeof dir, "%s/kn-fuzz-kubeconfig.XXXXXX", tmp);
    CHECK(mkdtemp(dir) != NULL);
    CHECK(realpath(dir, p) != NULL && strlen(p) < sizeof dir);
    strcpy(dir, p);
    atexit(cleanup);
    snprintf(file1, sizeof file1, "%s/kubeconfig", dir);
    snprintf(file2, sizeof file2, "%s/kubeconfig2", dir);
    snprintf(missing, sizeof missing, "%s/missing", dir);
    snprintf(p, sizeof p, "%s/ca.crt", dir);
    put(p, pem, sizeof pem - 1);
    snprintf(p, sizeof p, "%s/client.crt", dir);
    put(p, pem, sizeof pem - 1);
    snprintf(p, sizeof p, "%s/client.key", dir);
    put(p, key, sizeof key - 1);
    snprintf(p, sizeof p, "%s/token", dir);
    put(p, "dummy-token\n", 12);
    return 0;
}

static void check_config(const struct kn_config *c, const struct kn_err *err)
{
    if (!c) {
        CHECK(err->msg[0] != '\0' && strlen(err->msg) < sizeof err->msg);
        return;
    }
    CHECK(c->origin && c->context && c->cluster_name && c->namespace && c->namespace[0]);
    CHECK(c->server && (strncmp(c->server, "https://", 8) == 0 || strncmp(c->server, "http://", 7) == 0));
    CHECK(c->server[strlen(c->server) - 1] != '/');
    CHECK(!(c->insecure && c->ca.len));
    CHECK((c->cert.len == 0) == (c->key.len == 0));
    if (c->as_groups && c->as_groups[0])
        CHECK(c->as_user != NULL);
    for (char **g = c->as_groups; g && *g; g++)
        (void)strlen(*g);
    if (c->token_file)
        CHECK(c->token_file[0] == '/');
    if (c->exec) {
        CHECK(c->exec->api_version && c->exec->command && c->exec->command[0]);
        for (char **a = c->exec->args; a && *a; a++)
            (void)strlen(*a);
        for (char **e = c->exec->env; e && *e; e++)
            CHECK(strchr(*e, '=') != NULL);
    }
}

static void load(const char *files, int from_env, const char *context)
{
    struct kn_err err = {0};
    struct kn_config *c;
    sandbox = 1;
    c = kn_config_from_kubeconfig(files, from_env, context, &err);
    sandbox = 0;
    if (verbose)
        fprintf(stderr, "  %s [%s]: %s\n", strrchr(files, '/'), context ? context : "current",
                c ? c->server : err.msg);
    check_config(c, &err);
    kn_config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cut = memmem(data, size, SPLIT, sizeof SPLIT - 1);
    char files[400];
    if (!cut) {
        put(file1, data, size);
        load(file1, 0, NULL);
        load(file1, 0, "dev");
        return 0;
    }
    put(file1, data, (size_t)(cut - data));
    cut += sizeof SPLIT - 1;
    put(file2, cut, size - (size_t)(cut - data));
    snprintf(files, sizeof files, "%s:%s:%s:%s", file1, missing, file2, file1);
    load(files, 1, NULL);
    load(files, 1, "dev");
    /* the other order: the first file that sets a name wins */
    snprintf(files, sizeof files, "%s:%s", file2, file1);
    load(files, 0, "dev");
    return 0;
}
