/*
 * Configuration: every option is a command-line flag with an environment
 * twin and a default, resolved flag > environment > default. Parsing is
 * strict: an unknown flag or a missing value is a usage error, never ignored.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tracemart/base.h>

static tm_opt *find(tm_opt *opts, const char *name, size_t len)
{
	for (tm_opt *o = opts; o->name; o++)
		if (strlen(o->name) == len && !strncmp(o->name, name, len))
			return o;
	return NULL;
}

const tm_opt *tm_opts_find(const tm_opt *opts, const char *name)
{
	return find((tm_opt *)opts, name, strlen(name));
}

bool tm_opt_bool(const tm_opt *opts, const char *name)
{
	const tm_opt *o = tm_opts_find(opts, name);
	if (!o || !o->value)
		return false;
	return !strcmp(o->value, "1") || !strcasecmp(o->value, "true") ||
	       !strcasecmp(o->value, "yes") || !strcasecmp(o->value, "on");
}

tm_err tm_opts_parse(tm_opt *opts, int argc, char **argv, const char **pos,
		     int max_pos, int *npos, bool *help, char *errmsg,
		     size_t errmsg_size)
{
	int n = 0;
	bool only_pos = false;

	*help = false;
	for (tm_opt *o = opts; o->name; o++) {
		const char *env = o->env ? getenv(o->env) : NULL;
		if (env && *env) {
			o->value = env;
			o->source = TM_OPT_ENV;
		} else {
			o->value = o->def;
			o->source = TM_OPT_DEFAULT;
		}
	}
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (only_pos || a[0] != '-' || !strcmp(a, "-")) {
			if (n >= max_pos) {
				snprintf(errmsg, errmsg_size, "unexpected argument '%s'", a);
				return TM_ERR_INVALID;
			}
			pos[n++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			*help = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			snprintf(errmsg, errmsg_size, "unknown option '%s'", a);
			return TM_ERR_INVALID;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		tm_opt *o = find(opts, name, eq ? (size_t)(eq - name) : strlen(name));
		if (!o) {
			snprintf(errmsg, errmsg_size, "unknown option '%s'", a);
			return TM_ERR_INVALID;
		}
		if (o->is_bool) {
			o->value = eq ? eq + 1 : "1";
		} else if (eq) {
			o->value = eq + 1;
		} else if (i + 1 < argc) {
			o->value = argv[++i];
		} else {
			snprintf(errmsg, errmsg_size, "option '--%s' needs a value (%s)",
				 o->name, o->metavar ? o->metavar : "VALUE");
			return TM_ERR_INVALID;
		}
		o->source = TM_OPT_FLAG;
	}
	*npos = n;
	return TM_OK;
}

void tm_opts_usage(const tm_opt *opts, void *file)
{
	FILE *f = file;
	for (const tm_opt *o = opts; o->name; o++) {
		char flag[64];
		snprintf(flag, sizeof flag, "--%s%s%s", o->name, o->metavar ? " " : "",
			 o->metavar ? o->metavar : "");
		fprintf(f, "  %-28s %s\n", flag, o->help ? o->help : "");
		if (o->env || o->def)
			fprintf(f, "  %-28s %s%s%s%s%s\n", "", o->env ? "env " : "",
				o->env ? o->env : "", o->env && o->def ? ", " : "",
				o->def ? "default " : "", o->def ? o->def : "");
	}
}

tm_err tm_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return TM_ERR_INVALID;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return TM_ERR_INVALID;
	*out = v;
	return TM_OK;
}

tm_err tm_parse_double(const char *s, double *out)
{
	char *end;
	if (!s || !*s || *s == ' ')
		return TM_ERR_INVALID;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v))
		return TM_ERR_INVALID;
	*out = v;
	return TM_OK;
}

tm_err tm_parse_hostport(const char *s, char *host_out, size_t host_size,
			 uint16_t *port_out)
{
	const char *colon, *host = s;
	size_t hlen;
	uint64_t port;

	if (!s || !*s)
		return TM_ERR_INVALID;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return TM_ERR_INVALID;
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return TM_ERR_INVALID;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= host_size)
		return TM_ERR_INVALID;
	if (tm_parse_u64(colon + 1, 0, 65535, &port))
		return TM_ERR_INVALID;
	memcpy(host_out, host, hlen);
	host_out[hlen] = '\0';
	*port_out = (uint16_t)port;
	return TM_OK;
}
