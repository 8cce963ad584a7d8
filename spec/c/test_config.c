/* The in-cluster service account, and kn_config_load's choice among the
 * sources in kubectl's order. Both read the environment, so each test sets
 * what it needs and test_config restores the caller's values. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kn_config.h"
#include "test.h"

static const char *const vars[] = { "KUBECONFIG", "HOME", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
                                    "KINFORMER_SERVICE_ACCOUNT_DIR" };

static void test_in_cluster(const char *dir)
{
    struct kn_err err = {0};
    struct kn_config *c;
    char *sa = t_path(dir, "sa"), *want;

    free(t_write(dir, "sa/token", "sa-token\n", 0600));
    free(t_write(dir, "sa/ca.crt", "SA-CA\n", 0644));
    free(t_write(dir, "sa/namespace", "kube-system\r\n", 0644));
    t_setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    t_setenv("KUBERNETES_SERVICE_PORT", "443");
    t_setenv("KINFORMER_SERVICE_ACCOUNT_DIR", sa);

    c = kn_config_in_cluster(&err);
    CHECK(c != NULL);
    if (!c)
        fprintf(stderr, "  %s\n", err.msg);
    if (c) {
        want = t_path(sa, "token");
        CHECK_STR(c->origin, "in-cluster");
        CHECK_STR(c->server, "https://10.96.0.1:443");
        CHECK_STR(c->token_file, want);
        CHECK_STR(c->token, NULL); /* read from the file at each use, as it rotates */
        CHECK(c->ca.len == 6 && memcmp(c->ca.data, "SA-CA\n", 6) == 0);
        CHECK_STR(c->namespace, "kube-system");
        CHECK(c->insecure == 0 && c->exec == NULL && c->cert.len == 0);
        free(want);
    }
    kn_config_free(c);

    t_setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1");
    t_setenv("KUBERNETES_SERVICE_PORT", "6443");
    c = kn_config_in_cluster(&err);
    CHECK(c && strcmp(c->server, "https://[fd00:10:96::1]:6443") == 0);
    kn_config_free(c);
    t_setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1");

    /* Trimmed like client-go's strings.TrimSpace. */
    free(t_write(dir, "sa/namespace", "  apps \t\n", 0644));
    c = kn_config_in_cluster(&err);
    CHECK(c != NULL);
    if (c)
        CHECK_STR(c->namespace, "apps");
    kn_config_free(c);

    free(t_write(dir, "sa/namespace", "", 0644));
    c = kn_config_in_cluster(&err);
    CHECK(c && strcmp(c->namespace, "default") == 0);
    kn_config_free(c);

    want = t_path(sa, "namespace");
    unlink(want);
    free(want);
    c = kn_config_in_cluster(&err);
    CHECK(c && strcmp(c->namespace, "default") == 0);
    kn_config_free(c);

    /* Not in a cluster. */
    t_setenv("KUBERNETES_SERVICE_HOST", NULL);
    c = kn_config_in_cluster(&err);
    CHECK(c == NULL);
    CHECK_STR(err.reason, "Config");
    CHECK_HAS(err.msg, "KUBERNETES_SERVICE_HOST");
    t_setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    t_setenv("KUBERNETES_SERVICE_PORT", "");
    c = kn_config_in_cluster(&err);
    CHECK(c == NULL);
    CHECK_HAS(err.msg, "KUBERNETES_SERVICE_PORT");
    t_setenv("KUBERNETES_SERVICE_PORT", "443");

    /* In a cluster, but without the mounted service account. */
    want = t_path(sa, "ca.crt");
    unlink(want);
    c = kn_config_in_cluster(&err);
    CHECK(c == NULL);
    CHECK_STR(err.reason, "Config");
    CHECK_HAS(err.msg, want);
    free(want);

    want = t_path(sa, "token");
    unlink(want);
    c = kn_config_in_cluster(&err);
    CHECK(c == NULL);
    CHECK_STR(err.reason, "Config");
    CHECK_HAS(err.msg, want);
    CHECK_HAS(err.msg, "token");
    free(want);

    t_setenv("KINFORMER_SERVICE_ACCOUNT_DIR", NULL);
    if (access("/var/run/secrets/kubernetes.io/serviceaccount/token", F_OK) != 0) {
        c = kn_config_in_cluster(&err);
        CHECK(c == NULL);
        CHECK_HAS(err.msg, "/var/run/secrets/kubernetes.io/serviceaccount/token");
    }
    free(sa);
}

static char *kubeconfig(const char *dir, const char *name, const char *server)
{
    char *text, *path;
    if (asprintf(&text,
                 "current-context: main\n"
                 "contexts:\n"
                 "- {name: main, context: {cluster: c, namespace: from-%s}}\n"
                 "- {name: other, context: {cluster: other}}\n"
                 "clusters:\n"
                 "- {name: c, cluster: {server: \"https://%s\"}}\n"
                 "- {name: other, cluster: {server: \"https://other.%s\"}}\n",
                 server, server, server) < 0)
        abort();
    path = t_write(dir, name, text, 0600);
    free(text);
    return path;
}

