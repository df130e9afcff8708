#include "common/text.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

char *text_ascii(char *out, size_t outsz, const char *in, size_t max)
{
	size_t o = 0;

	for (size_t i = 0; in[i] && o + 1 < outsz && i < max; i++)
		out[o++] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
	if (outsz)
		out[o] = '\0';
	return out;
}

size_t text_utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	unsigned cp;

	if (c < 0x80)
		return c ? 1 : 0;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and values past U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

/* The escape for one byte that cannot be shown as it is, into esc[5]. */
static void escape_byte(unsigned char c, char esc[5])
{
	switch (c) {
	case '\n': strcpy(esc, "\\n"); break;
	case '\t': strcpy(esc, "\\t"); break;
	case '\r': strcpy(esc, "\\r"); break;
	case '\\': strcpy(esc, "\\\\"); break;
	case '"': strcpy(esc, "\\\""); break;
	default: snprintf(esc, 5, "\\x%02x", c); break;
	}
}

/* The shown form of the character at s: sets *piece and *plen, returns the
 * number of input bytes it stands for. */
static size_t piece_at(const unsigned char *s, char esc[5], const char **piece, size_t *plen)
{
	size_t n = text_utf8_len(s);

	if (n == 1 && (*s < 0x20 || *s == 0x7f || *s == '\\' || *s == '"'))
		n = 0;
	/* C1 controls (U+0080..U+009F) act as escapes on some terminals. */
	if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0)
		n = 0;
	if (n > 0) {
		*piece = (const char *)s, *plen = n;
		return n;
	}
	escape_byte(*s, esc);
	*piece = esc, *plen = strlen(esc);
	return 1;
}

char *text_escape(char *out, size_t outsz, const char *in)
{
	const unsigned char *s = (const unsigned char *)(in ? in : "");
	size_t len = 0, total = 0, plen;
	const char *piece;
	char esc[5];

	if (outsz == 0)
		return out;
	for (const unsigned char *p = s; *p; total += plen)
		p += piece_at(p, esc, &piece, &plen);
	/* When it will not all fit, keep room for "..." so the cut shows. */
	size_t room = total < outsz ? outsz - 1 : (outsz > 4 ? outsz - 4 : 0);
	while (*s) {
		size_t n = piece_at(s, esc, &piece, &plen);
		if (len + plen > room)
			break;
		memcpy(out + len, piece, plen);
		len += plen;
		s += n;
	}
	if (*s && outsz > 4)
		memcpy(out + len, "...", 3), len += 3;
	out[len] = '\0';
	return out;
}
