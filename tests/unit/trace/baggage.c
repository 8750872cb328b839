/*
 * Unit tests of W3C baggage: the header grammar (properties, OWS,
 * percent-encoding), the 180-member and 8192-byte limits (drop members,
 * never the header) and the map API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tracemart/trace.h>

static int setup(void **state)
{
	trace_baggage *b;
	if (trace_baggage_new(&b) != TM_OK)
		return -1;
	*state = b;
	return 0;
}

static int teardown(void **state)
{
	trace_baggage_free(*state);
	return 0;
}

static char *format(const trace_baggage *b)
{
	tm_buf buf;
	tm_buf_init(&buf, 1 << 16);
	assert_int_equal(trace_baggage_format(b, &buf), TM_OK);
	return tm_buf_detach(&buf);
}

static void baggage_with_properties_and_whitespace_is_parsed(void **state)
{
	trace_baggage *b = *state;
	const char *meta;

	/* The example of W3C baggage §3.3. */
	assert_int_equal(trace_baggage_parse(b, "key1=value1;property1;property2, key2 = value2, "
					     "key3=value3; propertyKey=propertyValue"), 0);
	assert_int_equal(trace_baggage_count(b), 3);
	assert_string_equal(trace_baggage_get(b, "key1", &meta), "value1");
	assert_string_equal(meta, "property1;property2");
	assert_string_equal(trace_baggage_get(b, "key2", &meta), "value2");
	assert_string_equal(meta, "");
	assert_string_equal(trace_baggage_get(b, "key3", &meta), "value3");
	assert_string_equal(meta, "propertyKey=propertyValue");
	char *s = format(b);
	assert_string_equal(s, "key1=value1;property1;property2,key2=value2,key3=value3;propertyKey=propertyValue");
	free(s);
}

static void baggage_values_are_percent_decoded_and_encoded(void **state)
{
	trace_baggage *b = *state;

	assert_int_equal(trace_baggage_parse(b, "userId=alice%20smith,serverNode=DF%3A28,isProd=false,"
					     "name=caf%C3%A9%2c%3b%25"), 0);
	assert_string_equal(trace_baggage_get(b, "userId", NULL), "alice smith");
	assert_string_equal(trace_baggage_get(b, "serverNode", NULL), "DF:28");
	assert_string_equal(trace_baggage_get(b, "name", NULL), "caf\xc3\xa9,;%");
	char *s = format(b);
	assert_string_equal(s, "userId=alice%20smith,serverNode=DF:28,isProd=false,name=caf%C3%A9%2C%3B%25");
	free(s);
}

static void baggage_round_trips_through_a_carrier(void **state)
{
	trace_baggage *b = *state, *back;
	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);

	assert_int_equal(trace_baggage_set(b, "k", "v with \"quotes\" and \\", "p=1"), TM_OK);
	trace_baggage_inject(b, &c);
	assert_int_equal(trace_baggage_new(&back), TM_OK);
	assert_int_equal(trace_baggage_extract(&c, back), 0);
	const char *meta;
	assert_string_equal(trace_baggage_get(back, "k", &meta), "v with \"quotes\" and \\");
	assert_string_equal(meta, "p=1");
	trace_baggage_free(back);
	json_decref(obj);
}

static void invalid_members_are_dropped_not_the_whole_header(void **state)
{
	trace_baggage *b = *state;

	assert_int_equal(trace_baggage_parse(b, "good=1,bad,=x,k=v v,k2=%zz,k3=%4,k(4=1,k5=1;;,"
					     "k6=\"q\",ok=2,,"), 8);
	assert_int_equal(trace_baggage_count(b), 2);
	assert_string_equal(trace_baggage_get(b, "good", NULL), "1");
	assert_string_equal(trace_baggage_get(b, "ok", NULL), "2");
}

static void later_duplicate_replaces_earlier_member(void **state)
{
	trace_baggage *b = *state;

	assert_int_equal(trace_baggage_parse(b, "a=1,b=2,a=3"), 0);
	assert_int_equal(trace_baggage_count(b), 2);
	assert_string_equal(trace_baggage_get(b, "a", NULL), "3");
}

static void members_past_180_are_dropped(void **state)
{
	trace_baggage *b = *state;
	char buf[4096];
	size_t len = 0;

	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%sk%d=%d", i ? "," : "", i, i);
	assert_int_equal(trace_baggage_parse(b, buf), 20);
	assert_int_equal(trace_baggage_count(b), TRACE_BAGGAGE_MAX_ENTRIES);
	assert_non_null(trace_baggage_get(b, "k179", NULL));
	assert_null(trace_baggage_get(b, "k180", NULL));
	assert_int_equal(trace_baggage_set(b, "more", "x", NULL), TM_ERR_LIMIT);
	/* Replacing an existing key is still allowed. */
	assert_int_equal(trace_baggage_set(b, "k0", "x", NULL), TM_OK);
}

