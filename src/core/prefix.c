/*
 * prefix.c - the prefix set of prefix.h: a radix tree.
 *
 * Invariants, kept by every operation:
 *  - a node's label is never empty (the root has none), and its children
 *    are sorted by the first byte of their labels, which all differ;
 *  - a leaf always ends a prefix (count > 0): removal prunes leaves that
 *    no longer do, so a path's length never exceeds the longest prefix;
 *  - a node that ends no prefix has at least two children, except when an
 *    allocation failed while merging, which costs a node, not correctness.
 */
#include "prefix.h"
#include "fy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *parent;
    struct node **kids; /* capkids child pointers, then capkids key bytes */
    uint32_t nkids, capkids;
    uint32_t count;        /* prefixes that end here (counted adds); 0: none */
    uint32_t llen;         /* bytes of label */
    unsigned char label[]; /* the bytes from the parent to here */
};

struct fy_prefixes {
    struct node *root; /* the empty label */
    size_t count, bytes;
};

/* The first byte of each child's label, in the same block as the child
 * pointers: a lookup searches this small array and touches one child, not
 * every child's label (a tree of 10,000 prefixes is not in the cache). */
static unsigned char *keys_of(const struct node *n)
{
    return n->kids ? (unsigned char *)(n->kids + n->capkids) : NULL; /* no children yet */
}

