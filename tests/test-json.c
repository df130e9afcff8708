/* test-json.c - the JSON layer: corpora, unescaping, numbers, walking,
 * quoting.  Run from the repository root (the corpora are relative). */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/json.h"

#define GOOD_DIR "tests/corpus/json-good"
#define BAD_DIR "tests/corpus/json-bad"

static struct json *j;

static void setup(void)
{
	j = json_new();
	cr_assert_not_null(j);
}

static void teardown(void)
{
	json_free(j);
}

TestSuite(json, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "open %s", path);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert_geq(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n, "read %s", path);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Parse every file of `dir`; returns how many there were. */
static int parse_dir(const char *dir, bool want_ok)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int count = 0;

	cr_assert_not_null(d, "opendir %s (run from the repository root)", dir);
	while ((de = readdir(d))) {
		char path[512];
		struct err e = { 0 };
		size_t len;
		char *buf;
		bool ok;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		buf = slurp(path, &len);
		ok = json_parse(j, buf, len, &e);
		if (want_ok) {
			cr_expect(ok, "%s should parse: %s", path, e.msg);
			cr_expect_eq(e.kind, ERR_NONE, "%s", path);
		} else {
			cr_expect(!ok, "%s should be refused", path);
			cr_expect(e.kind == ERR_PROTOCOL || e.kind == ERR_NOMEM,
				  "%s: kind %d", path, e.kind);
			cr_expect_neq(e.msg[0], '\0', "%s: no message", path);
			cr_expect_eq(json_type(j, 0), JSON_NONE, "%s: document not empty", path);
		}
		free(buf);
		count++;
	}
	closedir(d);
	return count;
}

static bool parse(const char *text)
{
	struct err e = { 0 };

	return json_parse(j, text, strlen(text), &e);
}

/* ---- corpora ---- */

Test(json, good_corpus_parses)
{
	cr_assert_geq(parse_dir(GOOD_DIR, true), 15);
}

Test(json, bad_corpus_is_refused_with_protocol_error)
{
	cr_assert_geq(parse_dir(BAD_DIR, false), 60);
}

Test(json, refuses_nesting_deeper_than_limit_but_not_at_it)
{
	char buf[2 * 1000 + 1];

	for (int depth = JSON_DEPTH_MAX; depth <= JSON_DEPTH_MAX + 1; depth++) {
		memset(buf, '[', (size_t)depth);
		memset(buf + depth, ']', (size_t)depth);
		buf[2 * depth] = '\0';
		cr_expect_eq(parse(buf), depth <= JSON_DEPTH_MAX, "depth %d", depth);
	}
}

Test(json, refuses_more_tokens_than_limit_with_nomem)
{
	size_t n = JSON_TOKENS_MAX + 10, len = 2 * n + 1;
	char *buf = malloc(len + 1);
	struct err e = { 0 };

	cr_assert_not_null(buf);
	buf[0] = '[';
	for (size_t i = 0; i < n; i++)
		memcpy(buf + 1 + 2 * i, "0,", 2);
	buf[len - 1] = ']';
	buf[len] = '\0';
	cr_assert_not(json_parse(j, buf, len, &e));
	cr_assert_eq(e.kind, ERR_NOMEM, "%s", e.msg);
	free(buf);
}

Test(json, grows_token_array_and_is_reusable)
{
	char big[8192];
	size_t o = 0;
	int count = 0;

	o += (size_t)snprintf(big + o, sizeof big - o, "[");
	for (int i = 0; i < 1000; i++)
		o += (size_t)snprintf(big + o, sizeof big - o, "%s%d", i ? "," : "", i);
	snprintf(big + o, sizeof big - o, "]");
	cr_assert(parse(big));
	cr_assert_eq(json_size(j, 0), 1000);
	for (int t = json_first(j, 0); t >= 0; t = json_next(j, t))
		count++;
	cr_assert_eq(count, 1000);
	cr_assert(parse("{\"a\": 1}"));
	cr_assert_eq(json_size(j, 0), 1);
	cr_assert_eq(json_type(j, 3), JSON_NONE, "tokens of the old document are gone");
}

