/* Allocation-failure injection for the C tests: the test binary is linked
 * with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup, so every
 * allocation the core (and the tests) make passes through alloc_fail.c.
 * Armed with af_fail_at(n), the n-th allocation from then on returns NULL
 * (errno ENOMEM) and only that one. */
#ifndef ALLOC_FAIL_H
#define ALLOC_FAIL_H

#include <stddef.h>

/* Starts counting allocations: the n-th from now fails (0: none does). */
void af_arm(unsigned long n);
/* Stops counting (a scenario's setup and checks allocate freely). */
void af_disarm(void);
/* Allocations counted since af_arm, and whether the n-th failed. */
unsigned long af_count(void);
int af_failed(void);

/* Runs scenario(arg, n) for n = 1, 2, ... until a run's armed part makes
 * fewer than n allocations (so each of them failed once), then once with
 * n = 0 (none fails). The scenario calls af_arm(n) and af_disarm() around
 * what is under test and checks its own invariants. Returns the number of
 * allocations of the clean run. */
unsigned long af_every(void (*scenario)(void *arg, unsigned long n), void *arg);

/* Allocations of the tests' own (a fake server's copies) that never fail or count. */
void *af_malloc(size_t n);
char *af_strdup(const char *s);

#endif
