/* kn_config_from_kubeconfig: kubeconfig files as kubectl reads and merges them. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kn_config.h"
#include "test.h"

static char *dir; /* this suite's scratch directory */

/* Every secret in the fixtures below, in the forms a message could leak. */
static const char *const secrets[] = {
    "SECRET",       /* tokens, passwords, key files and key data decoded */
    "U0VDUkVU",     /* "SECRET" in base64: key data as written */
    "oops-key",     /* the malformed key data */
};

/* "a.yaml:b.yaml" with each name made absolute in dir. */
static char *paths(const char *names)
{
    char *list = NULL, *copy = strdup(names), *save = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    int first = 1;
    for (char *n = strtok_r(copy, ":", &save); n; n = strtok_r(NULL, ":", &save), first = 0)
        fprintf(f, "%s%s/%s", first ? "" : ":", dir, n);
    fclose(f);
    free(copy);
    return list;
}

static struct kn_config *load(const char *names, int from_env, const char *context, struct kn_err *err)
{
    char *list = paths(names);
    struct kn_config *c;
    memset(err, 0, sizeof *err);
    c = kn_config_from_kubeconfig(list, from_env, context, err);
    free(list);
    return c;
}

static int strv_is(char **v, ...)
{
    va_list ap;
    const char *want;
    int i = 0, ok = v != NULL;
    va_start(ap, v);
    while (ok && (want = va_arg(ap, const char *)))
        ok = v[i] && strcmp(v[i++], want) == 0;
    va_end(ap);
    return ok && !v[i];
}

static int blob_is(const struct kn_blob *b, const char *want)
{
    return b->data && b->len == strlen(want) && memcmp(b->data, want, b->len) == 0;
}

/* ---- one kubeconfig with every supported field ---- */

static const char full_fmt[] =
    "apiVersion: v1\n"
    "kind: Config\n"
    "current-context: main\n"
    "preferences: {}\n"
    "clusters:\n"
    "- name: c1\n"
    "  cluster:\n"
    "    server: https://k8s.example:6443/prefix//\n"
    "    certificate-authority-data: Q0EtUEVNLTEK\n" /* "CA-PEM-1\n" */
    "    tls-server-name: api.internal\n"
    "    proxy-url: http://proxy.example:3128\n"
    "- name: c2\n"
    "  cluster:\n"
    "    server: https://c2.example\n"
    "    certificate-authority: certs/ca.crt\n"
    "- name: plain-http\n"
    "  cluster:\n"
    "    server: http://insecure.example:8080/\n"
    "    insecure-skip-tls-verify: true\n"
    "contexts:\n"
    "- name: main\n"
    "  context:\n"
    "    cluster: c1\n"
    "    user: u-token\n"
    "    namespace: team-a\n"
    "- name: files\n"
    "  context: {cluster: c2, user: u-files}\n"
    "- name: data\n"
    "  context: {cluster: plain-http, user: u-data}\n"
    "- name: no-user\n"
    "  context: {cluster: c1}\n"
    "- name: tokenfile\n"
    "  context: {cluster: c1, user: u-tokenfile}\n"
    "- name: exec\n"
    "  context: {cluster: c1, user: u-exec}\n"
    "- name: exec-bare\n"
    "  context: {cluster: c1, user: u-exec-bare}\n"
    "- name: exec-abs\n"
    "  context: {cluster: c1, user: u-exec-abs}\n"
    "users:\n"
    "- name: u-token\n"
    "  user:\n"
    "    token: SECRET-TOKEN-123\n"
    "    as: alice\n"
    "    as-groups: [devs, \"system:authenticated\"]\n"
    "    as-uid: \"1234\"\n"
    "- name: u-files\n"
    "  user:\n"
    "    client-certificate: certs/client.crt\n"
    "    client-key: %s/keys/client.key\n"
    "- name: u-data\n"
    "  user:\n"
    "    client-certificate-data: Q0xJRU5ULUNFUlQK\n"         /* "CLIENT-CERT\n" */
    "    client-key-data: U0VDUkVULUtFWS1EQVRBCg==\n"         /* "SECRET-KEY-DATA\n" */
    "    client-key: not/read/because/data/wins.key\n"
    "- name: u-tokenfile\n"
    "  user:\n"
    "    tokenFile: secrets/token\n"
    "- name: u-exec\n"
    "  user:\n"
    "    exec:\n"
    "      apiVersion: client.authentication.k8s.io/v1beta1\n"
    "      command: bin/plugin\n"
    "      args: [get-token, --cluster, \"x y\"]\n"
    "      env:\n"
    "      - name: FOO\n"
    "        value: bar\n"
    "      - name: EMPTY\n"
    "        value: \"\"\n"
    "      provideClusterInfo: true\n"
    "      installHint: install it with apt\n"
    "      interactiveMode: Never\n"
    "- name: u-exec-bare\n"
    "  user:\n"
    "    exec:\n"
    "      apiVersion: client.authentication.k8s.io/v1\n"
    "      command: gke-gcloud-auth-plugin\n"
    "- name: u-exec-abs\n"
    "  user:\n"
    "    exec:\n"
    "      apiVersion: client.authentication.k8s.io/v1\n"
    "      command: /opt/bin/plugin\n"
    "      args: []\n";

