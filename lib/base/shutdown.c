/*
 * Process-wide shutdown: SIGINT/SIGTERM set a flag and wake waiters through
 * a self-pipe (async-signal-safe). Components poll tm_shutdown_requested()
 * or block in tm_shutdown_wait(); nothing is torn down from signal context.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tracemart/base.h>

static volatile sig_atomic_t requested;
static int wake_pipe[2] = {-1, -1};
static pthread_once_t pipe_once = PTHREAD_ONCE_INIT;

static void make_pipe(void)
{
	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		wake_pipe[0] = wake_pipe[1] = -1;
}

static void wake(void)
{
	int saved = errno;
	if (wake_pipe[1] >= 0) {
		ssize_t r = write(wake_pipe[1], "x", 1);
		(void)r;
	}
	errno = saved;
}

static void on_signal(int sig)
{
	(void)sig;
	requested = 1;
	wake();
}

void tm_shutdown_install(void)
{
	struct sigaction sa;

	pthread_once(&pipe_once, make_pipe);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

void tm_shutdown_request(void)
{
	pthread_once(&pipe_once, make_pipe);
	requested = 1;
	wake();
}

bool tm_shutdown_requested(void)
{
	return requested != 0;
}

bool tm_shutdown_wait(int timeout_ms)
{
	pthread_once(&pipe_once, make_pipe);
	uint64_t start = tm_clock_mono_ns();
	while (!requested) {
		int left = -1;
		if (timeout_ms >= 0) {
			uint64_t spent = (tm_clock_mono_ns() - start) / TM_NS_PER_MS;
			if (spent >= (uint64_t)timeout_ms)
				break;
			left = timeout_ms - (int)spent;
		}
		struct pollfd pfd = {.fd = wake_pipe[0], .events = POLLIN};
		if (wake_pipe[0] < 0) {
			usleep(10000);
			continue;
		}
		poll(&pfd, 1, left);
	}
	return requested != 0;
}

void tm_shutdown_reset(void)
{
	char drain[64];
	pthread_once(&pipe_once, make_pipe);
	requested = 0;
	while (wake_pipe[0] >= 0 && read(wake_pipe[0], drain, sizeof drain) > 0)
		;
}

tm_err tm_mkdirs(const char *path)
{
	char tmp[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof tmp)
		return TM_ERR_INVALID;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
			return TM_ERR_IO;
		*p = '/';
	}
	if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
		return TM_ERR_IO;
	struct stat st;
	if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode))
		return TM_ERR_IO;
	return TM_OK;
}
