/* Where a client's configuration comes from, in kubectl's order, and the
 * in-cluster service account. */
#define _GNU_SOURCE /* explicit_bzero */
#include "kn_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kn_buf.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

void kn_config_free(struct kn_config *c)
{
    if (!c)
        return;
    free(c->origin);
    free(c->context);
    free(c->cluster_name);
    free(c->user_name);
    free(c->namespace);
    free(c->server);
    free(c->tls_server_name);
    free(c->proxy_url);
    free(c->ca.data);
    /* do not leave a credential behind in freed memory; explicit_bzero,
     * since a memset right before free may be dropped by the compiler */
    if (c->token)
        explicit_bzero(c->token, strlen(c->token));
    free(c->token);
    free(c->token_file);
    free(c->cert.data);
    if (c->key.data)
        explicit_bzero(c->key.data, c->key.len);
    free(c->key.data);
    free(c->as_user);
    free(c->as_uid);
    kn_strv_free(c->as_groups);
    if (c->exec) {
        free(c->exec->api_version);
        free(c->exec->command);
        free(c->exec->install_hint);
        kn_strv_free(c->exec->args);
        kn_strv_free(c->exec->env);
        free(c->exec);
    }
    free(c);
}

static char *trimmed_file(const char *path)
{
    size_t len;
    size_t start = 0;
    char *s = kn_read_file(path, &len);
    if (!s)
        return NULL;
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    while (start < len && isspace((unsigned char)s[start]))
        start++;
    memmove(s, s + start, len - start + 1);
    return s;
}

struct kn_config *kn_config_in_cluster(struct kn_err *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    /* Tests (and unusual mounts) point this at another directory. */
    const char *dir = getenv("KINFORMER_SERVICE_ACCOUNT_DIR");
    struct kn_config *c;
    char path[4096];
    if (!dir || !*dir)
        dir = SA_DIR;
    if (!host || !*host || !port || !*port) {
        kn_err_set(err, 0, "Config", "not running in a cluster: KUBERNETES_SERVICE_HOST and "
                   "KUBERNETES_SERVICE_PORT must be set (or give a kubeconfig)");
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return kn_err_set(err, 0, "Config", "out of memory"), NULL;
    c->origin = kn_strdup("in-cluster");
    c->server = malloc(strlen(host) + strlen(port) + 12);
    if (c->server)
        sprintf(c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    snprintf(path, sizeof path, "%s/token", dir);
    c->token_file = kn_strdup(path);
    if (access(path, R_OK) != 0) {
        kn_err_set(err, 0, "Config", "in-cluster: cannot read the service account token %s: %s", path,
                   strerror(errno));
        goto fail;
    }
    snprintf(path, sizeof path, "%s/ca.crt", dir);
    if (kn_blob_read(&c->ca, path, "in-cluster: the service account CA", err) < 0)
        goto fail;
    snprintf(path, sizeof path, "%s/namespace", dir);
    c->namespace = trimmed_file(path);
    if (!c->namespace || !*c->namespace) {
        free(c->namespace);
        c->namespace = kn_strdup("default");
    }
    return c;
fail:
    kn_config_free(c);
    return NULL;
}

struct kn_config *kn_config_load(const struct kn_config_opts *opts, struct kn_err *err)
{
    const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
    char path[4096];
    if (opts->in_cluster)
        return kn_config_in_cluster(err);
    if (opts->kubeconfig && *opts->kubeconfig)
        return kn_config_from_kubeconfig(opts->kubeconfig, 0, opts->context, err);
    if (env && *env)
        return kn_config_from_kubeconfig(env, 1, opts->context, err);
    if (home && *home) {
        snprintf(path, sizeof path, "%s/.kube/config", home);
        if (access(path, F_OK) == 0)
            return kn_config_from_kubeconfig(path, 0, opts->context, err);
    }
    if (getenv("KUBERNETES_SERVICE_HOST"))
        return kn_config_in_cluster(err);
    kn_err_set(err, 0, "Config", "no cluster configuration: set $KUBECONFIG, create ~/.kube/config, pass "
               "kubeconfig = \"path\", or run inside a cluster");
    return NULL;
}
