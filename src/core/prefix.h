/*
 * prefix.h - a set of byte-string prefixes, and the question "does one of
 * them start this message?", answered at a cost that depends on the
 * message, not on how many prefixes there are.
 *
 * A PUB keeps one set per subscriber and asks it for every message it
 * publishes; a SUB keeps one for its own subscriptions. A subscriber
 * chooses the prefixes, so the set is a radix tree (a trie whose chains of
 * single children are merged into one node with a label): a lookup walks
 * at most one node per branching point along the message's first bytes,
 * choosing each child by binary search on its first byte; the nodes are
 * at most twice the prefixes. Nothing here recurses, so a long chain of
 * nested prefixes ("a", "ab", "abc", ...) cannot exhaust the stack.
 *
 * An empty set is NULL: a pipe without subscriptions costs nothing.
 * Not thread-safe: the owner's lock guards it (the socket's mtx).
 */
#ifndef FY_PREFIX_H
#define FY_PREFIX_H

#include <stddef.h>

struct fy_prefixes;

/* Adds a prefix (len may be 0: the empty prefix matches everything).
 * counted: adding a prefix already there counts it again, and it stays
 * until removed as many times (a SUB's own subscriptions, as in ZeroMQ);
 * else the set holds each prefix once. Returns 1 when the set of distinct
 * prefixes grew, 0 when not, FERRY_ENOMEM. *set may be NULL (empty). */
int fy_prefixes_add(struct fy_prefixes **set, const void *prefix, size_t len, int counted);

/* Removes a prefix (once, when counted). Returns 1 when a distinct prefix
 * left the set, 0 when not (absent, or still counted). */
int fy_prefixes_remove(struct fy_prefixes *set, const void *prefix, size_t len, int counted);

/* 1 if some prefix in the set starts data[0..len). */
int fy_prefixes_match(const struct fy_prefixes *set, const void *data, size_t len);

/* 1 if exactly this prefix is in the set. */
int fy_prefixes_has(const struct fy_prefixes *set, const void *prefix, size_t len);

/* Distinct prefixes, and their bytes added up. */
size_t fy_prefixes_count(const struct fy_prefixes *set);
size_t fy_prefixes_bytes(const struct fy_prefixes *set);

/* Calls fn once per distinct prefix (in byte order) until fn returns
 * non-zero, which is then returned; 0 after the last, FERRY_ENOMEM when
 * the walk could not allocate its buffer. */
int fy_prefixes_each(const struct fy_prefixes *set,
                     int (*fn)(void *ctx, const void *prefix, size_t len), void *ctx);

void fy_prefixes_free(struct fy_prefixes *set);

#endif /* FY_PREFIX_H */
