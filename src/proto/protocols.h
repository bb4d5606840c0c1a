/*
 * protocols.h - the patterns' ops tables, for the registry (common.c).
 * Each pattern is one file that defines its tables (sock.h states what a
 * table holds); nothing else of a pattern is visible outside its file.
 */
#ifndef FY_PROTOCOLS_H
#define FY_PROTOCOLS_H

#include "../core/sock.h"

extern const struct fy_proto_ops fy_pair_ops;              /* pair.c */
extern const struct fy_proto_ops fy_pub_ops, fy_sub_ops;   /* pubsub.c */
extern const struct fy_proto_ops fy_xpub_ops, fy_xsub_ops; /* xpubsub.c */
extern const struct fy_proto_ops fy_req_ops, fy_rep_ops;   /* reqrep.c */
extern const struct fy_proto_ops fy_push_ops, fy_pull_ops; /* pipeline.c */
extern const struct fy_proto_ops fy_dealer_ops;            /* dealer.c */
extern const struct fy_proto_ops fy_router_ops;            /* router.c */

#endif /* FY_PROTOCOLS_H */
