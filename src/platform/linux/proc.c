/*
 * proc.c - is that process still alive?
 *
 * A pid alone is not an identity: pids are recycled. ferry records the
 * creator's pid together with its start time (field 22 of /proc/PID/stat,
 * in clock ticks since boot) and calls a process alive only when both
 * match. A zombie counts as dead: it holds no locks and maps no memory.
 */
#include "../../core/fy.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t fy_proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name (field 2) may contain spaces and ')': the fields we
     * want follow the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        return 0;
    p += 2; /* field 3: state */
    if (*p == 'Z' || *p == 'X' || *p == 'x')
        return 0;
    /* Skip fields 3..21 to reach field 22. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return 0;
        p++;
    }
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p)
        return 0;
    return v == 0 ? 1 : (uint64_t)v; /* 0 is reserved for "not running" */
}

int fy_proc_alive(pid_t pid, uint64_t starttime)
{
    uint64_t now = fy_proc_starttime(pid);
    return now != 0 && (starttime == 0 || now == starttime);
}