/* The child whose label starts with b (*found = 1), or where it would go. */
static uint32_t kid_find(const struct node *n, unsigned char b, int *found)
{
    const unsigned char *keys = keys_of(n);
    uint32_t lo = 0, hi = n->nkids;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (keys[mid] == b) {
            *found = 1;
            return mid;
        }
        if (keys[mid] < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

/* Makes the child arrays of n hold cap entries. */
static int kids_grow(struct node *n, uint32_t cap)
{
    struct node **v = malloc(cap * (sizeof *v + 1));
    if (v == NULL)
        return FERRY_ENOMEM;
    if (n->nkids) {
        memcpy(v, n->kids, n->nkids * sizeof *v);
        memcpy((unsigned char *)(v + cap), keys_of(n), n->nkids);
    }
    free(n->kids);
    n->kids = v;
    n->capkids = cap;
    return 0;
}

static int kid_insert(struct node *n, uint32_t at, struct node *k)
{
    if (n->nkids == n->capkids && kids_grow(n, n->capkids ? n->capkids * 2 : 2) != 0)
        return FERRY_ENOMEM;
    unsigned char *keys = keys_of(n);
    memmove(n->kids + at + 1, n->kids + at, (n->nkids - at) * sizeof *n->kids);
    memmove(keys + at + 1, keys + at, n->nkids - at);
    n->kids[at] = k;
    keys[at] = k->label[0];
    n->nkids++;
    k->parent = n;
    return 0;
}

static void kid_remove(struct node *n, uint32_t at)
{
    unsigned char *keys = keys_of(n);
    memmove(n->kids + at, n->kids + at + 1, (n->nkids - at - 1) * sizeof *n->kids);
    memmove(keys + at, keys + at + 1, n->nkids - at - 1);
    n->nkids--;
}

/* A node with its label in the same allocation, so a short label costs
 * no second cache line (label NULL: the caller fills it in). Prefixes are
 * capped far below 4 GiB (pubsub.c). */
static struct node *node_new(const unsigned char *label, size_t llen)
{
    if (llen > UINT32_MAX)
        return NULL;
    struct node *k = malloc(sizeof *k + (llen ? llen : 1));
    if (k == NULL)
        return NULL;
    memset(k, 0, sizeof *k);
    if (label != NULL && llen)
        memcpy(k->label, label, llen);
    k->llen = (uint32_t)llen;
    return k;
}

static void node_free(struct node *k)
{
    free(k->kids);
    free(k);
}

/* Splits k after `at` bytes of its label (0 < at < llen): a new node with
 * those bytes takes k's place under its parent, and k, keeping the rest,
 * becomes its only child. Returns the new node, or NULL (nothing changed). */
static struct node *split(struct node *k, size_t at)
{
    struct node *mid = node_new(k->label, at);
    if (mid == NULL || kids_grow(mid, 2) != 0) {
        if (mid)
            node_free(mid);
        return NULL;
    }
    struct node *parent = k->parent;
    int found;
    uint32_t i = kid_find(parent, k->label[0], &found);
    memmove(k->label, k->label + at, k->llen - at); /* its block stays as large */
    k->llen -= (uint32_t)at;
    parent->kids[i] = mid; /* the same first byte: its key stays */
    mid->parent = parent;
    mid->kids[0] = k;
    keys_of(mid)[0] = k->label[0];
    mid->nkids = 1;
    k->parent = mid;
    return mid;
}

int fy_prefixes_add(struct fy_prefixes **setp, const void *prefix, size_t len, int counted)
{
    if (*setp == NULL) {
        struct fy_prefixes *set = calloc(1, sizeof *set);
        if (set == NULL || (set->root = node_new(NULL, 0)) == NULL) {
            free(set);
            return FERRY_ENOMEM;
        }
        *setp = set;
    }
    struct fy_prefixes *set = *setp;
    const unsigned char *p = prefix;
    struct node *n = set->root;
    size_t pos = 0;
    while (pos < len) {
        int found;
        uint32_t i = kid_find(n, p[pos], &found);
        if (!found) {
            struct node *k = node_new(p + pos, len - pos);
            if (k == NULL || kid_insert(n, i, k) != 0) {
                if (k)
                    node_free(k);
                return FERRY_ENOMEM;
            }
            n = k;
            break;
        }
        struct node *k = n->kids[i];
        size_t c = 1, most = k->llen < len - pos ? k->llen : len - pos;
        while (c < most && k->label[c] == p[pos + c])
            c++;
        if (c < k->llen && (k = split(k, c)) == NULL)
            return FERRY_ENOMEM;
        n = k;
        pos += c;
    }
    if (n->count > 0) {
        n->count += counted != 0;
        return 0;
    }
    n->count = 1;
    set->count++;
    set->bytes += len;
    return 1;
}

static struct node *find(const struct fy_prefixes *set, const unsigned char *p, size_t len)
{
    const struct node *n = set->root;
    size_t pos = 0;
    while (pos < len) {
        int found;
        uint32_t i = kid_find(n, p[pos], &found);
        if (!found)
            return NULL;
        const struct node *k = n->kids[i];
        if (k->llen > len - pos || memcmp(k->label, p + pos, k->llen) != 0)
            return NULL;
        n = k;
        pos += k->llen;
    }
    return (struct node *)n;
}

/* n ends no prefix and has one child: a node with both labels takes the
 * child's place and children, and n's. On allocation failure n simply
 * stays (a node too many, not a wrong answer). */
static void merge(struct node *n)
{
    struct node *c = n->kids[0];
    struct node *z = node_new(NULL, (size_t)n->llen + c->llen);
    if (z == NULL)
        return;
    memcpy(z->label, n->label, n->llen);
    memcpy(z->label + n->llen, c->label, c->llen);
    z->kids = c->kids;
    z->nkids = c->nkids;
    z->capkids = c->capkids;
    z->count = c->count;
    for (uint32_t i = 0; i < z->nkids; i++)
        z->kids[i]->parent = z;
    struct node *parent = n->parent;
    int found;
    parent->kids[kid_find(parent, n->label[0], &found)] = z; /* the same first byte */
    z->parent = parent;
    free(c); /* its arrays are z's now */
    node_free(n);
}

int fy_prefixes_remove(struct fy_prefixes *set, const void *prefix, size_t len, int counted)
{
    struct node *n = set ? find(set, prefix, len) : NULL;
    if (n == NULL || n->count == 0)
        return 0;
    if (counted && n->count > 1) {
        n->count--;
        return 0;
    }
    n->count = 0;
    set->count--;
    set->bytes -= len;
    while (n != set->root && n->count == 0 && n->nkids == 0) {
        struct node *parent = n->parent;
        int found;
        kid_remove(parent, kid_find(parent, n->label[0], &found));
        node_free(n);
        n = parent;
    }
    if (n != set->root && n->count == 0 && n->nkids == 1)
        merge(n);
    return 1;
}

int fy_prefixes_match(const struct fy_prefixes *set, const void *data, size_t len)
{
    if (set == NULL)
        return 0;
    const unsigned char *p = data;
    const struct node *n = set->root;
    size_t pos = 0;
    for (;;) {
        if (n->count > 0)
            return 1;
        if (pos == len)
            return 0;
        int found;
        uint32_t i = kid_find(n, p[pos], &found);
        if (!found)
            return 0;
        const struct node *k = n->kids[i];
        if (k->llen > len - pos || memcmp(k->label, p + pos, k->llen) != 0)
            return 0;
        n = k;
        pos += k->llen;
    }
}

int fy_prefixes_has(const struct fy_prefixes *set, const void *prefix, size_t len)
{
    const struct node *n = set ? find(set, prefix, len) : NULL;
    return n != NULL && n->count > 0;
}

size_t fy_prefixes_count(const struct fy_prefixes *set) { return set ? set->count : 0; }
size_t fy_prefixes_bytes(const struct fy_prefixes *set) { return set ? set->bytes : 0; }

struct walk {
    const struct node *n;
    uint32_t next; /* the child to visit next */
    size_t plen;   /* bytes of the path down to n */
};

/* Makes room for need bytes (or entries of size each) in *buf. */
static int room(void **buf, size_t *cap, size_t need, size_t each)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap * 2 > need ? *cap * 2 : need;
    void *v = realloc(*buf, cap2 * each);
    if (v == NULL)
        return FERRY_ENOMEM;
    *buf = v;
    *cap = cap2;
    return 0;
}

int fy_prefixes_each(const struct fy_prefixes *set,
                     int (*fn)(void *ctx, const void *prefix, size_t len), void *ctx)
{
    if (set == NULL)
        return 0;
    void *path = NULL, *stack = NULL;
    size_t pcap = 0, scap = 0, depth = 0;
    int rc = room(&stack, &scap, 16, sizeof(struct walk));
    if (rc == 0) {
        ((struct walk *)stack)[depth++] = (struct walk){set->root, 0, 0};
        if (set->root->count > 0)
            rc = fn(ctx, "", 0);
    }
    while (rc == 0 && depth > 0) {
        struct walk *top = (struct walk *)stack + depth - 1;
        if (top->next == top->n->nkids) {
            depth--;
            continue;
        }
        const struct node *k = top->n->kids[top->next++];
        size_t plen = top->plen + k->llen;
        if ((rc = room(&path, &pcap, plen, 1)) != 0 ||
            (rc = room(&stack, &scap, depth + 1, sizeof(struct walk))) != 0)
            break;
        top = (struct walk *)stack + depth - 1; /* the stack may have moved */
        memcpy((unsigned char *)path + top->plen, k->label, k->llen);
        if (k->count > 0 && (rc = fn(ctx, path, plen)) != 0)
            break;
        ((struct walk *)stack)[depth++] = (struct walk){k, 0, plen};
    }
    free(path);
    free(stack);
    return rc;
}

void fy_prefixes_free(struct fy_prefixes *set)
{
    if (set == NULL)
        return;
    struct node *n = set->root;
    while (n != NULL) {
        if (n->nkids > 0) { /* detach the last child and go down to it */
            n = n->kids[--n->nkids];
            continue;
        }
        struct node *parent = n->parent;
        node_free(n);
        n = parent;
    }
    free(set);
}