static void test_full(void)
{
    struct kn_err err;
    struct kn_config *c;
    char *text, *kc, *want;

    if (asprintf(&text, full_fmt, dir) < 0)
        abort();
    kc = t_write(dir, "full.yaml", text, 0600);
    free(text);
    free(t_write(dir, "certs/ca.crt", "CA-FROM-FILE\n", 0644));
    free(t_write(dir, "certs/client.crt", "CLIENT-CERT-FILE\n", 0644));
    free(t_write(dir, "keys/client.key", "SECRET-KEY-FILE\n", 0600));
    free(t_write(dir, "secrets/token", "SECRET-TOKEN-FILE\n", 0600));

    /* current-context: cluster fields, user token and impersonation. */
    c = load("full.yaml", 0, NULL, &err);
    CHECK(c != NULL);
    if (!c)
        fprintf(stderr, "  %s\n", err.msg);
    if (c) {
        CHECK_STR(c->origin, kc);
        CHECK_STR(c->context, "main");
        CHECK_STR(c->cluster_name, "c1");
        CHECK_STR(c->user_name, "u-token");
        CHECK_STR(c->namespace, "team-a");
        CHECK_STR(c->server, "https://k8s.example:6443/prefix");
        CHECK(blob_is(&c->ca, "CA-PEM-1\n"));
        CHECK_STR(c->tls_server_name, "api.internal");
        CHECK_STR(c->proxy_url, "http://proxy.example:3128");
        CHECK(c->insecure == 0);
        CHECK_STR(c->token, "SECRET-TOKEN-123");
        CHECK_STR(c->token_file, NULL);
        CHECK(c->cert.len == 0 && c->key.len == 0);
        CHECK_STR(c->as_user, "alice");
        CHECK_STR(c->as_uid, "1234");
        CHECK(strv_is(c->as_groups, "devs", "system:authenticated", NULL));
        CHECK(c->exec == NULL);
    }
    kn_config_free(c);

    /* An empty context name means current-context, like NULL. */
    c = load("full.yaml", 0, "", &err);
    CHECK(c && strcmp(c->context, "main") == 0);
    kn_config_free(c);

    /* Files relative to the kubeconfig's directory, and absolute ones. */
    c = load("full.yaml", 0, "files", &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->namespace, "default");
        CHECK_STR(c->server, "https://c2.example");
        CHECK(blob_is(&c->ca, "CA-FROM-FILE\n"));
        CHECK(blob_is(&c->cert, "CLIENT-CERT-FILE\n"));
        CHECK(blob_is(&c->key, "SECRET-KEY-FILE\n"));
        CHECK_STR(c->token, NULL);
        CHECK_STR(c->tls_server_name, NULL);
        CHECK_STR(c->proxy_url, NULL);
        CHECK(c->as_groups == NULL && c->as_user == NULL && c->as_uid == NULL);
    }
    kn_config_free(c);

    /* Inline data wins over a file; insecure-skip-tls-verify. */
    c = load("full.yaml", 0, "data", &err);
    CHECK(c != NULL);
    if (!c)
        fprintf(stderr, "  %s\n", err.msg);
    if (c) {
        CHECK_STR(c->server, "http://insecure.example:8080");
        CHECK(c->insecure == 1);
        CHECK(c->ca.len == 0);
        CHECK(blob_is(&c->cert, "CLIENT-CERT\n"));
        CHECK(blob_is(&c->key, "SECRET-KEY-DATA\n"));
    }
    kn_config_free(c);

    c = load("full.yaml", 0, "no-user", &err);
    CHECK(c && c->user_name == NULL && c->token == NULL && c->exec == NULL && c->cert.len == 0);
    kn_config_free(c);

    /* tokenFile: resolved, checked now, read again at each use. */
    c = load("full.yaml", 0, "tokenfile", &err);
    want = t_path(dir, "secrets/token");
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->token_file, want);
        CHECK_STR(c->token, NULL);
    }
    free(want);
    kn_config_free(c);

    c = load("full.yaml", 0, "exec", &err);
    CHECK(c && c->exec);
    if (c && c->exec) {
        want = t_path(dir, "bin/plugin");
        CHECK_STR(c->exec->api_version, "client.authentication.k8s.io/v1beta1");
        CHECK_STR(c->exec->command, want);
        CHECK(strv_is(c->exec->args, "get-token", "--cluster", "x y", NULL));
        CHECK(strv_is(c->exec->env, "FOO=bar", "EMPTY=", NULL));
        CHECK(c->exec->provide_cluster_info == 1);
        CHECK_STR(c->exec->install_hint, "install it with apt");
        CHECK_STR(c->token, NULL);
        free(want);
    }
    kn_config_free(c);

    /* A bare name is looked up in $PATH when run, so it is kept as written. */
    c = load("full.yaml", 0, "exec-bare", &err);
    CHECK(c && c->exec);
    if (c && c->exec) {
        CHECK_STR(c->exec->api_version, "client.authentication.k8s.io/v1");
        CHECK_STR(c->exec->command, "gke-gcloud-auth-plugin");
        CHECK(c->exec->args == NULL && c->exec->env == NULL);
        CHECK(c->exec->provide_cluster_info == 0);
        CHECK_STR(c->exec->install_hint, NULL);
    }
    kn_config_free(c);

    c = load("full.yaml", 0, "exec-abs", &err);
    CHECK(c && c->exec);
    if (c && c->exec) {
        CHECK_STR(c->exec->command, "/opt/bin/plugin");
        CHECK(strv_is(c->exec->args, NULL));
    }
    kn_config_free(c);
    free(kc);
}