Test(json, failed_parse_leaves_empty_document)
{
	cr_assert(parse("{\"a\": \"b\"}"));
	cr_assert_not(parse("{\"a\": \"b\"} {}"));
	cr_assert_eq(json_type(j, 0), JSON_NONE);
	cr_assert_eq(json_get(j, 0, "a"), -1);
}

/* ---- strings ---- */

Test(json, unescapes_every_escape)
{
	char out[64];

	cr_assert(parse("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", "
			"\"\\ud83d\\ude00\", \"plain \xc3\xa9\"]"));
	cr_assert(json_str(j, 1, out, sizeof out));
	cr_assert_str_eq(out, "\"\\/\b\f\n\r\t");
	cr_assert(json_str(j, 2, out, sizeof out));
	cr_assert_str_eq(out, "\xc3\xa9\xe2\x82\xac");
	cr_assert(json_str(j, 3, out, sizeof out));
	cr_assert_str_eq(out, "\xf0\x9f\x98\x80", "a surrogate pair is one code point");
	cr_assert(json_str(j, 4, out, sizeof out));
	cr_assert_str_eq(out, "plain \xc3\xa9");
}

Test(json, str_fails_when_output_does_not_fit)
{
	char out[16];

	cr_assert(parse("[\"1234567\", \"12345678\", \"\\u20ac\\u20ac\\u20ac\"]"));
	cr_assert(json_str(j, 1, out, 8), "7 bytes and the NUL fit");
	cr_assert_not(json_str(j, 2, out, 8));
	cr_assert_str_eq(out, "", "out is emptied on failure");
	cr_assert_not(json_str(j, 3, out, 9), "9 bytes of UTF-8 and a NUL");
	cr_assert(json_str(j, 3, out, 10));
	cr_assert_not(json_str(j, 1, out, 0));
}

Test(json, streq_compares_unescaped_text)
{
	cr_assert(parse("{\"k\\u0065y\": \"v\\\"al\", \"n\": 1}"));
	cr_assert_geq(json_get(j, 0, "key"), 0);
	cr_assert(json_streq(j, json_get(j, 0, "key"), "v\"al"));
	cr_assert_not(json_streq(j, json_get(j, 0, "key"), "v\"a"));
	cr_assert_not(json_streq(j, json_get(j, 0, "key"), "v\"all"));
	cr_assert_not(json_streq(j, json_get(j, 0, "n"), "1"), "a number is no string");
	cr_assert_eq(json_get(j, 0, "k"), -1);
}

Test(json, typed_accessors_refuse_wrong_types)
{
	char out[16];
	uint64_t v;
	bool b;

	cr_assert(parse("{\"num\": 42, \"str\": \"3\", \"huge\": "
			"99999999999999999999999, \"t\": true, \"nul\": null, "
			"\"obj\": {}, \"arr\": [1]}"));
	cr_expect_not(json_str(j, json_get(j, 0, "num"), out, sizeof out),
		      "number where a string belongs");
	cr_expect_not(json_str(j, json_get(j, 0, "nul"), out, sizeof out));
	cr_expect_not(json_str(j, json_get(j, 0, "obj"), out, sizeof out));
	cr_expect_not(json_uint(j, json_get(j, 0, "str"), UINT64_MAX, &v),
		      "string where a number belongs");
	cr_expect_not(json_uint(j, json_get(j, 0, "huge"), UINT64_MAX, &v));
	cr_expect_not(json_uint(j, json_get(j, 0, "t"), UINT64_MAX, &v));
	cr_expect_not(json_uint(j, json_get(j, 0, "arr"), UINT64_MAX, &v));
	cr_expect_not(json_bool(j, json_get(j, 0, "num"), &b));
	cr_expect_not(json_bool(j, json_get(j, 0, "nul"), &b));
	cr_expect_not(json_bool(j, json_get(j, 0, "str"), &b));
	cr_expect_eq(json_type(j, json_get(j, 0, "obj")), JSON_OBJECT);
	cr_expect_eq(json_type(j, json_get(j, 0, "nul")), JSON_PRIMITIVE);
}

