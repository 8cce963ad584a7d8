/* kubeconfig files, parsed with libyaml and merged as kubectl merges
 * $KUBECONFIG: for each named cluster, user and context, and for
 * current-context, the first file that sets it wins. Relative paths are
 * resolved against the directory of the file that holds the entry. */
#include "kn_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "kn_base64.h"
#include "kn_buf.h"

struct kfile {
    char *path;
    yaml_document_t doc;
    yaml_node_t *root; /* a mapping, or NULL for an empty file */
};

struct kset {
    struct kfile *f;
    int n;
    char origin[512];
};

/* An entry found in one of the files: the inner mapping and where it lives. */
struct entry {
    struct kfile *file;
    yaml_node_t *map;
    const char *name;
};

char *kn_strdup(const char *s)
{
    size_t n;
    char *d;
    if (!s)
        return NULL;
    n = strlen(s) + 1;
    d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void kn_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int kn_blob_read(struct kn_blob *b, const char *path, const char *what, struct kn_err *err)
{
    size_t len;
    char *data = kn_read_file(path, &len);
    if (!data)
        return kn_err_set(err, 0, "Config", "%s: cannot read %s: %s", what, path, strerror(errno));
    free(b->data);
    b->data = (unsigned char *)data;
    b->len = len;
    return 0;
}

/* ---- YAML access ---- */

static unsigned long line_of(const yaml_node_t *n)
{
    return n ? (unsigned long)n->start_mark.line + 1 : 0;
}

static yaml_node_t *node(struct kfile *f, int idx)
{
    return yaml_document_get_node(&f->doc, idx);
}

/* A scalar's text, or NULL for a YAML null (~, null, an empty plain value). */
static const char *scalar_text(const yaml_node_t *n)
{
    const char *v;
    if (!n || n->type != YAML_SCALAR_NODE)
        return NULL;
    v = (const char *)n->data.scalar.value;
    /* kubectl writes unset fields as "" (current-context: ""): empty is unset
     * in any quoting style, as client-go reads it */
    if (v[0] == '\0')
        return NULL;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0))
        return NULL;
    return v;
}

static int is_null(const yaml_node_t *n)
{
    return !n || (n->type == YAML_SCALAR_NODE && !scalar_text(n));
}

static yaml_node_t *map_get(struct kfile *f, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *p;
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(f, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return node(f, p->value);
    }
    return NULL;
}

/* Reads an optional string field: 0 with *out NULL when absent, -1 when the
 * field holds a list or mapping. */
static int get_str(struct kfile *f, yaml_node_t *map, const char *what, const char *key, const char **out,
                   struct kn_err *err)
{
    yaml_node_t *v = map_get(f, map, key);
    *out = NULL;
    if (is_null(v))
        return 0;
    if (v->type != YAML_SCALAR_NODE)
        return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: %s must be a string", f->path, line_of(v), what, key);
    *out = scalar_text(v);
    return 0;
}

static int get_bool(struct kfile *f, yaml_node_t *map, const char *what, const char *key, int *out,
                    struct kn_err *err)
{
    static const char *yes[] = { "true", "yes", "on", "y" }, *no[] = { "false", "no", "off", "n" };
    const char *s;
    *out = 0;
    if (get_str(f, map, what, key, &s, err) < 0)
        return -1;
    if (!s)
        return 0;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: %s must be true or false, not \"%s\"", f->path,
                      line_of(map_get(f, map, key)), what, key, s);
}

/* Reads a list of strings (args, as-groups) into a NULL-terminated vector. */
static int get_strv(struct kfile *f, yaml_node_t *map, const char *what, const char *key, char ***out,
                    struct kn_err *err)
{
    yaml_node_t *v = map_get(f, map, key);
    yaml_node_item_t *it;
    size_t n = 0;
    *out = NULL;
    if (is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: %s must be a list of strings", f->path, line_of(v),
                          what, key);
    *out = calloc((size_t)(v->data.sequence.items.top - v->data.sequence.items.start) + 1, sizeof **out);
    if (!*out)
        return kn_err_set(err, 0, "Config", "out of memory");
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *s = node(f, *it);
        if (!s || s->type != YAML_SCALAR_NODE)
            return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: %s must be a list of strings", f->path,
                              line_of(s), what, key);
        (*out)[n++] = kn_strdup((const char *)s->data.scalar.value);
    }
    return 0;
}

/* ---- files ---- */

