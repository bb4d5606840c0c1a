/*
 * events.h - test helpers for ferry_monitor: open one on every kind, and
 * wait for the next event of a kind (T_EVENTS_SHOW=1 prints every event
 * seen). Shared by the tests that watch a socket's events.
 */
#ifndef FERRY_TEST_EVENTS_H
#define FERRY_TEST_EVENTS_H

#include "common.h"

static inline ferry_monitor *mon(ferry_socket *s)
{
    ferry_monitor *m = NULL;
    assert_int_equal(ferry_monitor_open(s, FERRY_EVENT_ALL, 0, &m), 0);
    return m;
}

/* The next event of kind within ms, skipping others: 0 and *ev, or -1. */
static inline int next_of(ferry_monitor *m, int kind, ferry_event *ev, int ms)
{
    uint64_t end = t_now_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t now = t_now_ms();
        if (now >= end)
            return -1;
        int rc = ferry_monitor_recv(m, ev, (int)(end - now));
        if (rc != 0)
            return -1;
        if (getenv("T_EVENTS_SHOW"))
            fprintf(stderr, "  event %s err %s value %lld peer %u pid %d addr '%s' url '%s': %s\n",
                    ferry_event_name(ev->kind), ev->error ? ferry_err_name(ev->error) : "-",
                    (long long)ev->value, ev->peer_id, ev->peer_pid, ev->peer_addr, ev->endpoint,
                    ev->reason);
        if (ev->kind == kind)
            return 0;
    }
}

static inline ferry_event expect(ferry_monitor *m, int kind, int ms)
{
    ferry_event ev;
    if (next_of(m, kind, &ev, ms) != 0)
        fail_msg("no %s event within %d ms", ferry_event_name(kind), ms);
    return ev;
}

#endif
