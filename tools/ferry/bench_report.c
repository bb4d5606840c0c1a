/*
 * bench_report.c - what `ferry bench` prints: the table (each figure with
 * its ratio to the baseline that gives it meaning), the JSON of --json and
 * the SVG of --plot, from the results the suites recorded (cmd_bench.c).
 */
#include "bench.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

static const struct result *find(const char *system, const char *pattern, const char *wait)
{
    for (int i = 0; i < bench_nresults; i++)
        if (strcmp(bench_results[i].system, system) == 0 &&
            strcmp(bench_results[i].pattern, pattern) == 0 &&
            (wait == NULL || (bench_results[i].wait && strcmp(bench_results[i].wait, wait) == 0)))
            return &bench_results[i];
    return NULL;
}

static void machine(FILE *f)
{
    char model[256] = "unknown", line[512];
    FILE *c = fopen("/proc/cpuinfo", "r");
    while (c && fgets(line, sizeof line, c))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                snprintf(model, sizeof model, "%s", p + 2);
                model[strcspn(model, "\n")] = 0;
            }
            break;
        }
    if (c)
        fclose(c);
    struct utsname u;
    uname(&u);
    fprintf(f, "{\"cpu\": ");
    cli_json_str(f, model);
    fprintf(f, ", \"cores\": %d, \"kernel\": ", bench_ncpus);
    cli_json_str(f, u.release);
    fprintf(f, ", \"pinned\": %s}", bench_ncpus >= 2 ? "true" : "false");
}

/* A round trip faster than the cache-line ping-pong measured beside it is
 * impossible: the two were not measured in the same state. */
static int vs_fault(const struct result *r)
{
    return r->vs != NULL && strcmp(r->vs, "limit") == 0 && r->vs_ratio > 0 && r->vs_ratio < 1.0;
}

/* The bcast row of the same size and kind with 1 subscriber. */
static const struct result *bcast_one(const struct result *r)
{
    for (int k = 0; k < bench_nresults; k++)
        if (strcmp(bench_results[k].pattern, r->pattern) == 0 && bench_results[k].size == r->size &&
            bench_results[k].subscribers == 1)
            return &bench_results[k];
    return NULL;
}

