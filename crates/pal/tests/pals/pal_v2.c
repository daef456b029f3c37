/* Conformance PAL, API v2: pal_get_version, pal_init(pal_attr_v1_t *), pal_create_process,
 * pal_exec(pal_exec_args *), pal_kill, pal_destroy. */
#define ENCLAVE_PAL_API_VERSION 2
#include "conformance.h"

int pal_get_version(void)
{
	line_t l = { .len = 0 };

	line_add(&l, "pal_get_version");
	line_end(&l);
	return PAL_REPORTED_VERSION;
}

int pal_init(pal_attr_v1_t *attr)
{
	line_t l = { .len = 0 };

	parse_args(attr ? attr->args : NULL);
	record_init(&l, attr);
	line_end(&l);
	return cfg.init_rc;
}

#ifndef PAL_OMIT_CREATE_PROCESS
int pal_create_process(pal_create_process_args *args)
{
	return conformance_create_process(args);
}
#endif

int pal_exec(pal_exec_args *args)
{
	return conformance_exec(args);
}
