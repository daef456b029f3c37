/*
 * The runner PAL (runner_pal.c) with pal_get_version reporting REPORTED_VERSION, a version rune
 * does not support (4: newer than v3; 0: invalid). Built with -DPAL_VERSION=3
 * -DREPORTED_VERSION=N. pal_get_version appends "get_version" to the call log itself (the
 * runner defers that line to pal_init, which rune must not call here).
 */
#ifndef REPORTED_VERSION
#error "build with -DREPORTED_VERSION=N"
#endif
#define pal_get_version runner_pal_get_version
#include "runner_pal.c"
#undef pal_get_version

int pal_get_version(void)
{
	RECORD_LINE("get_version");
	return REPORTED_VERSION;
}