Test(json, accessors_accept_absent_tokens)
{
	char out[8] = "x";
	uint64_t v = 7;
	bool b = true;

	cr_assert(parse("{\"a\": [1]}"));
	cr_expect_eq(json_type(j, -1), JSON_NONE);
	cr_expect_eq(json_type(j, 99), JSON_NONE);
	cr_expect_eq(json_get(j, -1, "a"), -1);
	cr_expect_eq(json_get(j, json_get(j, 0, "b"), "c"), -1);
	cr_expect_eq(json_first(j, -1), -1);
	cr_expect_eq(json_next(j, -1), -1);
	cr_expect_eq(json_next(j, 0), -1, "the top-level value has no sibling");
	cr_expect_eq(json_size(j, -1), 0);
	cr_expect_not(json_str(j, -1, out, sizeof out));
	cr_expect_not(json_uint(j, -1, 10, &v));
	cr_expect_eq(v, 7u, "untouched on failure");
	cr_expect_not(json_bool(j, 1000, &b));
	cr_expect_not(json_streq(j, -1, ""));
	cr_expect_eq(json_first(j, json_get(j, 0, "a") + 1), -1, "a number has no children");
}

/* ---- numbers and booleans ---- */

Test(json, uint_accepts_plain_digits_within_bounds)
{
	static const struct {
		const char *text;
		uint64_t max;
		bool ok;
		uint64_t want;
	} cases[] = {
		{ "0", 0, true, 0 },
		{ "255", 255, true, 255 },
		{ "256", 255, false, 0 },
		{ "18446744073709551615", UINT64_MAX, true, UINT64_MAX },
		{ "18446744073709551616", UINT64_MAX, false, 0 },
		{ "99999999999999999999", UINT64_MAX, false, 0 },
		{ "-1", UINT64_MAX, false, 0 },
		{ "-0", UINT64_MAX, false, 0 },
		{ "1.0", UINT64_MAX, false, 0 },
		{ "1e2", UINT64_MAX, false, 0 },
		{ "true", UINT64_MAX, false, 0 },
		{ "null", UINT64_MAX, false, 0 },
		{ "\"1\"", UINT64_MAX, false, 0 },
		{ "4294967295", UINT32_MAX, true, UINT32_MAX },
		{ "4294967296", UINT32_MAX, false, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t v = 12345;
		char doc[64];

		snprintf(doc, sizeof doc, "[%s]", cases[i].text);
		cr_assert(parse(doc), "%s", doc);
		cr_expect_eq(json_uint(j, 1, cases[i].max, &v), cases[i].ok, "%s",
			     cases[i].text);
		if (cases[i].ok)
			cr_expect_eq(v, cases[i].want, "%s", cases[i].text);
	}
	cr_assert_not(parse("[01]"), "leading zeros are not JSON at all");
}

Test(json, null_is_exactly_null)
{
	cr_assert(parse("[null, false, 0, -1, \"null\", []]"));
	cr_expect(json_null(j, 1));
	for (int tok = 2; tok <= 6; tok++)
		cr_expect_not(json_null(j, tok), "token %d", tok);
	cr_expect_not(json_null(j, -1));
	cr_expect_not(json_null(j, 99));
}

Test(json, bool_is_exactly_true_or_false)
{
	bool b;

	cr_assert(parse("[true, false, null, 1, \"true\"]"));
	cr_assert(json_bool(j, 1, &b));
	cr_assert(b);
	cr_assert(json_bool(j, 2, &b));
	cr_assert_not(b);
	cr_assert_not(json_bool(j, 3, &b));
	cr_assert_not(json_bool(j, 4, &b));
	cr_assert_not(json_bool(j, 5, &b));
}

Test(json, top_level_primitives_parse)
{
	uint64_t v;
	bool b;

	cr_assert(parse("42"));
	cr_assert(json_uint(j, 0, 100, &v));
	cr_assert_eq(v, 42u);
	cr_assert(parse(" false\r\n"));
	cr_assert(json_bool(j, 0, &b));
	cr_assert_not(parse("42x"));
	cr_assert_not(parse("4 2"));
}

/* ---- walking ---- */

Test(json, next_skips_nested_subtrees)
{
	static const enum json_type want[] = { JSON_OBJECT, JSON_ARRAY, JSON_STRING,
					       JSON_PRIMITIVE, JSON_ARRAY };
	size_t n = 0;

	cr_assert(parse("[{\"a\": [1, [2, {\"x\": [3]}]], \"b\": {}}, [[], [[]]], "
			"\"s\", 4, [5]]"));
	cr_assert_eq(json_size(j, 0), 5);
	for (int t = json_first(j, 0); t >= 0; t = json_next(j, t), n++) {
		cr_assert_lt(n, 5u);
		cr_assert_eq(json_type(j, t), want[n], "child %zu", n);
	}
	cr_assert_eq(n, 5u);
}

Test(json, get_finds_keys_after_nested_values)
{
	uint64_t v;
	int inner;

	cr_assert(parse("{\"a\": {\"d\": {\"d\": 1}}, \"b\": [{\"d\": 2}], \"d\": 3}"));
	cr_assert(json_uint(j, json_get(j, 0, "d"), 10, &v));
	cr_assert_eq(v, 3u, "the top-level d, not a nested one");
	inner = json_get(j, json_get(j, 0, "a"), "d");
	cr_assert(json_uint(j, json_get(j, inner, "d"), 10, &v));
	cr_assert_eq(v, 1u);
	cr_assert_eq(json_size(j, 0), 3);
	cr_assert_eq(json_get(j, json_get(j, 0, "b"), "d"), -1, "arrays have no keys");
}

Test(json, keys_iterate_with_first_and_next)
{
	const char *want[] = { "x", "y", "z" };
	size_t n = 0;

	cr_assert(parse("{\"x\": [1, 2], \"y\": {\"q\": 1}, \"z\": null}"));
	for (int k = json_first(j, 0); k >= 0; k = json_next(j, k), n++) {
		cr_assert_lt(n, 3u);
		cr_assert(json_streq(j, k, want[n]), "key %zu", n);
	}
	cr_assert_eq(n, 3u);
}

/* ---- quoting ---- */

static void expect_round_trip(const char *s, const char *want)
{
	char quoted[512], back[512];

	cr_assert_geq(json_quote(quoted, sizeof quoted, s), 2, "quote %s", want);
	cr_assert(parse(quoted), "quoted text must parse: %s", quoted);
	cr_assert_eq(json_type(j, 0), JSON_STRING);
	cr_assert(json_str(j, 0, back, sizeof back), "%s", quoted);
	cr_assert_str_eq(back, want, "round trip of %s", quoted);
	for (const char *p = quoted; *p; p++)
		cr_assert((unsigned char)*p >= 0x20 && *p != 0x7f,
			  "raw control byte in %s", quoted);
}

Test(json, quote_round_trips_hostile_strings)
{
	expect_round_trip("", "");
	expect_round_trip("usbhost3-4.1.2", "usbhost3-4.1.2");
	expect_round_trip("a\"b", "a\"b");
	expect_round_trip("\"}],\"execute\":\"quit", "\"}],\"execute\":\"quit");
	expect_round_trip("back\\slash\\", "back\\slash\\");
	expect_round_trip("line\nbreak\r\n", "line\nbreak\r\n");
	expect_round_trip("\x1b[31mred\x1b[0m\x7f", "\x1b[31mred\x1b[0m\x7f");
	expect_round_trip("\x01\x1f\t", "\x01\x1f\t");
	expect_round_trip("caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80");
	expect_round_trip("bad\xff byte", "bad\xef\xbf\xbd byte");
	expect_round_trip("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");
	expect_round_trip("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	expect_round_trip("cut \xe2\x82", "cut \xef\xbf\xbd\xef\xbf\xbd");
}

Test(json, quote_writes_expected_escapes)
{
	char out[64];

	cr_assert_eq(json_quote(out, sizeof out, "a\"b\\c\nd\x1b"), 22);
	cr_assert_str_eq(out, "\"a\\\"b\\\\c\\u000ad\\u001b\"");
}

Test(json, quote_fails_when_it_does_not_fit)
{
	char out[8];

	cr_assert_eq(json_quote(out, sizeof out, "123456"), -1, "8 bytes + NUL");
	cr_assert_str_eq(out, "");
	cr_assert_eq(json_quote(out, sizeof out, "12345"), 7);
	cr_assert_str_eq(out, "\"12345\"");
	cr_assert_eq(json_quote(out, sizeof out, "\n"), -1, "\"\\u000a\" and a NUL");
	cr_assert_eq(json_quote(out, 0, "x"), -1);
}
