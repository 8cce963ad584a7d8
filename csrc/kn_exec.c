#define _GNU_SOURCE /* pipe2, timegm, explicit_bzero */
#include "kn_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kn_base64.h"
#include "kn_buf.h"
#include "kn_json.h"

extern char **environ;

void kn_exec_cred_clear(struct kn_exec_cred *c)
{
    /* explicit_bzero: a memset right before free may be dropped by the compiler */
    if (c->token)
        explicit_bzero(c->token, strlen(c->token));
    free(c->token);
    if (c->key.data)
        explicit_bzero(c->key.data, c->key.len);
    free(c->key.data);
    free(c->cert.data);
    memset(c, 0, sizeof *c);
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

time_t kn_parse_rfc3339(const char *s)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    struct tm tm;
    int y, mo, d, h, mi, sec;
    long off = 0;
    time_t t;
    /* YYYY-MM-DDTHH:MM:SS, checked by position: sscanf would accept signs
     * and short fields */
    if (strlen(s) < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) || s[13] != ':' ||
        !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
        return -1;
    y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
    h = num(s + 11, 2), mi = num(s + 14, 2), sec = num(s + 17, 2);
    s += 19;
    if (*s == '.') {
        if (!digits(++s, 1))
            return -1;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        if (strlen(s) != 6 || !digits(s + 1, 2) || s[3] != ':' || !digits(s + 4, 2))
            return -1;
        off = (num(s + 1, 2) * 3600L + num(s + 4, 2) * 60L) * (*s == '-' ? -1 : 1);
        s += 6;
    } else {
        return -1;
    }
    if (*s || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return -1;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    return t == (time_t)-1 ? -1 : t - off;
}

int kn_exec_parse(const char *json, size_t len, const char *api_version, struct kn_exec_cred *out,
                  struct kn_err *err)
{
    struct kn_json j = {0};
    int status, v, rc = -1;
    memset(out, 0, sizeof *out);
    if (kn_json_parse(&j, json, len) < 0) {
        kn_err_set(err, 0, "ExecPlugin", "the plugin did not print an ExecCredential (invalid JSON: %s)", j.error);
        goto done;
    }
    if (!kn_json_streq(&j, kn_json_member(&j, 0, "kind"), "ExecCredential")) {
        kn_err_set(err, 0, "ExecPlugin", "the plugin printed JSON whose kind is not ExecCredential");
        goto done;
    }
    if (!kn_json_streq(&j, kn_json_member(&j, 0, "apiVersion"), api_version)) {
        kn_err_set(err, 0, "ExecPlugin", "the plugin answered with another apiVersion than the kubeconfig's %s",
                   api_version);
        goto done;
    }
    status = kn_json_member(&j, 0, "status");
    if (status < 0 || j.tok[status].type != KN_J_OBJECT) {
        kn_err_set(err, 0, "ExecPlugin", "the plugin's ExecCredential has no status");
        goto done;
    }
    out->token = kn_json_string(&j, kn_json_member(&j, status, "token"), NULL);
    out->cert.data = (unsigned char *)kn_json_string(&j, kn_json_member(&j, status, "clientCertificateData"),
                                                     &out->cert.len);
    out->key.data = (unsigned char *)kn_json_string(&j, kn_json_member(&j, status, "clientKeyData"),
                                                    &out->key.len);
    if (out->token && !*out->token) {
        free(out->token);
        out->token = NULL;
    }
    if (!out->token && !out->cert.len) {
        kn_err_set(err, 0, "ExecPlugin", "the plugin's ExecCredential status has neither a token nor a client "
                   "certificate");
        goto done;
    }
    if (!out->cert.len != !out->key.len) {
        kn_err_set(err, 0, "ExecPlugin", "the plugin's ExecCredential status has clientCertificateData without "
                   "clientKeyData, or the reverse");
        goto done;
    }
    v = kn_json_member(&j, status, "expirationTimestamp");
    if (v >= 0 && j.tok[v].type == KN_J_STRING) {
        char *ts = kn_json_string(&j, v, NULL);
        out->expiry = ts ? kn_parse_rfc3339(ts) : -1;
        if (out->expiry == -1) {
            kn_err_set(err, 0, "ExecPlugin", "the plugin's expirationTimestamp \"%s\" is not an RFC 3339 time",
                       ts ? ts : "");
            free(ts);
            goto done;
        }
        free(ts);
    }
    rc = 0;
done:
    if (rc < 0)
        kn_exec_cred_clear(out);
    kn_json_free(&j);
    return rc;
}

/* The KUBERNETES_EXEC_INFO variable: the ExecCredential the plugin reads. */
static char *exec_info(const struct kn_config *cfg)
{
    struct kn_buf b = {0};
    int ok = 0;
    ok |= kn_buf_puts(&b, "KUBERNETES_EXEC_INFO={\"apiVersion\":");
    ok |= kn_json_quote(&b, cfg->exec->api_version);
    ok |= kn_buf_puts(&b, ",\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false");
    if (cfg->exec->provide_cluster_info) {
        ok |= kn_buf_puts(&b, ",\"cluster\":{\"server\":");
        ok |= kn_json_quote(&b, cfg->server);
        if (cfg->tls_server_name) {
            ok |= kn_buf_puts(&b, ",\"tls-server-name\":");
            ok |= kn_json_quote(&b, cfg->tls_server_name);
        }
        if (cfg->ca.len) {
            char *ca = kn_base64_encode(cfg->ca.data, cfg->ca.len);
            ok |= ca ? 0 : -1;
            ok |= kn_buf_puts(&b, ",\"certificate-authority-data\":");
            ok |= kn_json_quote(&b, ca ? ca : "");
            free(ca);
        }
        if (cfg->proxy_url) {
            ok |= kn_buf_puts(&b, ",\"proxy-url\":");
            ok |= kn_json_quote(&b, cfg->proxy_url);
        }
        ok |= kn_buf_puts(&b, cfg->insecure ? ",\"insecure-skip-tls-verify\":true}" : "}");
    }
    ok |= kn_buf_puts(&b, "}}");
    if (ok < 0) {
        kn_buf_free(&b);
        return NULL;
    }
    return kn_buf_steal(&b, NULL);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int kn_exec_run(const struct kn_config *cfg, int timeout_ms, struct kn_exec_cred *out, struct kn_err *err)
{
    const struct kn_exec *ex = cfg->exec;
    const char *who = cfg->user_name ? cfg->user_name : "?";
    size_t nenv = 0, nx = 0, nargs = 0, i;
    char **env = NULL, **argv = NULL, *info = NULL;
    int fds[2] = { -1, -1 }, rc = -1, status = 0, timed_out = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    sigset_t none, dfl;
    struct kn_buf outb = {0};
    char chunk[4096]; /* the plugin's output, read into outb */
    pid_t pid;
    double deadline;

    while (environ[nenv]) nenv++;
    while (ex->env && ex->env[nx]) nx++;
    while (ex->args && ex->args[nargs]) nargs++;
    env = calloc(nenv + nx + 2, sizeof *env);
    argv = calloc(nargs + 2, sizeof *argv);
    info = exec_info(cfg);
    if (!env || !argv || !info) {
        kn_err_set(err, 0, "ExecPlugin", "out of memory");
        goto done;
    }
    /* The kubeconfig's env entries override inherited variables of the same name. */
    for (i = 0, nenv = 0; environ[i]; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int shadowed = strncmp(environ[i], "KUBERNETES_EXEC_INFO=", 21) == 0;
        for (size_t k = 0; k < nx && !shadowed; k++)
            shadowed = strncmp(ex->env[k], environ[i], klen) == 0 && ex->env[k][klen] == '=';
        if (!shadowed)
            env[nenv++] = environ[i];
    }
    for (i = 0; i < nx; i++)
        env[nenv++] = ex->env[i];
    env[nenv++] = info;
    argv[0] = ex->command;
    for (i = 0; i < nargs; i++)
        argv[i + 1] = ex->args[i];

    if (pipe2(fds, O_CLOEXEC) < 0) {
        kn_err_set(err, 0, "ExecPlugin", "exec plugin for user \"%s\": pipe: %s", who, strerror(errno));
        goto done;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    /* The plugin may start from the I/O thread, which blocks every signal:
     * the child gets an empty mask, and SIGPIPE as a fresh process has it. */
    posix_spawnattr_init(&sa);
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setsigmask(&sa, &none);
    posix_spawnattr_setsigdefault(&sa, &dfl);
    posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawnp(&pid, ex->command, &fa, &sa, argv, env);
    posix_spawnattr_destroy(&sa);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    fds[1] = -1;
    if (rc != 0) {
        kn_err_set(err, 0, "ExecPlugin", "exec plugin \"%s\" for user \"%s\" could not be started: %s%s%s",
                   ex->command, who, strerror(rc), ex->install_hint ? ". " : "",
                   ex->install_hint ? ex->install_hint : "");
        rc = -1;
        goto done;
    }
    rc = -1;
    deadline = now_ms() + timeout_ms;
    for (;;) {
        struct pollfd pfd = { fds[0], POLLIN, 0 };
        double left = deadline - now_ms();
        ssize_t n;
        int pr;
        if (left <= 0) {
            timed_out = 1;
            kill(pid, SIGKILL);
            break;
        }
        pr = poll(&pfd, 1, (int)left + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        n = read(fds[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (outb.len > (1u << 20) || kn_buf_append(&outb, chunk, (size_t)n) < 0) {
            kill(pid, SIGKILL); /* a credential is small; this is not one */
            break;
        }
    }
    /* The plugin may close stdout and linger: the deadline still holds. */
    for (;;) {
        pid_t w = waitpid(pid, &status, timed_out ? 0 : WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (w == 0) {
            if (now_ms() >= deadline) {
                timed_out = 1;
                kill(pid, SIGKILL);
            } else {
                struct timespec ts = { 0, 5 * 1000 * 1000 };
                nanosleep(&ts, NULL);
            }
        }
    }
    if (timed_out) {
        kn_err_set(err, 0, "ExecPlugin", "exec plugin \"%s\" for user \"%s\" did not finish within %d ms",
                   ex->command, who, timeout_ms);
        goto done;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        kn_err_set(err, 0, "ExecPlugin", "exec plugin \"%s\" for user \"%s\" %s %d (its own messages are on "
                   "stderr)", ex->command, who, WIFEXITED(status) ? "exited with status" : "was killed by signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        goto done;
    }
    if (kn_exec_parse(outb.data ? outb.data : "", outb.len, ex->api_version, out, err) < 0) {
        kn_err_prefix(err, "exec plugin \"%s\" for user \"%s\": ", ex->command, who);
        goto done;
    }
    rc = 0;
done:
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
    if (outb.data)
        explicit_bzero(outb.data, outb.len); /* it held the credential */
    explicit_bzero(chunk, sizeof chunk);
    kn_buf_free(&outb);
    free(info);
    free(env);
    free(argv);
    return rc;
}
