/* A model API server behind the fake transport (fake_server.h): a history
 * of ConfigMaps in namespace ns, answered as the API server would. Where
 * fake_server.c replays what a test scripts line by line, the world answers
 * whatever the reflector asks: a list at any version, page by page; a watch
 * from any version, with what happened since; a streaming list; 410 for a
 * version older than the compaction. That is what a scenario needs whose
 * requests vary from run to run, as under allocation failure, where a
 * reflector resumes, relists or backs off at a point no script foresees. */
#ifndef FAKE_WORLD_H
#define FAKE_WORLD_H

#include "fake_server.h"

#define WORLD_MAX_EVENTS 16
#define WORLD_MAX_OBJS 8

struct world_event {
    char type[12];        /* ADDED, MODIFIED, DELETED */
    char name[8];
    long rv;
};

struct world {
    struct fake *f;
    /* the history: objects as of rv base, then events (increasing rv) */
    long base;
    struct world_event init[WORLD_MAX_OBJS];
    int ninit;
    struct world_event ev[WORLD_MAX_EVENTS];
    int nev;
    long now;             /* the latest version */
    long compacted;       /* versions older than this are gone (410) */
    /* the open watch, and the version up to which it has had everything */
    struct fake_req *cur;
    long sent;
    int bad;              /* requests the model refuses (a watch with no version): each failed a check */
};

/* Objects "a".."z" created at base (rv given per object). */
void world_init(struct world *w, struct fake *f, long base);
void world_object(struct world *w, const char *name, long rv);
/* Appends an event at now + 1. */
void world_event(struct world *w, const char *type, const char *name);

/* The state at rv: names and versions, sorted by name; returns how many. */
int world_state(const struct world *w, long rv, struct world_event *out);

/* Answers one step of whatever is open: a list page, the next event of the
 * open watch, or (nothing open) the earliest timer. Returns 1 when the open
 * watch is up to date with the world (nothing to send), 0 after a step, -1
 * when nothing is open and no timer is armed (the reflector hangs). */
int world_step(struct world *w);

#endif
