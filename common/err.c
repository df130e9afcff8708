#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool err_set(struct err *e, enum err_kind kind, const char *fmt, ...)
{
	if (!e)
		return false;
	va_list ap;
	e->kind = kind;
	e->qmp_class[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return false;
}

bool err_prefix(struct err *e, const char *fmt, ...)
{
	if (!e)
		return false;
	char head[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof head, fmt, ap);
	va_end(ap);
	/* Shift the old message right (cutting its tail if need be). */
	size_t h = strlen(head), m = strlen(e->msg);
	if (h >= sizeof e->msg)
		h = sizeof e->msg - 1;
	if (h + m >= sizeof e->msg)
		m = sizeof e->msg - 1 - h;
	memmove(e->msg + h, e->msg, m);
	memcpy(e->msg, head, h);
	e->msg[h + m] = '\0';
	return false;
}

void err_clear(struct err *e)
{
	if (!e)
		return;
	e->kind = ERR_NONE;
	e->qmp_class[0] = '\0';
	e->msg[0] = '\0';
}

const char *err_kind_name(enum err_kind kind)
{
	static const char *const names[] = {
		[ERR_NONE] = "ok",           [ERR_USAGE] = "usage",
		[ERR_CONFIG] = "config",     [ERR_IO] = "io",
		[ERR_NOMEM] = "no memory",   [ERR_NOT_RUNNING] = "not running",
		[ERR_TIMEOUT] = "timeout",   [ERR_PROTOCOL] = "protocol",
		[ERR_QMP] = "qmp error",     [ERR_DB] = "database",
	};
	if ((unsigned)kind < sizeof names / sizeof names[0] && names[kind])
		return names[kind];
	return "error";
}