/* ---- several files, merged like $KUBECONFIG ---- */

static void test_merge(void)
{
    struct kn_err err;
    struct kn_config *c;
    char *a, *b, *want;

    a = t_write(dir, "a.yaml",
                "current-context: from-a\n"
                "contexts:\n"
                "- name: from-a\n"
                "  context: {cluster: shared, user: shared}\n"
                "- name: both\n"
                "  context: {cluster: only-b, user: shared, namespace: ns-a}\n"
                "clusters:\n"
                "- name: shared\n"
                "  cluster: {server: \"https://a.example\"}\n"
                "users:\n"
                "- name: shared\n"
                "  user: {token: token-a}\n",
                0600);
    b = t_write(dir, "b.yaml",
                "current-context: from-b\n"
                "contexts:\n"
                "- name: from-b\n"
                "  context: {cluster: shared, user: only-b}\n"
                "- name: both\n"
                "  context: {cluster: shared, user: shared, namespace: ns-b}\n"
                "clusters:\n"
                "- name: shared\n"
                "  cluster: {server: \"https://b.example\"}\n"
                "- name: only-b\n"
                "  cluster: {server: \"https://only-b.example\"}\n"
                "users:\n"
                "- name: shared\n"
                "  user: {token: token-b}\n"
                "- name: only-b\n"
                "  user: {token: token-only-b}\n",
                0600);
    free(t_write(dir, "no-current.yaml",
                 "clusters:\n"
                 "- name: shared\n"
                 "  cluster: {server: \"https://nc.example\"}\n",
                 0600));
    free(t_write(dir, "empty.yaml", "", 0600));

    c = load("a.yaml:b.yaml", 0, NULL, &err);
    CHECK(c != NULL);
    if (c) {
        if (asprintf(&want, "%s:%s", a, b) < 0)
            abort();
        CHECK_STR(c->origin, want);
        free(want);
        CHECK_STR(c->context, "from-a");
        CHECK_STR(c->server, "https://a.example");
        CHECK_STR(c->token, "token-a");
    }
    kn_config_free(c);

    c = load("b.yaml:a.yaml", 0, NULL, &err);
    CHECK(c && strcmp(c->context, "from-b") == 0 && strcmp(c->server, "https://b.example") == 0 &&
          strcmp(c->token, "token-only-b") == 0);
    kn_config_free(c);

    /* The context from a, the cluster only b defines, the user from a. */
    c = load("a.yaml:b.yaml", 0, "both", &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->namespace, "ns-a");
        CHECK_STR(c->server, "https://only-b.example");
        CHECK_STR(c->token, "token-a");
    }
    kn_config_free(c);

    c = load("a.yaml:b.yaml", 0, "from-b", &err);
    CHECK(c && strcmp(c->server, "https://a.example") == 0 && strcmp(c->token, "token-only-b") == 0);
    kn_config_free(c);

    /* current-context from the first file that sets one, even if later; empty files are fine. */
    c = load("empty.yaml:no-current.yaml:b.yaml", 0, NULL, &err);
    CHECK(c && strcmp(c->context, "from-b") == 0 && strcmp(c->server, "https://nc.example") == 0);
    kn_config_free(c);

    /* A file listed twice is read once; empty list entries are ignored. */
    c = load("a.yaml::a.yaml:", 0, NULL, &err);
    CHECK(c && strcmp(c->origin, a) == 0);
    kn_config_free(c);

    /* $KUBECONFIG may name files that do not exist; an explicit list may not. */
    c = load("missing.yaml:a.yaml:missing2.yaml", 1, NULL, &err);
    CHECK(c && strcmp(c->origin, a) == 0 && strcmp(c->context, "from-a") == 0);
    kn_config_free(c);

    c = load("a.yaml:missing.yaml", 0, NULL, &err);
    want = t_path(dir, "missing.yaml");
    CHECK(c == NULL);
    CHECK_STR(err.reason, "Config");
    CHECK_HAS(err.msg, want);
    CHECK_HAS(err.msg, "cannot read");
    free(want);
    kn_config_free(c);

    /* A directory is no kubeconfig, listed in $KUBECONFIG or not. */
    for (int from_env = 0; from_env <= 1; from_env++) {
        c = load("certs", from_env, NULL, &err);
        CHECK(c == NULL);
        CHECK_STR(err.reason, "Config");
        CHECK_HAS(err.msg, "/certs");
        kn_config_free(c);
    }

    c = load("missing.yaml:missing2.yaml", 1, NULL, &err);
    want = paths("missing.yaml:missing2.yaml");
    CHECK(c == NULL);
    CHECK_STR(err.reason, "Config");
    CHECK_HAS(err.msg, "no kubeconfig found");
    CHECK_HAS(err.msg, want);
    free(want);
    kn_config_free(c);
    free(a);
    free(b);
}

