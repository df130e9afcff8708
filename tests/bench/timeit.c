/* timeit.c - run a command N times and print its wall time and peak RSS.
 *
 *   timeit [-n RUNS] [-w WARMUP] [-p COPIES] [-b SHELL-CMD] [-o FILE] [-t FILE] -- CMD [ARG...]
 *
 * Prints one line: "RUNS MEDIAN_MS MIN_MS MAX_MS PEAK_RSS_KIB FAILED".
 * -p starts COPIES of the command at once per run (a burst of udev
 * events) and times from the last start to the last exit; -b runs a shell
 * command before each run, untimed (to undo what the last run did); -o
 * keeps the last run's stdout and stderr in FILE (FILE.1 .. FILE.COPIES
 * with -p), otherwise they go to /dev/null.  -t appends each timed run's
 * start (CLOCK_REALTIME, seconds, the clock of QEMU's trace log) to FILE,
 * one a line, so the bench can tell when QEMU did what the run asked.  Run it inside one
 * umockdev-run, so that start-up (~70 ms) is paid once, not per run.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS_MAX 10000
#define COPIES_MAX 1000

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static pid_t spawn(char **argv, const char *out, int copy, int copies)
{
	pid_t pid = fork();

	if (pid == 0) {
		char name[4096];
		int fd;

		if (out && copies > 1)
			snprintf(name, sizeof name, "%s.%d", out, copy + 1);
		else
			snprintf(name, sizeof name, "%s", out ? out : "/dev/null");
		fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* One run of `copies` processes: ms from the last start to the last
 * exit, the largest peak RSS, and how many did not exit 0. */
static int run_once(char **argv, const char *out, int copies, double *ms, long *rss_kib)
{
	double started;
	int failed = 0;

	*rss_kib = 0;
	for (int i = 0; i < copies; i++)
		if (spawn(argv, out, i, copies) < 0)
			failed++;
	started = now_ms();
	for (int i = failed; i < copies; i++) {
		struct rusage ru;
		int status;

		if (wait4(-1, &status, 0, &ru) < 0) {
			failed++;
			continue;
		}
		failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
		*rss_kib = ru.ru_maxrss > *rss_kib ? ru.ru_maxrss : *rss_kib;
	}
	*ms = now_ms() - started;
	return failed;
}

/* A single process is timed from before its fork. */
static int run_one(char **argv, const char *out, double *ms, long *rss_kib)
{
	double t0 = now_ms();
	int failed = run_once(argv, out, 1, ms, rss_kib);

	*ms = now_ms() - t0;
	return failed;
}

static void stamp(const char *path)
{
	FILE *f = fopen(path, "a");
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (f) {
		fprintf(f, "%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	static double ms[RUNS_MAX];
	const char *before = NULL, *out = NULL, *stamps = NULL;
	int runs = 20, warmup = 2, copies = 1, failed = 0, c;
	long peak = 0;

	while ((c = getopt(argc, argv, "+n:w:p:b:o:t:")) != -1) {
		switch (c) {
		case 'n': runs = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		case 'p': copies = atoi(optarg); break;
		case 'b': before = optarg; break;
		case 'o': out = optarg; break;
		case 't': stamps = optarg; break;
		default: return 2;
		}
	}
	if (optind >= argc || runs < 1 || runs > RUNS_MAX || warmup < 0 || copies < 1 ||
	    copies > COPIES_MAX) {
		fprintf(stderr, "usage: timeit [-n RUNS] [-w WARMUP] [-p COPIES] [-b CMD] [-o FILE]"
			" [-t FILE] -- CMD...\n");
		return 2;
	}
	for (int i = -warmup; i < runs; i++) {
		double t = 0;
		long rss = 0;
		int bad;

		if (before && system(before) != 0)
			fprintf(stderr, "timeit: -b command failed\n");
		if (stamps && i >= 0)
			stamp(stamps);
		bad = copies > 1 ? run_once(argv + optind, out, copies, &t, &rss)
				 : run_one(argv + optind, out, &t, &rss);
		if (i < 0)
			continue;
		failed += bad;
		ms[i] = t;
		peak = rss > peak ? rss : peak;
	}
	qsort(ms, (size_t)runs, sizeof ms[0], cmp_double);
	printf("%d %.2f %.2f %.2f %ld %d\n", runs,
	       runs % 2 ? ms[runs / 2] : (ms[runs / 2 - 1] + ms[runs / 2]) / 2, ms[0],
	       ms[runs - 1], peak, failed);
	return failed ? 1 : 0;
}
