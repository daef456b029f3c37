/*
 * The runner PAL (runner_pal.c) whose pal_destroy logs its call and then never returns: rune
 * must still be able to delete a created container whose enclave does not go away. Built with
 * -DPAL_VERSION=3.
 */
#define pal_destroy runner_pal_destroy
#include "runner_pal.c"
#undef pal_destroy

int pal_destroy(void)
{
	RECORD_LINE("destroy (hangs)");
	for (;;)
		pause();
	return 0;
}