/* kubectl writes unset fields as "" (current-context: ""); they mean unset. */
static void test_empty_strings(void)
{
    struct kn_err err;
    struct kn_config *c;

    free(t_write(dir, "unset.yaml",
                 "apiVersion: v1\n"
                 "kind: Config\n"
                 "current-context: \"\"\n"
                 "preferences: {}\n"
                 "contexts:\n"
                 "- name: anon\n"
                 "  context: {cluster: c, user: \"\", namespace: \"\"}\n"
                 "clusters:\n"
                 "- name: c\n"
                 "  cluster: {server: \"https://unset.example\", tls-server-name: \"\", proxy-url: \"\"}\n"
                 "users: []\n",
                 0600));
    free(t_write(dir, "sets-current.yaml", "current-context: anon\n", 0600));

    c = load("unset.yaml:sets-current.yaml", 0, NULL, &err);
    CHECK(c != NULL);
    if (!c)
        fprintf(stderr, "  %s\n", err.msg);
    kn_config_free(c);

    c = load("unset.yaml", 0, "anon", &err);
    CHECK(c != NULL);
    if (!c)
        fprintf(stderr, "  %s\n", err.msg);
    if (c) {
        CHECK_STR(c->namespace, "default");
        CHECK_STR(c->user_name, NULL);
        CHECK_STR(c->server, "https://unset.example");
    }
    kn_config_free(c);
}

