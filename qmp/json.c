/* json.c - one JSON text at a time, on jsmn in strict mode.
 *
 * jsmn finds the tokens but is lenient even in strict mode: it accepts
 * missing or extra commas and colons, malformed literals such as `tru`,
 * raw control bytes and invalid UTF-8 in strings, and more than one
 * top-level value.  check_tree() closes those gaps in one linear pass, so
 * that after json_parse succeeds:
 *  1. the text is exactly one JSON value with whitespace around it;
 *  2. no container nests deeper than JSON_DEPTH_MAX;
 *  3. every object child is a string key with exactly one value;
 *  4. every primitive is true, false, null or a JSON number;
 *  5. every string unescapes to valid UTF-8 without NUL.
 * The accessors rely on 1-5 but still bounds-check every token index.
 */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#define JSMN_STATIC
#include <jsmn.h>

#include "qmp/json.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define TOKENS_INIT 64

struct json {
	const char *buf;
	size_t len;
	jsmntok_t *tok;
	int cap; /* tokens allocated */
	int n;   /* tokens of the current document; 0 when there is none */
};

struct json *json_new(void)
{
	struct json *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	/* jsmn only counts, and fills nothing, when given no array. */
	j->tok = calloc(TOKENS_INIT, sizeof *j->tok);
	if (!j->tok) {
		free(j);
		return NULL;
	}
	j->cap = TOKENS_INIT;
	return j;
}

void json_free(struct json *j)
{
	if (!j)
		return;
	free(j->tok);
	free(j);
}

/* ---- UTF-8 and string bodies ---- */

