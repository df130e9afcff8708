/* histgrow.c - what history costs as it grows: record N runs the way N
 * one-shot attaches do (open, one run with one added device, close: each
 * run is the database's only connection), in one process.
 *
 *   histgrow DB N    prints "<median ms of the first 100> <median ms of the last 100>"
 *
 * The times are store_open + store_record_run + store_close: what every
 * recording run pays after its devices are in the VM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "store/store.h"

#define N_MAX 1000000
#define EDGE 100

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

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp);
	return v[n / 2];
}

/* One run as an attach records it. */
static bool record(const char *db, long i, struct err *e)
{
	char port[32];
	struct store_event ev = { .vm = "100", .op = "add", .port = port, .vidpid = "046d:c52b",
				  .product = "USB Receiver", .result = "ok" };
	struct store_run run = { .time_ms = (int64_t)time(NULL) * 1000 + i % 1000,
				 .trigger = "udev", .udev_action = "add",
				 .devpath = "/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.2" };
	struct store *s = store_open(db, e);
	bool ok;

	snprintf(port, sizeof port, "3-4.%ld", i % 7 + 1);
	if (!s)
		return false;
	ok = store_record_run(s, &run, &ev, 1, NULL, e);
	store_close(s);
	return ok;
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 0;
	double first[EDGE], last[EDGE];
	size_t nf = 0, nl = 0;

	if (argc != 3 || n < 1 || n > N_MAX) {
		fprintf(stderr, "usage: histgrow DB N (1..%d)\n", N_MAX);
		return 2;
	}
	for (long i = 0; i < n; i++) {
		struct err e = { 0 };
		double t0 = now_ms();

		if (!record(argv[1], i, &e)) {
			fprintf(stderr, "histgrow: run %ld: %s\n", i, e.msg);
			return 1;
		}
		if (i < EDGE)
			first[nf++] = now_ms() - t0;
		if (i >= n - EDGE)
			last[nl++] = now_ms() - t0;
	}
	printf("%.3f %.3f\n", median(first, nf), median(last, nl));
	return 0;
}