void bench_write_json(FILE *f)
{
    fprintf(f, "{\"ferry_version\": \"%s\", \"schema\": 1, \"machine\": ", ferry_version());
    machine(f);
    fprintf(f, ",\n \"results\": [");
    for (int i = 0; i < bench_nresults; i++) {
        const struct result *r = &bench_results[i];
        fprintf(f,
                "%s\n  {\"system\": \"%s\", \"transport\": \"%s\", \"pattern\": \"%s\", "
                "\"size\": %zu, \"metric\": \"%s\", \"reps\": %d, \"spread\": %.4f",
                i ? "," : "", r->system, r->transport, r->pattern, r->size, r->metric, r->reps,
                r->spread);
        if (strcmp(r->metric, "latency_ns") == 0)
            fprintf(f,
                    ", \"latency\": \"%s\", \"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f, "
                    "\"max\": %.1f",
                    r->latency, r->p50, r->p99, r->p999, r->max);
        else
            fprintf(f, ", \"value\": %.1f", r->value);
        if (r->vs)
            fprintf(f,
                    ", \"baseline\": \"%s\", \"baseline_p50\": %.1f, \"baseline_p99\": %.1f, "
                    "\"ratio_p50\": %.3f, \"ratio_p99\": %.3f, \"ratio_spread\": %.4f, "
                    "\"interleaved\": true%s",
                    r->vs, r->vs_p50, r->vs_p99, r->vs_ratio, r->vs_ratio_p99, r->vs_spread,
                    vs_fault(r) ? ", \"measurement_fault\": true" : "");
        if (r->wait)
            fprintf(f, ", \"wait\": \"%s\"", r->wait);
        if (r->prefault)
            fprintf(f, ", \"ring_prefault\": true");
        if (r->label)
            fprintf(f, ", \"label\": \"%s\"", r->label);
        if (r->subscribers)
            fprintf(f, ", \"subscribers\": %d, \"per\": \"subscriber\", \"dropped_ratio\": %.4f",
                    r->subscribers, r->dropped);
        if (strcmp(r->pattern, "pub_prefixes") == 0)
            fprintf(f,
                    ", \"prefixes\": 10000, \"per\": \"publisher\", \"baseline_1_prefix\": %.1f, "
                    "\"ratio\": %.3f",
                    r->base, r->ratio);
        if (strcmp(r->pattern, "dealer_router") == 0)
            fprintf(f, ", \"baseline_reqrep_p50\": %.1f, \"ratio\": %.3f", r->base, r->ratio);
        if (r->cpu_ns > 0 && strcmp(r->metric, "msgs_per_s") == 0)
            fprintf(f, ", \"publisher_cpu_ns_per_msg\": %.1f", r->cpu_ns);
        if (r->sub_cpu_ns > 0)
            fprintf(f, ", \"subscriber_cpu_ns_per_msg\": %.1f", r->sub_cpu_ns);
        if (strcmp(r->pattern, "proxy_fanout") == 0)
            fprintf(f, ", \"baseline_direct_tcp\": %.1f, \"ratio\": %.3f", r->base, r->ratio);
        if (strcmp(r->pattern, "pubsub_copy") == 0 || strcmp(r->pattern, "pubsub_pool") == 0) {
            const struct result *one = bcast_one(r);
            fprintf(f, ", \"cpu_ratio_vs_1_subscriber\": %.3f",
                    one && one->cpu_ns > 0 ? r->cpu_ns / one->cpu_ns : 0);
        }
        if (strcmp(r->pattern, "pubsub_pool") == 0)
            fprintf(f, ", \"baseline_copies_cpu_ns\": %.1f, \"cpu_ratio_vs_copies\": %.3f", r->base,
                    r->ratio);
        if (strcmp(r->pattern, "proxy_pub_cpu") == 0)
            fprintf(f, ", \"baseline_1_subscriber\": %.1f, \"ratio\": %.3f", r->base, r->ratio);
        if (strcmp(r->pattern, "proxy_chain") == 0 && strcmp(r->system, "ferry") == 0)
            fprintf(f, ", \"baseline_libzmq\": %.1f, \"ratio\": %.3f", r->base, r->ratio);
        if (strcmp(r->pattern, "proxy_pushpull") == 0)
            fprintf(f, ", \"baseline_direct\": %.1f, \"ratio\": %.3f", r->base, r->ratio);
        if (strcmp(r->pattern, "poller_idle") == 0)
            fprintf(f, ", \"idle_sockets\": 1000, \"baseline_alone_p50\": %.1f, \"ratio\": %.3f",
                    r->base, r->ratio);
        if (r->clients)
            fprintf(f, ", \"clients\": %d, \"per\": \"all clients\"", r->clients);
        if (strcmp(r->metric, "msgs_per_s") == 0)
            fprintf(f, ", \"bytes_per_s\": %.1f", r->value * (double)r->size);
        fprintf(f, "}");
    }
    fprintf(f, "\n]}\n");
}

/* The best peer (libzmq, nng) figure on the same transport, pattern and
 * size: the lowest p50 for a latency, the highest rate for a throughput. */
static const struct result *best_peer(const struct result *r)
{
    const struct result *best = NULL;
    int lat = strcmp(r->metric, "latency_ns") == 0;
    for (int k = 0; k < bench_nresults; k++) {
        const struct result *q = &bench_results[k];
        if ((strcmp(q->system, "libzmq") && strcmp(q->system, "nng")) ||
            strcmp(q->transport, r->transport) || strcmp(q->pattern, r->pattern) ||
            q->size != r->size || strcmp(q->metric, r->metric) || (lat ? q->p50 : q->value) <= 0)
            continue;
        if (best == NULL || (lat ? q->p50 < best->p50 : q->value > best->value))
            best = q;
    }
    return best;
}

