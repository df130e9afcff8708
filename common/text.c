#include "common/text.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

char *text_escape(char *out, size_t outsz, const char *in)
{
	const unsigned char *s = (const unsigned char *)(in ? in : "");
	size_t len = 0;

	if (outsz == 0)
		return out;
	while (*s) {
		char esc[5];
		const char *piece = esc;
		size_t n = text_utf8_len(s), plen;

		if (n == 1 && (*s < 0x20 || *s == 0x7f || *s == '\\' || *s == '"'))
			n = 0;
		if (n > 0) {
			piece = (const char *)s, plen = n;
			/* C1 controls (U+0080..U+009F) act as escapes on some terminals. */
			if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0)
				n = 0;
		}
		if (n == 0) {
			escape_byte(*s, esc);
			piece = esc, plen = strlen(esc), n = 1;
		}
		/* Keep room for "..." (and the NUL) unless this is the last piece. */
		if (len + plen + (s[n] ? 4 : 1) > outsz) {
			if (len + 4 <= outsz)
				memcpy(out + len, "...", 3), len += 3;
			break;
		}
		memcpy(out + len, piece, plen);
		len += plen;
		s += n;
	}
	out[len] = '\0';
	return out;
}
