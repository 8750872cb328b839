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

/*
 * Runs `node tests/node/<script> args…` (args NULL-terminated) with cwd
 * tests/node, stdout captured into out (NUL-terminated, truncated to
 * out_size - 1), stderr inherited. Returns the exit status, or -1 when it
 * could not start, died on a signal or ran past timeout_ms (then killed).
 */
static int tn_run(const char *node, const char *script,
		  const char *const *args, long timeout_ms, char *out,
		  size_t out_size)
{
	char dir[900];
	int fds[2], status = 0;
	size_t len = 0;
	long deadline = tn_now_ms() + timeout_ms;
	bool timed_out = false;
	pid_t pid;

	out[0] = '\0';
	tn_dir(dir, sizeof(dir));
	if (pipe(fds))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
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
	for (;;) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		long left = deadline - tn_now_ms();
		ssize_t r;
		char sink[512];

		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (poll(&p, 1, (int)left) <= 0)
			continue; /* EINTR or timeout: the loop re-checks */
		if (len + 1 < out_size)
			r = read(fds[0], out + len, out_size - 1 - len);
		else
			r = read(fds[0], sink, sizeof(sink));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (len + 1 < out_size)
			len += (size_t)r;
		out[len] = '\0';
	}
	close(fds[0]);
	/* stdout closed does not mean exited: wait, still bounded. */
	while (!timed_out) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -1;
		if (tn_now_ms() >= deadline)
			timed_out = true;
		else
			usleep(10000);
	}
	if (timed_out) {
		fprintf(stderr, "node %s: killed after %ld ms\n", script, timeout_ms);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return -1;
	}
	if (!WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

#endif