static int load_file(struct kfile *f, const char *path, struct kn_err *err)
{
    yaml_parser_t parser;
    size_t len;
    char *text = kn_read_file(path, &len);
    int ok;
    f->path = kn_strdup(path);
    if (!text)
        return kn_err_set(err, 0, "Config", "kubeconfig %s: cannot read: %s", path, strerror(errno));
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        return kn_err_set(err, 0, "Config", "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ok = yaml_parser_load(&parser, &f->doc);
    if (!ok) {
        kn_err_set(err, 0, "Config", "kubeconfig %s:%lu:%lu: YAML syntax error: %s%s%s", path,
                   (unsigned long)parser.problem_mark.line + 1, (unsigned long)parser.problem_mark.column + 1,
                   parser.problem ? parser.problem : "malformed YAML", parser.context ? " " : "",
                   parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        free(text);
        return -1;
    }
    yaml_parser_delete(&parser);
    free(text);
    f->root = yaml_document_get_root_node(&f->doc);
    if (f->root && is_null(f->root))
        f->root = NULL;
    if (f->root && f->root->type != YAML_MAPPING_NODE)
        return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: the document must be a mapping (apiVersion, clusters, users, contexts)",
                          path, line_of(f->root));
    return 0;
}

static void kset_free(struct kset *s)
{
    for (int i = 0; i < s->n; i++) {
        yaml_document_delete(&s->f[i].doc);
        free(s->f[i].path);
    }
    free(s->f);
}

static int kset_load(struct kset *s, const char *files, int skip_missing, struct kn_err *err)
{
    char *list = kn_strdup(files), *save = NULL, *path;
    size_t used = 0;
    s->origin[0] = '\0';
    if (!list)
        return kn_err_set(err, 0, "Config", "out of memory");
    for (path = strtok_r(list, ":", &save); path; path = strtok_r(NULL, ":", &save)) {
        int dup = 0;
        struct kfile *nf;
        for (int i = 0; i < s->n; i++)
            dup |= strcmp(s->f[i].path, path) == 0;
        if (dup)
            continue;
        if (skip_missing && access(path, F_OK) != 0 && errno == ENOENT)
            continue; /* kubectl skips files of $KUBECONFIG that do not exist */
        nf = realloc(s->f, (size_t)(s->n + 1) * sizeof *nf);
        if (!nf) {
            free(list);
            return kn_err_set(err, 0, "Config", "out of memory");
        }
        s->f = nf;
        memset(&s->f[s->n], 0, sizeof s->f[s->n]);
        if (load_file(&s->f[s->n], path, err) < 0) {
            /* a document that parsed but is not a mapping must go too;
             * deleting a zeroed document is harmless */
            yaml_document_delete(&s->f[s->n].doc);
            free(s->f[s->n].path);
            free(list);
            return -1;
        }
        s->n++;
        used += (size_t)snprintf(s->origin + used, used < sizeof s->origin ? sizeof s->origin - used : 0,
                                 "%s%s", used ? ":" : "", path);
        if (used >= sizeof s->origin)
            used = sizeof s->origin;
    }
    free(list);
    if (s->n == 0)
        return kn_err_set(err, 0, "Config",
                          "no kubeconfig found: $KUBECONFIG lists %s and none of them exists", files);
    return 0;
}

/* Finds the first named entry of a list (clusters, users, contexts) across
 * the files; entry->map is the inner mapping (the "cluster:" of a cluster). */
static int find_entry(struct kset *s, const char *list, const char *inner, const char *name, struct entry *e,
                      struct kn_err *err)
{
    for (int i = 0; i < s->n; i++) {
        struct kfile *f = &s->f[i];
        yaml_node_t *seq = map_get(f, f->root, list);
        yaml_node_item_t *it;
        if (is_null(seq))
            continue;
        if (seq->type != YAML_SEQUENCE_NODE)
            return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s must be a list", f->path, line_of(seq),
                              list);
        for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
            yaml_node_t *item = node(f, *it);
            const char *n = scalar_text(map_get(f, item, "name"));
            if (n && strcmp(n, name) == 0) {
                yaml_node_t *m = map_get(f, item, inner);
                if (m && !is_null(m) && m->type != YAML_MAPPING_NODE)
                    return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s \"%s\": %s must be a mapping",
                                      f->path, line_of(m), list, name, inner);
                e->file = f;
                e->map = is_null(m) ? NULL : m;
                e->name = n;
                return 1;
            }
        }
    }
    return 0;
}

/* Lists the names of a list's entries, for "did you mean" messages. */
static void names_of(struct kset *s, const char *list, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < s->n; i++) {
        struct kfile *f = &s->f[i];
        yaml_node_t *seq = map_get(f, f->root, list);
        yaml_node_item_t *it;
        if (!seq || seq->type != YAML_SEQUENCE_NODE)
            continue;
        for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top && used < cap; it++) {
            const char *n = scalar_text(map_get(f, node(f, *it), "name"));
            if (n)
                used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? ", " : "", n);
        }
    }
    if (!out[0])
        snprintf(out, cap, "none");
}

