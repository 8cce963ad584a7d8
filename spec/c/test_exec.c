/* Exec credential plugins: parsing an ExecCredential, and running a plugin. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kn_exec.h"
#include "kn_json.h"
#include "test.h"

#define V1 "client.authentication.k8s.io/v1"
#define V1B "client.authentication.k8s.io/v1beta1"
#define T_2026 1767323045 /* 2026-01-02T03:04:05Z */

/* ---- kn_parse_rfc3339 ---- */

static void rfc3339_over_read(void *s)
{
    /* A heap copy with nothing after its NUL, so ASan sees a read past it. */
    char *copy = strdup(s);
    time_t t = kn_parse_rfc3339(copy);
    free(copy);
    _exit(t == -1 ? 0 : 3);
}

static void test_rfc3339(void)
{
    static const struct {
        const char *s;
        long long t;
    } good[] = {
        { "1970-01-01T00:00:00Z", 0 },
        { "2026-01-02T03:04:05Z", T_2026 },
        { "2026-01-02T03:04:05z", T_2026 },
        { "2026-01-02T03:04:05.123456789Z", T_2026 },
        { "2026-01-02T03:04:05.5+02:00", T_2026 - 7200 },
        { "2026-01-02T03:04:05+02:00", T_2026 - 7200 },
        { "2026-01-02T03:04:05-05:30", T_2026 + 19800 },
        { "2026-01-02T03:04:05+00:00", T_2026 },
        { "2026-01-02T00:30:00+01:00", 1767310200 }, /* the previous day in UTC */
        { "2000-02-29T12:00:00Z", 951825600 },
        { "2026-12-31T23:59:59Z", 1798761599 },
    };
    static const char *const bad[] = {
        "", "tomorrow", "2026-01-02", "2026-01-02T03:04:05", "2026-01-02T03:04Z", "2026-1-02T03:04:05Z",
        "26-01-02T03:04:05Z", "2026/01/02T03:04:05Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z",
        "2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z", "2026-01-02T24:00:00Z", "2026-01-02T03:60:00Z",
        "2026-01-02T03:04:61Z", "2026-01-02T03:04:05ZZ", "2026-01-02T03:04:05 Z", "2026-01-02T03:04:05+0200",
        "2026-01-02T03:04:05+02", "2026-01-02T03:04:05+02:00x", "2026-01-02T03:04:05.123",
        /* Fields that scanf reads but RFC 3339 does not allow: */
        "2026-01-02T-1:04:05Z",   /* a negative hour */
        "2026-01-02T03:-4:05Z",   /* a negative minute */
        "2026-01-02T03:04:05.Z",  /* a fraction needs a digit */
        "2026-02-30T00:00:00Z",   /* no such day */
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        time_t t = kn_parse_rfc3339(good[i].s);
        CHECK_MSG((long long)t == good[i].t, "kn_parse_rfc3339(\"%s\") = %lld, want %lld", good[i].s,
                  (long long)t, good[i].t);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        time_t t = kn_parse_rfc3339(bad[i]);
        CHECK_MSG(t == -1, "kn_parse_rfc3339(\"%s\") = %lld, want -1", bad[i], (long long)t);
    }
    /* A short offset must be refused without reading past the string. */
    CHECK(t_isolated(rfc3339_over_read, "2026-01-02T03:04:05+2:00"));
    CHECK(t_isolated(rfc3339_over_read, "2026-01-02T03:04:05+02:0"));
}

/* ---- kn_exec_parse ---- */

static int parse_cred(const char *json, const char *api, struct kn_exec_cred *out, struct kn_err *err)
{
    memset(err, 0, sizeof *err);
    return kn_exec_parse(json, strlen(json), api, out, err);
}

#define CRED(api, status) "{\"apiVersion\":\"" api "\",\"kind\":\"ExecCredential\",\"spec\":{},\"status\":" status "}"

static void exec_parse_over_read(void *arg)
{
    struct kn_exec_cred out;
    struct kn_err err;
    int rc = parse_cred(arg, V1, &out, &err);
    kn_exec_cred_clear(&out);
    _exit(rc == -1 ? 0 : 3);
}