void bench_print_table(void)
{
    const struct result *cl = find("limit", "pingpong", NULL);
    const struct result *mc = find("limit", "memcpy", NULL);
    const struct result *ux = find("raw", "pingpong", NULL); /* the first: unix */
    printf("%-44s %10s %10s %10s %10s %7s  %s\n", "measurement", "p50", "p99", "p99.9", "max",
           "spread", "ratio");
    for (int i = 0; i < bench_nresults; i++) {
        const struct result *r = &bench_results[i];
        char ratio[96] = "";
        if (strcmp(r->pattern, "proxy_fanout") == 0 || strcmp(r->pattern, "pubsub_direct") == 0) {
            char extra[64] = "";
            if (strcmp(r->pattern, "proxy_fanout") == 0)
                snprintf(extra, sizeof extra, "; %.2fx direct tcp (interleaved)", r->ratio);
            printf("%-44s %8.2fM msg/s %26s %6.0f%%  per subscriber; %.1f%% dropped; publisher "
                   "%.0f ns CPU/msg, a subscriber %.0f%s\n",
                   r->label, r->value / 1e6, "", r->spread * 100, r->dropped * 100, r->cpu_ns,
                   r->sub_cpu_ns, extra);
            continue;
        }
        if (strcmp(r->pattern, "pubsub_copy") == 0 || strcmp(r->pattern, "pubsub_pool") == 0) {
            const struct result *one = bcast_one(r);
            char extra[64] = "";
            if (strcmp(r->pattern, "pubsub_pool") == 0)
                snprintf(extra, sizeof extra, "; %.2fx the copies' (interleaved)", r->ratio);
            printf("%-44s %8.0f  msg/s %8.2f GB/s %17s %6.0f%%  per subscriber; publisher %.1f "
                   "us CPU/msg = %.2fx 1 subscriber%s\n",
                   r->label, r->value, r->value * (double)r->size / 1e9, "", r->spread * 100,
                   r->cpu_ns / 1e3, one && one->cpu_ns > 0 ? r->cpu_ns / one->cpu_ns : 0, extra);
            continue;
        }
        if (strcmp(r->pattern, "proxy_pub_cpu") == 0) {
            printf("%-44s %8.0f ns/msg %26s %6.0f%%  %.2fx its CPU with 1 subscriber (%.0f ns)\n",
                   r->label, r->value, "", r->spread * 100, r->ratio, r->base);
            continue;
        }
        if (strcmp(r->pattern, "proxy_chain") == 0) {
            if (strcmp(r->system, "ferry") == 0)
                snprintf(ratio, sizeof ratio, "%.2fx libzmq's zmq_proxy chain (interleaved)",
                         r->ratio);
            printf("%-44s %8.2fM msg/s %26s %6.0f%%  %s\n", r->label, r->value / 1e6, "",
                   r->spread * 100, ratio);
            continue;
        }
        if (strcmp(r->pattern, "proxy_pushpull") == 0) {
            printf("%-44s %8.2fM msg/s %26s %6.0f%%  %.2fx direct PUSH->PULL (%.2fM, "
                   "interleaved)\n",
                   r->label, r->value / 1e6, "", r->spread * 100, r->ratio, r->base / 1e6);
            continue;
        }
        if (strcmp(r->pattern, "poller_idle") == 0) {
            printf("%-44s %8.0fns %8.0fns %8.0fns %8.0fns %6.0f%%  %.2fx the REP alone in it "
                   "(%.0f ns, interleaved)\n",
                   r->label, r->p50, r->p99, r->p999, r->max, r->spread * 100, r->ratio, r->base);
            continue;
        }
        if (strcmp(r->pattern, "dealer_router") == 0) {
            printf("%-44s %8.0fns %8.0fns %8.0fns %8.0fns %6.0f%%  %.2fx REQ/REP (%.0f ns, "
                   "interleaved)\n",
                   r->label, r->p50, r->p99, r->p999, r->max, r->spread * 100, r->ratio, r->base);
            continue;
        }
        if (strcmp(r->pattern, "router_fanin") == 0) {
            const struct result *z = NULL;
            for (int k = 0; k < bench_nresults; k++)
                if (!strcmp(bench_results[k].pattern, "router_fanin") &&
                    !strcmp(bench_results[k].system, "libzmq") &&
                    !strcmp(bench_results[k].transport, r->transport))
                    z = &bench_results[k];
            if (strcmp(r->system, "ferry") == 0 && z && z->value > 0)
                snprintf(ratio, sizeof ratio, "%.2fx libzmq", r->value / z->value);
            printf("%-44s %8.3fM req/s %36s %6.0f%%  %s\n", r->label, r->value / 1e6,
                   "(all dealers)", r->spread * 100, ratio);
            continue;
        }
        int net = strcmp(r->transport, "tcp") == 0 || strcmp(r->transport, "ipc") == 0 ||
                  strcmp(r->transport, "inproc") == 0 || strcmp(r->transport, "curve") == 0;
        int ferry = strcmp(r->system, "ferry") == 0;
        if (strcmp(r->metric, "latency_ns") == 0 && net && strcmp(r->system, "raw") != 0) {
            /* tcp/ipc: against the raw socket ping-pong of the same transport,
             * and (ferry) against the best peer on it */
            const struct result *raw = NULL, *best = best_peer(r);
            for (int k = 0; k < bench_nresults; k++)
                if (strcmp(bench_results[k].system, "raw") == 0 &&
                    strcmp(bench_results[k].transport, r->transport) == 0 &&
                    strcmp(bench_results[k].metric, "latency_ns") == 0)
                    raw = &bench_results[k];
            if (r->vs) /* measured pair by pair with the raw socket: that ratio */
                snprintf(ratio, sizeof ratio, "%.2fx raw %s, p99 %.2fx (interleaved, %.0f%%)",
                         r->vs_ratio, r->vs, r->vs_ratio_p99, r->vs_spread * 100);
            else if (raw && raw->p50 > 0)
                snprintf(ratio, sizeof ratio, "%.2fx raw %s ping-pong", r->p50 / raw->p50,
                         r->transport);
            if (ferry && best && best->p50 > 0)
                snprintf(ratio + strlen(ratio), sizeof ratio - strlen(ratio), "%s%.2fx %s",
                         raw || r->vs ? ", " : "", r->p50 / best->p50, best->system);
            printf("%-44s %8.0fns %8.0fns %8.0fns %8.0fns %6.0f%%  %s\n", r->label, r->p50, r->p99,
                   r->p999, r->max, r->spread * 100, ratio);
            continue;
        }
        if (strcmp(r->metric, "msgs_per_s") == 0 && (net || strcmp(r->system, "raw") == 0) &&
            r->subscribers == 0) {
            const struct result *best = ferry ? best_peer(r) : NULL;
            if (best && best->value > 0)
                snprintf(ratio, sizeof ratio, "%.2fx best peer (%s)", r->value / best->value,
                         best->system);
            printf("%-44s %8.3fM msg/s %8.2f GB/s %17s %6.0f%%  %s\n", r->label, r->value / 1e6,
                   r->value * (double)r->size / 1e9, "", r->spread * 100, ratio);
            continue;
        }
        if (strcmp(r->pattern, "pub_prefixes") == 0) {
            printf("%-44s %8.2fM msg/s %26s %6.0f%%  %.2fx the same with 1 prefix (%.2fM, "
                   "interleaved)\n",
                   r->label, r->value / 1e6, "(publisher)", r->spread * 100, r->ratio,
                   r->base / 1e6);
            continue;
        }
        if (strcmp(r->metric, "latency_ns") == 0 && r->vs) {
            snprintf(ratio, sizeof ratio, "%.2fx %s, p99 %.2fx (interleaved, %.0f%%)%s",
                     r->vs_ratio, r->vs, r->vs_ratio_p99, r->vs_spread * 100,
                     vs_fault(r) ? " MEASUREMENT FAULT: below the limit" : "");
            printf("%-44s %8.0fns %8.0fns %8.0fns %8.0fns %6.0f%%  %s\n", r->label, r->p50, r->p99,
                   r->p999, r->max, r->spread * 100, ratio);
        } else if (strcmp(r->metric, "latency_ns") == 0) {
            if (strcmp(r->system, "ferry") == 0 && cl && cl->p50 > 0)
                snprintf(ratio, sizeof ratio, "one-way %.0f ns = %.2fx limit", r->p50 / 2,
                         r->p50 / cl->p50);
            if (strcmp(r->system, "ferry") == 0 && ux && ux->p50 > 0)
                snprintf(ratio + strlen(ratio), sizeof ratio - strlen(ratio), ", %.2fx unix",
                         r->p50 / ux->p50);
            printf("%-44s %8.0fns %8.0fns %8.0fns %8.0fns %6.0f%%  %s\n", r->label, r->p50, r->p99,
                   r->p999, r->max, r->spread * 100, ratio);
        } else {
            double bps =
                strcmp(r->metric, "bytes_per_s") == 0 ? r->value : r->value * (double)r->size;
            const struct result *same = NULL;
            for (int k = 0; k < bench_nresults; k++)
                if (strcmp(bench_results[k].pattern, "memcpy") == 0 &&
                    bench_results[k].size == r->size)
                    same = &bench_results[k];
            const struct result *copying = NULL; /* zero-copy: against copying, same size */
            for (int k = 0; k < bench_nresults; k++)
                if (!strcmp(r->pattern, "pushpull_zerocopy") &&
                    !strcmp(bench_results[k].pattern, "pushpull") &&
                    bench_results[k].size == r->size && !strcmp(bench_results[k].system, "ferry") &&
                    !strcmp(bench_results[k].transport, "shm"))
                    copying = &bench_results[k];
            if (copying && r->ratio > 0)
                snprintf(ratio, sizeof ratio,
                         "%.2fx copying (data written/read in place; interleaved)", r->ratio);
            else if (strcmp(r->system, "ferry") == 0 && same && same->value > 0)
                snprintf(ratio, sizeof ratio, "%.2fx memcpy of %zu B", bps / same->value, r->size);
            else if (strcmp(r->system, "ferry") == 0 && mc && mc->value > 0)
                snprintf(ratio, sizeof ratio, "%.2fx memcpy (DRAM)", bps / mc->value);
            if (r->subscribers)
                snprintf(ratio, sizeof ratio, "per subscriber; %.1f%% dropped", r->dropped * 100);
            if (strcmp(r->metric, "msgs_per_s") == 0)
                printf("%-44s %8.2fM msg/s %8.2f GB/s %17s %6.0f%%  %s\n", r->label, r->value / 1e6,
                       bps / 1e9, "", r->spread * 100, ratio);
            else
                printf("%-44s %8.2f GB/s %31s %6.0f%%  %s\n", r->label, bps / 1e9, "",
                       r->spread * 100, ratio);
        }
    }
}

