/*
 * Running the Node checks of tests/node from C integration tests: find
 * node, check that scripts/test-deps.sh installed the npm packages, run a
 * script with a hard time limit and capture its stdout. Header-only (static
 * functions) so each test stays a single translation unit.
 */
#ifndef TRACEMART_TESTS_NODE_RUN_H
#define TRACEMART_TESTS_NODE_RUN_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* $TM_NODE, else the first executable "node" on PATH. */
static bool tn_find_node(char *out, size_t size)
{
	const char *env = getenv("TM_NODE");
	const char *path = getenv("PATH");

	if (env && *env) {
		snprintf(out, size, "%s", env);
		return access(out, X_OK) == 0;
	}
	while (path && *path) {
		size_t n = strcspn(path, ":");

		if (n && (size_t)snprintf(out, size, "%.*s/node", (int)n, path) < size &&
		    access(out, X_OK) == 0)
			return true;
		path += n;
		if (*path == ':')
			path++;
	}
	return false;
}

/* tests/node under the source tree (TM_SOURCE_DIR, set by tm_test). */
static void tn_dir(char *out, size_t size)
{
	const char *src = getenv("TM_SOURCE_DIR");

	snprintf(out, size, "%s/tests/node", src && *src ? src : ".");
}

/* The npm packages are there (scripts/test-deps.sh installs them). */
static bool tn_modules_installed(void)
{
	char p[1024], d[900];
	struct stat st;

	tn_dir(d, sizeof(d));
	snprintf(p, sizeof(p), "%s/node_modules/@opentelemetry/sdk-trace-node", d);
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static long tn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* A running node script: its pid and the read end of its stdout. */
typedef struct tn_proc {
	pid_t pid;
	int out_fd;
	long deadline_ms; /* CLOCK_MONOTONIC ms after which it is killed */
	const char *script;
} tn_proc;

/*
 * Starts `node tests/node/<script> args…` (args NULL-terminated) with cwd
 * tests/node, stdout to a pipe, stderr inherited; everything that follows
 * is bounded by timeout_ms from now. False when it cannot start.
 */
static bool tn_spawn(tn_proc *p, const char *node, const char *script,
		     const char *const *args, long timeout_ms)
{
	char dir[900];
	int fds[2];

	tn_dir(dir, sizeof(dir));
	p->script = script;
	p->deadline_ms = tn_now_ms() + timeout_ms;
	if (pipe(fds))
		return false;
	p->pid = fork();
	if (p->pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	if (p->pid == 0) {
		const char *argv[16];
		size_t n = 0;

		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		if (chdir(dir))
			_exit(126);
		argv[n++] = node;
		argv[n++] = script;
		for (size_t i = 0; args && args[i] && n < 15; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		execv(node, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	p->out_fd = fds[0];
	return true;
}

/*
 * Reads stdout into out (NUL-terminated, keeps at most out_size - 1 bytes)
 * until a newline was read (line = true) or EOF; false on timeout.
 */
static bool tn_read(tn_proc *p, char *out, size_t out_size, bool line)
{
	size_t len = 0;

	out[0] = '\0';
	for (;;) {
		struct pollfd pf = { .fd = p->out_fd, .events = POLLIN };
		long left = p->deadline_ms - tn_now_ms();
		ssize_t r;
		char c;

		if (left <= 0)
			return false;
		if (poll(&pf, 1, (int)left) <= 0)
			continue; /* EINTR or timeout: the loop re-checks */
		/* Byte by byte when a line is wanted, so nothing after it is
		 * consumed; the outputs are a few hundred bytes. */
		r = read(p->out_fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return true;
		if (len + 1 < out_size) {
			out[len++] = c;
			out[len] = '\0';
		}
		if (line && c == '\n')
			return true;
	}
}

/* Waits for the exit (bounded by the deadline, then SIGKILL); returns the
 * exit status or -1 (signal, timeout). Closes the pipe. */
static int tn_wait(tn_proc *p)
{
	int status = 0;
	bool timed_out = false;

	close(p->out_fd);
	for (;;) {
		pid_t w = waitpid(p->pid, &status, WNOHANG);

		if (w == p->pid)
			break;
		if (w < 0 && errno != EINTR)
			return -1;
		if (tn_now_ms() >= p->deadline_ms) {
			timed_out = true;
			break;
		}
		usleep(10000);
	}
	if (timed_out) {
		fprintf(stderr, "node %s: killed at its deadline\n", p->script);
		kill(p->pid, SIGKILL);
		while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
			;
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a script to completion, stdout captured into out. Returns the exit
 * status, or -1 when it could not start, died on a signal or timed out. */
static int tn_run(const char *node, const char *script,
		  const char *const *args, long timeout_ms, char *out,
		  size_t out_size)
{
	tn_proc p;

	out[0] = '\0';
	if (!tn_spawn(&p, node, script, args, timeout_ms))
		return -1;
	if (!tn_read(&p, out, out_size, false)) {
		p.deadline_ms = 0; /* already late: kill now */
		tn_wait(&p);
		return -1;
	}
	return tn_wait(&p);
}

#endif
