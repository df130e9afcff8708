/* treeread.c - what reading the host tree costs without umockdev's
 * preload: usbtree_read_at on a sysfs root given as a directory (bench.sh
 * passes the umockdev testbed's own sys/, whose files are plain files),
 * repeated in one process.
 *
 *   treeread SYSFS-DIR [RUNS]    prints "<devices> <median ms> <min ms>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "reconcile/usbtree.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	/* A fake tree is never checked against this host's /dev. */
	const struct hostuse_paths paths = { .sysroot = "", .devdir = "/nonexistent-dev",
					     .mountinfo = "/proc/self/mountinfo",
					     .swaps = "/proc/swaps" };
	int runs = argc > 2 ? atoi(argv[2]) : 30;
	double ms[1000];
	size_t n = 0;

	if (argc < 2 || runs < 1 || runs > 1000) {
		fprintf(stderr, "usage: treeread SYSFS-DIR [RUNS <= 1000]\n");
		return 2;
	}
	for (int i = 0; i < runs; i++) {
		struct usbtree t;
		struct err e = { 0 };
		double t0 = now_ms();
		if (!usbtree_read_at(argv[1], &paths, &t, &e)) {
			fprintf(stderr, "treeread: %s\n", e.msg);
			return 1;
		}
		ms[i] = now_ms() - t0;
		n = t.n;
		usbtree_clear(&t);
	}
	qsort(ms, (size_t)runs, sizeof ms[0], cmp);
	printf("%zu %.3f %.3f\n", n, ms[runs / 2], ms[0]);
	return 0;
}
