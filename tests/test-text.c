#include <criterion/criterion.h>
#include <string.h>

#include "common/text.h"

Test(text, escapes_controls_quotes_and_invalid_utf8)
{
	char out[128];
	cr_expect_str_eq(text_escape(out, sizeof out, "a\"b\\c\nd\x1b[31me\xff\xc3"),
			 "a\\\"b\\\\c\\nd\\x1b[31me\\xff\\xc3");
	cr_expect_str_eq(text_escape(out, sizeof out, "caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
	/* C1 control U+009B is a CSI on some terminals. */
	cr_expect_str_eq(text_escape(out, sizeof out, "x\xc2\x9by"), "x\\xc2\\x9by");
	/* Overlong '/' and a UTF-16 surrogate. */
	cr_expect_str_eq(text_escape(out, sizeof out, "\xc0\xaf\xed\xa0\x80"), "\\xc0\\xaf\\xed\\xa0\\x80");
	cr_expect_str_eq(text_escape(out, sizeof out, NULL), "");
}

Test(text, cuts_long_text_visibly_and_stays_terminated)
{
	char out[10];
	text_escape(out, sizeof out, "abcdefghijklmnop");
	cr_expect_str_eq(out, "abcdef...");
	text_escape(out, sizeof out, "\n\n\n\n\n\n");
	cr_expect_str_eq(out, "\\n\\n\\n...");
	text_escape(out, sizeof out, "abcdefghi");
	cr_expect_str_eq(out, "abcdefghi");
	char one[1];
	text_escape(one, sizeof one, "abc");
	cr_expect_str_eq(one, "");
}

Test(text, ascii_turns_every_unprintable_byte_into_a_question_mark)
{
	char out[16];

	cr_expect_str_eq(text_ascii(out, sizeof out, "\x1b[2Jok\n\xc3\xa9", 64), "?[2Jok???");
	cr_expect_str_eq(text_ascii(out, sizeof out, "abcdef", 3), "abc", "at most max bytes");
	cr_expect_str_eq(text_ascii(out, 4, "abcdef", 64), "abc", "cut to fit, terminated");
	cr_expect_str_eq(text_ascii(out, sizeof out, "", 64), "");
}
