/*
 * The runner PAL (runner_pal.c) whose calls return a positive value instead of 0 on success.
 * The PAL API counts only negative values as failures, so rune must treat these as successes.
 * Built with -DPAL_VERSION=2 or 3.
 */
#if PAL_VERSION < 2
#error "build with -DPAL_VERSION=2 or 3"
#endif
#define pal_init runner_pal_init
#define pal_create_process runner_pal_create_process
#define pal_exec runner_pal_exec
#define pal_kill runner_pal_kill
#define pal_destroy runner_pal_destroy
#include "runner_pal.c"
#undef pal_init
#undef pal_create_process
#undef pal_exec
#undef pal_kill
#undef pal_destroy

#define POSITIVE(rc) ((rc) < 0 ? (rc) : 1)

#if PAL_VERSION >= 3
int pal_init(pal_attr_v3_t *attr)
#else
int pal_init(pal_attr_v1_t *attr)
#endif
{
	return POSITIVE(runner_pal_init(attr));
}

int pal_create_process(pal_create_process_args *args)
{
	return POSITIVE(runner_pal_create_process(args));
}

int pal_exec(pal_exec_args *args)
{
	return POSITIVE(runner_pal_exec(args));
}

int pal_kill(int pid, int sig)
{
	return POSITIVE(runner_pal_kill(pid, sig));
}

int pal_destroy(void)
{
	return POSITIVE(runner_pal_destroy());
}
