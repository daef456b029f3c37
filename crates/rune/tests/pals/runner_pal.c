/*
 * A PAL for rune's integration tests that really runs programs (fork + execve, no enclave) and
 * appends one line per PAL call to a log inside the container (default /pal-calls.log), so tests can check call
 * order and arguments. Built by the tests with -DPAL_VERSION=1, 2 or 3.
 *
 * Args tokens: "record=PATH" moves the log; "init_fail" makes pal_init return -EINVAL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAL_VERSION
#error "build with -DPAL_VERSION=1, 2 or 3"
#endif
#define ENCLAVE_PAL_API_VERSION PAL_VERSION
#include "enclave_pal.h"

static char record[4096] = "/pal-calls.log";
#define MAX_CHILDREN 256

extern char **environ;

static pid_t children[MAX_CHILDREN];

static void put_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void put_list(FILE *f, char *const *list)
{
	fputc('[', f);
	for (int i = 0; list && list[i]; i++) {
		if (i)
			fputc(',', f);
		put_str(f, list[i]);
	}
	fputc(']', f);
}

/* Each record is written with one write(2) on an O_APPEND fd, so concurrent calls never mix. */
static FILE *record_begin(char **buf, size_t *len)
{
	return open_memstream(buf, len);
}

static void record_end(FILE *f, char *buf, size_t len)
{
	fputc('\n', f);
	fclose(f);
	int fd = open(record, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0) {
		(void)!write(fd, buf, len + 1);
		close(fd);
	}
	free(buf);
}

#define RECORD_LINE(...)                                       \
	do {                                                   \
		char *buf_ = NULL;                             \
		size_t len_ = 0;                               \
		FILE *f_ = record_begin(&buf_, &len_);         \
		if (f_) {                                      \
			fprintf(f_, __VA_ARGS__);              \
			fflush(f_);                            \
			record_end(f_, buf_, len_);            \
		}                                              \
	} while (0)

static void remember(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (!children[i]) {
			children[i] = pid;
			return;
		}
}

static void forget(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

static pid_t spawn(const char *path, char *const argv[], char *const envp[], pal_stdio_fds *stdio)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	if (stdio) {
		/* Close-on-exec copies first, so that stdio fds numbered 0-2 are not clobbered. No
		 * other fd is closed: whatever rune left open would reach the payload, and the tests
		 * check that nothing does. */
		int in = fcntl(stdio->stdin, F_DUPFD_CLOEXEC, 3);
		int out = fcntl(stdio->stdout, F_DUPFD_CLOEXEC, 3);
		int err = fcntl(stdio->stderr, F_DUPFD_CLOEXEC, 3);
		dup2(in, 0);
		dup2(out, 1);
		dup2(err, 2);
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(path, argv, envp);
	_exit(127);
}

static int wait_status(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	forget(pid);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

/* pal_get_version runs before pal_init names the log, so its line is written by pal_init. */
static int version_asked;

#if PAL_VERSION >= 2
int pal_get_version(void)
{
	version_asked = 1;
	return PAL_VERSION;
}
#endif

static void take_record_path(const char *args)
{
	const char *r = args ? strstr(args, "record=") : NULL;
	if (r) {
		snprintf(record, sizeof(record), "%s", r + strlen("record="));
		record[strcspn(record, " ")] = '\0';
	}
	if (version_asked)
		RECORD_LINE("get_version");
}

#if PAL_VERSION >= 3
int pal_init(pal_attr_v3_t *attr)
{
	const char *args = attr->attr_v1.args, *level = attr->attr_v1.log_level;
	take_record_path(args);
	RECORD_LINE("init args=%s%s%s log_level=%s fd=%d addr=%llu", args ? "\"" : "",
		    args ? args : "null", args ? "\"" : "", level ? level : "null", attr->fd,
		    (unsigned long long)attr->addr);
#else
int pal_init(pal_attr_v1_t *attr)
{
	const char *args = attr->args, *level = attr->log_level;
	take_record_path(args);
	RECORD_LINE("init args=%s%s%s log_level=%s", args ? "\"" : "", args ? args : "null",
		    args ? "\"" : "", level ? level : "null");
#endif
	if (args && strstr(args, "init_fail"))
		return -EINVAL;
	return 0;
}

#if PAL_VERSION == 1
int pal_exec(const char *path, const char *argv[], pal_stdio_fds *stdio, int *exit_code)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = record_begin(&buf, &len);
	if (f) {
		fputs("exec path=", f);
		put_str(f, path);
		fputs(" argv=", f);
		put_list(f, (char *const *)argv);
		fprintf(f, " stdio=%d,%d,%d", stdio->stdin, stdio->stdout, stdio->stderr);
		fflush(f);
		record_end(f, buf, len);
	}
	pid_t pid = spawn(path, (char *const *)argv, environ, stdio);
	if (pid < 0)
		return -errno;
	remember(pid);
	*exit_code = wait_status(pid);
	return 0;
}
#else
int pal_create_process(pal_create_process_args *args)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = record_begin(&buf, &len);
	if (f) {
		fputs("create_process path=", f);
		put_str(f, args->path);
		fputs(" argv=", f);
		put_list(f, args->argv);
		fputs(" env=", f);
		put_list(f, args->env);
		fflush(f);
		record_end(f, buf, len);
	}
	pid_t pid = spawn(args->path, args->argv, args->env, args->stdio);
	if (pid < 0)
		return -errno;
	remember(pid);
	*args->pid = pid;
	return 0;
}

int pal_exec(pal_exec_args *args)
{
	RECORD_LINE("exec pid=%d", args->pid);
	int status = wait_status(args->pid);
	if (status < 0)
		return status;
	*args->exit_value = status;
	return 0;
}

int pal_kill(int pid, int sig)
{
	RECORD_LINE("kill pid=%d sig=%d", pid, sig);
	if (pid > 0)
		return kill(pid, sig) < 0 ? -errno : 0;
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i])
			kill(children[i], sig);
	return 0;
}
#endif

int pal_destroy(void)
{
	RECORD_LINE("destroy");
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i])
			kill(children[i], SIGKILL);
	return 0;
}