static void test_parse(void)
{
    static const char cert[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    static const char key[] = "-----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----\n";
    static const struct {
        const char *json, *needle;
    } bad[] = {
        { CRED(V1, "{\"token\":\"SECRET-1\"}") "x", "invalid JSON" },
        { "", "invalid JSON" },
        { "not json", "invalid JSON" },
        { "{\"kind\":\"ExecCredential\",}", "invalid JSON" },
        { "[]", "kind" },
        { "{\"apiVersion\":\"" V1 "\",\"kind\":\"Other\",\"status\":{\"token\":\"SECRET-1\"}}", "kind" },
        { "{\"apiVersion\":\"" V1 "\",\"status\":{\"token\":\"SECRET-1\"}}", "kind" },
        { CRED(V1B, "{\"token\":\"SECRET-1\"}"), "apiVersion" },
        { CRED("client.authentication.k8s.io/v1alpha1", "{\"token\":\"SECRET-1\"}"), "apiVersion" },
        { "{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"SECRET-1\"}}", "apiVersion" },
        { "{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\"}", "status" },
        { CRED(V1, "\"SECRET-1\""), "status" },
        { CRED(V1, "null"), "status" },
        { CRED(V1, "{}"), "neither a token nor a client certificate" },
        { CRED(V1, "{\"token\":\"\"}"), "neither" },
        { CRED(V1, "{\"token\":42}"), "neither" },
        { CRED(V1, "{\"token\":\"SECRET-1\",\"clientCertificateData\":\"CERT\"}"), "clientKeyData" },
        { CRED(V1, "{\"token\":\"SECRET-1\",\"clientKeyData\":\"SECRET-KEY\"}"), "clientCertificateData" },
        { CRED(V1, "{\"clientKeyData\":\"SECRET-KEY\"}"), "neither" },
        { CRED(V1, "{\"token\":\"SECRET-1\",\"expirationTimestamp\":\"tomorrow\"}"), "\"tomorrow\"" },
        { CRED(V1, "{\"token\":\"SECRET-1\",\"expirationTimestamp\":\"2026-01-02T03:04:05\"}"), "RFC 3339" },
    };
    struct kn_exec_cred out;
    struct kn_err err;

    CHECK(parse_cred(CRED(V1, "{\"token\":\"tok-1\"}"), V1, &out, &err) == 0);
    CHECK_STR(out.token, "tok-1");
    CHECK(out.expiry == 0 && out.cert.data == NULL && out.cert.len == 0 && out.key.data == NULL);
    kn_exec_cred_clear(&out);
    CHECK(out.token == NULL);

    CHECK(parse_cred(CRED(V1B, "{\"token\":\"a\\u0041\\/b\"}"), V1B, &out, &err) == 0);
    CHECK_STR(out.token, "aA/b");
    kn_exec_cred_clear(&out);

    /* PEM arrives JSON-escaped; we want its real newlines. */
    CHECK(parse_cred(CRED(V1, "{\"clientCertificateData\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END "
                              "CERTIFICATE-----\\n\",\"clientKeyData\":\"-----BEGIN EC PRIVATE KEY-----\\nSECRET\\n"
                              "-----END EC PRIVATE KEY-----\\n\",\"token\":\"\"}"),
                     V1, &out, &err) == 0);
    CHECK_STR(out.token, NULL);
    CHECK(out.cert.len == strlen(cert) && memcmp(out.cert.data, cert, out.cert.len) == 0);
    CHECK(out.key.len == strlen(key) && memcmp(out.key.data, key, out.key.len) == 0);
    kn_exec_cred_clear(&out);

    CHECK(parse_cred(CRED(V1, "{\"token\":\"t\",\"clientCertificateData\":\"C\",\"clientKeyData\":\"K\","
                              "\"expirationTimestamp\":\"2026-01-02T03:04:05Z\"}"),
                     V1, &out, &err) == 0);
    CHECK(out.token && out.cert.len == 1 && out.key.len == 1);
    CHECK(out.expiry == T_2026);
    kn_exec_cred_clear(&out);

    CHECK(parse_cred(CRED(V1, "{\"token\":\"t\",\"expirationTimestamp\":\"2026-01-02T03:04:05.999999Z\"}"), V1, &out,
                     &err) == 0);
    CHECK(out.expiry == T_2026);
    kn_exec_cred_clear(&out);
    CHECK(parse_cred(CRED(V1, "{\"token\":\"t\",\"expirationTimestamp\":\"2026-01-02T03:04:05+02:00\"}"), V1, &out,
                     &err) == 0);
    CHECK(out.expiry == T_2026 - 7200);
    kn_exec_cred_clear(&out);

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int failed = t_failed;
        out.token = (char *)"untouched";
        CHECK(parse_cred(bad[i].json, V1, &out, &err) == -1);
        CHECK(out.token == NULL && out.cert.data == NULL && out.key.data == NULL && out.expiry == 0);
        CHECK_STR(err.reason, "ExecPlugin");
        CHECK_HAS(err.msg, bad[i].needle);
        CHECK_LACKS(err.msg, "SECRET");
        if (t_failed > failed)
            fprintf(stderr, "  for %s\n", bad[i].json);
        kn_exec_cred_clear(&out);
    }

    CHECK(t_isolated(exec_parse_over_read,
                     CRED(V1, "{\"token\":\"t\",\"expirationTimestamp\":\"2026-01-02T03:04:05+2:00\"}")));
}

