/*
 * Shared code of the conformance PALs (pal_v1.c, pal_v2.c, pal_v3.c), compiled by the tests.
 *
 * Each PAL records every call and its arguments, one line per call, into the file named by the
 * "record=PATH" token of its args string. Calls made before pal_init (pal_get_version) are kept
 * in memory and written out once pal_init has the path. Strings are written in double quotes
 * with \" \\ \n and \xHH escapes, string arrays as ["a","b"], so empty strings and spaces are
 * visible; tests/common/mod.rs builds the expected lines with the same rules.
 *
 * Behaviour is set by further space-separated args tokens (defaults in brackets):
 *   init_rc=N create_rc=N exec_rc=N kill_rc=N destroy_rc=N [0]  return values
 *   report_rc=N [0]   return value of pal_get_local_report
 *   report_len=N [-1] value stored in *report_len on success (-1: leave as given)
 *   exit=N [0]        exit status reported by pal_exec
 *   pid=N [42]        pid reported by pal_create_process
 *   echo              write each argv element + "\n" to the stdout fd and each env entry + "\n"
 *                     to the stderr fd when the process is started
 *
 * Compile-time variants (-D): PAL_REPORTED_VERSION=N (pal_get_version's value; v1 exports
 * pal_get_version only if this is set), PAL_OMIT_CREATE_PROCESS, PAL_OMIT_KILL,
 * PAL_OMIT_DESTROY, PAL_OMIT_LOCAL_REPORT (leave that symbol out).
 */
#ifndef CONFORMANCE_H
#define CONFORMANCE_H

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enclave_pal.h"

/* v2 and v3 report their own version by default; v1 exports no pal_get_version by default. */
#if !defined(PAL_REPORTED_VERSION) && ENCLAVE_PAL_API_VERSION >= 2
#define PAL_REPORTED_VERSION ENCLAVE_PAL_API_VERSION
#endif

static char record_path[4096];
static char pending[4096];

static struct {
	int init_rc, create_rc, exec_rc, kill_rc, destroy_rc, report_rc, report_len;
	int exit_value, pid, echo;
} cfg;

typedef struct {
	char data[32768];
	size_t len;
} line_t;

static void line_add(line_t *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->len >= sizeof(l->data))
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->data + l->len, sizeof(l->data) - l->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->len += (size_t)n;
	if (l->len > sizeof(l->data) - 1)
		l->len = sizeof(l->data) - 1;
}

static void line_str(line_t *l, const char *s)
{
	if (!s) {
		line_add(l, "NULL");
		return;
	}
	line_add(l, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			line_add(l, "\\%c", c);
		else if (c == '\n')
			line_add(l, "\\n");
		else if (c < 0x20 || c == 0x7f)
			line_add(l, "\\x%02x", c);
		else
			line_add(l, "%c", c);
	}
	line_add(l, "\"");
}

static void line_strv(line_t *l, char *const *v)
{
	if (!v) {
		line_add(l, "NULL");
		return;
	}
	line_add(l, "[");
	for (size_t i = 0; v[i]; i++) {
		if (i)
			line_add(l, ",");
		line_str(l, v[i]);
	}
	line_add(l, "]");
}

static void line_stdio(line_t *l, const pal_stdio_fds *fds)
{
	if (!fds)
		line_add(l, " stdio=NULL");
	else
		line_add(l, " stdio=%d,%d,%d", fds->stdin, fds->stdout, fds->stderr);
}

/* Appends the line to the record file, or to the in-memory backlog before pal_init. */
static void line_end(line_t *l)
{
	FILE *f;

	line_add(l, "\n");
	if (!record_path[0]) {
		if (strlen(pending) + l->len < sizeof(pending))
			strncat(pending, l->data, l->len);
		return;
	}
	f = fopen(record_path, "a");
	if (!f)
		return;
	fwrite(l->data, 1, l->len, f);
	fclose(f);
}