/* A path from a kubeconfig, made absolute against the file's directory (so
 * it still works after the program changes directory, as in client-go). */
static char *resolve_path(const struct kfile *f, const char *p)
{
    const char *slash;
    char cwd[4096], *out;
    size_t dirlen;
    if (!p)
        return NULL;
    if (p[0] == '/')
        return kn_strdup(p);
    if (f->path[0] != '/' && !getcwd(cwd, sizeof cwd))
        return kn_strdup(p);
    slash = strrchr(f->path, '/');
    dirlen = slash ? (size_t)(slash - f->path) : 0;
    out = malloc(strlen(cwd) * (f->path[0] != '/') + dirlen + strlen(p) + 3);
    if (!out)
        return NULL;
    if (f->path[0] == '/')
        sprintf(out, "%.*s/%s", (int)dirlen, f->path, p);
    else if (dirlen)
        sprintf(out, "%s/%.*s/%s", cwd, (int)dirlen, f->path, p);
    else
        sprintf(out, "%s/%s", cwd, p);
    return out;
}

/* A credential given inline (*-data, base64) or as a file; inline wins, as in
 * client-go. */
static int get_pem(struct entry *e, const char *what, const char *file_key, const char *data_key,
                   struct kn_blob *out, struct kn_err *err)
{
    const char *file, *data;
    char field[160];
    if (get_str(e->file, e->map, what, file_key, &file, err) < 0 ||
        get_str(e->file, e->map, what, data_key, &data, err) < 0)
        return -1;
    if (data) {
        out->data = kn_base64_decode(data, strlen(data), &out->len);
        if (!out->data)
            return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: %s is not valid base64", e->file->path,
                              line_of(map_get(e->file, e->map, data_key)), what, data_key);
        return 0;
    }
    if (file) {
        char *path = resolve_path(e->file, file);
        int rc;
        snprintf(field, sizeof field, "kubeconfig %s:%lu: %s: %s", e->file->path,
                 line_of(map_get(e->file, e->map, file_key)), what, file_key);
        rc = kn_blob_read(out, path, field, err);
        free(path);
        return rc;
    }
    return 0;
}

static int load_cluster(struct entry *e, struct kn_config *c, struct kn_err *err)
{
    char what[300];
    const char *s;
    snprintf(what, sizeof what, "cluster \"%s\"", e->name);
    if (get_str(e->file, e->map, what, "server", &s, err) < 0)
        return -1;
    if (!s)
        return kn_err_set(err, 0, "Config", "kubeconfig %s: %s has no server", e->file->path, what);
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
        return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: server \"%s\" must start with https://",
                          e->file->path, line_of(map_get(e->file, e->map, "server")), what, s);
    {
        const char *host = strstr(s, "://") + 3;
        if (!*host || *host == '/' || *host == '?' || *host == '#' || *host == ':')
            return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: server \"%s\" has no host",
                              e->file->path, line_of(map_get(e->file, e->map, "server")), what, s);
    }
    c->server = kn_strdup(s);
    while (c->server[0] && c->server[strlen(c->server) - 1] == '/')
        c->server[strlen(c->server) - 1] = '\0';
    if (get_str(e->file, e->map, what, "tls-server-name", &s, err) < 0)
        return -1;
    c->tls_server_name = kn_strdup(s);
    if (get_str(e->file, e->map, what, "proxy-url", &s, err) < 0)
        return -1;
    c->proxy_url = kn_strdup(s);
    if (get_bool(e->file, e->map, what, "insecure-skip-tls-verify", &c->insecure, err) < 0)
        return -1;
    if (get_pem(e, what, "certificate-authority", "certificate-authority-data", &c->ca, err) < 0)
        return -1;
    if (c->insecure && c->ca.len)
        return kn_err_set(err, 0, "Config",
                          "kubeconfig %s: %s sets both insecure-skip-tls-verify and a certificate-authority; "
                          "remove one (kubectl refuses this too)", e->file->path, what);
    return 0;
}

