/*
 * hold.c - test helper: creates (or opens) a ferry object, prints "ready"
 * on stdout, and holds it until stdin reaches EOF. Used by the CLI tests to
 * have a live object with a known creator that the test can then kill.
 *
 *   ferry-test-hold region NAME SIZE
 *   ferry-test-hold sem NAME VALUE [undo]
 */
#include "ferry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s region NAME SIZE | sem NAME VALUE [undo]\n", argv[0]);
        return 2;
    }
    int rc;
    ferry_shm *shm = NULL;
    ferry_sem *sem = NULL;
    if (strcmp(argv[1], "region") == 0) {
        rc = ferry_shm_open(&shm, argv[2], strtoul(argv[3], NULL, 0), FERRY_CREATE, NULL);
    } else {
        int undo = argc > 4 && strcmp(argv[4], "undo") == 0 ? FERRY_SEM_UNDO : 0;
        rc = ferry_sem_open(&sem, argv[2], FERRY_CREATE | undo, 0,
                            (unsigned)strtoul(argv[3], NULL, 0));
    }
    if (rc != 0) {
        fprintf(stderr, "hold: %s\n", ferry_errdetail());
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    ferry_shm_close(shm);
    ferry_sem_close(sem);
    return 0;
}
