/* Conformance PAL, API v3: as v2, but pal_init takes pal_attr_v3_t (fd, addr) and
 * pal_get_local_report is exported. */
#define ENCLAVE_PAL_API_VERSION 3
#include "conformance.h"

int pal_get_version(void)
{
	line_t l = { .len = 0 };

	line_add(&l, "pal_get_version");
	line_end(&l);
	return PAL_REPORTED_VERSION;
}

int pal_init(pal_attr_v3_t *attr)
{
	line_t l = { .len = 0 };

	parse_args(attr ? attr->attr_v1.args : NULL);
	record_init(&l, attr ? &attr->attr_v1 : NULL);
	if (attr)
		line_add(&l, " fd=%d addr=%llu", attr->fd, (unsigned long long)attr->addr);
	line_end(&l);
	return cfg.init_rc;
}

int pal_create_process(pal_create_process_args *args)
{
	return conformance_create_process(args);
}

int pal_exec(pal_exec_args *args)
{
	return conformance_exec(args);
}

#ifndef PAL_OMIT_LOCAL_REPORT
/* Fills report[i] = (i + target_info[0]) & 0xff and records the lengths and the byte sum of
 * target_info, so the test can check both directions of the buffer passing. */
int pal_get_local_report(void *target_info, int target_info_len, void *report, int *report_len)
{
	line_t l = { .len = 0 };
	const unsigned char *ti = target_info;
	unsigned char *out = report;
	unsigned long sum = 0;
	unsigned char seed = 0;

	for (int i = 0; ti && i < target_info_len; i++)
		sum += ti[i];
	if (ti && target_info_len > 0)
		seed = ti[0];
	line_add(&l, "pal_get_local_report target_info=%s target_info_len=%d report=%s report_len=",
		 ti ? "set" : "NULL", target_info_len, report ? "set" : "NULL");
	if (report_len)
		line_add(&l, "%d", *report_len);
	else
		line_add(&l, "NULL");
	line_add(&l, " target_info_sum=%lu", sum);
	line_end(&l);
	if (cfg.report_rc != 0)
		return cfg.report_rc;
	if (!report || !report_len)
		return -EINVAL;
	for (int i = 0; i < *report_len; i++)
		out[i] = (unsigned char)(i + seed);
	if (cfg.report_len >= 0)
		*report_len = cfg.report_len;
	return 0;
}
#endif