/* ---- kn_exec_run ---- */

/* Reports what it was given: its first argument, $FOO, $INHERITED and
 * whether stdin is at EOF in the token, KUBERNETES_EXEC_INFO in $INFO_OUT. */
static const char plugin_sh[] =
    "#!/bin/sh\n"
    "printf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$INFO_OUT\"\n"
    "case \"$KUBERNETES_EXEC_INFO\" in\n"
    "*'\"apiVersion\":\"client.authentication.k8s.io/v1beta1\"'*) api=client.authentication.k8s.io/v1beta1 ;;\n"
    "*) api=client.authentication.k8s.io/v1 ;;\n"
    "esac\n"
    "if read -r line; then stdin=open; else stdin=eof; fi\n"
    "printf '{\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s-%s-%s-%s\","
    "\"expirationTimestamp\":\"2026-01-02T03:04:05Z\"}}\\n' \"$api\" \"$1\" \"$FOO\" \"$INHERITED\" \"$stdin\"\n";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Checks the KUBERNETES_EXEC_INFO the plugin saved: an ExecCredential of
 * api, with the cluster when server is not NULL. */
static void check_exec_info(const char *path, const char *api, const char *server, const char *ca_b64)
{
    size_t len;
    char *text = kn_read_file(path, &len);
    struct kn_json j = {0};
    int cluster, interactive, failed = t_failed;
    CHECK(text != NULL);
    if (!text)
        return;
    CHECK(kn_json_parse(&j, text, len) == 0);
    CHECK(kn_json_streq(&j, kn_json_member(&j, 0, "kind"), "ExecCredential"));
    CHECK(kn_json_streq(&j, kn_json_member(&j, 0, "apiVersion"), api));
    interactive = kn_json_path(&j, 0, "spec.interactive");
    CHECK(interactive >= 0 && j.tok[interactive].type == KN_J_FALSE);
    cluster = kn_json_path(&j, 0, "spec.cluster");
    if (server) {
        CHECK(kn_json_streq(&j, kn_json_path(&j, cluster, "server"), server));
        if (ca_b64)
            CHECK(kn_json_streq(&j, kn_json_member(&j, cluster, "certificate-authority-data"), ca_b64));
    } else {
        CHECK(cluster == -1);
    }
    if (t_failed > failed)
        fprintf(stderr, "  KUBERNETES_EXEC_INFO was %s\n", text);
    kn_json_free(&j);
    free(text);
}