/* Length of the valid UTF-8 sequence at p[0..avail), or 0.  Bytes are
 * checked one at a time, so a NUL-terminated string may pass a large
 * `avail`: the terminator is never a continuation byte. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (avail == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0; /* continuation byte, overlong lead, or > U+10FFFF */
	/* The second byte's range rules out overlongs, surrogates and
	 * code points above U+10FFFF. */
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	for (size_t i = 1; i < len; i++) {
		if (i >= avail || p[i] < lo || p[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
	}
	return len;
}

static size_t utf8_put(unsigned long cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The four hex digits of a \u escape at s[*i] (just after the `u`). */
static bool hex4(const char *s, size_t n, size_t *i, unsigned long *cp)
{
	*cp = 0;
	if (n - *i < 4)
		return false;
	for (int k = 0; k < 4; k++) {
		int v = hexval(s[(*i)++]);
		if (v < 0)
			return false;
		*cp = *cp << 4 | (unsigned long)v;
	}
	return true;
}

/* \uXXXX at s[*i] (after the `u`), joining a surrogate pair. */
static bool unicode_escape(const char *s, size_t n, size_t *i, unsigned long *cp)
{
	unsigned long lo;

	if (!hex4(s, n, i, cp) || *cp == 0 || (*cp >= 0xdc00 && *cp <= 0xdfff))
		return false;
	if (*cp < 0xd800 || *cp > 0xdbff)
		return true;
	if (n - *i < 2 || s[*i] != '\\' || s[*i + 1] != 'u')
		return false;
	*i += 2;
	if (!hex4(s, n, i, &lo) || lo < 0xdc00 || lo > 0xdfff)
		return false;
	*cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
	return true;
}

static bool simple_escape(char c, char *out)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *p = c ? strchr(from, c) : NULL;

	if (!p)
		return false;
	*out = to[p - from];
	return true;
}

/* Decode the character at s[*i] of a string body s[0..n): its UTF-8
 * bytes go to out, their count is returned; 0 means invalid. */
static size_t decode_char(const char *s, size_t n, size_t *i, char out[4])
{
	unsigned char c = (unsigned char)s[*i];
	unsigned long cp;
	size_t len;

	if (c == '\\') {
		if (n - *i < 2)
			return 0;
		*i += 2;
		if (s[*i - 1] != 'u')
			return simple_escape(s[*i - 1], out) ? 1 : 0;
		return unicode_escape(s, n, i, &cp) ? utf8_put(cp, out) : 0;
	}
	if (c < 0x20)
		return 0;
	len = utf8_seq((const unsigned char *)s + *i, n - *i);
	memcpy(out, s + *i, len);
	*i += len;
	return len;
}

static bool string_ok(const char *s, size_t n)
{
	char ch[4];

	for (size_t i = 0; i < n;)
		if (decode_char(s, n, &i, ch) == 0)
			return false;
	return true;
}

/* ---- primitives ---- */

static size_t digits(const char *s, size_t n, size_t i)
{
	size_t start = i;

	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	return i - start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool number_ok(const char *s, size_t n)
{
	size_t i = 0, d;

	if (i < n && s[i] == '-')
		i++;
	d = digits(s, n, i);
	if (d == 0 || (d > 1 && s[i] == '0'))
		return false;
	i += d;
	if (i < n && s[i] == '.') {
		d = digits(s, n, ++i);
		if (d == 0)
			return false;
		i += d;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		d = digits(s, n, i);
		if (d == 0)
			return false;
		i += d;
	}
	return i == n;
}

static bool is_word(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && memcmp(s, word, n) == 0;
}

static bool primitive_ok(const char *s, size_t n)
{
	return is_word(s, n, "true") || is_word(s, n, "false") ||
	       is_word(s, n, "null") || number_ok(s, n);
}

/* ---- tokenizing ---- */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool grow(struct json *j, struct err *e)
{
	jsmntok_t *t;
	int cap;

	if (j->cap >= JSON_TOKENS_MAX)
		return err_set(e, ERR_NOMEM, "JSON text has more than %d tokens",
			       JSON_TOKENS_MAX);
	cap = j->cap * 2 > JSON_TOKENS_MAX ? JSON_TOKENS_MAX : j->cap * 2;
	t = realloc(j->tok, (size_t)cap * sizeof *t);
	if (!t)
		return err_set(e, ERR_NOMEM, "out of memory for %d JSON tokens", cap);
	j->tok = t;
	j->cap = cap;
	return true;
}

/* jsmn in strict mode wants a delimiter after a primitive, so a bare
 * top-level number or literal would read as truncated: take it here and
 * leave its syntax and what follows it to check_tree. */
static int top_primitive(struct json *j, size_t start)
{
	size_t end = start;

	while (end < j->len && !is_ws(j->buf[end]))
		end++;
	j->tok[0] = (jsmntok_t){ .type = JSMN_PRIMITIVE, .start = (int)start,
				 .end = (int)end, .size = 0, .parent = -1 };
	return 1;
}

static int syntax(struct err *e, const char *what, size_t at)
{
	err_set(e, ERR_PROTOCOL, "%s JSON at byte %zu", what, at);
	return -1;
}

/* Fill j->tok; returns the token count or -1 with `e` set.  On NOMEM jsmn
 * keeps its position, so parsing resumes in the grown array. */
static int tokenize(struct json *j, struct err *e)
{
	jsmn_parser p;
	size_t first = 0;
	int r;

	while (first < j->len && is_ws(j->buf[first]))
		first++;
	if (first == j->len) {
		err_set(e, ERR_PROTOCOL, "empty JSON text");
		return -1;
	}
	if (!memchr("{[\"", j->buf[first], 3))
		return top_primitive(j, first);
	jsmn_init(&p);
	while ((r = jsmn_parse(&p, j->buf, j->len, j->tok, (unsigned)j->cap)) ==
	       JSMN_ERROR_NOMEM)
		if (!grow(j, e))
			return -1;
	if (r == JSMN_ERROR_PART)
		return syntax(e, "truncated", p.pos);
	if (r <= 0) /* 0: a NUL before the value stopped jsmn */
		return syntax(e, "invalid", p.pos);
	return r;
}

/* ---- structure check ---- */

struct frame {
	int tok;  /* an open array or object */
	int kids; /* children seen so far */
};

struct walk {
	const struct json *j;
	struct frame stack[JSON_DEPTH_MAX];
	int depth;
	size_t pos; /* end of what has been checked */
};

/* A string token excludes its quotes; these include them. */
static size_t raw_start(const jsmntok_t *t)
{
	return (size_t)t->start - (t->type == JSMN_STRING);
}

static size_t raw_end(const jsmntok_t *t)
{
	return (size_t)t->end + (t->type == JSMN_STRING);
}

/* buf[from..to) is whitespace, or whitespace around one `sep` if nonzero. */
static bool gap_is(const struct json *j, size_t from, size_t to, char sep)
{
	bool seen = sep == 0;

	if (from > to || to > j->len)
		return false;
	for (size_t i = from; i < to; i++) {
		if (is_ws(j->buf[i]))
			continue;
		if (seen || j->buf[i] != sep)
			return false;
		seen = true;
	}
	return seen;
}

static bool bad(size_t at, struct err *e)
{
	return err_set(e, ERR_PROTOCOL, "invalid JSON at byte %zu", at);
}

/* Close every container that ends before `upto`: only whitespace may
 * stand between its last child and its closing bracket. */
static bool close_frames(struct walk *w, size_t upto, struct err *e)
{
	while (w->depth > 0) {
		const jsmntok_t *t = &w->j->tok[w->stack[w->depth - 1].tok];
		size_t end = (size_t)t->end;

		if (end > upto)
			break;
		if (!gap_is(w->j, w->pos, end - 1, 0))
			return bad(w->pos, e);
		w->pos = end;
		w->depth--;
	}
	return true;
}

/* What may stand between the previous token and token i depends on what
 * i is to its parent: first value, later element/key, or a key's value. */
static bool check_gap(struct walk *w, int i, struct err *e)
{
	const jsmntok_t *t = &w->j->tok[i], *p;
	struct frame *top = w->depth ? &w->stack[w->depth - 1] : NULL;

	if (t->parent < 0) {
		if (i != 0 || top)
			return err_set(e, ERR_PROTOCOL, "more than one JSON value");
		return gap_is(w->j, w->pos, raw_start(t), 0) || bad(w->pos, e);
	}
	if (t->parent >= i)
		return bad(raw_start(t), e);
	p = &w->j->tok[t->parent];
	if (p->type == JSMN_STRING) /* a key's value: key is token i - 1 */
		return (t->parent == i - 1 && gap_is(w->j, w->pos, raw_start(t), ':')) ||
		       bad(w->pos, e);
	if (p->type == JSMN_PRIMITIVE || !top || top->tok != t->parent)
		return bad(raw_start(t), e);
	if (!gap_is(w->j, w->pos, raw_start(t), top->kids ? ',' : 0))
		return bad(w->pos, e);
	top->kids++;
	return true;
}

static bool check_token(struct walk *w, int i, struct err *e)
{
	const jsmntok_t *t = &w->j->tok[i];
	const char *s = w->j->buf + t->start;
	size_t n = (size_t)(t->end - t->start);
	bool key = t->parent >= 0 && w->j->tok[t->parent].type == JSMN_OBJECT;

	switch (t->type) {
	case JSMN_STRING:
		if (t->size != (key ? 1 : 0))
			return bad(raw_start(t), e);
		if (!string_ok(s, n))
			return err_set(e, ERR_PROTOCOL,
				       "invalid string at byte %zu (bad escape, "
				       "control byte, NUL or not UTF-8)", raw_start(t));
		return true;
	case JSMN_PRIMITIVE:
		return (t->size == 0 && primitive_ok(s, n)) || bad(raw_start(t), e);
	case JSMN_OBJECT:
	case JSMN_ARRAY:
		return true;
	default:
		return bad(raw_start(t), e);
	}
}

static bool push(struct walk *w, int i, struct err *e)
{
	if (w->depth == JSON_DEPTH_MAX)
		return err_set(e, ERR_PROTOCOL, "JSON nested deeper than %d",
			       JSON_DEPTH_MAX);
	w->stack[w->depth++] = (struct frame){ .tok = i, .kids = 0 };
	w->pos = (size_t)w->j->tok[i].start + 1;
	return true;
}

/* One pass over the tokens in document order, with an explicit stack of
 * open containers (so nesting costs no recursion and is bounded). */
static bool check_tree(const struct json *j, struct err *e)
{
	struct walk w = { .j = j };

	for (int i = 0; i < j->n; i++) {
		const jsmntok_t *t = &j->tok[i];

		if (t->start < 0 || t->end < t->start || (size_t)t->end > j->len)
			return bad(w.pos, e);
		if (!close_frames(&w, raw_start(t), e) || !check_gap(&w, i, e) ||
		    !check_token(&w, i, e))
			return false;
		if (t->type == JSMN_OBJECT || t->type == JSMN_ARRAY) {
			if (!push(&w, i, e))
				return false;
		} else {
			w.pos = raw_end(t);
		}
	}
	if (!close_frames(&w, j->len, e))
		return false;
	if (w.depth != 0 || !gap_is(j, w.pos, j->len, 0))
		return err_set(e, ERR_PROTOCOL, "trailing data after JSON value at byte %zu",
			       w.pos);
	return true;
}

bool json_parse(struct json *j, const char *buf, size_t len, struct err *e)
{
	int n;

	j->n = 0;
	j->buf = buf;
	j->len = len;
	if (len > INT_MAX / 2)
		return err_set(e, ERR_PROTOCOL, "JSON text too long (%zu bytes)", len);
	n = tokenize(j, e);
	if (n < 0)
		return false;
	j->n = n;
	if (!check_tree(j, e)) {
		j->n = 0;
		return false;
	}
	return true;
}

/* ---- accessors ---- */

static const jsmntok_t *token(const struct json *j, int tok)
{
	return j && tok >= 0 && tok < j->n ? &j->tok[tok] : NULL;
}

enum json_type json_type(const struct json *j, int tok)
{
	const jsmntok_t *t = token(j, tok);

	if (!t)
		return JSON_NONE;
	switch (t->type) {
	case JSMN_OBJECT: return JSON_OBJECT;
	case JSMN_ARRAY: return JSON_ARRAY;
	case JSMN_STRING: return JSON_STRING;
	case JSMN_PRIMITIVE: return JSON_PRIMITIVE;
	default: return JSON_NONE;
	}
}

int json_get(const struct json *j, int obj, const char *key)
{
	if (json_type(j, obj) != JSON_OBJECT)
		return -1;
	for (int k = json_first(j, obj); k >= 0; k = json_next(j, k))
		if (json_streq(j, k, key))
			return token(j, k + 1) ? k + 1 : -1;
	return -1;
}

int json_first(const struct json *j, int container)
{
	enum json_type ty = json_type(j, container);

	if ((ty != JSON_OBJECT && ty != JSON_ARRAY) || j->tok[container].size == 0)
		return -1;
	return token(j, container + 1) ? container + 1 : -1;
}

/* Tokens are in document order and a subtree is contiguous, so the next
 * sibling is the first later token with the same parent; passing the
 * parent's end means there is none.  No recursion, whatever the depth. */
int json_next(const struct json *j, int tok)
{
	const jsmntok_t *t = token(j, tok);
	int parent;
	size_t limit;

	if (!t || t->parent < 0)
		return -1;
	parent = t->parent;
	limit = (size_t)j->tok[parent].end;
	for (int i = tok + 1; i < j->n && (size_t)j->tok[i].start < limit; i++)
		if (j->tok[i].parent == parent)
			return i;
	return -1;
}

int json_size(const struct json *j, int tok)
{
	enum json_type ty = json_type(j, tok);

	return ty == JSON_OBJECT || ty == JSON_ARRAY ? j->tok[tok].size : 0;
}

bool json_str(const struct json *j, int tok, char *out, size_t outsz)
{
	const jsmntok_t *t = token(j, tok);
	size_t o = 0, n;
	const char *s;
	char ch[4];

	if (outsz > 0)
		out[0] = '\0';
	if (!t || t->type != JSMN_STRING || outsz == 0)
		return false;
	s = j->buf + t->start;
	n = (size_t)(t->end - t->start);
	for (size_t i = 0; i < n;) {
		size_t len = decode_char(s, n, &i, ch);

		if (len == 0 || outsz - o <= len) {
			out[0] = '\0';
			return false;
		}
		memcpy(out + o, ch, len);
		o += len;
	}
	out[o] = '\0';
	return true;
}

bool json_streq(const struct json *j, int tok, const char *str)
{
	const jsmntok_t *t = token(j, tok);
	size_t o = 0, n, want;
	const char *s;
	char ch[4];

	if (!t || t->type != JSMN_STRING || !str)
		return false;
	s = j->buf + t->start;
	n = (size_t)(t->end - t->start);
	want = strlen(str);
	for (size_t i = 0; i < n;) {
		size_t len = decode_char(s, n, &i, ch);

		if (len == 0 || want - o < len || memcmp(str + o, ch, len) != 0)
			return false;
		o += len;
	}
	return o == want;
}

bool json_uint(const struct json *j, int tok, uint64_t max, uint64_t *out)
{
	const jsmntok_t *t = token(j, tok);
	const char *s;
	size_t n;
	uint64_t v = 0;

	if (!t || t->type != JSMN_PRIMITIVE)
		return false;
	s = j->buf + t->start;
	n = (size_t)(t->end - t->start);
	if (n == 0 || digits(s, n, 0) != n || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

bool json_bool(const struct json *j, int tok, bool *out)
{
	const jsmntok_t *t = token(j, tok);
	const char *s;
	size_t n;

	if (!t || t->type != JSMN_PRIMITIVE)
		return false;
	s = j->buf + t->start;
	n = (size_t)(t->end - t->start);
	if (is_word(s, n, "true"))
		*out = true;
	else if (is_word(s, n, "false"))
		*out = false;
	else
		return false;
	return true;
}

bool json_null(const struct json *j, int tok)
{
	const jsmntok_t *t = token(j, tok);

	return t && t->type == JSMN_PRIMITIVE &&
	       is_word(j->buf + t->start, (size_t)(t->end - t->start), "null");
}

/* ---- quoting ---- */

static bool put(char *out, size_t outsz, size_t *o, const char *s, size_t n)
{
	if (outsz - *o <= n) /* keep room for the NUL */
		return false;
	memcpy(out + *o, s, n);
	*o += n;
	return true;
}

/* The JSON form of the character at s[*i]; advances *i. */
static size_t quote_char(const char *s, size_t n, size_t *i, char buf[8])
{
	unsigned char c = (unsigned char)s[*i];
	size_t len;

	if (c == '"' || c == '\\') {
		buf[0] = '\\';
		buf[1] = (char)c;
		(*i)++;
		return 2;
	}
	if (c < 0x20 || c == 0x7f) {
		static const char hex[] = "0123456789abcdef";

		memcpy(buf, "\\u00", 4);
		buf[4] = hex[c >> 4];
		buf[5] = hex[c & 0xf];
		(*i)++;
		return 6;
	}
	len = utf8_seq((const unsigned char *)s + *i, n - *i);
	if (len == 0) {
		memcpy(buf, "\\ufffd", 6);
		(*i)++;
		return 6;
	}
	memcpy(buf, s + *i, len);
	*i += len;
	return len;
}

int json_quote(char *out, size_t outsz, const char *s)
{
	size_t o = 0, n = s ? strlen(s) : 0;
	bool ok;
	char buf[8];

	if (!out || outsz == 0)
		return -1;
	ok = put(out, outsz, &o, "\"", 1);
	for (size_t i = 0; ok && i < n;) {
		size_t len = quote_char(s, n, &i, buf);

		ok = put(out, outsz, &o, buf, len);
	}
	ok = ok && put(out, outsz, &o, "\"", 1) && o <= INT_MAX;
	out[ok ? o : 0] = '\0';
	return ok ? (int)o : -1;
}