static void members_past_8192_bytes_are_dropped(void **state)
{
	trace_baggage *b = *state;
	static char buf[12000];
	char v[1100];
	size_t len = 0;

	memset(v, 'v', 1000);
	v[1000] = '\0';
	/* Members of 1003 bytes: 8 fit (8031 with commas), the 9th does
	 * not, a small 10th still does. */
	for (int i = 0; i < 9; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%sk%d=%s", i ? "," : "", i, v);
	len += (size_t)snprintf(buf + len, sizeof buf - len, ",small=1");
	assert_int_equal(trace_baggage_parse(b, buf), 1);
	assert_int_equal(trace_baggage_count(b), 9);
	assert_null(trace_baggage_get(b, "k8", NULL));
	assert_non_null(trace_baggage_get(b, "small", NULL));
	char *s = format(b);
	assert_true(strlen(s) <= TRACE_BAGGAGE_MAX_BYTES);
	free(s);
}

static void encoded_size_counts_towards_the_byte_limit(void **state)
{
	trace_baggage *b = *state;
	char v[3000];

	/* 2800 spaces are 8400 bytes once encoded. */
	memset(v, ' ', 2800);
	v[2800] = '\0';
	assert_int_equal(trace_baggage_set(b, "k", v, NULL), TM_ERR_LIMIT);
	assert_int_equal(trace_baggage_count(b), 0);
	v[2700] = '\0';
	assert_int_equal(trace_baggage_set(b, "k", v, NULL), TM_OK);
}

static void set_rejects_invalid_keys_and_properties(void **state)
{
	trace_baggage *b = *state;

	assert_int_equal(trace_baggage_set(b, "", "v", NULL), TM_ERR_INVALID);
	assert_int_equal(trace_baggage_set(b, "a b", "v", NULL), TM_ERR_INVALID);
	assert_int_equal(trace_baggage_set(b, "a,b", "v", NULL), TM_ERR_INVALID);
	assert_int_equal(trace_baggage_set(b, "k", "v", "p=a b"), TM_ERR_INVALID);
	assert_int_equal(trace_baggage_set(b, "k", "v", ";"), TM_ERR_INVALID);
	assert_int_equal(trace_baggage_count(b), 0);
	assert_int_equal(trace_baggage_set(b, "k", NULL, " p ; q = 1 "), TM_OK);
	const char *meta;
	assert_string_equal(trace_baggage_get(b, "k", &meta), "");
	assert_string_equal(meta, "p;q=1");
}

static bool collect(const char *key, const char *value, const char *meta, void *arg)
{
	tm_buf *buf = arg;
	assert_int_equal(tm_buf_printf(buf, "%s=%s;", key, value), TM_OK);
	return buf->len < 8;
}

static void remove_and_foreach_keep_insertion_order(void **state)
{
	trace_baggage *b = *state;
	tm_buf buf;

	assert_int_equal(trace_baggage_parse(b, "a=1,b=2,c=3,d=4"), 0);
	assert_true(trace_baggage_remove(b, "b"));
	assert_false(trace_baggage_remove(b, "b"));
	assert_int_equal(trace_baggage_count(b), 3);
	tm_buf_init(&buf, 256);
	trace_baggage_foreach(b, collect, &buf);
	assert_string_equal(buf.data, "a=1;c=3;"); /* stopped by the callback */
	tm_buf_free(&buf);
	char *s = format(b);
	assert_string_equal(s, "a=1,c=3,d=4");
	free(s);
	assert_true(trace_baggage_remove(b, "a"));
	assert_true(trace_baggage_remove(b, "c"));
	assert_true(trace_baggage_remove(b, "d"));
	s = format(b);
	assert_string_equal(s, "");
	free(s);
}

static void empty_baggage_is_not_injected(void **state)
{
	json_t *obj = json_object();
	trace_carrier c = trace_carrier_json(obj);

	trace_baggage_inject(*state, &c);
	trace_baggage_inject(NULL, &c);
	assert_int_equal(json_object_size(obj), 0);
	json_decref(obj);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(baggage_with_properties_and_whitespace_is_parsed),
		T(baggage_values_are_percent_decoded_and_encoded),
		T(baggage_round_trips_through_a_carrier),
		T(invalid_members_are_dropped_not_the_whole_header),
		T(later_duplicate_replaces_earlier_member),
		T(members_past_180_are_dropped),
		T(members_past_8192_bytes_are_dropped),
		T(encoded_size_counts_towards_the_byte_limit),
		T(set_rejects_invalid_keys_and_properties),
		T(remove_and_foreach_keep_insertion_order),
		T(empty_baggage_is_not_injected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
