// vcpuprobe: one thread per CPU it may run on, pinned to it at SCHED_FIFO priority 99,
// asks to sleep 1 ms at a time and prints every wake-up that came -t ms or more past its
// time, as
//   <unix time of the wake-up, s> <cpu> <late by, ms>
// and at the end, on stderr, each CPU's wake-ups and the latest. A real-time thread
// preempts everything the guest's kernel runs on its CPU, so a wake-up late by several
// milliseconds means the CPU itself did not run (the host had stopped the virtual CPU) or
// ran with interrupts off that long. Costs about 1,000 short wake-ups a second per CPU.
// Needs root (or CAP_SYS_NICE) for SCHED_FIFO.
//   gcc -O2 -Wall -pthread -o /tmp/vcpuprobe bench/vcpuprobe/vcpuprobe.c
//   /tmp/vcpuprobe -t 5 -d 60 > gaps.txt     # 60 s, wake-ups late by 5 ms or more
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double threshold_ms = 5, duration_s = 60;
static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;

static double secs(clockid_t c) {
	struct timespec t;
	clock_gettime(c, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

struct result { long wakes; double worst_ms; };

static void *probe(void *arg) {
	int cpu = (int)(long)arg;
	struct result *r = calloc(1, sizeof *r);
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
		fprintf(stderr, "vcpuprobe: cpu %d: affinity refused\n", cpu);
		exit(1);
	}
	struct sched_param sp = {.sched_priority = 99};
	if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0) {
		fprintf(stderr, "vcpuprobe: SCHED_FIFO refused (run as root)\n");
		exit(1);
	}
	double end = secs(CLOCK_MONOTONIC) + duration_s;
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		next.tv_nsec += 1000000;
		if (next.tv_nsec >= 1000000000) { next.tv_nsec -= 1000000000; next.tv_sec++; }
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		double now = secs(CLOCK_MONOTONIC), wall = secs(CLOCK_REALTIME);
		double late = (now - (next.tv_sec + next.tv_nsec / 1e9)) * 1e3;
		r->wakes++;
		if (late > r->worst_ms) r->worst_ms = late;
		if (late >= threshold_ms) {
			pthread_mutex_lock(&out);
			printf("%.3f %d %.1f\n", wall, cpu, late);
			fflush(stdout);
			pthread_mutex_unlock(&out);
		}
		// Late by a millisecond or more: start again from now rather than catch
		// up, so that a gap is counted once and the next one from its own start.
		if (late >= 1.0) clock_gettime(CLOCK_MONOTONIC, &next);
		if (now >= end) return r;
	}
}

int main(int argc, char **argv) {
	int c;
	while ((c = getopt(argc, argv, "t:d:")) != -1) {
		if (c == 't') threshold_ms = atof(optarg);
		else if (c == 'd') duration_s = atof(optarg);
		else { fprintf(stderr, "usage: vcpuprobe [-t ms] [-d s]\n"); return 2; }
	}
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
		perror("vcpuprobe: sched_getaffinity");
		return 1;
	}
	pthread_t th[CPU_SETSIZE];
	long cpus[CPU_SETSIZE], n = 0;
	for (long cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed)) continue;
		int err = pthread_create(&th[n], NULL, probe, (void *)cpu);
		if (err != 0) {
			fprintf(stderr, "vcpuprobe: cpu %ld: %s\n", cpu, strerror(err));
			return 1;
		}
		cpus[n++] = cpu;
	}
	for (long i = 0; i < n; i++) {
		struct result *r;
		pthread_join(th[i], (void **)&r);
		fprintf(stderr, "vcpuprobe: cpu %ld: %ld wake-ups, latest %.2f ms late\n", cpus[i], r->wakes, r->worst_ms);
	}
	return 0;
}