/* The paths a config keeps (tokenFile, exec command) must not depend on the
 * working directory at load time: they are used later, maybe after a chdir. */
static void test_relative_kubeconfig(void)
{
    struct kn_err err;
    struct kn_config *c;
    char *cwd = getcwd(NULL, 0), *want;

    free(t_write(dir, "rel/secrets/token", "t\n", 0600));
    free(t_write(dir, "rel/kubeconfig",
                 "current-context: x\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                 "clusters: [{name: c, cluster: {server: \"https://rel.example\"}}]\n"
                 "users:\n"
                 "- name: u\n"
                 "  user:\n"
                 "    tokenFile: secrets/token\n"
                 "    exec: {apiVersion: client.authentication.k8s.io/v1, command: bin/plugin}\n",
                 0600));
    want = t_path(dir, "rel/secrets/token");
    CHECK(chdir(dir) == 0);
    memset(&err, 0, sizeof err);
    c = kn_config_from_kubeconfig("rel/kubeconfig", 0, NULL, &err);
    CHECK(chdir(cwd) == 0);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->token_file, want);
        free(want);
        want = t_path(dir, "rel/bin/plugin");
        CHECK(c->exec != NULL);
        if (c->exec)
            CHECK_STR(c->exec->command, want);
    }
    kn_config_free(c);
    free(want);
    free(cwd);
}

/* ---- errors ---- */

/* Loads dir/name (written from yaml unless NULL) and expects an error whose
 * message holds the file's path and each needle (NULL-terminated), and none
 * of the fixtures' secrets. */
static void expect_error_at(int line, const char *name, const char *yaml, const char *context, ...)
{
    struct kn_err err;
    struct kn_config *c;
    char *path = yaml ? t_write(dir, name, yaml, 0600) : t_path(dir, name);
    const char *needle;
    int failed = t_failed;
    va_list ap;

    c = load(name, 0, context, &err);
    if (getenv("CTEST_VERBOSE")) /* to read the messages as a user would */
        fprintf(stderr, "%s: %s\n", name, err.msg);
    CHECK(c == NULL);
    CHECK_STR(err.reason, "Config");
    CHECK_HAS(err.msg, path);
    va_start(ap, context);
    while ((needle = va_arg(ap, const char *)))
        CHECK_HAS(err.msg, needle);
    va_end(ap);
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
        CHECK_LACKS(err.msg, secrets[i]);
    if (t_failed > failed)
        fprintf(stderr, "  in the case at %s:%d (%s)\n", __FILE__, line, name);
    kn_config_free(c);
    free(path);
}
#define EXPECT_ERROR(name, yaml, context, ...) expect_error_at(__LINE__, name, yaml, context, __VA_ARGS__, NULL)

/* "dir/name:N:" where N is the line of yaml holding needle. */
static char *at_line(const char *name, const char *yaml, const char *needle)
{
    char *s;
    if (asprintf(&s, "%s/%s:%d:", dir, name, t_line_of(yaml, needle)) < 0)
        abort();
    return s;
}

#define HEAD "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
#define CTX(cluster, user) "contexts:\n- name: x\n  context: {cluster: " cluster ", user: " user "}\n"
#define CLUSTER(body) "clusters:\n- name: c\n  cluster:\n" body
#define SERVER "    server: https://k8s.example\n"
#define USER(body) "users:\n- name: u\n  user:\n    token: SECRET-TOKEN-123\n" body

static void test_errors(void)
{
    static const char syntax[] = "apiVersion: v1\nkind: Config\ncurrent-context: a: b\n";
    static const char syntax_token[] = "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: SECRET-TOKEN-123: x\n";
    static const char bad_key[] = HEAD CTX("c", "u") CLUSTER(SERVER) USER(
        "    client-certificate-data: Q0xJRU5ULUNFUlQK\n"
        "    client-key-data: U0VDUkVULUtFWS1EQVRB oops-key!!\n");
    static const char missing_ca[] = HEAD CTX("c", "u") CLUSTER(SERVER "    certificate-authority: certs/none.crt\n")
        USER("");
    static const char missing_token[] = HEAD CTX("c", "u") CLUSTER(SERVER) "users:\n- name: u\n  user:\n"
        "    tokenFile: secrets/none\n";
    static const char basic[] = HEAD CTX("c", "u") CLUSTER(SERVER)
        "users:\n- name: u\n  user:\n    username: admin\n    password: SECRET-PASSWORD\n";
    static const char password_only[] = HEAD CTX("c", "u") CLUSTER(SERVER)
        "users:\n- name: u\n  user:\n    password: SECRET-PASSWORD\n";
    static const char v1alpha1[] = HEAD CTX("c", "u") CLUSTER(SERVER) USER(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: plugin\n");
    char *line, *path;

    line = at_line("syntax.yaml", syntax, "current-context");
    EXPECT_ERROR("syntax.yaml", syntax, NULL, line, "YAML");
    free(line);
    /* libyaml's messages quote no text, so a broken token line does not leak. */
    line = at_line("syntax-token.yaml", syntax_token, "token:");
    EXPECT_ERROR("syntax-token.yaml", syntax_token, NULL, line);
    free(line);

    EXPECT_ERROR("missing.yaml", NULL, NULL, "cannot read");

    EXPECT_ERROR("unknown-context.yaml", HEAD CTX("c", "u") "- name: y\n  context: {cluster: c}\n"
                 CLUSTER(SERVER) USER(""), "nope", "\"nope\"", "x, y");
    EXPECT_ERROR("unknown-cluster.yaml", HEAD CTX("ghost", "u") CLUSTER(SERVER) USER(""), NULL, "\"ghost\"",
                 "clusters: c");
    EXPECT_ERROR("unknown-user.yaml", HEAD CTX("c", "phantom") CLUSTER(SERVER) USER(""), NULL, "\"phantom\"",
                 "users: u");
    EXPECT_ERROR("no-cluster.yaml", HEAD "contexts:\n- name: x\n  context: {user: u}\n" CLUSTER(SERVER) USER(""),
                 NULL, "\"x\"", "cluster");
    EXPECT_ERROR("no-server.yaml", HEAD CTX("c", "u") CLUSTER("    tls-server-name: a\n") USER(""), NULL,
                 "cluster \"c\"", "server");
    EXPECT_ERROR("ftp-server.yaml", HEAD CTX("c", "u") CLUSTER("    server: ftp://k8s.example\n") USER(""), NULL,
                 "https://");
    EXPECT_ERROR("no-current-context.yaml", "contexts:\n- name: one\n- name: two\n", NULL, "current-context", "one, two");
    EXPECT_ERROR("empty-alone.yaml", "", NULL, "current-context");

    path = t_path(dir, "certs/none.crt");
    line = at_line("missing-ca.yaml", missing_ca, "certificate-authority:");
    EXPECT_ERROR("missing-ca.yaml", missing_ca, NULL, path, line, "certificate-authority");
    free(path);
    free(line);

    path = t_path(dir, "secrets/none");
    line = at_line("missing-token-file.yaml", missing_token, "tokenFile");
    EXPECT_ERROR("missing-token-file.yaml", missing_token, NULL, path, line, "tokenFile");
    free(path);
    free(line);

    /* The token and the key data are in the file; neither may reach the message. */
    line = at_line("bad-key.yaml", bad_key, "client-key-data");
    EXPECT_ERROR("bad-key.yaml", bad_key, NULL, line, "client-key-data", "base64");
    free(line);
    EXPECT_ERROR("bad-ca-data.yaml", HEAD CTX("c", "u") CLUSTER(SERVER "    certificate-authority-data: \"@@\"\n")
                 USER(""), NULL, "certificate-authority-data");

    line = at_line("basic.yaml", basic, "username");
    EXPECT_ERROR("basic.yaml", basic, NULL, line, "basic authentication");
    free(line);
    line = at_line("password-only.yaml", password_only, "password");
    EXPECT_ERROR("password-only.yaml", password_only, NULL, line, "basic authentication");
    free(line);
    EXPECT_ERROR("auth-provider.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER(
                     "    auth-provider:\n      name: gcp\n      config:\n        access-token: SECRET-AP-TOKEN\n"),
                 NULL, "auth-provider", "\"gcp\"", "exec");

    line = at_line("v1alpha1.yaml", v1alpha1, "v1alpha1");
    EXPECT_ERROR("v1alpha1.yaml", v1alpha1, NULL, line, "v1alpha1", "apiVersion");
    free(line);
    EXPECT_ERROR("exec-no-api.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER("    exec:\n      command: plugin\n"),
                 NULL, "apiVersion");
    EXPECT_ERROR("exec-no-command.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER(
                     "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"),
                 NULL, "command");
    EXPECT_ERROR("exec-env.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER(
                     "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: plugin\n"
                     "      env:\n      - value: SECRET-ENV\n"),
                 NULL, "env");
    EXPECT_ERROR("exec-args.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER(
                     "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: plugin\n"
                     "      args: SECRET-ARG\n"),
                 NULL, "args");

    EXPECT_ERROR("cert-no-key.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER(
                     "    client-certificate-data: Q0xJRU5ULUNFUlQK\n"), NULL, "no client key");
    EXPECT_ERROR("key-no-cert.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER(
                     "    client-key-data: U0VDUkVULUtFWS1EQVRBCg==\n"), NULL, "no client certificate");
    EXPECT_ERROR("missing-key-file.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER(
                     "    client-certificate-data: Q0xJRU5ULUNFUlQK\n    client-key: keys/none.key\n"),
                 NULL, "client-key", "keys/none.key");
    EXPECT_ERROR("insecure-ca.yaml", HEAD CTX("c", "u") CLUSTER(SERVER
                     "    insecure-skip-tls-verify: true\n    certificate-authority-data: Q0EtUEVNLTEK\n") USER(""),
                 NULL, "insecure-skip-tls-verify", "certificate-authority");
    EXPECT_ERROR("groups-no-as.yaml", HEAD CTX("c", "u") CLUSTER(SERVER) USER("    as-groups: [a]\n"), NULL,
                 "as-groups");
    EXPECT_ERROR("token-map.yaml", HEAD CTX("c", "u") CLUSTER(SERVER)
                 "users:\n- name: u\n  user:\n    token: {SECRET-TOKEN-123: x}\n", NULL, "token", "string");
    EXPECT_ERROR("bad-bool.yaml", HEAD CTX("c", "u") CLUSTER(SERVER "    insecure-skip-tls-verify: maybe\n")
                 USER(""), NULL, "insecure-skip-tls-verify");
    EXPECT_ERROR("clusters-map.yaml", HEAD CTX("c", "u") "clusters: {c: {server: https://x}}\n", NULL,
                 "clusters", "list");
    EXPECT_ERROR("list.yaml", "- apiVersion: v1\n- kind: Config\n", NULL, "mapping");
    EXPECT_ERROR("scalar.yaml", "SECRET-TOKEN-123\n", NULL, "mapping");
}

void test_kubeconfig(void)
{
    dir = t_mkdtemp();
    test_full();
    test_merge();
    test_empty_strings();
    test_relative_kubeconfig();
    test_errors();
    t_rmtree(dir);
    dir = NULL;
}