static int load_exec(struct entry *e, const char *what, yaml_node_t *x, struct kn_config *c, struct kn_err *err)
{
    struct kfile *f = e->file;
    struct kn_exec *ex;
    const char *s;
    yaml_node_t *env;
    if (x->type != YAML_MAPPING_NODE)
        return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: exec must be a mapping", f->path, line_of(x),
                          what);
    ex = c->exec = calloc(1, sizeof *ex);
    if (!ex)
        return kn_err_set(err, 0, "Config", "out of memory");
    if (get_str(f, x, what, "apiVersion", &s, err) < 0)
        return -1;
    if (!s || (strcmp(s, "client.authentication.k8s.io/v1") != 0 &&
               strcmp(s, "client.authentication.k8s.io/v1beta1") != 0))
        return kn_err_set(err, 0, "Config",
                          "kubeconfig %s:%lu: %s: exec apiVersion must be client.authentication.k8s.io/v1 or "
                          "v1beta1, not %s%s%s", f->path, line_of(x), what, s ? "\"" : "", s ? s : "empty",
                          s ? "\"" : "");
    ex->api_version = kn_strdup(s);
    if (get_str(f, x, what, "command", &s, err) < 0)
        return -1;
    if (!s)
        return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: exec has no command", f->path, line_of(x), what);
    /* Like client-go: a relative command with a '/' is relative to the file;
     * a bare name is looked up in $PATH. */
    ex->command = strchr(s, '/') ? resolve_path(f, s) : kn_strdup(s);
    if (get_str(f, x, what, "installHint", &s, err) < 0)
        return -1;
    ex->install_hint = kn_strdup(s);
    if (get_strv(f, x, what, "args", &ex->args, err) < 0)
        return -1;
    if (get_bool(f, x, what, "provideClusterInfo", &ex->provide_cluster_info, err) < 0)
        return -1;
    env = map_get(f, x, "env");
    if (!is_null(env)) {
        yaml_node_item_t *it;
        size_t n = 0;
        if (env->type != YAML_SEQUENCE_NODE)
            return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: exec env must be a list of {name, value}",
                              f->path, line_of(env), what);
        ex->env = calloc((size_t)(env->data.sequence.items.top - env->data.sequence.items.start) + 1,
                         sizeof *ex->env);
        if (!ex->env)
            return kn_err_set(err, 0, "Config", "out of memory");
        for (it = env->data.sequence.items.start; it < env->data.sequence.items.top; it++) {
            yaml_node_t *kv = node(f, *it);
            const char *name, *value;
            if (!kv || kv->type != YAML_MAPPING_NODE || get_str(f, kv, what, "name", &name, err) < 0 ||
                get_str(f, kv, what, "value", &value, err) < 0 || !name)
                return kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: %s: each exec env entry needs a name and a value",
                                  f->path, line_of(kv), what);
            ex->env[n] = malloc(strlen(name) + strlen(value ? value : "") + 2);
            if (!ex->env[n])
                return kn_err_set(err, 0, "Config", "out of memory");
            sprintf(ex->env[n++], "%s=%s", name, value ? value : "");
        }
    }
    return 0;
}

static int load_user(struct entry *e, struct kn_config *c, struct kn_err *err)
{
    struct kfile *f = e->file;
    char what[300];
    const char *s, *p;
    yaml_node_t *x;
    snprintf(what, sizeof what, "user \"%s\"", e->name);
    if (!e->map)
        return 0;
    if (get_str(f, e->map, what, "username", &s, err) < 0 || get_str(f, e->map, what, "password", &p, err) < 0)
        return -1;
    if (s || p)
        return kn_err_set(err, 0, "Config",
                          "kubeconfig %s:%lu: %s uses username/password (basic authentication), which Kubernetes "
                          "no longer supports; use a client certificate, a token or an exec plugin",
                          f->path, line_of(map_get(f, e->map, s ? "username" : "password")), what);
    x = map_get(f, e->map, "auth-provider");
    if (!is_null(x)) {
        const char *name = scalar_text(map_get(f, x, "name"));
        return kn_err_set(err, 0, "Config",
                          "kubeconfig %s:%lu: %s uses auth-provider \"%s\", which Kubernetes clients no longer "
                          "support; use an exec credential plugin (client.authentication.k8s.io/v1) instead, "
                          "for example the one your cloud provides",
                          f->path, line_of(x), what, name ? name : "?");
    }
    if (get_str(f, e->map, what, "token", &s, err) < 0)
        return -1;
    c->token = kn_strdup(s);
    if (get_str(f, e->map, what, "tokenFile", &s, err) < 0)
        return -1;
    if (s) {
        struct kn_blob b = {0};
        char field[400];
        c->token_file = resolve_path(f, s);
        snprintf(field, sizeof field, "kubeconfig %s:%lu: %s: tokenFile", f->path,
                 line_of(map_get(f, e->map, "tokenFile")), what);
        if (kn_blob_read(&b, c->token_file, field, err) < 0)
            return -1;
        free(b.data); /* read again at each use; this only checks it now */
    }
    if (get_pem(e, what, "client-certificate", "client-certificate-data", &c->cert, err) < 0 ||
        get_pem(e, what, "client-key", "client-key-data", &c->key, err) < 0)
        return -1;
    if (!c->cert.len != !c->key.len)
        return kn_err_set(err, 0, "Config", "kubeconfig %s: %s has a client %s but no client %s", f->path, what,
                          c->cert.len ? "certificate" : "key", c->cert.len ? "key" : "certificate");
    if (get_str(f, e->map, what, "as", &s, err) < 0)
        return -1;
    c->as_user = kn_strdup(s);
    if (get_str(f, e->map, what, "as-uid", &s, err) < 0)
        return -1;
    c->as_uid = kn_strdup(s);
    if (get_strv(f, e->map, what, "as-groups", &c->as_groups, err) < 0)
        return -1;
    if (c->as_groups && c->as_groups[0] && !c->as_user)
        return kn_err_set(err, 0, "Config", "kubeconfig %s: %s sets as-groups without as (impersonating "
                          "groups needs a user)", f->path, what);
    x = map_get(f, e->map, "exec");
    if (!is_null(x) && load_exec(e, what, x, c, err) < 0)
        return -1;
    return 0;
}

