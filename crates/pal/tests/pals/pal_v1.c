/* Conformance PAL, API v1: pal_init(pal_attr_v1_t *), pal_exec(path, argv, stdio, &exit),
 * pal_destroy; no pal_get_version unless PAL_REPORTED_VERSION is defined. */
#define ENCLAVE_PAL_API_VERSION 1
#include "conformance.h"

#ifdef PAL_REPORTED_VERSION
int pal_get_version(void);
int pal_get_version(void)
{
	line_t l = { .len = 0 };

	line_add(&l, "pal_get_version");
	line_end(&l);
	return PAL_REPORTED_VERSION;
}
#endif

int pal_init(pal_attr_v1_t *attr)
{
	line_t l = { .len = 0 };

	parse_args(attr ? attr->args : NULL);
	record_init(&l, attr);
	line_end(&l);
	return cfg.init_rc;
}

int pal_exec(const char *path, const char *argv[], pal_stdio_fds *stdio, int *exit_code)
{
	line_t l = { .len = 0 };

	line_add(&l, "pal_exec path=");
	line_str(&l, path);
	line_add(&l, " argv=");
	line_strv(&l, (char *const *)argv);
	line_stdio(&l, stdio);
	line_add(&l, " exit_ptr=%s", exit_code ? "set" : "NULL");
	line_end(&l);
	if (cfg.echo && stdio)
		write_lines(stdio->stdout, (char *const *)argv);
	if (exit_code)
		*exit_code = cfg.exit_value;
	return cfg.exec_rc;
}
