/* fuzz-json.c - json_parse on any bytes, then every accessor on every
 * token, and json_quote both ways.  What must hold (abort() otherwise,
 * which libFuzzer reports as a crash):
 *  1. nothing reads or writes outside the buffer or the tokens (ASan);
 *  2. walking first/next visits exactly json_size children, an object's
 *     being string keys each followed by a value;
 *  3. a string json_str accepts compares equal with json_streq and comes
 *     back unchanged through json_quote -> json_parse -> json_str;
 *  4. json_quote of any bytes is one JSON string that json_parse takes,
 *     unchanged when the bytes were valid UTF-8.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"
#include "qmp/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STR_MAX 65536

/* Reused across inputs, the way a QMP connection reuses its parser. */
static struct json *doc, *quoted_doc;
static char str[STR_MAX], back[STR_MAX], quoted[6 * STR_MAX + 3];

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool valid_utf8(const char *s)
{
	for (size_t len; *s; s += len)
		if (!(len = text_utf8_len((const unsigned char *)s)))
			return false;
	return true;
}

/* Invariant 4, and 3 when s came from json_str. */
static void quote_round_trip(const char *s)
{
	int n = json_quote(quoted, sizeof quoted, s);

	check(n >= 2 && (size_t)n == strlen(quoted));
	check(json_parse(quoted_doc, quoted, (size_t)n, NULL));
	check(json_type(quoted_doc, 0) == JSON_STRING);
	check(json_str(quoted_doc, 0, back, sizeof back));
	if (valid_utf8(s))
		check(strcmp(s, back) == 0 && json_streq(quoted_doc, 0, s));
}

static void accessors(int tok)
{
	char small[4];
	uint64_t u;
	bool b;

	json_uint(doc, tok, UINT64_MAX, &u);
	json_uint(doc, tok, 255, &u);
	json_bool(doc, tok, &b);
	json_str(doc, tok, small, sizeof small);
	json_str(doc, tok, small, 0);
	json_get(doc, tok, "return");
	if (json_str(doc, tok, str, sizeof str)) {
		check(json_streq(doc, tok, str));
		quote_round_trip(str);
	}
}

/* Invariant 2 for one token (nothing to check unless a container). */
static void children(int tok)
{
	enum json_type type = json_type(doc, tok);
	int n = 0;

	for (int c = json_first(doc, tok); c >= 0; c = json_next(doc, c), n++) {
		check(c > tok && json_type(doc, c) != JSON_NONE);
		if (type != JSON_OBJECT)
			continue;
		check(json_type(doc, c) == JSON_STRING && json_type(doc, c + 1) != JSON_NONE);
		if (json_str(doc, c, str, sizeof str))
			check(json_get(doc, tok, str) >= 0);
	}
	check(n == json_size(doc, tok));
}

/* Tokens are numbered in document order and json_type is JSON_NONE past
 * the last one, so a flat loop reaches every token without recursion. */
static void walk(void)
{
	for (int tok = 0; json_type(doc, tok) != JSON_NONE; tok++) {
		check(tok < JSON_TOKENS_MAX);
		accessors(tok);
		children(tok);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err e = { 0 };
	char *s;

	if (!doc && !(doc = json_new()))
		abort();
	if (!quoted_doc && !(quoted_doc = json_new()))
		abort();
	if (json_parse(doc, (const char *)data, size, &e))
		walk();
	else
		check(e.kind != ERR_NONE && e.msg[0] && json_type(doc, 0) == JSON_NONE);
	check(json_type(doc, -1) == JSON_NONE && json_next(doc, -1) == -1);
	/* The input as a C string (cut at a NUL, bounded), quoted. */
	size = size < STR_MAX ? size : STR_MAX - 1;
	if (!(s = malloc(size + 1)))
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	quote_round_trip(s);
	free(s);
	return 0;
}