struct kn_config *kn_config_from_kubeconfig(const char *files, int from_env, const char *context,
                                            struct kn_err *err)
{
    struct kset s = {0};
    struct kn_config *c = calloc(1, sizeof *c);
    struct entry ctx = {0}, cl = {0}, us = {0};
    const char *cluster_name, *user_name, *ns;
    char names[400];
    int found;
    if (!c) {
        kn_err_set(err, 0, "Config", "out of memory");
        return NULL;
    }
    if (kset_load(&s, files, from_env, err) < 0)
        goto fail;
    c->origin = kn_strdup(s.origin);
    if (!context || !*context) {
        context = NULL;
        for (int i = 0; i < s.n && !context; i++)
            context = scalar_text(map_get(&s.f[i], s.f[i].root, "current-context"));
        if (!context) {
            names_of(&s, "contexts", names, sizeof names);
            kn_err_set(err, 0, "Config", "kubeconfig %s: no current-context is set; choose one with "
                       "context = \"...\" (contexts: %s)", s.origin, names);
            goto fail;
        }
    }
    c->context = kn_strdup(context);
    if ((found = find_entry(&s, "contexts", "context", context, &ctx, err)) < 0)
        goto fail;
    if (!found) {
        names_of(&s, "contexts", names, sizeof names);
        kn_err_set(err, 0, "Config", "kubeconfig %s: context \"%s\" not found (contexts: %s)", s.origin, context,
                   names);
        goto fail;
    }
    cluster_name = scalar_text(map_get(ctx.file, ctx.map, "cluster"));
    user_name = scalar_text(map_get(ctx.file, ctx.map, "user"));
    ns = scalar_text(map_get(ctx.file, ctx.map, "namespace"));
    c->namespace = kn_strdup(ns ? ns : "default");
    if (!cluster_name) {
        kn_err_set(err, 0, "Config", "kubeconfig %s:%lu: context \"%s\" names no cluster", ctx.file->path,
                   line_of(ctx.map), context);
        goto fail;
    }
    c->cluster_name = kn_strdup(cluster_name);
    if ((found = find_entry(&s, "clusters", "cluster", cluster_name, &cl, err)) < 0)
        goto fail;
    if (!found || !cl.map) {
        names_of(&s, "clusters", names, sizeof names);
        kn_err_set(err, 0, "Config", "kubeconfig %s: context \"%s\" uses cluster \"%s\", which is not defined "
                   "(clusters: %s)", s.origin, context, cluster_name, names);
        goto fail;
    }
    if (load_cluster(&cl, c, err) < 0)
        goto fail;
    if (user_name) {
        c->user_name = kn_strdup(user_name);
        if ((found = find_entry(&s, "users", "user", user_name, &us, err)) < 0)
            goto fail;
        if (!found) {
            names_of(&s, "users", names, sizeof names);
            kn_err_set(err, 0, "Config", "kubeconfig %s: context \"%s\" uses user \"%s\", which is not defined "
                       "(users: %s)", s.origin, context, user_name, names);
            goto fail;
        }
        if (load_user(&us, c, err) < 0)
            goto fail;
    }
    kset_free(&s);
    return c;
fail:
    kset_free(&s);
    kn_config_free(c);
    return NULL;
}