/* The server of what kn_config_load chose, or the error message. */
static char *loaded(const char *kc, const char *context, int in_cluster, struct kn_err *err)
{
    struct kn_config_opts opts = { kc, context, in_cluster };
    struct kn_config *c;
    char *server;
    memset(err, 0, sizeof *err);
    c = kn_config_load(&opts, err);
    server = c ? strdup(c->server) : NULL;
    kn_config_free(c);
    return server;
}

#define CHECK_LOADS(kc, context, in_cluster, want)                                                                     \
    do {                                                                                                               \
        char *got_ = loaded(kc, context, in_cluster, &err);                                                            \
        if (!CHECK_STR(got_, want))                                                                                    \
            fprintf(stderr, "  error: %s\n", err.msg);                                                                 \
        free(got_);                                                                                                    \
    } while (0)

static void test_load(const char *dir)
{
    struct kn_err err;
    char *opt = kubeconfig(dir, "opt.yaml", "opt.example");
    char *env = kubeconfig(dir, "env.yaml", "env.example");
    char *home = t_path(dir, "home"), *nohome = t_path(dir, "nohome"), *sa = t_path(dir, "sa"), *list, *s;

    free(kubeconfig(dir, "home/.kube/config", "home.example"));
    free(t_write(dir, "sa/token", "t\n", 0600));
    free(t_write(dir, "sa/ca.crt", "CA\n", 0644));
    free(t_write(dir, "nohome/.profile", "", 0644));
    t_setenv("KUBECONFIG", env);
    t_setenv("HOME", home);
    t_setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1");
    t_setenv("KUBERNETES_SERVICE_PORT", "443");
    t_setenv("KINFORMER_SERVICE_ACCOUNT_DIR", sa);

    /* Each source is chosen over all those after it. */
    CHECK_LOADS(NULL, NULL, 1, "https://10.0.0.1:443");
    CHECK_LOADS(opt, NULL, 1, "https://10.0.0.1:443");
    CHECK_LOADS(opt, NULL, 0, "https://opt.example");
    CHECK_LOADS(opt, "other", 0, "https://other.opt.example");
    CHECK_LOADS(NULL, NULL, 0, "https://env.example");
    CHECK_LOADS("", NULL, 0, "https://env.example");
    CHECK_LOADS(NULL, "other", 0, "https://other.env.example");
    t_setenv("KUBECONFIG", "");
    CHECK_LOADS(NULL, NULL, 0, "https://home.example");
    t_setenv("KUBECONFIG", NULL);
    CHECK_LOADS(NULL, NULL, 0, "https://home.example");
    CHECK_LOADS(NULL, "other", 0, "https://other.home.example");
    t_setenv("HOME", nohome);
    CHECK_LOADS(NULL, NULL, 0, "https://10.0.0.1:443");
    t_setenv("HOME", NULL);
    CHECK_LOADS(NULL, NULL, 0, "https://10.0.0.1:443");

    /* Nothing at all: the message says where configuration can come from. */
    t_setenv("HOME", nohome);
    t_setenv("KUBERNETES_SERVICE_HOST", NULL);
    CHECK_LOADS(NULL, NULL, 0, NULL);
    CHECK_STR(err.reason, "Config");
    CHECK_HAS(err.msg, "KUBECONFIG");
    CHECK_HAS(err.msg, "kubeconfig");

    /* $KUBECONFIG may list missing files; a kubeconfig given by the caller may not. */
    s = t_path(dir, "missing.yaml");
    if (asprintf(&list, "%s:%s", s, env) < 0)
        abort();
    t_setenv("KUBECONFIG", list);
    CHECK_LOADS(NULL, NULL, 0, "https://env.example");
    CHECK_LOADS(list, NULL, 0, NULL);
    CHECK_HAS(err.msg, s);
    /* A $KUBECONFIG of only missing files is an error, not a fall-through to ~/.kube/config. */
    t_setenv("HOME", home);
    t_setenv("KUBECONFIG", s);
    CHECK_LOADS(NULL, NULL, 0, NULL);
    CHECK_HAS(err.msg, s);
    free(list);
    free(s);

    free(opt);
    free(env);
    free(home);
    free(nohome);
    free(sa);
}

void test_config(void)
{
    char *saved[sizeof vars / sizeof *vars];
    char *dir = t_mkdtemp(), *a = t_path(dir, "in-cluster"), *b = t_path(dir, "load");
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        saved[i] = getenv(vars[i]) ? strdup(getenv(vars[i])) : NULL;
    mkdir(a, 0700);
    mkdir(b, 0700);
    test_in_cluster(a);
    test_load(b);
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        t_setenv(vars[i], saved[i]);
        free(saved[i]);
    }
    free(a);
    free(b);
    t_rmtree(dir);
}