/* --- --plot: an SVG of the latency percentiles and of throughput by size --------------- */

static void svg_esc(FILE *f, const char *t)
{
    for (; *t; t++)
        if (*t == '<')
            fputs("&lt;", f);
        else if (*t == '&')
            fputs("&amp;", f);
        else
            fputc(*t, f);
}

static const char *series_color(int i)
{
    static const char *c[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                              "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"};
    return c[i % 10];
}

static double lg(double v) { return v > 0 ? log10(v) : 0; }

/* Left: every latency row as p50, p99 and p99.9 on a log scale. Right:
 * messages per second against message size (both log), one line per
 * system and transport (PUSH/PULL, raw streaming). */
int bench_write_plot(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int nlat = 0;
    for (int i = 0; i < bench_nresults; i++)
        nlat += strcmp(bench_results[i].metric, "latency_ns") == 0;
    double W = 1300, H = 90 + 22.0 * (nlat > 16 ? nlat : 16);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n",
            W, H);
    fprintf(f,
            "<text x=\"10\" y=\"18\" font-size=\"14\">ferry %s bench: round-trip latency "
            "(p50 bar, p99 and p99.9 ticks; log scale)</text>\n",
            ferry_version());
    /* latency panel: x from 100 ns to 10 ms, log */
    double x0 = 330, x1 = 640, lo = 2, hi = 7;
    for (int d = 2; d <= 7; d++) {
        double x = x0 + (x1 - x0) * (d - lo) / (hi - lo);
        fprintf(f, "<line x1=\"%.0f\" y1=\"30\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#ddd\"/>\n", x, x,
                H - 30);
        static const char *lab[] = {"", "", "100 ns", "1 us", "10 us", "100 us", "1 ms", "10 ms"};
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", x, H - 15,
                lab[d]);
    }
    int row = 0;
    for (int i = 0; i < bench_nresults; i++) {
        const struct result *r = &bench_results[i];
        if (strcmp(r->metric, "latency_ns") != 0)
            continue;
        double y = 45 + 22.0 * row++;
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">", x0 - 6, y + 4);
        svg_esc(f, r->label);
        fputs("</text>\n", f);
        double xp50 = x0 + (x1 - x0) * (lg(r->p50) - lo) / (hi - lo);
        const char *col = strcmp(r->system, "ferry") == 0 ? "#1f77b4"
                          : strcmp(r->system, "raw") == 0 || strcmp(r->system, "limit") == 0
                              ? "#999"
                              : "#d62728";
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.1f\" height=\"12\" fill=\"%s\"/>\n", x0,
                y - 6, xp50 > x0 ? xp50 - x0 : 1, col);
        double ticks[2] = {r->p99, r->p999};
        for (int k = 0; k < 2; k++) {
            double x = x0 + (x1 - x0) * (lg(ticks[k]) - lo) / (hi - lo);
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"black\" "
                    "stroke-width=\"%d\"/>\n",
                    x, y - 7, x, y + 7, k ? 1 : 2);
        }
    }
    /* throughput panel: x = size 32 B .. 2 MiB (log2), y = msg/s 1e3 .. 1e8 (log) */
    double px0 = 760, px1 = 1270, py0 = H - 40, py1 = 50;
    fprintf(f,
            "<text x=\"%.0f\" y=\"38\" font-size=\"13\">messages/s by message size "
            "(PUSH/PULL; raw: streaming)</text>\n",
            px0);
    for (int e = 3; e <= 8; e++) {
        double y = py0 + (py1 - py0) * (e - 3) / 5.0;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#ddd\"/>\n", px0,
                y, px1, y);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">1e%d</text>\n", px0 - 4, y + 4,
                e);
    }
    for (int b = 5; b <= 21; b += 2) {
        double x = px0 + (px1 - px0) * (b - 5) / 16.0;
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", x, py0 + 16,
                b < 10    ? (b == 5   ? "32"
                             : b == 7 ? "128"
                                      : "512")
                : b == 11 ? "2K"
                : b == 13 ? "8K"
                : b == 15 ? "32K"
                : b == 17 ? "128K"
                : b == 19 ? "512K"
                          : "2M");
    }
    /* one series per (system, transport, pattern) */
    const char *seen[32][3];
    int nseen = 0;
    for (int i = 0; i < bench_nresults; i++) {
        const struct result *r = &bench_results[i];
        if (strcmp(r->metric, "msgs_per_s") != 0 ||
            (strcmp(r->pattern, "pushpull") && strcmp(r->pattern, "stream") &&
             strcmp(r->pattern, "pushpull_zerocopy")))
            continue;
        int k;
        for (k = 0; k < nseen; k++)
            if (!strcmp(seen[k][0], r->system) && !strcmp(seen[k][1], r->transport) &&
                !strcmp(seen[k][2], r->pattern))
                break;
        if (k < nseen || nseen == 32)
            continue;
        seen[nseen][0] = r->system;
        seen[nseen][1] = r->transport;
        seen[nseen][2] = r->pattern;
        nseen++;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                series_color(k), strcmp(r->system, "ferry") ? " stroke-dasharray=\"5,3\"" : "");
        for (int j = i; j < bench_nresults; j++) {
            const struct result *q = &bench_results[j];
            if (strcmp(q->metric, "msgs_per_s") || strcmp(q->system, r->system) ||
                strcmp(q->transport, r->transport) || strcmp(q->pattern, r->pattern) ||
                q->value <= 0)
                continue;
            double x = px0 + (px1 - px0) * (log2((double)q->size) - 5) / 16.0;
            double y = py0 + (py1 - py0) * (lg(q->value) - 3) / 5.0;
            fprintf(f, "%.1f,%.1f ", x, y);
        }
        fputs("\"/>\n", f);
        double ly = 60 + 15.0 * k;
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s %s%s</text>\n", px1 - 190, ly,
                series_color(k), r->system, r->transport,
                !strcmp(r->pattern, "pushpull_zerocopy") ? " zero-copy"
                : !strcmp(r->pattern, "stream")          ? " streaming"
                                                         : "");
    }
    fputs("</svg>\n", f);
    fclose(f);
    return 0;
}