static void test_run(const char *dir)
{
    char *plugin = t_write(dir, "bin/plugin.sh", plugin_sh, 0755);
    char *info = t_path(dir, "exec-info.json"), *info_env, *kc_text, *s;
    char *args[] = { "arg1", "second arg", NULL };
    char *env[] = { "FOO=from-config", NULL, NULL };
    struct kn_exec ex = { V1, plugin, args, env, 1, "see the docs" };
    struct kn_config cfg = {0};
    struct kn_exec_cred out;
    struct kn_err err = {0};
    struct kn_config *kc;
    double t0;
    int fds = open_fds();

    if (asprintf(&info_env, "INFO_OUT=%s", info) < 0)
        abort();
    env[1] = info_env;
    cfg.server = "https://k8s.example:6443";
    cfg.tls_server_name = "api.internal";
    cfg.ca.data = (unsigned char *)"CA-PEM-1\n";
    cfg.ca.len = 9;
    cfg.user_name = "alice";
    cfg.exec = &ex;
    /* The config's env wins over ours; the rest of ours is inherited; a
     * KUBERNETES_EXEC_INFO of ours must not reach the plugin. */
    t_setenv("FOO", "from-parent");
    t_setenv("INHERITED", "inherited");
    t_setenv("KUBERNETES_EXEC_INFO", "{\"stale\":true}");

    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == 0);
    if (err.msg[0])
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_STR(out.token, "arg1-from-config-inherited-eof");
    CHECK(out.expiry == T_2026);
    kn_exec_cred_clear(&out);
    check_exec_info(info, V1, "https://k8s.example:6443", "Q0EtUEVNLTEK");

    ex.provide_cluster_info = 0;
    ex.args = NULL;
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == 0);
    CHECK_STR(out.token, "-from-config-inherited-eof");
    kn_exec_cred_clear(&out);
    check_exec_info(info, V1, NULL, NULL);
    ex.args = args;

    /* The same plugin, configured by a kubeconfig next to it. */
    if (asprintf(&kc_text,
                 "current-context: x\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                 "clusters: [{name: c, cluster: {server: \"https://kc.example/\"}}]\n"
                 "users:\n"
                 "- name: u\n"
                 "  user:\n"
                 "    exec:\n"
                 "      apiVersion: " V1B "\n"
                 "      command: bin/plugin.sh\n"
                 "      args: [from-kubeconfig]\n"
                 "      env: [{name: FOO, value: kc-foo}, {name: INFO_OUT, value: \"%s\"}]\n"
                 "      provideClusterInfo: true\n",
                 info) < 0)
        abort();
    s = t_write(dir, "kubeconfig.yaml", kc_text, 0600);
    kc = kn_config_from_kubeconfig(s, 0, NULL, &err);
    CHECK(kc != NULL);
    if (kc) {
        CHECK(kn_exec_run(kc, 5000, &out, &err) == 0);
        CHECK_STR(out.token, "from-kubeconfig-kc-foo-inherited-eof");
        kn_exec_cred_clear(&out);
        check_exec_info(info, V1B, "https://kc.example", NULL);
    }
    kn_config_free(kc);
    free(kc_text);
    free(s);
    t_setenv("FOO", NULL);
    t_setenv("INHERITED", NULL);
    t_setenv("KUBERNETES_EXEC_INFO", NULL);

    /* Failures name the plugin and the user, and leave out empty. */
    ex.command = s = t_write(dir, "bin/fail.sh", "#!/bin/sh\nexit 1\n", 0755);
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_STR(err.reason, "ExecPlugin");
    CHECK_HAS(err.msg, "exited with status 1");
    CHECK_HAS(err.msg, s);
    CHECK_HAS(err.msg, "\"alice\"");
    CHECK(out.token == NULL);
    free(s);

    ex.command = s = t_write(dir, "bin/killed.sh", "#!/bin/sh\nkill -TERM $$\nsleep 5\n", 0755);
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_HAS(err.msg, "signal 15");
    free(s);

    ex.command = s = t_write(dir, "bin/garbage.sh", "#!/bin/sh\necho SECRET not json\n", 0755);
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_HAS(err.msg, "exec plugin \"");
    CHECK_HAS(err.msg, "invalid JSON");
    CHECK_LACKS(err.msg, "SECRET");
    free(s);

    ex.command = s = t_write(dir, "bin/v1beta1.sh",
                             "#!/bin/sh\necho '" CRED(V1B, "{\"token\":\"SECRET-T\"}") "'\n", 0755);
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_HAS(err.msg, "apiVersion");
    CHECK_LACKS(err.msg, "SECRET");
    CHECK(out.token == NULL);
    free(s);

    ex.command = s = t_write(dir, "bin/cert-only.sh",
                             "#!/bin/sh\necho '" CRED(V1, "{\"token\":\"SECRET-T\",\"clientCertificateData\":\"C\"}")
                             "'\n", 0755);
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_HAS(err.msg, "clientKeyData");
    CHECK_LACKS(err.msg, "SECRET");
    free(s);

    ex.command = s = t_path(dir, "bin/none");
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_STR(err.reason, "ExecPlugin");
    CHECK_HAS(err.msg, s);
    CHECK_HAS(err.msg, "could not be started");
    CHECK_HAS(err.msg, "see the docs");
    free(s);
    ex.command = "kn-ctest-no-such-plugin";
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_HAS(err.msg, "kn-ctest-no-such-plugin");
    ex.command = s = t_write(dir, "bin/not-executable.sh", plugin_sh, 0644);
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK_HAS(err.msg, "could not be started");
    free(s);

    /* A hanging plugin is killed at the deadline and reaped. */
    ex.command = s = t_write(dir, "bin/hang.sh", "#!/bin/sh\nexec sleep 10\n", 0755);
    t0 = now_ms();
    CHECK(kn_exec_run(&cfg, 300, &out, &err) == -1);
    CHECK(now_ms() - t0 < 2000);
    CHECK_HAS(err.msg, "did not finish within 300 ms");
    free(s);

    /* Closing stdout early must not let it outlive the deadline either. */
    ex.command = s = t_write(dir, "bin/close-stdout.sh", "#!/bin/sh\nexec >&-\nexec sleep 2\n", 0755);
    t0 = now_ms();
    CHECK(kn_exec_run(&cfg, 300, &out, &err) == -1);
    CHECK(now_ms() - t0 < 1500);
    CHECK_HAS(err.msg, "did not finish within 300 ms");
    free(s);

    /* A credential is small; a flood is cut off rather than buffered. */
    ex.command = s = t_write(dir, "bin/flood.sh", "#!/bin/sh\nexec head -c 50000000 /dev/zero\n", 0755);
    t0 = now_ms();
    CHECK(kn_exec_run(&cfg, 5000, &out, &err) == -1);
    CHECK(now_ms() - t0 < 4000);
    CHECK(out.token == NULL);
    free(s);

    /* Started with every signal blocked (as on the I/O thread), the plugin
     * still gets an empty mask: its token is its own SigBlk line. */
    ex.command = s = t_write(dir, "bin/sigmask.sh",
                             "#!/bin/sh\n"
                             "m=$(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/self/status)\n"
                             "echo '{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",'\n"
                             "echo '\"status\":{\"token\":\"'\"mask-$m\"'\"}}'\n",
                             0755);
    memset(&err, 0, sizeof err);
    {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        CHECK(kn_exec_run(&cfg, 5000, &out, &err) == 0);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (err.msg[0])
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_STR(out.token, "mask-0000000000000000");
    kn_exec_cred_clear(&out);
    free(s);

    /* No child left behind, no descriptor leaked. */
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
    CHECK(open_fds() == fds);

    free(info_env);
    free(info);
    free(plugin);
}

void test_exec(void)
{
    char *dir = t_mkdtemp();
    test_rfc3339();
    test_parse();
    test_run(dir);
    t_rmtree(dir);
}
