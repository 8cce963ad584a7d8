/* See alloc_fail.h. The counter is the test binary's only mutable global:
 * the tests are single-threaded where they arm it (a loop's I/O thread
 * allocates too, so scenarios that arm it run without one). */
#include "alloc_fail.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static unsigned long fail_at, count;
static int failed, counting;

void af_arm(unsigned long n)
{
    fail_at = n;
    count = 0;
    failed = 0;
    counting = 1;
}

void af_disarm(void)
{
    counting = 0;
}

unsigned long af_count(void)
{
    return count;
}

int af_failed(void)
{
    return failed;
}

static int fail_now(void)
{
    if (__atomic_load_n(&counting, __ATOMIC_SEQ_CST) && __atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST) == fail_at) {
        failed = 1;
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    return fail_now() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

void *af_malloc(size_t n)
{
    return __real_malloc(n);
}

char *af_strdup(const char *s)
{
    return __real_strdup(s);
}

unsigned long af_every(void (*scenario)(void *arg, unsigned long n), void *arg)
{
    for (unsigned long n = 1;; n++) {
        scenario(arg, n);
        af_disarm();
        if (!af_failed())
            break;
    }
    scenario(arg, 0);
    af_disarm();
    return af_count();
}