/* Parses the args string into cfg and the record path; flushes the backlog. */
static void parse_args(const char *args)
{
	char *copy, *tok, *save = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.pid = 42;
	cfg.report_len = -1;
	if (!args)
		return;
	copy = strdup(args);
	if (!copy)
		return;
	for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		if (!strncmp(tok, "record=", 7))
			snprintf(record_path, sizeof(record_path), "%s", tok + 7);
		else if (!strncmp(tok, "init_rc=", 8))
			cfg.init_rc = atoi(tok + 8);
		else if (!strncmp(tok, "create_rc=", 10))
			cfg.create_rc = atoi(tok + 10);
		else if (!strncmp(tok, "exec_rc=", 8))
			cfg.exec_rc = atoi(tok + 8);
		else if (!strncmp(tok, "kill_rc=", 8))
			cfg.kill_rc = atoi(tok + 8);
		else if (!strncmp(tok, "destroy_rc=", 11))
			cfg.destroy_rc = atoi(tok + 11);
		else if (!strncmp(tok, "report_rc=", 10))
			cfg.report_rc = atoi(tok + 10);
		else if (!strncmp(tok, "report_len=", 11))
			cfg.report_len = atoi(tok + 11);
		else if (!strncmp(tok, "exit=", 5))
			cfg.exit_value = atoi(tok + 5);
		else if (!strncmp(tok, "pid=", 4))
			cfg.pid = atoi(tok + 4);
		else if (!strcmp(tok, "echo"))
			cfg.echo = 1;
	}
	free(copy);
	if (record_path[0] && pending[0]) {
		FILE *f = fopen(record_path, "a");
		if (f) {
			fputs(pending, f);
			fclose(f);
		}
		pending[0] = '\0';
	}
}

static void write_lines(int fd, char *const *v)
{
	if (fd < 0 || !v)
		return;
	for (size_t i = 0; v[i]; i++) {
		if (write(fd, v[i], strlen(v[i])) < 0 || write(fd, "\n", 1) < 0)
			return;
	}
}

/* "pal_init args=... log_level=..." without the line end, shared by v1/v2 and v3. */
static void record_init(line_t *l, const pal_attr_v1_t *attr)
{
	line_add(l, "pal_init");
	if (!attr) {
		line_add(l, " attr=NULL");
		return;
	}
	line_add(l, " args=");
	line_str(l, attr->args);
	line_add(l, " log_level=");
	line_str(l, attr->log_level);
}

#if ENCLAVE_PAL_API_VERSION >= 2
static int conformance_create_process(pal_create_process_args *args)
{
	line_t l = { .len = 0 };

	line_add(&l, "pal_create_process");
	if (!args) {
		line_add(&l, " args=NULL");
		line_end(&l);
		return -EINVAL;
	}
	line_add(&l, " path=");
	line_str(&l, args->path);
	line_add(&l, " argv=");
	line_strv(&l, args->argv);
	line_add(&l, " env=");
	line_strv(&l, args->env);
	line_stdio(&l, args->stdio);
	line_add(&l, " pid_ptr=%s", args->pid ? "set" : "NULL");
	line_end(&l);
	if (cfg.echo && args->stdio) {
		write_lines(args->stdio->stdout, args->argv);
		write_lines(args->stdio->stderr, args->env);
	}
	if (args->pid)
		*args->pid = cfg.pid;
	return cfg.create_rc;
}

static int conformance_exec(pal_exec_args *args)
{
	line_t l = { .len = 0 };

	if (!args) {
		line_add(&l, "pal_exec args=NULL");
		line_end(&l);
		return -EINVAL;
	}
	line_add(&l, "pal_exec pid=%d exit_ptr=%s", args->pid, args->exit_value ? "set" : "NULL");
	line_end(&l);
	if (args->exit_value)
		*args->exit_value = cfg.exit_value;
	return cfg.exec_rc;
}
#endif

/* Exported by every conformance PAL, v1 included: the loader must never call it for v1. */
#ifndef PAL_OMIT_KILL
int pal_kill(int pid, int sig);
int pal_kill(int pid, int sig)
{
	line_t l = { .len = 0 };

	line_add(&l, "pal_kill pid=%d sig=%d", pid, sig);
	line_end(&l);
	return cfg.kill_rc;
}
#endif

#ifndef PAL_OMIT_DESTROY
int pal_destroy(void)
{
	line_t l = { .len = 0 };

	line_add(&l, "pal_destroy");
	line_end(&l);
	return cfg.destroy_rc;
}
#endif

#endif /* CONFORMANCE_H */
